"""How far to trust a model's confidence: ECE, reliability bins and temperature scaling.

Confidence is the top-class probability. ECE uses 15 equal-width bins (Guo et al. 2017). The
temperature is one scalar T fitted on held-out logits (the validation split) by minimising the
negative log-likelihood of softmax(logits / T) with L-BFGS; it never changes the predicted class.
JI-ADF's logits are log-probabilities, so the same scaling applies to every structure.

Prevalence. Entries trained with class-balanced sampling or class-weighted loss output posteriors
for a world where every class is equally common; no single temperature can turn those into
probabilities for the real case mix (the training split's prevalence pi). So calibration fits two
scalars on the validation split: p = softmax(z / T + beta * log pi) (beta ~ 1 undoes balancing,
beta ~ 0 for naturally trained models). The *decision* is then the prevalence-adjusted rule
argmax_k p_k / pi_k^tau (tau = 1 is the Bayes decision for balanced accuracy, the metric the field
reports, when p is perfectly calibrated; tau in [0, 1] is chosen on the validation split). So
the probabilities shown are honest about how common each class is, and the predicted class does
not default to the majority class.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from skinui.metrics import balanced_accuracy

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


def ece_floor(probs: np.ndarray, n_bins: int = N_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a *perfectly* calibrated model with these probabilities would still show on this many cases.

    Labels are drawn from the probabilities themselves (so calibration is exact by construction)
    and scored like real ones; the mean over draws is the finite-sample bias of the 15-bin ECE. On
    a few dozen test cases it is large, so an ECE near it means "as calibrated as this split can show".
    """
    p = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cum = np.cumsum(p, axis=1)
    values = []
    for _ in range(draws):
        labels = (rng.random((len(p), 1)) > cum).sum(1).clip(max=p.shape[1] - 1)
        values.append(ece(p, labels, n_bins))
    return float(np.mean(values))


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


def log_prevalence(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """log pi of the training labels, add-one smoothed so that no class has probability 0."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=num_classes).astype(np.float64) + 1.0
    return np.log(counts / counts.sum())


UNINFORMATIVE_PRIOR = 0.1  # log-prior range below which classes count as balanced (ratios within ~10%)


def fit_prior_calibration(
    logits: np.ndarray, labels: np.ndarray, log_prior: np.ndarray, max_iter: int = 200
) -> tuple[float, float]:
    """(T, beta) minimising NLL of softmax(logits / T + beta * log_prior); L-BFGS on (log T, beta).

    A (nearly) balanced training set gives a nearly constant log prior, which carries no
    information: beta is then fixed at 0 (fitting it would only chase validation noise to the clamp).
    """
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64).ravel())
    lp = torch.as_tensor(np.asarray(log_prior, dtype=np.float64))
    if z.ndim != 2 or z.shape[0] != y.shape[0] or z.shape[0] == 0 or lp.shape != (z.shape[1],):
        raise ValueError("prior calibration needs logits [N, K], N labels and a log prior [K]")
    if float(lp.max() - lp.min()) < UNINFORMATIVE_PRIOR:
        return fit_temperature(logits, labels, max_iter), 0.0
    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # log T = 0, beta = 0: no change
    optimiser = torch.optim.LBFGS([params], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / params[0].exp() + params[1] * lp, y)
        loss.backward()
        return loss

    optimiser.step(closure)
    t = float(params[0].detach().exp().clamp(0.05, 20.0))
    return t, float(params[1].detach().clamp(-2.0, 2.0))


def calibrated_logits(logits: np.ndarray | torch.Tensor, cal: dict[str, Any] | None) -> np.ndarray | torch.Tensor:
    """Calibrated log-probabilities (up to a constant): logits / T + beta * log pi, per a card's block.

    A torch tensor stays a tensor (gradients flow, for attributions); anything else becomes float64 numpy.
    """
    cal = cal or {}
    if isinstance(logits, torch.Tensor):
        z, as_array = logits.float(), lambda v: torch.tensor(v, dtype=torch.float32, device=logits.device)
    else:
        z, as_array = np.asarray(logits, dtype=np.float64), lambda v: np.asarray(v, dtype=np.float64)
    z = z / float(cal.get("temperature") or 1.0)
    if cal.get("log_prior") is not None:
        z = z + float(cal.get("prior_weight") or 0.0) * as_array(cal["log_prior"])
    return z


def decide(logits: np.ndarray, cal: dict[str, Any] | None) -> np.ndarray:
    """Predicted class indices: argmax p_k / pi_k^tau when the block has a prevalence, else argmax p_k."""
    return decide_from_log_probs(calibrated_logits(logits, cal), cal)


def decide_from_log_probs(log_probs: np.ndarray, cal: dict[str, Any] | None) -> np.ndarray:
    """The decision rule on calibrated log-probabilities (tau = `decision_prior_weight`, default 1)."""
    z = np.asarray(log_probs, dtype=np.float64)
    if (cal or {}).get("log_prior") is not None:
        tau = float(cal.get("decision_prior_weight", 1.0))
        z = z - tau * np.asarray(cal["log_prior"], dtype=np.float64)
    return z.argmax(axis=1)


def fit_decision_weight(log_probs: np.ndarray, labels: np.ndarray, log_prior: np.ndarray) -> float:
    """tau in [0, 1] (steps of 0.1) maximising balanced accuracy of argmax(log p - tau log pi) on these
    (validation) cases; 1 is the Bayes rule for perfectly calibrated p, ties go to the largest tau."""
    grid = np.round(np.linspace(1.0, 0.0, 11), 2)
    scores = [balanced_accuracy(labels, (log_probs - t * log_prior).argmax(1)) for t in grid]
    return float(grid[int(np.argmax(scores))])


TUNE_MAX_LOSING = 0.2  # tune tau only if tuning loses on at most this share of held-out halves


def _halves(labels: np.ndarray, groups: Any, reps: int, seed: int):
    """`reps` random splits of the groups in two halves, as boolean masks (a, b) over the cases; a split
    where either half lacks two classes is skipped."""
    groups = np.arange(len(labels)) if groups is None else np.asarray([str(g) for g in groups])
    _, code = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        in_a = rng.random(code.max() + 1) < 0.5
        a, b = in_a[code], ~in_a[code]
        if len(np.unique(labels[a])) >= 2 and len(np.unique(labels[b])) >= 2:
            yield a, b


def _verdict(gains: list[float], key: str) -> dict[str, Any]:
    g = np.asarray(gains)
    mean, losing = (float(g.mean()), float((g < 0).mean())) if g.size else (0.0, 1.0)
    return {"mean_gain": mean, "share_losing": losing, "reps": int(g.size), key: bool(mean > 0 and losing <= TUNE_MAX_LOSING)}


def check_decision_weight(log_probs: np.ndarray, labels: np.ndarray, log_prior: np.ndarray,
                          groups: Any = None, reps: int = 200, seed: int = 0) -> dict[str, Any]:
    """Does tuning tau generalise? Inside these (validation) cases only: split the groups in half at
    random, tune tau on one half, score the other half with it and with tau = 1, `reps` times.

    Choosing tau and reporting on the same cases is optimistic; measured this way on the shipped
    entries, tuning lost to tau = 1 on most PAD-UFES-20 entries and was a coin flip on most
    HAM10000 ones (bench/decision_weight.py). {"mean_gain", "share_losing", "reps", "tune"}.
    """
    labels = np.asarray(labels)
    gains = []
    for a, b in _halves(labels, groups, reps, seed):
        tau = fit_decision_weight(log_probs[a], labels[a], log_prior)
        gains.append(balanced_accuracy(labels[b], (log_probs[b] - tau * log_prior).argmax(1))
                     - balanced_accuracy(labels[b], (log_probs[b] - log_prior).argmax(1)))
    return _verdict(gains, "tune")


def fit_calibration(logits: np.ndarray, labels: np.ndarray, log_prior: np.ndarray | None = None,
                    rebalanced: bool = True) -> dict[str, Any]:
    """The fitted calibration terms {temperature[, prior_weight, log_prior, decision]} (no decision weight:
    tau = 1, the Bayes rule). `rebalanced`: see `calibration_summary`."""
    if log_prior is None:
        return {"temperature": fit_temperature(logits, labels)}
    temperature, beta = (fit_prior_calibration(logits, labels, log_prior) if rebalanced
                         else (fit_temperature(logits, labels), 0.0))
    return {"temperature": temperature, "prior_weight": beta, "log_prior": [float(v) for v in log_prior],
            "decision": "prevalence_adjusted"}


def check_views(view_logits: np.ndarray, labels: np.ndarray, log_prior: np.ndarray | None = None,
                rebalanced: bool = True, groups: Any = None, reps: int = 200, seed: int = 0) -> dict[str, Any]:
    """Does averaging the photo's views (`skinui.views.VIEWS`, logits [V, N, K], the photo first) beat the
    photo alone? Inside these (validation) cases only, as for tau: on each of `reps` random halves of the
    groups, calibrate each arm on one half, decide with tau = 1 and score balanced accuracy on the other.
    {"mean_gain", "share_losing", "reps", "average"}: average when it wins on average and loses on at
    most `TUNE_MAX_LOSING` of the halves, the decision weight's rule."""
    from skinui.views import average_logits

    labels = np.asarray(labels)
    arms = {"single": np.asarray(view_logits[0], dtype=np.float64), "averaged": average_logits(view_logits)}
    gains = []
    for a, b in _halves(labels, groups, reps, seed):
        score = {k: balanced_accuracy(labels[b], decide(z[b], fit_calibration(z[a], labels[a], log_prior, rebalanced)))
                 for k, z in arms.items()}
        gains.append(score["averaged"] - score["single"])
    return {**_verdict(gains, "average"), "views": int(np.asarray(view_logits).shape[0])}


def calibration_summary(
    fit_logits: np.ndarray, fit_labels: np.ndarray, eval_logits: np.ndarray, eval_labels: np.ndarray,
    log_prior: np.ndarray | None = None, rebalanced: bool = True, fit_groups: Any = None,
) -> dict[str, Any]:
    """Fit on one split, report on another: the model card's `calibration` block.

    With `log_prior` (log class frequencies of the training split) the block also carries
    `prior_weight` and `log_prior`, and the decision rule becomes prevalence-adjusted (`decide`).
    `rebalanced`: the model was trained with balanced sampling or class weights, so its outputs
    lack the training prevalence and `prior_weight` is fitted; a model trained on the natural
    prevalence gets temperature only (`prior_weight` 0: fitting it would chase validation noise).
    The decision weight tau is the Bayes rule's 1 unless tuning it wins on held-out halves of the
    fit cases (`check_decision_weight`, halves drawn over `fit_groups`: lesions or patients).
    """
    extra = fit_calibration(fit_logits, fit_labels, log_prior, rebalanced)
    temperature = extra.pop("temperature")
    if log_prior is not None:
        fitted = calibrated_logits(fit_logits, {"temperature": temperature, **extra})
        check = check_decision_weight(fitted, np.asarray(fit_labels), np.asarray(log_prior), fit_groups)
        extra["decision_prior_weight"] = (fit_decision_weight(fitted, np.asarray(fit_labels), np.asarray(log_prior))
                                          if check["tune"] else 1.0)
        extra["decision_weight_check"] = check
    before = softmax(eval_logits)
    after = softmax(calibrated_logits(eval_logits, {"temperature": temperature, **extra}))
    return {
        **extra,
        "temperature": temperature,
        "ece": ece(before, eval_labels),
        "ece_calibrated": ece(after, eval_labels),
        "ece_floor": ece_floor(after),
        "n_bins": N_BINS,
        "bins": reliability_bins(before, eval_labels),
        "bins_calibrated": reliability_bins(after, eval_labels),
    }
