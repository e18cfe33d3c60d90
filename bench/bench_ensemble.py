"""What the HAM10000 ensemble encoder costs the app, beside the single-encoder default, in one process.

    python bench/bench_ensemble.py [--repeats 10] [--write docs/BENCHMARKS.md]

On real example case 0 (a HAM10000 lesion), times what Analyse asks of the model: `entry.encode`
(three encoders instead of one) and `explain_case` (the flipped views of the trust features, Grad-CAM,
relevance), for the dataset's validation-chosen single-encoder entry and its validation-chosen
entry on the ensemble encoder (the default for a dermoscopic photo), each as its card decides (the photo
alone or the mean over its views), and the ensemble entry once more on the photo alone (what averaging
its views costs), interleaved so machine load affects all alike; medians, and the ratios.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(REPO / "weights"))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--ensemble", default=None, help="default: the validation-chosen entry on the ensemble encoder")
    ap.add_argument("--ensemble-weights", default=str(REPO / "weights"),
                    help="the folder holding the ensemble entry")
    ap.add_argument("--write", default=None)
    args = ap.parse_args(argv)
    from skinui import evidence
    from skinui.cases import Case
    from skinui.examples import load_real_example
    from skinui.explain import explain_case
    from skinui.zoo import list_entries, load_entry

    ex = load_real_example(0)
    cards = [c for c in list_entries(args.weights) if c.get("dataset") == ex.dataset and not c.get("leaky")]
    on_ensemble = lambda c: ((c.get("model") or {}).get("image_encoder") or {}).get("name") == "ensemble"  # noqa: E731
    args.ensemble = args.ensemble or evidence.best_on_validation([c for c in cards if on_ensemble(c)])
    single = evidence.best_on_validation([c for c in cards if not on_ensemble(c)])
    case = Case("bench", **dict(ex.images), metadata=dict(ex.metadata))
    from dataclasses import replace

    from skinui.views import decision

    entries = {single: load_entry(single, args.weights), args.ensemble: load_entry(args.ensemble, args.ensemble_weights)}
    ens = entries[args.ensemble]
    alone = f"{args.ensemble} on the photo alone"
    entries[alone] = replace(ens, card={**ens.card, "views": {**(ens.card.get("views") or {}), "decision": "single"}})
    views = {n: decision(e.card) for n, e in entries.items()}
    times: dict[str, dict[str, list[float]]] = {n: {"encode": [], "explain": []} for n in entries}
    for i in range(args.repeats + 1):
        for name, entry in entries.items():
            t0 = time.perf_counter()
            enc = entry.encode(case)
            t1 = time.perf_counter()
            explain_case(enc)  # its prediction runs the flipped views too (the trust features' spread)
            t2 = time.perf_counter()
            if i:  # the first round warms up
                for key, dt in (("encode", t1 - t0), ("explain", t2 - t1)):
                    times[name][key].append(dt)
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    total = {n: sum(m.values()) for n, m in med.items()}
    lines = [f"Validation-chosen single-encoder entry `{single}` (views: {views[single]}) against the validation-chosen "
             f"entry on the ensemble encoder, `{args.ensemble}` (3 x EfficientNet-Lite0, views: {views[args.ensemble]}; "
             f"the app's default for a dermoscopic photo), and that entry on the photo alone, real example "
             f"case 0, {args.repeats} interleaved rounds after a warm-up, {torch.get_num_threads()} torch threads, "
             f"{platform.machine()} with 2 cores, torch {torch.__version__}.", "",
             "Command: `.venv/bin/python bench/bench_ensemble.py --write docs/BENCHMARKS.md`. "
             f"1-min load average {os.getloadavg()[0]:.1f} when measured.", "",
             "| step (median) | single encoder | ensemble | ratio | ensemble, photo alone | averaging the views costs |",
             "|---|---:|---:|---:|---:|---:|"]

    def row(label: str, t: dict[str, float]) -> str:
        a, b, c = t[single], t[args.ensemble], t[alone]
        return f"| {label} | {a * 1000:.0f} ms | {b * 1000:.0f} ms | {b / a:.1f}x | {c * 1000:.0f} ms | {b / c:.1f}x |"

    for key, label in (("encode", "encode (image encoders + head)"),
                       ("explain", "explain_case (flipped views for the trust features, Grad-CAM, relevance)")):
        lines.append(row(label, {n: m[key] for n, m in med.items()}))
    lines.append(row("total model time per Analyse", total))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        from training.markdown import replace_section

        heading = "## App cost of the HAM10000 ensemble encoder"
        replace_section(Path(args.write), heading, heading + "\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
