"""What-if metadata latency: after the first prediction of a case, how fast one changed field answers.

    python bench/bench_whatif.py [--weights weights] [--changes 50] [--threads 1 2] [--write docs/BENCHMARKS.md]

For each entry (a HAM10000 fusion entry, HAM10000 JI-ADF, a PAD-UFES-20 JI-ADF, a SynthDerm JI-ADF) it
encodes one case (random photos at 1024 x 768, the largest the app keeps, plus typed metadata), then
times `skinui.ui.whatif.view` (what the relevance tab's callback runs: `Encoded.with_metadata`, the
calibrated prediction, the sentence and the plotly figure) over `--changes` changes cycling through the
entry's fields and values, and the same plus the figure's JSON (what gradio sends to the browser), once
per torch thread count given (the app runs with torch's default, one thread per core).
Prints the Markdown section; `--write` puts it at the end of the file (replacing an earlier run of it).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere
from training.markdown import replace_section  # noqa: E402

HEADING = "## What-if metadata latency"
ENTRIES = ["ham10000_jf_weighted_concat", "ham10000_jiadf", "pad_ufes20_jiadf", "synthderm_jiadf"]
TARGET_MS = 100.0


def changes(entry, n: int) -> list[tuple[str, object]]:
    """`n` (field, value) pairs cycling through the entry's fields, each value different from the last."""
    from skinui.ui import whatif

    out = []
    fields = whatif.fields_of(entry)
    for i in range(n):
        f = fields[i % len(fields)]
        c = whatif.control(entry, f.name, None)
        k = i // len(fields)
        if c.kind == "numeric":
            steps = max(1, int((c.maximum - c.minimum) / c.step))
            out.append((f.name, c.minimum + ((k * 37 + 5) % (steps + 1)) * c.step))
        else:
            out.append((f.name, c.choices[(k + 1) % len(c.choices)]))
    return out


def case_for(entry, seed: int = 0):
    from skinui.cases import Case
    from skinui.ui.cards import pixel_modalities

    rng = np.random.default_rng(seed)
    photos = {m: rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8) for m in pixel_modalities(entry.card)}
    typed = {"age": "55", "sex": "female", "localization": "back", "region": "FACE", "site": "back", "itch": True}
    names = {f.name for f in entry.encoder.specs}
    return Case("", dermoscopic=photos.get("dermoscopic"), clinical=photos.get("clinical"),
                metadata={k: v for k, v in typed.items() if k in names})


def ms(xs: list[float]) -> tuple[float, float]:
    return statistics.median(xs) * 1000, float(np.percentile(xs, 95)) * 1000


def bench(weights: Path, name: str, n: int) -> dict:
    from skinui.ui import whatif
    from skinui.zoo import load_entry

    entry = load_entry(name, weights)
    entry.model.eval()
    case = case_for(entry)
    start = time.perf_counter()
    enc = entry.encode(case)
    enc.prediction()
    first = time.perf_counter() - start
    plan = changes(entry, n)
    for f, v in plan[:3]:  # warm-up (first plotly figure, lazy imports)
        whatif.view(enc, f, v)
    view, sent = [], []
    for f, v in plan:
        t0 = time.perf_counter()
        sentence, fig = whatif.view(enc, f, v)
        t1 = time.perf_counter()
        fig.to_json()
        t2 = time.perf_counter()
        assert "→" in sentence or "as in the case" in sentence, sentence
        view.append(t1 - t0)
        sent.append(t2 - t0)
    return {"entry": name, "fields": len(whatif.fields_of(entry)), "first_s": first, "view": ms(view),
            "sent": ms(sent), "structure": entry.card["model"]["structure"]["name"],
            "fusion": entry.card["model"].get("fusion", {}).get("name", "")}


def section(rows: list[dict], n: int, threads: list[int], weights: str) -> str:
    lines = [
        HEADING, "",
        "Relevance tab, *What if?*: one metadata field changed after the first prediction of a case. The image "
        "features are reused (`Encoded.with_metadata` re-runs the metadata encoder and the head; note it also "
        "re-preprocesses the kept photos, which is most of its time), then the calibrated prediction, the "
        "sentence and the grouped-bar figure are made (`skinui.ui.whatif.view`, the callback's whole work); the "
        "last columns add the figure's JSON, which gradio sends to the browser. Photos 1024 x 768 (the largest "
        f"the app keeps), {n} changes per entry cycling through its fields, after 3 warm-up changes.", "",
        f"Machine: {platform.machine()} with {os.cpu_count()} cores (1-min load average {os.getloadavg()[0]:.1f} "
        f"when written), torch {torch.__version__}. Both thread counts run in one process under the same load; "
        "when other processes keep the cores busy (load average above the core count) the 2-thread rows come out "
        "several times slower than the 1-thread rows, torch's two threads competing with them for the two cores, "
        "so read the 2-thread rows (the app's default, one thread per core) as a loaded machine's.", "",
        f"Command: `.venv/bin/python bench/bench_whatif.py --weights {weights} --changes {n} "
        f"--threads {' '.join(map(str, threads))} --write docs/BENCHMARKS.md`", "",
        "| torch threads | entry | structure / fusion | fields | first prediction | what-if median | p95 "
        "| + plot JSON median | p95 | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['threads']} | `{r['entry']}` | {r['structure']} / {r['fusion'] or '-'} | {r['fields']} | "
                     f"{r['first_s'] * 1000:.0f} ms | {r['view'][0]:.1f} ms | {r['view'][1]:.1f} ms | "
                     f"{r['sent'][0]:.1f} ms | {r['sent'][1]:.1f} ms | < {TARGET_MS:.0f} ms |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--entries", nargs="+", default=ENTRIES)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--write", type=Path, default=None, help="put the section at the end of this Markdown file")
    args = ap.parse_args()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows += [{**bench(Path(args.weights), name, args.changes), "threads": threads} for name in args.entries]
    text = section(rows, args.changes, args.threads, args.weights)
    print(text)
    if args.write:
        replace_section(args.write, HEADING, text)
    slow = [f"{r['entry']} ({r['threads']} threads)" for r in rows if r["sent"][1] > TARGET_MS]
    if slow:
        print(f"p95 above {TARGET_MS:.0f} ms: {', '.join(slow)}", file=sys.stderr)


if __name__ == "__main__":
    main()
