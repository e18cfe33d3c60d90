"""`python -m skinui.synth --n N --seed S --out DIR [--size 224] [--shortcut pen:MEL] [--variant interaction] [--workers K]`."""
from __future__ import annotations

import argparse
import sys
import time

from skinui.synth import design
from skinui.synth.artefacts import Shortcut
from skinui.synth.writer import generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m skinui.synth", description="Write a SynthDerm dataset: synthetic "
                                 "dermoscopic + clinical images, masks and metadata with known ground truth.")
    ap.add_argument("--n", type=int, help="number of cases")
    ap.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    ap.add_argument("--out", help="output folder (created)")
    ap.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    ap.add_argument("--shortcut", action="append", default=[], metavar="ARTEFACT:CLASS[:MODALITY]",
                    help="tie an artefact to a class in the training split only, e.g. pen:MEL (repeatable)")
    ap.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    ap.add_argument("--variant", default="independent", choices=design.VARIANTS.names(),
                    help="design: independent (default; modalities independent given the class) or interaction "
                         "(two class pairs separable only by a combination of modalities)")
    ap.add_argument("--design", action="store_true", help="print the variant's evidence and ceiling tables and exit")
    args = ap.parse_args(argv)
    if args.design:
        print(design.pair_table(args.variant) + "\n\n" + design.accuracy_table(args.variant))
        return 0
    if args.n is None or args.out is None:
        ap.error("--n and --out are required (or pass --design).")
    try:
        shortcuts = tuple(Shortcut.parse(s, design.CLASSES) for s in args.shortcut)
        start = time.perf_counter()
        out = generate(args.n, args.seed, args.out, args.size, shortcuts, max(1, args.workers), args.variant)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"Wrote {args.n} SynthDerm cases to {out} in {seconds:.1f} s ({args.n / seconds:.0f} cases/s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
