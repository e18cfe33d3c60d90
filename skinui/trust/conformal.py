"""Split-conformal prediction sets: the diagnoses that contain the true one for 1 - alpha of cases.

Calibrated on the validation split's calibrated probabilities, stored in the card, applied to
any new case. Two non-conformity scores (a registry, chosen per entry on validation):

- `lac` (least ambiguous classifier): score 1 - p_true; gives the smallest sets on average.
- `aps` (adaptive prediction sets, non-randomised): the probability mass of the classes at least
  as probable as the true one; sets grow where the model is unsure.

Three ways to pick the threshold: `marginal` (one quantile: 90% of all cases covered, on
average, so a rare class can be missed far more often), `class` (Mondrian: one quantile per true
class, so each diagnosis is covered for 90% of the cases that have it; a class with too few
validation cases for a finite quantile, fewer than 1/alpha - 1, gets an infinite threshold and is
always in the set) and `hybrid` (each class its own quantile where validation has enough of it,
the marginal quantile for the few that have not: melanoma gets its own guarantee without the
two rarest classes sitting in every set).

Guarantee (exchangeability of validation and new cases): P(true class in set) >= 1 - alpha
(marginal); for every class (class); for every class with its own quantile (hybrid).
Sets are never empty: the decided class is always added (only raises coverage).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from skinui.registry import Registry

SCORES: Registry = Registry("conformal score")


@SCORES.register("lac")
def lac(probs: np.ndarray) -> np.ndarray:
    """[N, K] score of every candidate class: 1 - p_k."""
    return 1.0 - probs


@SCORES.register("aps")
def aps(probs: np.ndarray) -> np.ndarray:
    """[N, K] score of every candidate class: sum of p_j over classes with p_j >= p_k (ties included)."""
    return (probs[:, None, :] * (probs[:, None, :] >= probs[:, :, None])).sum(-1)


def class_scores(name: str, probs: np.ndarray) -> np.ndarray:
    score: Callable[[np.ndarray], np.ndarray] = SCORES.get(name)
    return score(np.asarray(probs, dtype=np.float64))


def quantile(scores: np.ndarray, alpha: float) -> float:
    """The finite-sample conformal quantile: the ceil((n+1)(1-alpha))-th smallest score (inf if > n)."""
    n = len(scores)
    rank = math.ceil((n + 1) * (1 - alpha))
    return float("inf") if rank > n or n == 0 else float(np.sort(scores)[rank - 1])


def fit(probs: np.ndarray, labels: np.ndarray, classes: list[str], score: str, mode: str,
        alpha: float = 0.1) -> dict:
    """The card block for one (score, mode): thresholds from validation probabilities and labels."""
    s = class_scores(score, probs)[np.arange(len(labels)), labels]
    block = {"score": score, "mode": mode, "alpha": alpha, "n_calibration": int(len(labels))}
    if mode == "marginal":
        block["threshold"] = _finite(quantile(s, alpha))
    elif mode in ("class", "hybrid"):
        block["thresholds"] = {c: _finite(quantile(s[labels == k], alpha)) for k, c in enumerate(classes)}
        block["n_per_class"] = {c: int((labels == k).sum()) for k, c in enumerate(classes)}
        if mode == "hybrid":  # too few validation cases for a class's own bound: the marginal one instead
            block["fallback"] = [c for c, t in block["thresholds"].items() if t is None]
            marginal = _finite(quantile(s, alpha))
            block["thresholds"] = {c: marginal if t is None else t for c, t in block["thresholds"].items()}
    else:
        raise ValueError(f"Unknown conformal mode {mode!r}; use marginal, class or hybrid.")
    return block


def _finite(q: float) -> float | None:
    """JSON has no infinity: None stands for 'always in the set'."""
    return None if math.isinf(q) else q


def thresholds(block: dict, classes: list[str]) -> np.ndarray:
    """[K] threshold per candidate class (inf where a class is always included)."""
    if block["mode"] == "marginal":
        t = block["threshold"]
        return np.full(len(classes), np.inf if t is None else t)
    return np.array([np.inf if (t := block["thresholds"][c]) is None else t for c in classes])


def sets(probs: np.ndarray, block: dict, classes: list[str], decided: np.ndarray | None = None) -> np.ndarray:
    """[N, K] boolean membership of each class in each case's prediction set."""
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    member = class_scores(block["score"], probs) <= thresholds(block, classes)[None, :] + 1e-12
    top = probs.argmax(1) if decided is None else np.asarray(decided)
    member[np.arange(len(probs)), top] = True
    return member


def ordered_set(probs_row: np.ndarray, member_row: np.ndarray, classes: list[str]) -> list[str]:
    """The set's classes, most probable first (how a differential is read)."""
    order = np.argsort(-np.asarray(probs_row), kind="stable")
    return [classes[k] for k in order if member_row[k]]


def evaluate(probs: np.ndarray, labels: np.ndarray, block: dict, classes: list[str],
             decided: np.ndarray | None = None) -> dict:
    """Coverage (overall, per class), mean set size and the binomial band the coverage should fall in."""
    member = sets(probs, block, classes, decided)
    hit = member[np.arange(len(labels)), labels]
    n, target = len(labels), 1 - block["alpha"]
    band = 1.96 * math.sqrt(target * (1 - target) / max(n, 1))
    per_class = {c: {"n": int((labels == k).sum()),
                     "coverage": float(hit[labels == k].mean()) if (labels == k).any() else None}
                 for k, c in enumerate(classes)}
    return {"n": n, "coverage": float(hit.mean()), "target": target, "band": [target - band, target + band],
            "mean_size": float(member.sum(1).mean()), "singletons": float((member.sum(1) == 1).mean()),
            "per_class": per_class,
            "min_class_coverage": min((v["coverage"] for v in per_class.values() if v["coverage"] is not None),
                                      default=None)}


VARIANTS = (("lac", "marginal"), ("aps", "marginal"), ("lac", "class"), ("aps", "class"), ("lac", "hybrid"),
            ("aps", "hybrid"))
PREFERENCE = ("class", "hybrid", "marginal")  # the strongest guarantee first


def choose(probs: np.ndarray, labels: np.ndarray, classes: list[str], alpha: float = 0.1,
           repeats: int = 50, seed: int = 0) -> tuple[str, str, dict]:
    """Pick (score, mode) on validation only, by repeated 50/50 splits of it.

    The strongest guarantee is preferred (class, then hybrid, then marginal: a dermatologist needs
    the malignant classes covered, not only the average case) unless its mean set size is more than
    one class larger than the marginal sets'; within a mode, the smaller mean set size wins.
    Returns the choice and the cross-fitted measurements it rests on.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    found: dict[str, dict[str, list[float]]] = {f"{s}/{m}": {"coverage": [], "size": [], "min_class": []}
                                                 for s, m in VARIANTS}
    for _ in range(repeats):
        perm = rng.permutation(n)
        cal, hold = perm[: n // 2], perm[n // 2:]
        for s, m in VARIANTS:
            ev = evaluate(probs[hold], labels[hold], fit(probs[cal], labels[cal], classes, s, m, alpha), classes)
            found[f"{s}/{m}"]["coverage"].append(ev["coverage"])
            found[f"{s}/{m}"]["size"].append(ev["mean_size"])
            found[f"{s}/{m}"]["min_class"].append(ev["min_class_coverage"] or 0.0)
    summary = {k: {q: float(np.mean(v)) for q, v in d.items()} for k, d in found.items()}

    def best(mode: str) -> str:
        return min((k for k in summary if k.endswith("/" + mode)), key=lambda k: summary[k]["size"])

    budget = summary[best("marginal")]["size"] + 1.0
    pick = next(best(m) for m in PREFERENCE if summary[best(m)]["size"] <= budget or m == "marginal")
    score, mode = pick.split("/")
    return score, mode, summary
