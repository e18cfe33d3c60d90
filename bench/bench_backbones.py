"""EfficientNet-Lite0/1/2 as SkinUI encoders: weights, CPU latency of what the app runs, against Lite0.

Issue 17's backbone lever. Each backbone at its own input size (224 / 240 / 260 px) with its offline
ImageNet weights (`skinui/models/pretrained.py`): the encoder's forward (what a prediction runs per image)
and forward + backward to the Grad-CAM layer's output through the whole network (what an explanation
adds per image), batch 1. The backbones are timed in interleaved rounds in one process, so a busy
machine slows them alike and the ratio to Lite0 stays readable; the median over rounds is reported.
Accuracy is not measured here: on HAM10000 it needs a feature cache per backbone (docs/BENCHMARKS.md).

    .venv/bin/python bench/bench_backbones.py [--rounds 15] [--threads 1] [--write docs/BENCHMARKS.md]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinui.models.encoders import build_image_encoder  # noqa: E402
from training.markdown import replace_section  # noqa: E402

SECTION = "## Backbones: EfficientNet-Lite0, Lite1, Lite2"
BACKBONES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def measure(rounds: int) -> dict[str, dict[str, float]]:
    encoders = {n: build_image_encoder({"name": n, "pretrained": True}).eval() for n in BACKBONES}
    inputs = {n: torch.randn(1, 3, s, s) for n, s in BACKBONES.items()}

    def forward(n: str) -> None:
        with torch.inference_mode():
            encoders[n](inputs[n])

    def explain(n: str) -> None:  # forward with the input's gradient on, backward from the pooled feature
        x = inputs[n].clone().requires_grad_(True)
        encoders[n](x).sum().backward()

    times = {n: {"forward": [], "explain": []} for n in BACKBONES}
    for _ in range(3):  # warm-up
        for n in BACKBONES:
            forward(n)
            explain(n)
    for _ in range(rounds):
        for n in BACKBONES:
            times[n]["forward"].append(timed(lambda n=n: forward(n)))
            times[n]["explain"].append(timed(lambda n=n: explain(n)))
    out = {}
    for n, enc in encoders.items():
        params = sum(p.numel() for p in enc.parameters())
        out[n] = {"size": BACKBONES[n], "params_m": params / 1e6, "fp16_mb": params * 2 / 1e6,
                  "forward_ms": statistics.median(times[n]["forward"]),
                  "explain_ms": statistics.median(times[n]["explain"])}
    return out


def table(res: dict[str, dict[str, float]], rounds: int, threads: int) -> str:
    base = res["efficientnet_lite0"]
    lines = [SECTION, "",
             f"Command: `.venv/bin/python bench/bench_backbones.py --rounds {rounds} --threads {threads} --write "
             f"docs/BENCHMARKS.md` ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{threads} thread(s); interleaved rounds, medians). Each backbone at its own input size with its "
             "offline ImageNet weights (`skinui/models/pretrained.py`; a known-image test checks each mapping: "
             "`tests/test_encoders.py`).", "",
             "| backbone | input | weights | fp16 file | encoder forward | vs Lite0 | forward + backward | vs Lite0 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in res.items():
        lines.append(f"| `{n}` | {r['size']} px | {r['params_m']:.1f} M | {r['fp16_mb']:.1f} MB | {r['forward_ms']:.1f} ms | "
                     f"{r['forward_ms'] / base['forward_ms']:.2f}x | {r['explain_ms']:.1f} ms | "
                     f"{r['explain_ms'] / base['explain_ms']:.2f}x |")
    lines += ["", "Reading: the default stays Lite0, so the app's prediction and explanation targets are unchanged. "
              "A Lite1 or Lite2 default would multiply the encoder's share of every prediction and explanation by the "
              "ratios above and add its fp16 file to `weights/` per encoder (each retrained entry ships its own). "
              'Accuracy on our split (the shipped fast-path recipe, each backbone at its own size, HAM10000 validation, paired against a Lite0 re-run of the same session; "Training levers" above): Lite1 0.589 / macro AUC 0.943 (−0.046 [−0.133, +0.025]), Lite2 0.651 / 0.951 (+0.017 [−0.078, +0.116], macro AUC +0.007 [−0.003, +0.017]), against Lite0\'s 0.634 / 0.944: neither is distinguishable from Lite0, so the default stays, as the issue\'s own data point (Lite2 raising macro AUC 0.938 to 0.947, balanced accuracy 0.583 to 0.585) also suggested.', ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", type=Path, default=None, help="replace this section of a markdown file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    text = table(measure(args.rounds), args.rounds, args.threads)
    if args.write:
        replace_section(args.write, SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
