"""Does tuning the decision weight tau on validation generalise? Checked inside validation only.

    python bench/decision_weight.py --data ham10000=../shared/data/ham10000 --data pad-ufes-20=../shared/data/pad-ufes-20 \
        --data synthderm=runs/data/synthderm [--write docs/BENCHMARKS.md]

Every shipped entry trained on rebalanced classes decides by argmax(log p - tau log pi), with tau
chosen on the validation split (`skinui.calibration.fit_decision_weight`, grid 0..1). Choosing tau
and reporting validation on the same cases is optimistic; whether the choice also helps on new
cases can be asked of validation alone: split its groups in half at random, choose tau on one half,
score the other half with that tau and with the fixed Bayes rule tau = 1, repeat
(`skinui.calibration.check_decision_weight`, which export now runs to decide whether to tune). The
table gives, per entry, the mean out-of-half gain of tuning over tau = 1 and the share of splits
where tuning loses. No test case is read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


SECTION = "## Decision weight"
INTRO = """Does tuning the decision weight τ of the prevalence-adjusted rule (argmax log p − τ log π) on
validation help on cases it was not tuned on? Asked of validation alone, never test: 200 random
halvings of each entry's validation lesions or patients, τ tuned on one half (grid 0–1), the other
half scored with that τ and with the Bayes rule τ = 1. "tune?" is the rule every export applies
(`skinui.calibration.check_decision_weight`): tune only if the mean out-of-half gain is positive and
tuning loses on at most 20% of the halvings. The *shipped τ* column is what each card carries: cards
exported before the rule existed were re-exported under it (`python -m training export --entry
weights/NAME ... --data-root DIR`: same weights, re-calibrated and re-scored, no retraining), and a
test fails on any card without the check (`skinui.zoo.card_problems`). Only MILK10k's k-fold study
keeps its own rule, τ tuned inside every fold for its entries and its anchor alike."""


def main(argv: list[str] | None = None) -> int:
    from skinui.calibration import check_decision_weight
    from skinui.zoo import list_entries, load_entry
    from training.evaluate import EncodeCache, shipped_scores
    from training.markdown import replace_section

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", default=[], metavar="DATASET=DIR")
    ap.add_argument("--weights-dir", default=str(REPO / "weights"))
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--write", type=Path, default=None, help="replace this section of a markdown file")
    args = ap.parse_args(argv)
    roots = dict(d.split("=", 1) for d in args.data)
    cache = EncodeCache()
    command = "python bench/decision_weight.py " + " ".join(f"--data {d}" for d in args.data)
    lines = [SECTION, "", INTRO, "", "```bash", command, "```", "",
             "| entry | shipped tau | out-of-half gain of tuning over tau = 1 (mean) | splits where tuning loses | tune? |",
             "|---|---|---|---|---|"]
    for card in list_entries(args.weights_dir):
        cal = card.get("calibration") or {}
        if card["dataset"] not in roots or cal.get("log_prior") is None:
            continue
        entry = load_entry(card["name"], args.weights_dir)
        _, labels, groups, (probs, _) = shipped_scores(entry, card["dataset"], roots[card["dataset"]], "val", cache)
        c = check_decision_weight(np.log(np.clip(probs, 1e-12, None)), labels,
                                  np.asarray(cal["log_prior"], dtype=np.float64), groups, args.reps)
        lines.append(f"| `{card['name']}` | {cal.get('decision_prior_weight', 1.0):.1f} | {c['mean_gain']:+.3f} | "
                     f"{c['share_losing']:.2f} | {'yes' if c['tune'] else 'no: tau = 1'} |")
        print(lines[-1], flush=True)
    cache.save()
    if args.write:
        replace_section(args.write, SECTION, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
