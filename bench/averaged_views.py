"""Averaging the photo's flipped views (test-time augmentation) against the single view, paired, per entry.

    python bench/averaged_views.py --data ham10000=../shared/data/ham10000 --data pad-ufes-20=../shared/data/pad-ufes-20 \
        --data synthderm=runs/data/synthderm [--split val] [--write docs/BENCHMARKS.md]

Each image entry is scored on the split twice: on the photo alone and on the views' mean probability
(the photo and its mirrored, flipped and turned views), each arm calibrated on the validation split
on its own (`skinui.calibration.fit_calibration`, decision weight 1), as the export's views check
does. The difference carries a 95% paired group-bootstrap interval (`skinui.stats.paired_difference`,
lesions or patients, 2,000 replicates). Beside it: what the card decided (`views.decision`) and the
held-out check it rests on (`views.check`: mean gain and share of losing validation halves).
Validation by default, where the decision is taken; no test case is read unless `--split test` is
asked for. The encoder passes are cached under `runs/_cache/encode` (`training.trust` fills the same cache).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "## Averaged views, paired against the single view"


def fmt(d: dict) -> str:
    lo, hi = d["ci"]
    return f"{d['estimate']:+.3f} [{lo:+.3f}, {hi:+.3f}]" + ("" if d["excludes_zero"] else " ≈")


def main(argv: list[str] | None = None) -> int:
    from skinui.calibration import calibrated_logits, decide, fit_calibration, softmax
    from skinui.metrics import quick_scores
    from skinui.stats import paired_difference
    from skinui.views import average_logits
    from skinui.zoo import list_entries, load_entry
    from training.evaluate import EncodeCache, select_cases, view_logits
    from training.markdown import replace_section
    from training.measure_cli import case_group
    from training.trust import _answerable

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", default=[], metavar="DATASET=DIR")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--weights-dir", default=str(REPO / "weights"))
    ap.add_argument("--write", type=Path, default=None, help="replace this section of a markdown file")
    args = ap.parse_args(argv)
    roots = dict(d.split("=", 1) for d in args.data)
    cache = EncodeCache()
    command = f"python bench/averaged_views.py {' '.join(f'--data {d}' for d in args.data)} --split {args.split}"
    lines = [SECTION, "", f"Split: **{args.split}**. Each entry on the photo alone and on the views' mean probability "
             "(the photo and its 3 flipped views: 4x the image-encoder passes), each arm calibrated on validation on "
             "its own, decision weight 1; averaged minus single, paired 95% group-bootstrap interval (≈ = contains 0). "
             "*Card*: what the export decided (`views.decision`) on held-out halves of validation (`views.check`: "
             "mean gain in balanced accuracy, share of the 200 halves where averaging lost; averaged when the "
             "gain is positive and at most 20% lose).", "",
             "```bash", command, "```", "",
             "| entry | cases | single: bal. acc. | averaged: bal. acc. | Δ bal. acc. (95% CI) | Δ macro AUC (95% CI) | "
             "held-out check: gain / losing | card |",
             "|---|---:|---:|---:|---|---|---|---|"]
    for card in list_entries(args.weights_dir):
        if card["dataset"] not in roots:
            continue
        entry = load_entry(card["name"], args.weights_dir)
        if not entry.pixel_modalities:
            continue
        root = Path(roots[card["dataset"]]).resolve()
        scored = {}
        for split in dict.fromkeys(("val", args.split)):  # calibrated on validation, as the export does
            cases, labels, _ = select_cases(card, card["dataset"], root, split)
            cases, labels = _answerable(entry, list(cases), np.asarray(labels))
            z = view_logits(entry, cases, cache)
            scored[split] = (cases, labels, {"single": z[0], "averaged": average_logits(z)})
        cases, labels, logits = scored[args.split]
        log_prior = entry.calibration.get("log_prior")
        arms = []
        for arm in ("single", "averaged"):
            cal = fit_calibration(scored["val"][2][arm], scored["val"][1],
                                  None if log_prior is None else np.asarray(log_prior),
                                  bool(entry.calibration.get("prior_weight")))
            arms.append((softmax(calibrated_logits(logits[arm], cal)), decide(logits[arm], cal)))
        one, avg = arms
        d = paired_difference(labels, [case_group(card, c) for c in cases], avg, one)
        k = len(entry.classes)
        s_bacc, m_bacc = (quick_scores(labels, p, k, predicted=dec)["balanced_accuracy"] for p, dec in (one, avg))
        check = (card.get("views") or {}).get("check") or {}
        held = f"{check['mean_gain']:+.3f} / {check['share_losing']:.0%}" if check else "–"
        lines.append(f"| `{card['name']}` | {len(cases)} | {s_bacc:.3f} | {m_bacc:.3f} | {fmt(d['balanced_accuracy'])} | "
                     f"{fmt(d['macro_auc'])} | {held} | {(card.get('views') or {}).get('decision', '–')} |")
        print(lines[-1], flush=True)
    cache.save()
    if args.write:
        replace_section(args.write, SECTION, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
