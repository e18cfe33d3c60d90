"""The command-line shape every per-entry explanation measurement shares (localisation, faithfulness):
measure one entry on a split into a JSON file, or render a folder of such files into a markdown
block and, optionally, into the cards."""
from __future__ import annotations

import argparse
from pathlib import Path


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
