"""Averaging the photo's flipped views (test-time augmentation) against the single view, paired, per entry.

    python bench/averaged_views.py --data ham10000=../shared/data/ham10000 --data pad-ufes-20=../shared/data/pad-ufes-20 \
        [--split val] [--write docs/BENCHMARKS.md]

Each image entry is scored on the split twice, with its card's calibration and decision rule: on the
photo alone and on the calibrated probabilities averaged over the photo and its mirrored, flipped and
turned views (what `Entry.predict(average_views=True)` returns). The difference carries a 95% paired
group-bootstrap interval (`skinui.stats.paired_difference`, lesions or patients, 2,000 replicates).
Validation by default: it is the evidence a per-entry switch to averaged views would have to rest on,
and no test case is read unless `--split test` is asked for. The encoder passes are cached under
`runs/_cache/encode` (`training.trust` fills the same cache).
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
    from skinui.metrics import quick_scores
    from skinui.stats import paired_difference
    from skinui.zoo import list_entries, load_entry
    from training.evaluate import EncodeCache, select_cases, view_probabilities
    from training.markdown import replace_section
    from training.measure_cli import case_group
    from training.trust import _answerable, flippable

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", default=[], metavar="DATASET=DIR")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--weights-dir", default=str(REPO / "weights"))
    ap.add_argument("--write", type=Path, default=None, help="replace this section of a markdown file")
    args = ap.parse_args(argv)
    roots = dict(d.split("=", 1) for d in args.data)
    cache = EncodeCache()
    command = f"python bench/averaged_views.py {' '.join(f'--data {d}' for d in args.data)} --split {args.split}"
    lines = [SECTION, "", f"Split: **{args.split}**. Each entry with its card's calibration and decision rule, on the "
             "photo alone and on the probabilities averaged over the photo and its 3 flipped views (4x the "
             "image-encoder passes); averaged minus single, paired 95% group-bootstrap interval (≈ = contains 0). "
             "Evidence for a per-entry switch to averaged views, which no entry has yet (docs/TRUST.md).", "",
             "```bash", command, "```", "",
             "| entry | cases | single: bal. acc. | averaged: bal. acc. | Δ bal. acc. (95% CI) | Δ macro AUC (95% CI) |",
             "|---|---:|---:|---:|---|---|"]
    for card in list_entries(args.weights_dir):
        if card["dataset"] not in roots:
            continue
        entry = load_entry(card["name"], args.weights_dir)
        if not flippable(entry):
            continue
        cases, labels, _ = select_cases(card, card["dataset"], Path(roots[card["dataset"]]).resolve(), args.split)
        cases, labels = _answerable(entry, list(cases), np.asarray(labels))
        per_view = view_probabilities(entry, cases, cache)
        single, mean = per_view[0], per_view.mean(0)
        one, avg = (single, entry.decide(single)), (mean, entry.decide(mean))
        d = paired_difference(labels, [case_group(card, c) for c in cases], avg, one)
        k = len(entry.classes)
        s_bacc, m_bacc = (quick_scores(labels, p, k, predicted=dec)["balanced_accuracy"] for p, dec in (one, avg))
        lines.append(f"| `{card['name']}` | {len(cases)} | {s_bacc:.3f} | {m_bacc:.3f} | {fmt(d['balanced_accuracy'])} | "
                     f"{fmt(d['macro_auc'])} |")
        print(lines[-1], flush=True)
    cache.save()
    if args.write:
        replace_section(args.write, SECTION, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
