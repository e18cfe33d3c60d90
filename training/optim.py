"""Optimiser, learning-rate schedule and loss from the config's `train:` block.

Recipes of the papers are configs, not code: the comparison paper's Adam 1e-3; JI-ADF's AdamW
1e-4 with weight decay 1e-5 and ReduceLROnPlateau on the validation metric. Parameter groups
(`lr_groups: {image, metadata, head}`) let the fast path train the trunk slower than the heads.
`train.mixup.alpha` > 0 mixes each training batch (`mixup`, `mixed_loss`); 0, the default, leaves runs unchanged.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PARTS = ("image", "metadata", "head")


def _part(name: str) -> str:
    if name.startswith("encoders."):
        return "image"
    if name.startswith("meta_encoder."):
        return "metadata"
    return "head"  # fusion, structure heads, gates, missing-modality embeddings


def param_groups(model: nn.Module, train_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Trainable parameters grouped by part, each with its own lr (default: optimizer.lr)."""
    base_lr = float(train_cfg["optimizer"]["lr"])
    lrs = {p: float(train_cfg.get("lr_groups", {}).get(p, base_lr)) for p in PARTS}
    groups: dict[str, list[nn.Parameter]] = {p: [] for p in PARTS}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[_part(name)].append(param)
    return [{"params": ps, "lr": lrs[p], "name": p} for p, ps in groups.items() if ps]


def build_optimizer(model: nn.Module, train_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    o = train_cfg["optimizer"]
    groups = param_groups(model, train_cfg)
    if not groups:
        raise ValueError("Nothing to train: every parameter is frozen.")
    name, wd = o["name"].lower(), float(o.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(groups, lr=float(o["lr"]), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=float(o["lr"]), weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=float(o["lr"]), weight_decay=wd, momentum=float(o.get("momentum", 0.9)),
                               nesterov=bool(o.get("nesterov", False)))
    raise ValueError(f"train.optimizer.name must be adam, adamw or sgd, not {o['name']!r}.")


class Schedule:
    """Per-epoch learning-rate policy: none, plateau (ReduceLROnPlateau on the selection metric), cosine.

    Cosine (with optional linear warm-up) is a pure function of the epoch, so resuming needs no state.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, train_cfg: dict[str, Any]) -> None:
        s = train_cfg["scheduler"]
        self.name, self.optimizer = s["name"].lower(), optimizer
        self.epochs, self.warmup = int(train_cfg["epochs"]), int(s.get("warmup_epochs", 0))
        self.min_lr = float(s.get("min_lr", 0.0))
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.plateau = None
        if self.name == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=float(s.get("factor", 0.5)), patience=int(s.get("patience", 2)),
                min_lr=self.min_lr)
        elif self.name not in ("none", "cosine"):
            raise ValueError(f"train.scheduler.name must be none, plateau or cosine, not {s['name']!r}.")

    def start_epoch(self, epoch: int) -> None:
        """Set the lr for `epoch` (0-based) before it runs."""
        if self.name != "cosine" and not (self.warmup and epoch < self.warmup):
            return
        for g, base in zip(self.optimizer.param_groups, self.base):
            if epoch < self.warmup:
                g["lr"] = base * (epoch + 1) / self.warmup
            else:
                t = (epoch - self.warmup) / max(1, self.epochs - self.warmup)
                g["lr"] = self.min_lr + (base - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t))

    def end_epoch(self, metric: float | None) -> None:
        if self.plateau is not None and metric is not None:
            self.plateau.step(metric)

    def state_dict(self) -> dict[str, Any]:
        return {"plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])


def _rows(out: Any, keep: torch.Tensor) -> Any:
    """The ModelOutput restricted to some rows (every batch-first tensor sliced)."""
    def cut(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return v[keep]
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        return v

    return dataclasses.replace(out, **{f.name: cut(getattr(out, f.name)) for f in dataclasses.fields(out)})


def compute_loss(model: nn.Module, out: Any, target: torch.Tensor, weights: torch.Tensor | None,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """The structure's own loss (auxiliary branch losses included), optionally class-weighted.

    Class weighting keeps the structure's loss intact: it is evaluated per class present in the
    batch and combined with weights w_c * n_c / sum(w * n), which equals PyTorch's weighted
    cross-entropy for any loss that is a per-sample mean. Label smoothing applies to single-head
    structures (whose loss is plain cross-entropy on the logits).

    A structure that weighs classes itself (`weighs_classes`, e.g. DualRefNet, whose weights go to
    its cross-entropy term only) gets them as `model.loss(out, target, class_weights=,
    label_smoothing=)`. Training-only auxiliary tasks (`model.auxiliary`) add their own loss, never
    class-weighted and never smoothed.
    """
    if getattr(getattr(model, "structure", None), "weighs_classes", False):
        return model.loss(out, target, class_weights=weights, label_smoothing=label_smoothing)
    aux = model.auxiliary_loss(out) if len(getattr(model, "auxiliary", ())) else None
    loss_of = model.structure.loss if aux is not None else model.loss  # the structure's loss alone
    if label_smoothing and not out.branch_logits:
        main = F.cross_entropy(out.logits.float(), target, weight=weights, label_smoothing=label_smoothing)
    elif weights is None:
        main = loss_of(out, target)
    else:
        total, norm = out.logits.new_zeros((), dtype=torch.float32), out.logits.new_zeros((), dtype=torch.float32)
        for c in torch.unique(target):
            keep = target == c
            w = weights[c] * keep.sum()
            total = total + w * loss_of(_rows(out, keep), target[keep])
            norm = norm + w
        main = total / norm.clamp_min(1e-12)
    return main if aux is None else main + aux


@dataclasses.dataclass
class Mixed:
    """A mixup batch: inputs lam * batch + (1 - lam) * batch[perm]; targets `target` (weight lam) and `target_b`."""

    batch: Any
    target: torch.Tensor
    target_b: torch.Tensor
    lam: float


def _mix(value: Any, lam: float, perm: torch.Tensor) -> Any:
    """Floating tensors mixed row-wise with their permuted rows; presence masks kept where both rows have it."""
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        if value.is_floating_point():
            return value.mul(lam).add_(value[perm], alpha=1.0 - lam)
        if value.dtype == torch.bool:
            return value & value[perm]
        return value
    if isinstance(value, dict):
        return {k: _mix(v, lam, perm) for k, v in value.items()}
    return value


def mixup(batch: Any, target: torch.Tensor, alpha: float, rng: np.random.Generator) -> Mixed:
    """Mixup (Zhang et al., 2018) on what the task feeds the model: pixels (`full`), cached stems
    (`fastpath`) or cached encoder features and metadata (`features`). lam ~ Beta(alpha, alpha) per
    batch, partners a random permutation; both drawn from `rng` (numpy), so torch's random stream
    (dropout) is the same with and without mixup."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(target))).to(target.device)
    return Mixed(_mix(batch, lam, perm), target, target[perm], lam)


def mixed_loss(model: nn.Module, out: Any, mixed: Mixed, weights: torch.Tensor | None,
               label_smoothing: float = 0.0) -> torch.Tensor:
    """lam * loss(target) + (1 - lam) * loss(target_b), each `compute_loss` (weighting and smoothing as configured)."""
    return (mixed.lam * compute_loss(model, out, mixed.target, weights, label_smoothing)
            + (1.0 - mixed.lam) * compute_loss(model, out, mixed.target_b, weights, label_smoothing))
