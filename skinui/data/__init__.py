"""`python -m skinui.data summary --dataset NAME --root DIR`: what a dataset folder holds, as JSON.

The printed object is a contract (DESIGN.md): `dataset, cases, classes, modalities,
metadata_fields, skipped` (rows not yielded as cases), plus `skipped_reasons` (why),
`repaired` (problems fixed on kept cases), `representations` (image, or concept vector where a
dataset ships no pixels), `leak_fields` and `notes`.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinui.data", description="Inspect a dataset folder.")
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="print one JSON object describing the dataset under --root")
    summary.add_argument("--dataset", required=True, help=f"one of: {', '.join(NAMES)}")
    summary.add_argument("--root", required=True, help="folder holding the dataset's official files")
    summary.add_argument("--verify-images", action="store_true", help="also decode-check every image (slower)")
    args = parser.parse_args(argv)
    try:
        out = summarize(args.dataset, args.root, verify_images=args.verify_images)
    except DatasetError as err:
        print(str(err), file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0
