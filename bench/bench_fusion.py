"""Parameter count and CPU forward latency of every fusion method on the default backbone.

Bimodal (dermoscopic + metadata), batch 1, 224 px, efficientnet_lite0 (random init: latency does
not depend on the weights), JF structure per fusion method plus the late and JI-ADF structures.
Latency is the median of N timed forwards after warm-up, reported beside the bare backbone's
forward measured in the same process, so the overhead column is the fusion's own cost.

    .venv/bin/python bench/bench_fusion.py [--runs 30] [--threads 1] [--write docs/BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinui.models import FUSIONS, build_model  # noqa: E402

SECTION = "## Fusion methods: parameters and CPU latency"
META_DIM = 31  # a typical fitted metadata encoder width (HAM10000-like)


def _median_ms(fn, runs: int, warmup: int = 3) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _paired_ms(fn_a, fn_b, runs: int, warmup: int = 3) -> tuple[float, float, float]:
    """Medians of a, b and of the per-run difference a - b, timed alternately so load noise cancels."""
    def once(fn) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000

    with torch.inference_mode():
        for _ in range(warmup):
            fn_a(), fn_b()
        pairs = [(once(fn_a), once(fn_b)) for _ in range(runs)]
    a, b = zip(*pairs)
    return statistics.median(a), statistics.median(b), statistics.median(x - y for x, y in pairs)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _configs() -> list[tuple[str, str, dict]]:
    rows = [("late", "-", {"name": "concat"}, {"name": "late"})]
    rows += [("jf", name, {"name": name, "dim": 256, "heads": 4}, {"name": "jf"}) for name in FUSIONS.names()]
    rows += [("jiadf", "mmfa", {"name": "mmfa", "dim": 256, "heads": 4}, {"name": "jiadf"})]
    return [(s, f, {"modalities": ["dermoscopic", "metadata"], "num_classes": 7, "meta_dim": META_DIM,
                    "image_encoder": {"name": "efficientnet_lite0", "pretrained": False},
                    "meta_encoder": {"name": "mlp", "dims": [128, 256]}, "fusion": fc, "structure": sc})
            for s, f, fc, sc in rows]


def run(runs: int) -> tuple[list[dict], float, int]:
    torch.manual_seed(0)
    batch = {"dermoscopic": torch.randn(1, 3, 224, 224), "metadata": torch.randn(1, META_DIM)}
    results, backbone_ms, backbone_params = [], [], 0
    for structure, fusion, cfg in _configs():
        model = build_model(cfg).eval()
        encoder = model.image_encoders["dermoscopic"]
        backbone_params = _params(encoder)
        total, bare, overhead = _paired_ms(lambda m=model: m(batch), lambda e=encoder: e(batch["dermoscopic"]), runs)
        backbone_ms.append(bare)
        feats = {m: f for m, f in model.encode(batch).items()}
        head = _median_ms(lambda m=model, f=feats: m.head(f), runs)
        fusion_params = _params(model.structure.fusion) if hasattr(model.structure, "fusion") else 0
        results.append({"structure": structure, "fusion": fusion, "fusion_params": fusion_params,
                        "head_params": _params(model) - backbone_params - _params(model.meta_encoder),
                        "total_params": _params(model), "total_ms": total, "head_ms": head,
                        "backbone_ms": bare, "overhead_ms": overhead})
    return results, statistics.median(backbone_ms), backbone_params


def table(results: list[dict], backbone_ms: float, backbone_params: int, runs: int, threads: int) -> str:
    lines = [
        SECTION, "",
        f"Bimodal (dermoscopic + {META_DIM}-d metadata), batch 1, 224 px, efficientnet_lite0 backbone, "
        f"metadata MLP 128 -> 256, fusion width 256; median of {runs} CPU forwards, {threads} thread(s), "
        f"{platform.processor() or platform.machine()} with {os.cpu_count()} cores (1-min load average "
        f"{os.getloadavg()[0]:.1f} when the table was written), torch {torch.__version__}. "
        f"Bare backbone: {backbone_params / 1e6:.2f} M parameters, {backbone_ms:.1f} ms per forward. "
        "*Fusion + heads* = everything after the encoders (fusion, missing embeddings, classifier heads, "
        "JI-ADF gate); its latency is `model.head` on cached features. *Overhead* = median over runs of "
        "(whole model - bare backbone), the two timed alternately in the same process (metadata MLP "
        "included); on this shared 2-core machine differences of a few ms are timing noise, so read "
        "the *fusion + heads ms* column for the fusion's own cost.", "",
        "Command: `.venv/bin/python bench/bench_fusion.py " f"--runs {runs} --threads {threads} --write docs/BENCHMARKS.md`", "",
        "| structure | fusion | fusion params | fusion + heads params | total params | fusion + heads ms "
        "| whole model ms | overhead vs backbone |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        over = r["overhead_ms"]
        lines.append(f"| {r['structure']} | {r['fusion']} | {r['fusion_params']:,} | {r['head_params']:,} | "
                     f"{r['total_params'] / 1e6:.2f} M | {r['head_ms']:.2f} | {r['total_ms']:.1f} | "
                     f"{over:+.1f} ms ({100 * over / r['backbone_ms']:+.0f}%) |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace (or append) only this script's section; other sections belong to other scripts."""
    doc = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(lambda _: text + "\n", doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", type=Path, default=None, help="markdown file whose section to replace")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = table(*run(args.runs), args.runs, args.threads)
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
