"""Each entry that switched to averaged views, paired against itself as shipped before the switch.

    python bench/views_before_now.py --before b4b5536 --data ham10000=../shared/data/ham10000 \\
        --data pad-ufes-20=../shared/data/pad-ufes-20 --data synthderm=runs/data/synthderm

For every card whose `views.decision` is "averaged": the same stored weights scored on the same test
cases (then validation) twice, as shipped now (the views' mean, the card's calibration) and as shipped at
commit `--before` (the photo alone, that commit's card: its calibration and decision weight). Prints the
rows of the before → now table in docs/RESULTS.md ("Issue 17: averaged views, decided per entry"), with
95% paired group-bootstrap intervals (`skinui.stats.paired_difference`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fmt(d: dict) -> str:
    lo, hi = d["ci"]
    return f"{d['estimate']:+.3f} [{lo:+.3f}, {hi:+.3f}]" + ("" if d["excludes_zero"] else " ≈")


def main(argv: list[str] | None = None) -> int:
    from skinui.calibration import calibrated_logits, decide, softmax
    from skinui.stats import paired_difference
    from skinui.views import average_logits, card_averages
    from skinui.zoo import list_entries, load_entry
    from training.evaluate import EncodeCache, select_cases, view_logits
    from training.measure_cli import case_group

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the commit whose cards predate the views decision")
    ap.add_argument("--data", action="append", default=[], metavar="DATASET=DIR")
    ap.add_argument("--weights-dir", default=str(REPO / "weights"))
    args = ap.parse_args(argv)
    roots = dict(d.split("=", 1) for d in args.data)
    cache = EncodeCache()
    print("| entry | held-out check: mean gain / halves lost | val bal. acc. | test bal. acc. | test Δ (95% CI) | "
          "test macro AUC | Δ macro AUC (95% CI) |\n|---|---|---|---|---|---|---|")
    for card in list_entries(args.weights_dir):
        if card["dataset"] not in roots or not card_averages(card):
            continue
        old = json.loads(subprocess.check_output(["git", "show", f"{args.before}:weights/{card['name']}.json"], cwd=REPO))
        entry = load_entry(card["name"], args.weights_dir)
        scores = {}
        for split in ("val", "test"):
            cases, y, _ = select_cases(card, card["dataset"], Path(roots[card["dataset"]]).resolve(), split)
            z = view_logits(entry, cases, cache)
            arms = {"before": (z[0], old["calibration"]), "now": (average_logits(z), entry.calibration)}
            shown = {k: (softmax(calibrated_logits(v, cal)), decide(v, cal)) for k, (v, cal) in arms.items()}
            scores[split] = paired_difference(y, [case_group(card, c) for c in cases], shown["now"], shown["before"])
        check, b, t = card["views"]["check"], scores["test"]["balanced_accuracy"], scores["test"]["macro_auc"]
        print(f"| `{card['name']}` | {check['mean_gain']:+.3f} / {check['share_losing']:.0%} | "
              f"{old['metrics_val']['balanced_accuracy']:.3f} → {card['metrics_val']['balanced_accuracy']:.3f} | "
              f"{old['metrics']['balanced_accuracy']:.3f} → {card['metrics']['balanced_accuracy']:.3f} | {fmt(b)} | "
              f"{old['metrics']['macro']['auc']:.3f} → {card['metrics']['macro']['auc']:.3f} | {fmt(t)} |", flush=True)
    cache.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
