"""The comparisons of the shortcut experiment (`training.shortcut`), on arrays: no model, no data.

Every model x test condition is scored on the same bootstrap replicates (`skinui.stats.group_weights`:
lesions drawn with replacement), so any linear contrast of the scores (a model minus another on one
condition, a condition minus another for one model, or the difference of those two differences) gets
a paired percentile interval in which the test-set luck the terms share cancels.

Scores per replicate: balanced accuracy and macro AUC (`skinui.stats`, as every card reports them),
plain accuracy, and two numbers a teacher reads at once: the recall of the shortcut's class
(`target_recall`: melanomas called melanoma) and the share of the other classes called that class
(`target_false_rate`: non-melanomas called melanoma).
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from skinui.stats import balanced_accuracy_w, group_weights, macro_auc_w, percentile_interval

METRICS = ("balanced_accuracy", "macro_auc", "accuracy", "target_recall", "target_false_rate")
Key = tuple[str, str]  # (model, condition)


def _rate(w: np.ndarray, hits: np.ndarray, among: np.ndarray) -> np.ndarray:
    """[B] weighted share of `hits` among the cases in `among` (NaN where a replicate drew none)."""
    total = w @ among.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w @ (hits & among).astype(np.float64)) / total, np.nan)


def replicate_metrics(labels: np.ndarray, probs: np.ndarray, predicted: np.ndarray, w: np.ndarray,
                      target: int) -> dict[str, np.ndarray]:
    """Each metric for every row of the weight matrix `w` [B, N] (a row of ones is the point estimate)."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    everyone = np.ones(labels.size, dtype=bool)
    return {
        "balanced_accuracy": balanced_accuracy_w(labels, predicted, w),
        "macro_auc": macro_auc_w(labels, probs, w),
        "accuracy": _rate(w, predicted == labels, everyone),
        "target_recall": _rate(w, predicted == target, labels == target),
        "target_false_rate": _rate(w, predicted == target, labels != target),
    }


def _block(point: float, boot: np.ndarray, level: float) -> dict[str, Any]:
    lo, hi = percentile_interval(boot, level)
    finite = bool(np.isfinite(lo) and np.isfinite(hi))
    return {"estimate": None if not np.isfinite(point) else float(point),
            "ci": [float(lo), float(hi)] if finite else [None, None],
            "excludes_zero": bool(finite and (lo > 0 or hi < 0))}


def compare(labels: Sequence[int] | np.ndarray, groups: Sequence[Hashable],
            results: Mapping[Key, tuple[np.ndarray, np.ndarray]], target: int,
            contrasts: Mapping[str, Mapping[Key, float]], n_boot: int = 2000, seed: int = 0,
            level: float = 0.95) -> dict[str, Any]:
    """`results`: (model, condition) -> (calibrated probabilities [N, K], decisions [N]), all on the same
    N cases in the same order. `contrasts`: name -> {(model, condition): coefficient}.

    Returns {"scores": {model: {condition: {metric: {estimate, ci}}}}, "contrasts": {name: {metric:
    {estimate, ci, excludes_zero}}}, "n_cases", "n_groups", "n_boot", "level", "method"}."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(groups) != labels.size:
        raise ValueError(f"one group per case: {labels.size} cases, {len(groups)} groups")
    for key in (k for c in contrasts.values() for k in c):
        if key not in results:
            raise ValueError(f"contrast term {key} has no result")
    ones = np.ones((1, labels.size))
    w = group_weights(groups, n_boot, seed)
    point = {k: replicate_metrics(labels, p, d, ones, target) for k, (p, d) in results.items()}
    boot = {k: replicate_metrics(labels, p, d, w, target) for k, (p, d) in results.items()}
    scores: dict[str, dict[str, Any]] = {}
    for (model, condition) in results:
        scores.setdefault(model, {})[condition] = {
            m: {k: v for k, v in _block(point[(model, condition)][m][0], boot[(model, condition)][m], level).items()
                if k != "excludes_zero"} for m in METRICS}
    out_contrasts = {}
    for name, terms in contrasts.items():
        out_contrasts[name] = {
            m: _block(sum(c * point[k][m][0] for k, c in terms.items()),
                      sum(c * boot[k][m] for k, c in terms.items()), level) for m in METRICS}
        out_contrasts[name]["terms"] = {f"{k[0]}/{k[1]}": c for k, c in terms.items()}
    return {"scores": scores, "contrasts": out_contrasts, "n_cases": int(labels.size),
            "n_groups": len(set(groups)), "n_boot": int(n_boot), "level": float(level),
            "method": "paired percentile bootstrap over lesions (the same replicates for every model and condition)"}


def paired_means(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], n_boot: int = 2000,
                 seed: int = 0) -> dict[str, Any]:
    """Per-case rows of two models on the same images (`rows[i]["shortcut"][key]`, `["clean"][key]`,
    `["group"]`): each model's mean per key and the per-case difference shortcut - clean, all with
    95% bootstrap intervals over groups (None values are left out of that key's means)."""
    from skinui.stats import bootstrap_mean

    groups = [r["group"] for r in rows]

    def diff(r: Mapping[str, Any], key: str) -> float | None:
        a, b = r["shortcut"].get(key), r["clean"].get(key)
        return None if a is None or b is None else float(a) - float(b)

    def keep(block: dict[str, Any]) -> dict[str, Any]:
        lo, hi = block["ci"]
        return {**block, "excludes_zero": bool(lo is not None and hi is not None and (lo > 0 or hi < 0))}

    out: dict[str, Any] = {}
    for key in keys:
        out[key] = {
            "shortcut": bootstrap_mean([r["shortcut"].get(key) for r in rows], groups, n_boot, seed),
            "clean": bootstrap_mean([r["clean"].get(key) for r in rows], groups, n_boot, seed),
            "shortcut_minus_clean": keep(bootstrap_mean([diff(r, key) for r in rows], groups, n_boot, seed)),
        }
    return out
