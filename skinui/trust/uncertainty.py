"""A second opinion on confidence that does not rest on the softmax alone.

- Test-time-augmentation spread: the lesion's diagnosis does not change when the photo is
  mirrored or turned upside down, so a model whose probabilities move under those views is
  unsure in a way its softmax may not show. Spread = mean total-variation distance between each
  view's probabilities and their average (0: identical, 1: disjoint).
- Branch disagreement (entries with image, joint and metadata heads: JIF, JI-ADF): the
  Jensen-Shannon divergence between the heads' probabilities, normalised by log K to [0, 1].

`training.trust` measures on the test split whether higher values predict errors (AUROC for
error detection, beside the plain 1 - max-probability baseline) and stores validation
percentiles in the card, so the app can say "higher than 90% of validation cases".
"""
from __future__ import annotations

import numpy as np

# The flips and the half turn keep a lesion's diagnosis; 90-degree turns would too, but not the
# non-square aspect some entries were trained on, so the four views are the safe set.
from skinui.views import VIEWS  # noqa: F401  (re-exported: the views the spread is measured over)


def tta_spread(view_probs: np.ndarray) -> np.ndarray:
    """[V, N, K] probabilities per view -> [N] mean total-variation distance to the views' mean."""
    p = np.asarray(view_probs, dtype=np.float64)
    return 0.5 * np.abs(p - p.mean(0, keepdims=True)).sum(-1).mean(0)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(-1)


def branch_disagreement(branch_probs: np.ndarray) -> np.ndarray:
    """[B, N, K] probabilities per head -> [N] Jensen-Shannon divergence / log K."""
    p = np.asarray(branch_probs, dtype=np.float64)
    js = _entropy(p.mean(0)) - _entropy(p).mean(0)
    return np.clip(js / np.log(p.shape[-1]), 0.0, 1.0)


def percentile_of(value: float, reference: list[float]) -> float:
    """Share of the reference values (e.g. validation cases) at or below `value`, in [0, 1]."""
    ref = np.asarray(reference, dtype=np.float64)
    return float((ref <= value).mean()) if len(ref) else float("nan")


REFERENCE_QUANTILES = tuple(round(q, 2) for q in np.linspace(0.0, 1.0, 21))


def reference(values: np.ndarray) -> list[float]:
    """Validation quantiles (every 5%) stored in the card: enough to place a new case among them."""
    return [float(v) for v in np.quantile(np.asarray(values, dtype=np.float64), REFERENCE_QUANTILES)]


def rank_among(value: float, quantiles: list[float]) -> float:
    """Approximate share of validation cases below `value`, from the stored 5% quantiles."""
    q = np.asarray(quantiles, dtype=np.float64)
    return float(np.interp(value, q, REFERENCE_QUANTILES, left=0.0, right=1.0))
