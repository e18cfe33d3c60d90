"""Bootstrap confidence intervals for classifiers on a test split, resampling groups, not images.

Images of one lesion (or one patient) are not independent: a model that gets a lesion right tends to
get all of its images right. Resampling images would then treat 10 correlated views as 10 pieces of
evidence and give intervals that are too narrow, so every replicate here draws the G distinct groups
with replacement and weights each case by how many times its group was drawn.

All replicates are computed at once from a [B, N] weight matrix (numpy only, float64, no loop over
replicates). The point estimates use all-ones weights and agree with `skinui.metrics`:
balanced accuracy is the mean recall over the classes present, macro AUC is the mean one-vs-rest
AUC (Mann-Whitney, ties count 1/2) over classes with both positive and negative cases, as the ISIC
scorer computes it. Intervals are percentile intervals; model comparisons use the same replicates
for both models (paired), so the shared test-set luck cancels out of the difference.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

METHOD = "percentile bootstrap over groups"
PAIRED_METHOD = "paired percentile bootstrap over groups"
METRICS = ("balanced_accuracy", "macro_auc")


def _group_codes(groups: Sequence[Hashable]) -> tuple[np.ndarray, int]:
    """Integer code per case (first-appearance order), so any hashable id (str, int, tuple) works."""
    index: dict[Hashable, int] = {}
    codes = np.fromiter((index.setdefault(g, len(index)) for g in groups), dtype=np.int64)
    return codes, len(index)


def group_weights(groups: Sequence[Hashable], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """[n_boot, N] case weights: per replicate, draw the G groups G times with replacement; weight = times drawn."""
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    codes, n_groups = _group_codes(groups)
    if n_groups == 0:
        raise ValueError("no groups to resample")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    draws += (np.arange(n_boot, dtype=np.int64) * n_groups)[:, None]  # one bincount for all replicates
    counts = np.bincount(draws.ravel(), minlength=n_boot * n_groups).reshape(n_boot, n_groups)
    return counts.astype(np.float64)[:, codes]


def _weights(weights: np.ndarray, n: int) -> np.ndarray:
    """Weights as float64 [B, N] (a single [N] vector is one replicate), checked against N cases."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights must be [B, N={n}], got {np.shape(weights)}")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    return w


def _labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Labels as a non-empty int64 vector of class indices."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size == 0:
        raise ValueError("no cases to score")
    if labels.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    return labels


def balanced_accuracy_w(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray,
                        weights: np.ndarray) -> np.ndarray:
    """[B] weighted mean recall over the classes with positive weight in each replicate (NaN if none)."""
    labels = _labels(labels)
    predicted = np.asarray(predicted, dtype=np.int64).ravel()
    if predicted.shape != labels.shape:
        raise ValueError(f"predicted must be [N={labels.size}], got {predicted.shape}")
    w = _weights(weights, labels.size)
    onehot = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)  # [N, C], classes present
    total = w @ onehot  # [B, C] weight of each class: matrix products keep it vectorised over replicates
    hits = w @ (onehot * (predicted == labels)[:, None])
    present = total > 0
    recall = np.divide(hits, total, out=np.zeros_like(hits), where=present)
    count = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, recall.sum(axis=1) / count, np.nan)


def macro_auc_w(labels: Sequence[int] | np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B] weighted one-vs-rest AUC averaged over classes with positive and negative weight (NaN if none)."""
    labels = _labels(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != labels.size:
        raise ValueError(f"probabilities must be [N={labels.size}, K], got {probs.shape}")
    if labels.max() >= probs.shape[1]:
        raise ValueError("labels must be class indices in [0, K)")
    w = _weights(weights, labels.size)
    auc_sum = np.zeros(w.shape[0])
    n_classes = np.zeros(w.shape[0], dtype=np.int64)
    for c in np.unique(labels):  # a class absent from the labels never has a positive: skip it outright
        order = np.argsort(probs[:, c], kind="stable")  # sort once per class, shared by all replicates
        score = probs[order, c]
        starts = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])  # first case of each tie block
        negative = labels[order] != c
        w_pos = w[:, order]
        w_neg = w_pos * negative
        w_pos -= w_neg  # positives' weights, in place (exact: w - w = 0, w - 0 = w)
        neg = np.add.reduceat(w_neg, starts, axis=1)  # [B, T] negative weight per tie block
        del w_neg
        pos = np.add.reduceat(w_pos, starts, axis=1)
        del w_pos
        # each positive beats the negatives in lower blocks and ties (1/2) those in its own block
        wins = (pos * (np.cumsum(neg, axis=1) - 0.5 * neg)).sum(axis=1)
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        ok = pairs > 0
        auc_sum[ok] += wins[ok] / pairs[ok]
        n_classes += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_classes > 0, auc_sum / n_classes, np.nan)


def percentile_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central `level` percentile interval of bootstrap values, ignoring NaN replicates ((nan, nan) if all are)."""
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


def _json(value: float) -> float | None:
    """NaN/inf become None so the result serialises as strict JSON."""
    value = float(value)
    return value if math.isfinite(value) else None


def _predicted(probs: np.ndarray, predicted: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """The decisions to score: given ones, or the argmax of the probabilities."""
    return np.asarray(probs).argmax(axis=1) if predicted is None else np.asarray(predicted, dtype=np.int64).ravel()


def _scores(labels: np.ndarray, probs: np.ndarray, predicted: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Both metrics for every row of `w`, keyed like the report."""
    return {"balanced_accuracy": balanced_accuracy_w(labels, predicted, w), "macro_auc": macro_auc_w(labels, probs, w)}


def _check_groups(labels: np.ndarray, groups: Sequence[Hashable]) -> None:
    """One group id per case, or the weights would not line up with the cases."""
    if len(groups) != labels.size:
        raise ValueError(f"groups must have one entry per case (N={labels.size}), got {len(groups)}")


def bootstrap_scores(labels: Sequence[int] | np.ndarray, probs: np.ndarray,
                     predicted: Sequence[int] | np.ndarray | None, groups: Sequence[Hashable],
                     n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Balanced accuracy and macro AUC with group-bootstrap intervals, JSON-ready (None where undefined)."""
    labels = _labels(labels)
    predicted = _predicted(probs, predicted)
    _check_groups(labels, groups)
    full = _scores(labels, probs, predicted, np.ones((1, labels.size)))
    boot = _scores(labels, probs, predicted, group_weights(groups, n_boot, seed))
    out: dict[str, Any] = {
        key: {"estimate": _json(full[key][0]), "ci": [_json(v) for v in percentile_interval(boot[key], level)]}
        for key in METRICS
    }
    out.update({"n_boot": int(n_boot), "n_groups": _group_codes(groups)[1], "n_cases": int(labels.size),
                "level": float(level), "method": METHOD})
    return out


def paired_difference(labels: Sequence[int] | np.ndarray, groups: Sequence[Hashable],
                      a: tuple[np.ndarray, Sequence[int] | np.ndarray | None],
                      b: tuple[np.ndarray, Sequence[int] | np.ndarray | None],
                      n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Model a minus model b on the same replicates, so test-set luck shared by both cancels in the difference."""
    labels = _labels(labels)
    _check_groups(labels, groups)
    (probs_a, pred_a), (probs_b, pred_b) = a, b
    pred_a, pred_b = _predicted(probs_a, pred_a), _predicted(probs_b, pred_b)
    ones = np.ones((1, labels.size))
    w = group_weights(groups, n_boot, seed)
    full_a, full_b = _scores(labels, probs_a, pred_a, ones), _scores(labels, probs_b, pred_b, ones)
    boot_a, boot_b = _scores(labels, probs_a, pred_a, w), _scores(labels, probs_b, pred_b, w)
    out: dict[str, Any] = {}
    for key in METRICS:
        delta = boot_a[key] - boot_b[key]
        lo, hi = percentile_interval(delta, level)
        defined = delta[~np.isnan(delta)]
        out[key] = {
            "estimate": _json(full_a[key][0] - full_b[key][0]),
            "ci": [_json(lo), _json(hi)],
            "excludes_zero": bool(lo > 0 or hi < 0),  # False when undefined (NaN compares False)
            "p_a_better": float((defined > 0).mean()) if defined.size else None,
        }
    out.update({"n_boot": int(n_boot), "n_groups": _group_codes(groups)[1], "n_cases": int(labels.size),
                "level": float(level), "method": PAIRED_METHOD})
    return out


def indistinguishable(diff: dict[str, Any], metric: str = "balanced_accuracy") -> bool:
    """True when the paired interval contains 0 (or is undefined): the split cannot tell the models apart."""
    lo, hi = diff[metric]["ci"]
    if lo is None or hi is None:
        return True
    return bool(lo <= 0 <= hi)


def bootstrap_mean(values: Sequence[float | None] | np.ndarray, groups: Sequence[Hashable], n_boot: int = 2000,
                   seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Mean of per-case values with a group-bootstrap percentile interval, JSON-ready.

    None/NaN values (a case with nothing to measure, e.g. a flat heatmap) are left out of every
    replicate's mean but their group is still drawn, so the cases that count keep their grouping.
    A per-case difference (map minus baseline on the same case) gives the paired interval of the
    difference of the two means. {"estimate", "ci", "n", "n_groups"}; None where nothing is defined.
    """
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
    _check_groups(v, groups)
    valid = ~np.isnan(v)
    filled = np.where(valid, v, 0.0)

    def mean(w: np.ndarray) -> np.ndarray:
        total = w @ valid.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (w @ filled) / total, np.nan)

    point = float(filled[valid].mean()) if valid.any() else math.nan
    lo, hi = percentile_interval(mean(group_weights(groups, n_boot, seed)), level) if len(v) else (math.nan, math.nan)
    return {"estimate": _json(point), "ci": [_json(lo), _json(hi)], "n": int(valid.sum()),
            "n_groups": _group_codes(groups)[1]}
