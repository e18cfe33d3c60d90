"""`python -m training.reports`: the evaluation report of every zoo entry, in one command.

    python -m training.reports --data ham10000=../shared/data/ham10000 --data pad-ufes-20=../shared/data/pad-ufes-20 \\
        --data milk10k=../shared/data/milk10k --data synthderm=runs/data/synthderm --out docs/reports --update-cards

Each entry is scored on its own re-derived, SHA-checked test split (`training evaluate`), as stored
in `weights/` (fp16 included), and gets `OUT/<entry>/report.json` and `report.html`; the HTML pages
share one local copy of plotly.js (`OUT/plotly.min.js`), so they work offline. `OUT/README.md`
indexes them. Each report also carries the entry's measured explanation quality (`explanations`,
`training/explain_report.py`: from `--explanations DIR` and the card; "not measured (why)" where absent).
`--update-cards` writes the measured test metrics, calibration bins, validation metrics (same
decision rule), bootstrap intervals and paired comparisons (`training/comparisons.py`) back into
each model card, so the card, the app and the report show the same numbers for the stored weights.
Every entry of a dataset named by NAMES is scored (the comparisons are paired across them); only
NAMES are written.
Entries whose dataset has no `--data` folder are listed as skipped, never silently dropped.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from training import explain_report
from training.evaluate import EncodeCache, EvaluationError, card_metrics, evaluate_entry
from training.trust import TRUST_CARD_KEYS


def card_update(card: dict[str, Any], rep: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
    """`card` with its test metrics, calibration measurements and comparisons replaced by `rep`'s."""
    if rep["split"] != "test" or rep["dataset"] != card["dataset"]:
        raise EvaluationError(f"{card['name']}: only a test-split report of its own dataset may update its card.")
    card = {**card, "metrics": card_metrics(rep, "test")}
    card["calibration"] = {**card.get("calibration", {}), "ece": rep["ece"], "ece_calibrated": rep["ece_calibrated"],
                           "ece_floor": rep["ece_floor"],
                           "bins": extras["bins"], "bins_calibrated": extras["bins_calibrated"]}
    for key in TRUST_KEYS:
        if rep.get(key) is not None:
            card[key] = rep[key]
        else:
            card.pop(key, None)
    return card


# What `training.reports` adds to a report (and, with --update-cards, to the card) beyond the metrics.
TRUST_KEYS = ("metrics_val", "intervals", "comparisons", "metadata_adds", "collection_check")


def _ci(block: dict[str, Any] | None, metric: str) -> str:
    if not block:
        return ""
    lo, hi = block[metric]["ci"]
    return f" ({lo:.3f}–{hi:.3f})"


def index_markdown(rows: list[dict[str, Any]], skipped: list[str], command: str) -> str:
    lines = ["# Evaluation reports", "",
             "One report per shipped entry, on its own grouped test split, measured on the weights as stored in",
             "`weights/`. Reproduce with:", "", "```bash", command, "```", "",
             "ECE floor: the ECE a perfectly calibrated model with the same probabilities would still measure",
             "on this many cases (labels drawn from its own probabilities, 200 draws): the finite-sample bias of",
             "the 15-bin ECE, large on small test splits.", "",
             "Brackets: 95% bootstrap intervals over lesions/patients (2,000 replicates). *val* is the",
             "validation split under the same decision rule (what choices read); the test split is read once.", "",
             "| entry | dataset | cases | balanced acc. (95% CI) | macro AUC (95% CI) | val bal. acc. | macro F1 | "
             "ECE → calibrated (floor) | report |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        test_ci = (r.get("intervals") or {}).get("test")
        val = (r.get("metrics_val") or {}).get("balanced_accuracy")
        lines.append(f"| {r['entry']} | {r['dataset']} | {r['n_cases']} | {r['balanced_accuracy']:.3f}"
                     f"{_ci(test_ci, 'balanced_accuracy')} | {r['macro']['auc']:.3f}{_ci(test_ci, 'macro_auc')} | "
                     f"{'n/a' if val is None else f'{val:.3f}'} | "
                     f"{r['macro_f1']:.3f} | {r['ece']:.3f} → {r['ece_calibrated']:.3f} "
                     f"({r['ece_floor']:.3f}) | "
                     f"[html]({r['entry']}/report.html) · [json]({r['entry']}/report.json) |")
    if skipped:
        lines += ["", "Not evaluated: " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def score_dataset(cards: list[dict[str, Any]], root: str, weights_dir: str, device: Any, cache: EncodeCache,
                  skipped: dict[str, str]) -> dict[str, tuple[Any, dict[str, Any], dict[str, Any]]]:
    """Every entry of one dataset on its validation and test splits, then the intervals and paired
    comparisons between them: name -> (entry, test report with the trust keys, test figure extras)."""
    from skinui.datasets import schema_for
    from skinui.zoo import load_entry
    from training import comparisons as cmp

    out: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {}
    val_scored, test_scored = {}, {}
    for card in cards:
        entry = load_entry(card["name"], weights_dir)
        try:
            rep, extras = evaluate_entry(entry, card["dataset"], root, "test", device, cache=cache)
            rep_val, extras_val = evaluate_entry(entry, card["dataset"], root, "val", device, cache=cache)
        except EvaluationError as err:
            skipped[card["name"]] = str(err)
            continue
        mods = entry.model.modalities
        test_scored[card["name"]] = cmp.Scored.from_extras(card["name"], extras, mods)
        val_scored[card["name"]] = cmp.Scored.from_extras(card["name"], extras_val, mods)
        rep["metrics_val"] = card_metrics(rep_val, "val")
        rep["intervals"] = {"test": cmp.intervals(test_scored[card["name"]]),
                            "val": cmp.intervals(val_scored[card["name"]])}
        rep["metadata_adds"] = cmp.metadata_adds(test_scored[card["name"]])
        rep["collection_check"] = cmp.collection_check(entry, schema_for(card["dataset"]), extras)
        out[card["name"]] = (entry, rep, extras)
    # "best" is chosen on validation: the cards as they are about to be written
    chosen = [{**entry.card, "metrics_val": rep["metrics_val"]} for entry, rep, _ in out.values()]
    for name, found in cmp.compare_dataset(chosen, test_scored).items():
        out[name][1]["comparisons"] = found
    return out


def main(argv: list[str] | None = None) -> int:
    import plotly

    from skinui.zoo import list_entries, write_card
    from training.report_html import write_html
    from training.runtime import pick_device

    ap = argparse.ArgumentParser(prog="python -m training.reports", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="entries (default: all)")
    ap.add_argument("--weights-dir", default="weights")
    ap.add_argument("--data", action="append", default=[], metavar="DATASET=DIR", help="a dataset's folder (repeat)")
    ap.add_argument("--out", default="docs/reports")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--update-cards", action="store_true", help="write the measured test metrics into the cards")
    ap.add_argument("--explanations", default="docs/explanations",
                    help="the per-entry explanation measurements each report's `explanations` section reads")
    args = ap.parse_args(argv)
    roots = dict(item.split("=", 1) for item in args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", out / "plotly.min.js")
    device, cache = pick_device(args.device), EncodeCache()
    measured = explain_report.measured_blocks(Path(args.explanations))
    every = list_entries(args.weights_dir)
    cards = [c for c in every if not args.names or c["name"] in args.names]
    skipped: dict[str, str] = {}  # entry -> why it was not scored this time
    # Comparisons are paired across a dataset's entries, so every entry of a touched dataset is scored.
    datasets = sorted({c["dataset"] for c in cards})
    done = 0
    for dataset in datasets:
        if dataset not in roots:
            skipped.update({c["name"]: f"no --data {dataset}=DIR" for c in cards if c["dataset"] == dataset})
            continue
        scored = score_dataset([c for c in every if c["dataset"] == dataset], roots[dataset], args.weights_dir,
                               device, cache, skipped)
        for name, (entry, rep, extras) in scored.items():
            if args.names and name not in args.names:
                continue
            (out / name).mkdir(exist_ok=True)
            trust = {k: entry.card[k] for k in TRUST_CARD_KEYS if k in entry.card}  # training.trust's blocks
            rep["explanations"] = explain_report.section(entry.card, measured.get(name))
            (out / name / "report.json").write_text(json.dumps({**rep, **trust}, indent=1) + "\n")
            write_html(out / name / "report.html", rep, extras, entry.card, js_src="../plotly.min.js")
            if args.update_cards:
                write_card(card_update(entry.card, rep, extras), args.weights_dir)
            done += 1
            print(f"{name}: balanced accuracy {rep['balanced_accuracy']:.3f}{_ci(rep['intervals']['test'], 'balanced_accuracy')}, "
                  f"macro AUC {rep['macro']['auc']:.3f}, val {rep['metrics_val']['balanced_accuracy']:.3f}", file=sys.stderr)
    command = "python -m training.reports " + " ".join(f"--data {k}={v}" for k, v in roots.items()) + \
        f" --out {args.out}" + (" --update-cards" if args.update_cards else "")
    previous = (out / "README.md").read_text().split("```bash\n") if (out / "README.md").is_file() else []
    if args.names and len(previous) > 1:  # a partial re-run keeps the command that regenerates everything
        command = previous[1].split("\n```")[0]
    # The index lists every entry's report on disk, so re-scoring a few entries keeps the others.
    reports = {c["name"]: out / c["name"] / "report.json" for c in every}
    rows = [json.loads(path.read_text()) for path in reports.values() if path.is_file()]
    missing = [f"{n} ({skipped.get(n, 'no report yet')})" for n, path in reports.items() if not path.is_file()]
    (out / "README.md").write_text(index_markdown(rows, missing, command))
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
