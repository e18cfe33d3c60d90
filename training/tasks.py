"""What one training step sees, per mode. The loop in `training.loop` is the same for all three.

A `Task` gives the loop: `module` (an `nn.Module` whose `forward(batch) -> ModelOutput`; the
optimiser updates its trainable parameters and DDP wraps it), `train_batches(epoch)` and
`predict(indices)` (log-probabilities for those cases, averaged over test-time views).

- `full`: end-to-end fine-tuning from decoded images (the GPU path).
- `fastpath` / `features`: see `training.fastpath` (cached frozen stem / cached frozen encoder).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from training.data import CaseDataset, Prepared, collate, to_device
from training.runtime import Runtime
from training.sampling import EpochSampler

Batch = tuple[dict[str, Any], torch.Tensor]


class Task:
    mode = ""

    def __init__(self, cfg: dict[str, Any], model: nn.Module, prep: Prepared, rt: Runtime) -> None:
        self.cfg, self.model, self.prep, self.rt = cfg, model, prep, rt
        self.train_idx = list(prep.split["train"])
        self.sampler = EpochSampler(prep.labels[self.train_idx], cfg["train"]["sampler"], int(cfg["train"]["seed"]),
                                    rt.rank, rt.world_size)

    @property
    def module(self) -> nn.Module:
        return self.model

    def steps_per_epoch(self) -> int:
        bs = int(self.cfg["train"]["batch_size"])
        n = len(self.sampler)
        return n // bs if n > bs else 1

    def batch_rows(self, epoch: int) -> list[np.ndarray]:
        """Positions into `train_idx` per batch; full batches only (BatchNorm needs more than one row)."""
        self.sampler.set_epoch(epoch)
        order = self.sampler.order()
        bs = int(self.cfg["train"]["batch_size"])
        return [order[s * bs : (s + 1) * bs] for s in range(self.steps_per_epoch())]

    def prepare_model(self) -> None:
        """Called once before the optimiser is built (freeze parts, fill caches)."""

    def train_batches(self, epoch: int) -> Iterable[Batch]:
        raise NotImplementedError

    def predict(self, indices: Sequence[int], part: str = "eval") -> np.ndarray:
        """Log-probabilities [N, K] for these cases (`part` names the split, for caches and progress)."""
        raise NotImplementedError

    def modules_to_train_mode(self) -> None:
        self.module.train()


def log_mean_probs(per_view_logits: list[torch.Tensor]) -> torch.Tensor:
    """Average the views' probabilities, back to log space (so temperature scaling still applies)."""
    probs = torch.stack([z.float().softmax(1) for z in per_view_logits]).mean(0)
    return probs.clamp_min(1e-12).log()


class FullTask(Task):
    """Plain fine-tuning: decode, augment and encode every image every epoch."""

    mode = "full"

    def _dataset(self, indices: Sequence[int], augment: bool) -> CaseDataset:
        tr = self.cfg["train"]
        return CaseDataset(self.prep, indices, self.model.modalities, int(self.model.cfg["image_size"]),
                           augment=tr["augment"] if augment else None, seed=int(tr["seed"]),
                           preprocess=self.model.cfg.get("preprocess"))

    def train_batches(self, epoch: int) -> Iterable[Batch]:
        ds = self._dataset(self.train_idx, augment=True)
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            ds, batch_sampler=[r.tolist() for r in self.batch_rows(epoch)], collate_fn=collate,
            num_workers=int(self.cfg["train"]["num_workers"]), pin_memory=self.rt.device.type == "cuda",
        )
        for batch, target, _ in loader:
            yield to_device(batch, self.rt.device, self.rt.channels_last), target.to(self.rt.device)

    @torch.no_grad()
    def predict(self, indices: Sequence[int], part: str = "eval") -> np.ndarray:
        self.model.eval()
        ds = self._dataset(indices, augment=False)
        loader = torch.utils.data.DataLoader(ds, batch_size=int(self.cfg["train"]["eval_batch_size"]),
                                             collate_fn=collate, num_workers=int(self.cfg["train"]["num_workers"]))
        out = []
        for batch, _, _ in loader:
            with self.rt.autocast():
                logits = self.model(to_device(batch, self.rt.device, self.rt.channels_last)).logits
            out.append(log_mean_probs([logits]).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.num_classes), np.float32)


def make_task(cfg: dict[str, Any], model: nn.Module, prep: Prepared, rt: Runtime, run_dir) -> Task:
    mode = cfg["train"]["mode"]
    if mode == "full":
        return FullTask(cfg, model, prep, rt)
    from training.fastpath import FastPathTask, FeatureTask

    cls = FastPathTask if mode == "fastpath" else FeatureTask
    return cls(cfg, model, prep, rt, run_dir)
