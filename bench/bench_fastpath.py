"""Training throughput on CPU: the fast path (cached frozen stem) against plain full fine-tuning.

Same process, same model (EfficientNet-Lite0, ImageNet weights, 224 px, image-only head), same
batch size, same optimiser, the real `training` code paths (`FullTask` and `FastPathTask`):

- plain: every step decodes, augments and normalises its images, then forward + backward + AdamW
  through the whole encoder;
- fast path: the stem (first `--stem-blocks` blocks, frozen) runs once over `--views` views of each
  image into an fp16 cache (timed separately); each step then reads cached activations and trains
  the trunk and head.

Also reports the amortised cost of a whole run (caching once + E epochs) for a training set the
size of HAM10000's grouped 70% split. Uses ../shared/data/ham10000 when present, else a SynthDerm
set generated on the fly (dermoscopic images only).

    .venv/bin/python bench/bench_fastpath.py [--images 64] [--batch-size 32] [--steps 4] [--views 8]
        [--threads 2] [--write docs/BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.config import load_config  # noqa: E402
from training.data import prepare  # noqa: E402
from training.loop import build  # noqa: E402
from training.optim import build_optimizer, compute_loss  # noqa: E402
from training.runtime import setup  # noqa: E402
from training.sampling import EpochSampler  # noqa: E402
from training.tasks import make_task  # noqa: E402

SECTION = "## Training: CPU fast path vs plain fine-tuning"


def _dataset(args: argparse.Namespace) -> tuple[str, Path, str]:
    ham = Path(args.data_root)
    if ham.is_dir():
        return "ham10000", ham, "dermoscopic"
    from skinui.synth.writer import generate

    out = Path(tempfile.mkdtemp()) / "synthderm"
    generate(max(args.images * 2, 60), 0, out, 224, (), 1)
    return "synthderm", out, "dermoscopic"


def _task(mode: str, dataset: str, root: Path, modality: str, args: argparse.Namespace, tmp: Path):
    cfg = load_config(None, base={
        "name": f"bench_{mode}", "dataset": dataset, "split": {"method": "grouped"},
        "model": {"modalities": [modality], "image_size": 224, "structure": {"name": "late"},
                  "image_encoder": {"name": "efficientnet_lite0", "pretrained": True, "stem_blocks": args.stem_blocks}},
        "train": {"mode": mode, "batch_size": args.batch_size, "optimizer": {"name": "adamw", "lr": 1e-4}},
        "fastpath": {"views": args.views}, "cache": {"store": "ram", "batch_size": args.batch_size},
        "export": {"enabled": False},
    })
    prep = prepare(cfg, root)
    rt = setup("cpu", "off", False)
    model = build(cfg, prep, rt, tmp)
    task = make_task(cfg, model, prep, rt, tmp / mode)
    task.train_idx = task.train_idx[: args.images]  # the benchmark's images, identical for both modes
    task.sampler = EpochSampler(prep.labels[task.train_idx], "shuffle", 0)
    return task, model, cfg


def _steps_per_second(task, model, cfg, steps: int) -> float:
    optimizer = build_optimizer(model, cfg["train"])
    task.modules_to_train_mode()
    batches = iter(task.train_batches(0))
    times = []
    for i in range(steps + 1):  # the first step warms up allocators and is not counted
        start = time.perf_counter()
        batch, target = next(batches)
        loss = compute_loss(model, task.module(batch), target, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - start)
    return len(times) * int(cfg["train"]["batch_size"]) / sum(times)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    dataset, root, modality = _dataset(args)
    tmp = Path(tempfile.mkdtemp())
    need = args.batch_size * (args.steps + 1)
    if args.images < need:
        raise SystemExit(f"--images must be at least batch size x (steps + 1) = {need}")

    plain_task, plain_model, cfg = _task("full", dataset, root, modality, args, tmp)
    plain = _steps_per_second(plain_task, plain_model, cfg, args.steps)

    fast_task, fast_model, cfg = _task("fastpath", dataset, root, modality, args, tmp)
    start = time.perf_counter()
    fast_task.prepare_model()  # builds the cache: images x views through the frozen stem
    cache_seconds = time.perf_counter() - start
    fast = _steps_per_second(fast_task, fast_model, cfg, args.steps)
    (cache,) = [c[modality] for c in fast_task.caches.values()]
    frozen = sum(p.numel() for m in fast_model.image_encoders[modality].stem_modules() for p in m.parameters())
    total = sum(p.numel() for p in fast_model.image_encoders[modality].parameters())
    cache_ips = args.images * args.views / cache_seconds
    n_train, epochs = args.train_size, args.epochs
    plain_run = epochs * n_train / plain
    fast_run = n_train * args.views / cache_ips + epochs * n_train / fast
    return {
        "dataset": dataset, "plain_ips": plain, "fast_ips": fast, "ratio": fast / plain, "cache_ips": cache_ips,
        "cache_shape": tuple(cache.data.shape[2:]), "cache_mb_per_image": cache.data[0].nbytes / 1e6,
        "frozen_share": frozen / total, "plain_run_h": plain_run / 3600, "fast_run_h": fast_run / 3600,
        "n_train": n_train, "epochs": epochs,
    }


def markdown(r: dict, args: argparse.Namespace) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    data = "HAM10000 development images (224 px JPEG)" if r["dataset"] == "ham10000" else "generated SynthDerm images"
    return f"""{SECTION}

EfficientNet-Lite0 (ImageNet weights), 224 px, image-only head, AdamW, batch {args.batch_size}; {args.images} {data};
{args.threads} thread(s) on {platform.machine()} with {os.cpu_count()} cores (1-min load average {load:.1f} when written),
torch {torch.__version__}. Both paths are the real `training` tasks timed in one process over {args.steps} steps
after a warm-up step. *Plain* = decode + augment + forward/backward through the whole encoder every step
(`train.mode: full`). *Fast path* = `train.mode: fastpath` with `stem_blocks: {args.stem_blocks}`: the frozen
stem ({r['frozen_share']:.0%} of the encoder's parameters) runs once over {args.views} views per image into an fp16
cache of {r['cache_shape']} per view ({r['cache_mb_per_image']:.2f} MB per image for all views); each step then
trains trunk + head from the cache.

Command: `.venv/bin/python bench/bench_fastpath.py --images {args.images} --batch-size {args.batch_size} --steps {args.steps} --views {args.views} --threads {args.threads} --write docs/BENCHMARKS.md`

| path | training images/s | vs plain |
|---|---:|---:|
| plain full fine-tuning | {r['plain_ips']:.1f} | 1.0x |
| fast path (from cache) | {r['fast_ips']:.1f} | {r['ratio']:.1f}x |
| fast path cache build (image-views/s, once) | {r['cache_ips']:.1f} | |

A whole run on {r['n_train']:,} training images for {r['epochs']} epochs: plain ≈ {r['plain_run_h']:.1f} h; fast path ≈
{r['fast_run_h']:.1f} h including building the {args.views}-view cache once (stage-2 fusion entries reuse one
cached pass of the stage-1 encoder, so each of them trains in minutes).
"""


def write_section(path: Path, text: str) -> None:
    """Replace (or append) only this script's section; other sections belong to other scripts."""
    doc = path.read_text() if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(lambda _: text.rstrip() + "\n\n", doc) if pattern.search(doc) else doc.rstrip() + "\n\n" + text
    path.write_text(doc.rstrip() + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "ham10000"))
    ap.add_argument("--images", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--stem-blocks", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=12, help="epochs for the whole-run estimate")
    ap.add_argument("--train-size", type=int, default=3122, help="training images for the whole-run estimate "
                    "(default: 70%% of the 4,460 HAM10000 development images)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", type=Path, help="markdown file whose section to replace")
    args = ap.parse_args()
    r = run(args)
    text = markdown(r, args)
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
