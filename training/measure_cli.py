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


def entry_and_cases(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Any, list[Any], str] | None:
    """The entry `--weights` names and the cases of its `--split` (re-derived, SHA-checked), with the
    split's note; None after printing a sentence when the data folder is not the entry's."""
    import sys

    from skinui.datasets import DatasetError
    from skinui.zoo import load_entry
    from training.evaluate import EvaluationError, select_cases

    if not args.weights or not args.data_root:
        ap.error("--weights and --data-root are required (or --table DIR)")
    path = Path(args.weights)
    entry = load_entry(path.name.removesuffix(".json"), path.parent)
    try:
        cases, _, note = select_cases(entry.card, entry.card["dataset"], Path(args.data_root).resolve(), args.split)
    except (EvaluationError, DatasetError) as err:  # a sentence, never a traceback
        print(str(err), file=sys.stderr)
        return None
    return entry, cases, note


def write_blocks(weights_dir: str | Path, key: str, blocks: dict[str, dict[str, Any]]) -> list[str]:
    """Write `key` into each card named in `blocks` and drop it from every other card, touching no other
    key: a block must not outlive its measurement file (removed, e.g., when the entry's views changed).
    Each card is read again just before its own write (other tools write other keys of the same cards)."""
    from skinui.zoo import list_entries, write_card

    written = []
    for card in list_entries(weights_dir):
        if card["name"] in blocks:
            write_card({**card, key: blocks[card["name"]]}, weights_dir)
            written.append(card["name"])
        elif key in card:
            write_card({k: v for k, v in card.items() if k != key}, weights_dir)
    return written


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
