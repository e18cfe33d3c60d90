"""Classification metrics: a thin wrapper over `isic-challenge-scoring` (the ISIC challenge's own scorer).

Per-class AUC, AUC above 80% sensitivity, average precision, accuracy, sensitivity, specificity,
Dice, PPV and NPV come from `isic_challenge_scoring.metrics`, so our tables are the challenge's
(and the JI-ADF paper's) numbers. Two deliberate choices:

- the per-class threshold metrics are computed on the *predicted class* (argmax), the same
  decision that balanced accuracy scores; the scorer's own rule (probability > 0.5) is available
  with `decision="threshold"`;
- a class absent from the truth has no AUC/AP; it gets `None` and the macro mean skips it.

Balanced accuracy is the scorer's `balanced_multiclass_accuracy`; macro F1 is scikit-learn's.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sklearn.metrics
from isic_challenge_scoring import metrics as isic
from isic_challenge_scoring.confusion import create_binary_confusion_matrix

METRIC_KEYS = ("auc", "auc_sens_80", "ap", "accuracy", "sensitivity", "specificity", "dice", "ppv", "npv")
_RANKING_KEYS = ("auc", "auc_sens_80", "ap")  # undefined when a class has no positive (or no negative) case


def _check(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0] or probs.shape[1] != len(classes):
        raise ValueError(f"probabilities must be [N={labels.shape[0]}, K={len(classes)}], got {probs.shape}")
    if labels.size == 0:
        raise ValueError("no cases to score")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError("labels must be class indices in [0, K)")
    return labels, probs


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _category(truth: np.ndarray, score: np.ndarray, predicted: np.ndarray, weights: pd.Series) -> dict[str, float | None]:
    """One class, one-vs-rest: the ISIC scorer's per-category metrics."""
    cm = create_binary_confusion_matrix(truth, predicted, weights=weights.to_numpy())
    row: dict[str, float | None] = {
        "accuracy": float(isic.binary_accuracy(cm)),
        "sensitivity": float(isic.binary_sensitivity(cm)),
        "specificity": float(isic.binary_specificity(cm)),
        "dice": float(isic.binary_dice(cm)),
        "ppv": float(isic.binary_ppv(cm)),
        "npv": float(isic.binary_npv(cm)),
    }
    if 0 < truth.sum() < truth.size:
        t, s = pd.Series(truth.astype(float)), pd.Series(score)
        row["auc"] = _finite(isic.auc(t, s, weights))
        row["auc_sens_80"] = _finite(isic.auc_above_sensitivity(t, s, weights, 0.80))
        row["ap"] = _finite(isic.average_precision(t, s, weights))
    else:
        row.update({k: None for k in _RANKING_KEYS})
    return {k: row[k] for k in METRIC_KEYS}


def _macro(per_class: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        values = [row[key] for row in per_class.values() if row[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def classification_report(
    labels: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    decision: str = "argmax",
    predicted: np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics for integer `labels` [N] and class probabilities `probs` [N, K], JSON-ready.

    `predicted` [N] overrides the argmax decision (e.g. the prevalence-adjusted rule of
    `skinui.calibration.decide`); ranking metrics (AUC, AP) always use `probs`.

    Returns `balanced_accuracy, accuracy, macro_f1, macro {...}, per_class {label: {...}},
    confusion_matrix (rows = truth, columns = prediction), n_cases`.
    """
    labels, probs = _check(labels, probs, classes)
    if decision not in ("argmax", "threshold"):
        raise ValueError("decision must be 'argmax' or 'threshold'")
    k = len(classes)
    predicted = probs.argmax(axis=1) if predicted is None else np.asarray(predicted, dtype=np.int64).ravel()
    truth_onehot = np.eye(k, dtype=bool)[labels]
    pred_binary = np.eye(k, dtype=bool)[predicted] if decision == "argmax" else probs > 0.5
    weights = pd.Series(np.ones(len(labels)))

    columns = pd.Index(list(classes))
    balanced = isic.balanced_multiclass_accuracy(
        pd.DataFrame(truth_onehot.astype(float), columns=columns),
        pd.DataFrame(np.eye(k)[predicted], columns=columns),  # the scorer argmaxes: hand it the decisions
        weights,
    )
    per_class = {c: _category(truth_onehot[:, i], probs[:, i], pred_binary[:, i], weights) for i, c in enumerate(classes)}
    return {
        "balanced_accuracy": _finite(balanced),
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(sklearn.metrics.f1_score(labels, predicted, average="macro", zero_division=0)),
        "macro": _macro(per_class),
        "per_class": per_class,
        "confusion_matrix": sklearn.metrics.confusion_matrix(labels, predicted, labels=range(k)).tolist(),
        "n_cases": int(len(labels)),
    }


def balanced_accuracy(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> float | None:
    """Mean recall over the classes present in `labels` (None when there are no labels)."""
    labels, predicted = np.asarray(labels).ravel(), np.asarray(predicted).ravel()
    recalls = [(predicted[labels == c] == c).mean() for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else None


def quick_scores(labels: Sequence[int] | np.ndarray, probs: np.ndarray, num_classes: int,
                 predicted: np.ndarray | None = None) -> dict[str, float | None]:
    """The model-selection numbers only (balanced accuracy, macro F1, macro AUC): cheap, for every epoch."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs.argmax(axis=1) if predicted is None else np.asarray(predicted, dtype=np.int64).ravel()
    aucs = [
        sklearn.metrics.roc_auc_score(labels == c, probs[:, c])
        for c in range(num_classes)
        if 0 < (labels == c).sum() < labels.size
    ]
    return {
        "balanced_accuracy": balanced_accuracy(labels, predicted),
        "macro_f1": float(sklearn.metrics.f1_score(labels, predicted, average="macro", zero_division=0)),
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "accuracy": float((predicted == labels).mean()) if labels.size else None,
    }


def roc_curves(labels: Sequence[int] | np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """Per-class one-vs-rest ROC points (the scorer's `roc`, simplified past 100 points); absent classes skipped."""
    labels, probs = _check(labels, probs, classes)
    weights = pd.Series(np.ones(len(labels)))
    curves: dict[str, dict[str, list[float]]] = {}
    for i, c in enumerate(classes):
        truth = labels == i
        if not 0 < truth.sum() < truth.size:
            continue
        roc = isic.roc(pd.Series(truth.astype(float)), pd.Series(probs[:, i]), weights)
        curves[c] = {"fpr": roc["fpr"].astype(float).tolist(), "tpr": roc["tpr"].astype(float).tolist()}
    return curves
