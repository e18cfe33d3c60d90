"""The command-line shape every per-entry explanation measurement shares (localisation, faithfulness):
measure one entry on a split into a JSON file, or render a folder of such files into a markdown
block and, optionally, into the cards."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def entry_measure_parser(prog: str, description: str, files: str, cards: str) -> argparse.ArgumentParser:
    """`files`: what --table reads (e.g. "*.faith-*.json"); `cards`: what --update-cards writes."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--table", type=Path, default=None, help=f"render the table of a folder of {files} files")
    ap.add_argument("--write", type=Path, default=None, help="with --table: replace its block in this markdown file")
    ap.add_argument("--update-cards", action="store_true", help=f"with --table: write {cards} into each card")
    ap.add_argument("--weights-dir", default="weights")
    ap.add_argument("--weights", help="weights/NAME")
    ap.add_argument("--data-root")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--max-cases", type=int, default=None, help="at most this many cases of the split")
    ap.add_argument("--out", default=None)
    return ap


def case_group(card: dict[str, Any], case: Any) -> str:
    """The id a case's bootstrap resamples by: the card's split grouping (lesion or patient)."""
    training = card.get("training")
    split = training.get("split") if isinstance(training, dict) else None
    key = (split.get("group_key") if isinstance(split, dict) else None) or "lesion_id"
    return case.group(key)


def to_json(value: Any, indent: str = "") -> str:
    """JSON with objects indented, but each list of numbers and each per-case row on one line."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "[\n" + ",\n".join(inner + json.dumps(v) for v in value) + "\n" + indent + "]"
    return json.dumps(value)
