"""DualRefNet on a CPU: what its training-only decoder costs, and which reading of its regularizer trains.

1. `--steps N`: seconds per training step (batch 32, 224 px, EfficientNet-Lite0, forward + backward +
   AdamW) of the shipped config with and without the super-resolution decoder, alternated in one
   process so both see the same load.
2. `--head-epochs N`: the class-frequency L1 regularizer's two readings on the head alone. The frozen
   ImageNet encoder's pooled features of PAD-UFES-20 (preprocessed as the entry does) are computed
   once; the metadata MLP + concatenation + the `dualrefnet` head are then trained with the entry's
   loss (0.5 x class-weighted CE + 1.0 x R, lambda 0.3) for each reading, and validation balanced
   accuracy (argmax) is printed every 10 epochs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_dualrefnet.py --data-root ../shared/data/pad-ufes-20 \\
        [--steps 3] [--head-epochs 40]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skinui.metrics import quick_scores  # noqa: E402
from skinui.models import build_model  # noqa: E402
from skinui.models.preprocess import to_tensor  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import model_config, prepare  # noqa: E402
from training.sampling import class_weights  # noqa: E402

CONFIG = REPO / "training" / "configs" / "pad_ufes20_dualrefnet.yaml"


def step_times(mc: dict, steps: int) -> dict[str, float]:
    """Median seconds per step, with and without the decoder (alternating, same batch)."""
    g = torch.Generator().manual_seed(0)
    batch = {"clinical": torch.randn(32, 3, 224, 224, generator=g), "metadata": torch.randn(32, mc["meta_dim"], generator=g)}
    y = torch.randint(0, mc["num_classes"], (32,), generator=g)
    cfgs = {"with decoder": mc, "without decoder": {**mc, "auxiliary": None}}
    models = {k: build_model({**c, "image_encoder": {**c["image_encoder"], "pretrained": False}}, training=True).train()
              for k, c in cfgs.items()}
    opts = {k: torch.optim.AdamW(m.parameters(), 1e-4) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(steps + 1):  # the first step of each is a warm-up
        for k, m in models.items():
            t = time.perf_counter()
            loss = m.loss(m(batch), y)
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v[1:])) for k, v in times.items()}


def head_readings(cfg: dict, prep, mc: dict, epochs: int) -> dict[str, list[float]]:
    enc = build_model(mc).eval().image_encoders["clinical"]
    with torch.no_grad():
        x = torch.cat([enc(torch.stack([to_tensor(c.image("clinical"), 224, mc["preprocess"])
                                        for c in prep.cases[s:s + 32]])) for s in range(0, len(prep.cases), 32)])
    meta, y = torch.from_numpy(prep.meta), torch.from_numpy(prep.labels)
    tr, va = np.asarray(prep.split["train"]), prep.split["val"]
    w = class_weights(prep.labels[tr], len(prep.classes))
    stand_in = {"name": "concept_mlp", "in_dim": 4, "out_dim": x.shape[1]}  # the features are given
    out = {}
    for name, lam, red in (("no regularizer", 0.0, "mean"), ("mean |w| per row (shipped)", 0.3, "mean"),
                           ("L1 norm per row", 0.3, "sum")):
        torch.manual_seed(0)
        model = build_model({**mc, "image_encoder": stand_in,
                             "structure": {**mc["structure"], "reg_lambda": lam, "reduction": red}})
        params = [p for n, p in model.named_parameters() if not n.startswith("encoders")]
        opt = torch.optim.AdamW(params, 1e-3, weight_decay=1e-4)
        scores = []
        for epoch in range(epochs):
            model.train()
            order = np.random.default_rng(epoch).permutation(tr)
            for s in range(0, len(order) - 31, 32):
                b = order[s:s + 32]
                o = model.head({"clinical": x[b], "metadata": model.meta_encoder(meta[b])})
                loss = model.loss(o, y[b], class_weights=w)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if (epoch + 1) % 10 == 0:
                model.eval()
                with torch.no_grad():
                    p = model.head({"clinical": x[va], "metadata": model.meta_encoder(meta[va])}).probs.numpy()
                scores.append(round(quick_scores(prep.labels[va], p, len(prep.classes))["balanced_accuracy"], 3))
        out[name] = scores
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "pad-ufes-20"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--head-epochs", type=int, default=40)
    args = ap.parse_args()
    cfg = load_config(CONFIG)
    root = Path(args.data_root).resolve()
    prep = prepare({**cfg, "data_root": str(root)}, root)
    mc = model_config(cfg, prep)
    print(f"torch threads {torch.get_num_threads()}")
    if args.steps:
        for k, v in step_times(mc, args.steps).items():
            print(f"step (batch 32, 224 px) {k}: {v:.2f} s")
    if args.head_epochs:
        for k, v in head_readings(cfg, prep, mc, args.head_epochs).items():
            print(f"head only, {k}: validation balanced accuracy every 10 epochs {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
