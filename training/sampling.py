"""Which training rows each rank sees each epoch, and the class weights of the loss.

One mechanism for every mode and for DDP: the epoch's order is drawn from a generator seeded by
(seed, epoch), identical on every rank, then padded and strided exactly like PyTorch's
`DistributedSampler` so each rank gets the same number of batches.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, normalised to mean 1 over the classes present (absent classes: 0)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    w *= (counts > 0).sum() / w.sum()
    return torch.tensor(w, dtype=torch.float32)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Positions into the training rows: shuffled, or class-balanced with replacement.

    `balanced` draws each class equally often (the class is chosen uniformly, then a row of it),
    the usual cure for HAM10000's 67% nevi without a pre-split oversampling leak.
    """

    def __init__(self, labels: np.ndarray, mode: str = "shuffle", seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if mode not in ("shuffle", "balanced", "sequential"):
            raise ValueError(f"unknown sampler {mode!r}")
        self.labels, self.mode, self.seed = np.asarray(labels), mode, seed
        self.rank, self.world = rank, world_size
        self.epoch = 0
        self.per_rank = -(-len(self.labels) // world_size)  # ceil

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> np.ndarray:
        n = len(self.labels)
        rng = np.random.default_rng([self.seed, self.epoch, 7919])
        if self.mode == "sequential":
            order = np.arange(n)
        elif self.mode == "shuffle":
            order = rng.permutation(n)
        else:
            by_class = [np.flatnonzero(self.labels == c) for c in np.unique(self.labels)]
            picks = rng.integers(len(by_class), size=n)
            order = np.array([by_class[c][rng.integers(len(by_class[c]))] for c in picks], dtype=np.int64)
        total = self.per_rank * self.world
        if total > n:  # pad by wrapping, as DistributedSampler does
            order = np.concatenate([order, order[: total - n]])
        return order[self.rank : total : self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.per_rank
