"""`python -m skinui.data summary|audit --dataset NAME --root DIR`: what a dataset folder holds, as JSON.

`summary` prints one object, a contract (DESIGN.md): `dataset, cases, classes, modalities,
metadata_fields, skipped` (rows not yielded as cases), plus `skipped_reasons` (why),
`repaired` (problems fixed on kept cases), `representations` (image, or concept vector where a
dataset ships no pixels), `leak_fields` and `notes`.

`audit [--folds 5] [--seed 0] [--threshold 0.60]` prints one object, also a contract: per
metadata field the macro AUC with which its missingness alone predicts the label (`fields`),
each declared leak field's value AUC (`leak_fields`), the same for the whole missingness pattern
(`missingness_pattern`; `input_missingness_pattern` over the clinical input fields only), and the
names scoring above the threshold (`flagged`). See `skinui.audit` and docs/AUDIT.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from skinui.cases import MODALITIES, ConceptVector, ImageRef
from skinui.datasets import NAMES, DatasetError, LoadResult, get_adapter


def _representation(value: Any) -> str:
    if isinstance(value, ConceptVector):
        return "concept_vector"
    if isinstance(value, ImageRef):
        return "image_file"
    return "image_array"


def summarize(dataset: str, root: str | Path, verify_images: bool = False) -> dict[str, Any]:
    """The summary object for `dataset` under `root`; raises `DatasetError` with a user sentence."""
    adapter = get_adapter(dataset, root)
    result: LoadResult = adapter.load(verify_images=verify_images)
    classes = Counter(c.label for c in result.cases)
    present = {m for c in result.cases for m in c.modalities()}
    representations = {}
    for m in ("dermoscopic", "clinical"):
        kinds = sorted({_representation(getattr(c, m)) for c in result.cases if getattr(c, m) is not None})
        if kinds:
            representations[m] = kinds[0] if len(kinds) == 1 else kinds
    return {
        "dataset": dataset,
        "cases": len(result.cases),
        "classes": {label: classes[label] for label in adapter.schema.classes if classes[label]}
        | {str(k): v for k, v in classes.items() if k not in adapter.schema.classes},
        "modalities": [m for m in MODALITIES if m in present],
        "metadata_fields": adapter.schema.field_names,
        "skipped": result.n_skipped,
        "skipped_reasons": result.dropped,
        "repaired": result.repaired,
        "representations": representations,
        "leak_fields": sorted(adapter.schema.leak_fields),
        "notes": result.notes,
    }


def audit_dataset(
    dataset: str, root: str | Path, folds: int = 5, seed: int = 0, threshold: float = 0.60
) -> dict[str, Any]:
    """The leak-audit object for `dataset` under `root`; raises `DatasetError`/`AuditError` with a sentence."""
    from skinui.audit import audit

    adapter = get_adapter(dataset, root)
    result: LoadResult = adapter.load()
    out = audit(result.cases, adapter.schema, folds=folds, seed=seed, threshold=threshold)
    out["dataset"] = dataset
    if result.n_skipped:
        out["notes"].append(f"{result.n_skipped} rows were not read as cases ({result.dropped}) and are not audited.")
    return out


def _number(text: str, kind: type, name: str, low: float, high: float, example: str) -> int | float:
    """`text` parsed as `kind` within [low, high]; otherwise a `ValueError` whose message is a sentence."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"--{name} must be {what} from {low} to {high} (e.g. {example}); got {text!r}.")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinui.data", description="Inspect a dataset folder.")
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="print one JSON object describing the dataset under --root")
    summary.add_argument("--dataset", required=True, help=f"one of: {', '.join(NAMES)}")
    summary.add_argument("--root", required=True, help="folder holding the dataset's official files")
    summary.add_argument("--verify-images", action="store_true", help="also decode-check every image (slower)")
    audit = sub.add_parser(
        "audit", help="print one JSON object: how well each field's missingness (and each leak field) predicts the label"
    )
    audit.add_argument("--dataset", required=True, help=f"one of: {', '.join(NAMES)}")
    audit.add_argument("--root", required=True, help="folder holding the dataset's official files")
    audit.add_argument("--folds", default="5", help="cross-validation folds, grouped by lesion or patient (default 5)")
    audit.add_argument("--seed", default="0", help="seed of the fold assignment (default 0)")
    audit.add_argument("--threshold", default="0.60", help="flag a field whose AUC exceeds this (default 0.60)")
    args = parser.parse_args(argv)
    try:
        if args.command == "audit":
            from skinui.audit import AuditError

            try:
                folds = int(_number(args.folds, int, "folds", 2, 100, "5"))
                seed = int(_number(args.seed, int, "seed", 0, 2**32 - 1, "0"))
                threshold = float(_number(args.threshold, float, "threshold", 0.0, 1.0, "0.60"))
            except ValueError as err:
                print(str(err), file=sys.stderr)
                return 2
            try:
                out = audit_dataset(args.dataset, args.root, folds=folds, seed=seed, threshold=threshold)
            except AuditError as err:
                print(str(err), file=sys.stderr)
                return 2
        else:
            out = summarize(args.dataset, args.root, verify_images=args.verify_images)
    except DatasetError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0
