"""How far to trust a model's confidence: ECE, reliability bins and temperature scaling.

Confidence is the top-class probability. ECE uses 15 equal-width bins (Guo et al. 2017). The
temperature is one scalar T fitted on held-out logits (the validation split) by minimising the
negative log-likelihood of softmax(logits / T) with L-BFGS; it never changes the predicted class.
JI-ADF's logits are log-probabilities, so the same scaling applies to every structure.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

N_BINS = 15


def _confidence(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probabilities must be [N={labels.shape[0]}, K], got {probs.shape}")
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """Equal-width confidence bins: `lower, upper, count, confidence` (mean), `accuracy`; empty bins have None."""
    confidence, correct = _confidence(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins (lower, upper], with confidence 0 falling in the first bin
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return bins


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: count-weighted mean |accuracy - confidence| over the bins."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        raise ValueError("no cases to calibrate on")
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The T > 0 minimising NLL of softmax(logits / T) on these (validation) cases; L-BFGS on log T."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64).ravel())
    if z.ndim != 2 or z.shape[0] != y.shape[0] or z.shape[0] == 0:
        raise ValueError("temperature scaling needs logits [N, K] and N labels, N > 0")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = 1 to start: no change
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimiser.step(closure)
    # keep T in a sane range: a degenerate validation set (all correct) would push it towards 0
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def calibration_summary(
    fit_logits: np.ndarray, fit_labels: np.ndarray, eval_logits: np.ndarray, eval_labels: np.ndarray
) -> dict[str, Any]:
    """Fit T on one split, report on another: the model card's `calibration` block."""
    temperature = fit_temperature(fit_logits, fit_labels)
    before, after = softmax(eval_logits), softmax(eval_logits, temperature)
    return {
        "temperature": temperature,
        "ece": ece(before, eval_labels),
        "ece_calibrated": ece(after, eval_labels),
        "n_bins": N_BINS,
        "bins": reliability_bins(before, eval_labels),
        "bins_calibrated": reliability_bins(after, eval_labels),
    }
