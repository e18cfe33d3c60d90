"""SynthDerm generation speed: `python bench/bench_synth.py [--n 200] [--size 224] [--workers 1]`.

Prints cases per second by wall clock and per core (cases / CPU seconds of this process and its
workers), so the number stays meaningful on a busy machine. Target: >= 50 cases/s per core at 224 px.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from skinui.synth import generate  # noqa: E402


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    generate(8, args.seed, tempfile.mkdtemp(prefix="synthderm-warm-"), args.size)  # imports, caches
    with tempfile.TemporaryDirectory(prefix="synthderm-bench-") as out:
        wall, cpu = time.perf_counter(), cpu_seconds()
        generate(args.n, args.seed, out, args.size, workers=args.workers)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(json.dumps({"cases": args.n, "size": args.size, "workers": args.workers,
                      "cases_per_s": round(args.n / wall, 1), "cases_per_cpu_s": round(args.n / cpu, 1),
                      "ms_per_case_cpu": round(1000 * cpu / args.n, 2)}))


if __name__ == "__main__":
    main()
