"""`python -m training.results --dataset NAME [--baseline ENTRY]`: the RESULTS.md table of a dataset.

Reads the model cards in `weights/` (their `metrics` block is the test-split report written by
`fit`'s export, i.e. exactly what `python -m training evaluate --split test` recomputes), so the
table can always be regenerated from what ships. With `--baseline`, a column gives each entry's
balanced-accuracy gap to that entry (e.g. the image-only baseline), losers included.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from skinui.zoo import list_entries


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _describe(card: dict[str, Any]) -> str:
    model = card.get("model") or {}
    structure = (model.get("structure") or {}).get("name", "?")
    fusion = (model.get("fusion") or {}).get("name")
    mods = "+".join(m[0].upper() for m in card.get("modalities", []))
    return f"{mods} · {structure}" + (f" · {fusion}" if fusion and structure not in ("late",) else "")


def table(dataset: str, baseline: str | None = None, weights_dir: str | None = None) -> str:
    cards = [c for c in list_entries(weights_dir) if c.get("dataset") == dataset and c.get("metrics")]
    if not cards:
        raise SystemExit(f"No entries with metrics for {dataset} in weights/; train them first (training/README.md).")
    base = next((c for c in cards if c["name"] == baseline), None)
    if baseline and base is None:
        raise SystemExit(f"Baseline entry {baseline} is not in weights/.")
    n = cards[0]["metrics"].get("n_cases")
    head = ("| entry | inputs · structure · fusion | bal. acc. | macro AUC | AUC>80% sens | AP | macro F1 | "
            "sens | spec | Dice | PPV | NPV | ECE raw → calibrated (floor) |" + (" Δ bal. acc. vs baseline |" if base else ""))
    lines = [f"Test split: {n} cases, never used for training, model selection or calibration. ECE floor: what "
             f"perfectly calibrated probabilities would still measure on {n} cases (`skinui.calibration.ece_floor`).",
             "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for c in sorted(cards, key=lambda c: -(c["metrics"].get("balanced_accuracy") or 0)):
        m, mac = c["metrics"], c["metrics"].get("macro") or {}
        row = (f"| `{c['name']}` | {_describe(c)} | {_f(m.get('balanced_accuracy'))} | {_f(mac.get('auc'))} | "
               f"{_f(mac.get('auc_sens_80'))} | {_f(mac.get('ap'))} | {_f(m.get('macro_f1'))} | "
               f"{_f(mac.get('sensitivity'))} | {_f(mac.get('specificity'))} | {_f(mac.get('dice'))} | "
               f"{_f(mac.get('ppv'))} | {_f(mac.get('npv'))} | {_f(m.get('ece'))} → {_f(m.get('ece_calibrated'))} "
               f"({_f(m.get('ece_floor'))}) |")
        if base:
            gap = (m.get("balanced_accuracy") or 0) - (base["metrics"].get("balanced_accuracy") or 0)
            row += f" {gap * 100:+.1f} |"
        lines.append(row)
    lines += ["", "Commands (each entry's card records its own):", ""]
    lines += [f"- `{c['name']}`: `{(c.get('training') or {}).get('command', '')}`" for c in cards]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.results", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--baseline", default=None, help="entry whose balanced accuracy the gap column is measured from")
    ap.add_argument("--weights-dir", default=None)
    args = ap.parse_args(argv)
    print(table(args.dataset, args.baseline, args.weights_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
