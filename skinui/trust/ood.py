"""Is this input unlike the entry's training data? A feature-space detector per image modality.

What it reads: the per-channel mean and standard deviation of the encoder's stem (its frozen
ImageNet early stages; `skinui.models.model.stem_style`), which describe what kind of picture this
is. The pooled penultimate features were tried first and failed: a fine-tuned head spreads the
training lesions far from the feature mean, and a cat or a screenshot lands near the centre,
closer to a class mean than many lesions (AUROC 0.27-0.53 on SynthDerm; docs/TRUST.md).

Method: the stem statistics of the training split are centred and projected onto their top-k
principal directions; the score is the class-conditional Mahalanobis distance in that subspace
(tied covariance, nearest class mean, as in Lee et al. 2018) plus the squared residual outside
it, scaled so both parts weigh the same on training data (the "virtual logit" idea of ViM,
Wang et al. 2022, in its simplest form). Inputs from another world (a cat, a screenshot) land far
from every class mean or off the subspace the training images span.

The threshold keeps 95% of the validation split (in distribution by construction) below it;
the card stores it, and the parameters live in a content-addressed safetensors file (entries
that share an encoder share the file).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

RETENTION = 0.95
METHOD = "stem statistics: PCA Mahalanobis (nearest class, tied covariance) + residual"


@dataclass
class Detector:
    mean: np.ndarray  # [D]
    basis: np.ndarray  # [D, k] orthonormal principal directions
    class_means: np.ndarray  # [C, k]
    precision: np.ndarray  # [k, k] inverse tied covariance (shrunk)
    residual_scale: np.ndarray  # [1] mean squared residual on training features

    def score(self, feats: np.ndarray) -> np.ndarray:
        """[N] distance from the training data (larger = less like it)."""
        x = np.atleast_2d(np.asarray(feats, dtype=np.float64)) - self.mean
        z = x @ self.basis
        d = z[:, None, :] - self.class_means[None]
        maha = np.einsum("nck,kl,ncl->nc", d, self.precision, d).min(1) / self.basis.shape[1]
        resid = ((x - z @ self.basis.T) ** 2).sum(1) / float(self.residual_scale[0])
        return 0.5 * (maha + resid)

    def tensors(self) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
                for k in ("mean", "basis", "class_means", "precision", "residual_scale")}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> Detector:
        return cls(**{k: np.asarray(v, dtype=np.float64) for k, v in t.items()})


def fit(feats: np.ndarray, labels: np.ndarray, k: int = 64, shrinkage: float = 0.05) -> Detector:
    """A detector from training features [N, D] and their class indices."""
    x = np.asarray(feats, dtype=np.float64)
    mean = x.mean(0)
    xc = x - mean
    k = int(max(2, min(k, x.shape[1] // 2, x.shape[0] // 4)))
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    basis = vt[:k].T
    z = xc @ basis
    classes = np.unique(labels)
    class_means = np.stack([z[labels == c].mean(0) for c in classes])
    within = z - class_means[np.searchsorted(classes, labels)]
    cov = within.T @ within / max(len(z) - len(classes), 1)
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / k * np.eye(k)  # small classes: keep it invertible
    resid = ((xc - z @ basis.T) ** 2).sum(1).mean()
    return Detector(mean, basis, class_means, np.linalg.inv(cov), np.array([max(resid, 1e-12)]))


def threshold(val_scores: np.ndarray, retention: float = RETENTION) -> float:
    """The score below which `retention` of the validation (in-distribution) inputs fall."""
    return float(np.quantile(np.asarray(val_scores, dtype=np.float64), retention))


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(score of an outside input > score of an inside one), ties counting half."""
    a, b = np.asarray(inside, dtype=np.float64), np.asarray(outside, dtype=np.float64)
    if not len(a) or not len(b):
        return float("nan")
    ranks = rankdata(np.concatenate([a, b]))  # ties share their average rank
    return float((ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))
