"""Bayes ceilings of SynthDerm per modality subset, with the metadata read through its real profiles.

`design.ideal_accuracy` assumes every code is perfectly readable. The image codes nearly are (a
model that reads the picture well recovers them), but the metadata code is only *probable*: the
four patient profiles overlap (a 40-year-old with a trunk lesion may be any of three). Here the
image codes are read perfectly and the metadata code through its exact likelihood under
`metadata.PROFILES`; the Bayes classifier then picks the class whose components best explain what
it sees. Monte Carlo over `n` lesions drawn exactly as the generator draws them (class, component,
truth values before the missing-value holes).

Two rules per subset: `joint`, the Bayes classifier itself (P(x | c) = mean over c's components of
the product of the modalities' likelihoods under that component), and `late`, the best a fusion
that *adds* per-modality evidence can do (P(x | c) = product over modalities of each modality's own
marginal likelihood under c). They coincide when every class has one component.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np

from skinui.synth import design, metadata


def _log_likelihood(row: dict, code: str) -> float:
    mu, sd, p_female, sites, growth, p_bleed, p_itch = metadata.PROFILES[code]
    ll = -0.5 * ((row["age"] - mu) / sd) ** 2 - np.log(sd)  # age clipping ignored: a tail effect only
    ll += np.log(p_female if row["sex"] == "female" else 1 - p_female)
    ll += np.log(max(sites[metadata.SITES.index(row["site"])] / sum(sites), 1e-12))
    ll += np.log(max(growth[metadata.GROWTH.index(row["growth"])] / sum(growth), 1e-12))
    ll += np.log(p_bleed if row["bleeding"] else 1 - p_bleed) + np.log(p_itch if row["itch"] else 1 - p_itch)
    return float(ll)


def _logmeanexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(safe + np.log(np.mean(np.exp(x - safe), axis=axis, keepdims=True)), axis)


def _balanced_hit(score: np.ndarray, labels: np.ndarray, k: int) -> float:
    best = score == score.max(1, keepdims=True)
    hit = best[np.arange(len(labels)), labels] / best.sum(1)  # ties split evenly
    return float(np.mean([hit[labels == c].mean() for c in range(k)]))


def bayes_accuracy(n: int = 8000, seed: int = 0, variant: str = "independent") -> dict[str, dict[tuple[str, ...], float]]:
    """{"joint" | "late": {subset: balanced accuracy}} of the two rules (balanced classes)."""
    v = design.VARIANTS.get(variant)
    rng = np.random.default_rng(seed)
    classes, m_codes = design.CLASSES, sorted(metadata.PROFILES)
    width = max(len(c) for c in v.components.values())
    labels = np.arange(n) % len(classes)
    drawn = [v.components[classes[k]][int(rng.integers(len(v.components[classes[k]])))] for k in labels]
    m_at = design.MODALITIES.index("metadata")
    ll = np.array([[_log_likelihood(metadata.sample(rng, t[m_at])[0], c) for c in m_codes] for t in drawn])
    # comps[c, j]: class c's j-th component (padded by repeating; a padded slot gets -inf weight below)
    comps = [[v.components[c][min(j, len(v.components[c]) - 1)] for j in range(width)] for c in classes]
    real = np.array([[j < len(v.components[c]) for j in range(width)] for c in classes])
    out: dict[str, dict[tuple[str, ...], float]] = {"joint": {}, "late": {}}
    for subset in design.modality_subsets():
        images = [design.MODALITIES.index(m) for m in subset if m != "metadata"]
        # joint: log P(x | c, j) per case, class and component, then the mean over real components
        log_joint = np.zeros((n, len(classes), width))
        log_late = np.zeros((n, len(classes)))
        for ci in range(len(classes)):
            for j in range(width):
                t = comps[ci][j]
                agree = np.array([all(d[i] == t[i] for i in images) for d in drawn])
                log_joint[:, ci, j] = np.where(agree, 0.0, -np.inf)
                if "metadata" in subset:
                    log_joint[:, ci, j] += ll[:, m_codes.index(t[m_at])]
            log_joint[:, ci, ~real[ci]] = -np.inf
            for i in images:  # each image modality's own marginal: the share of components showing the code
                share = np.array([np.mean([t[i] == d[i] for t in v.components[classes[ci]]]) for d in drawn])
                with np.errstate(divide="ignore"):
                    log_late[:, ci] += np.log(share)
            if "metadata" in subset:
                meta = np.array([ll[:, m_codes.index(t[m_at])] for t in v.components[classes[ci]]]).T
                log_late[:, ci] += _logmeanexp(meta, 1)
        # mean over real components only: logmeanexp over the padded axis counts pads as exp(-inf) = 0
        counts = real.sum(1)
        joint = _logmeanexp(log_joint, 2) + np.log(width / counts)[None, :]
        out["joint"][subset] = _balanced_hit(joint, labels, len(classes))
        out["late"][subset] = _balanced_hit(log_late, labels, len(classes))
    return out


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence file descriptor 1 (C-level prints) for the block; Python's own stdout is flushed first."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def additive_accuracy(modalities: tuple[str, ...] | list[str], variant: str = "independent") -> float:
    """Best balanced accuracy of *any* additive rule on perfectly readable codes, argmax_c of
    sum over modalities of s_c(code_m): what late fusion with a learned combination, or one linear
    layer over concatenated per-modality features, can reach at most. Exact, by a small mixed-integer
    program (scipy's HiGHS): a binary z per (code block, class) that is 1 only if that class's
    score beats every other class there by a margin; maximise the probability mass decided right.
    On an exclusive-or pair it is 3/4 (three of the four cells), not the 1/2 of `design.late_accuracy`."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    v = design.VARIANTS.get(variant)
    classes, k = design.CLASSES, len(design.CLASSES)
    feats = [(m, c) for m in modalities for c in sorted({t[design.MODALITIES.index(m)]
                                                         for comps in v.components.values() for t in comps})]
    n_s = k * len(feats)  # scores s[class, feature]
    blocks = sorted(v.blocks(modalities))
    cells = [(b, ci) for b in blocks for ci in range(k) if v.p_codes(classes[ci], modalities, b) > 0]
    n = n_s + len(cells)
    big, margin = 20.0, 1.0
    rows, lo = [], []
    for zi, (b, ci) in enumerate(cells):
        on = [feats.index((m, x)) for m, x in zip(modalities, b)]
        for cj in range(k):
            if cj == ci:
                continue
            row = np.zeros(n)
            for f in on:
                row[ci * len(feats) + f] += 1.0
                row[cj * len(feats) + f] -= 1.0
            row[n_s + zi] = -big  # s_ci(b) - s_cj(b) >= margin - big * (1 - z)
            rows.append(row)
            lo.append(margin - big)
    weight = np.zeros(n)
    weight[n_s:] = [-v.p_codes(classes[ci], modalities, b) / k for b, ci in cells]
    integrality = np.r_[np.zeros(n_s), np.ones(len(cells))]
    bound = big / (2 * len(modalities))
    with _quiet_stdout():  # HiGHS prints a debug line from C on some inputs, even with disp off
        res = milp(weight, constraints=LinearConstraint(np.array(rows), np.array(lo), np.inf), integrality=integrality,
                   bounds=Bounds(np.r_[np.full(n_s, -bound), np.zeros(len(cells))],
                                 np.r_[np.full(n_s, bound), np.ones(len(cells))]),
                   options={"disp": False})
    if not res.success:
        raise RuntimeError(f"the additive-ceiling program did not solve: {res.message}")
    return round(float(-res.fun), 9)


def pair_accuracy(a: str, b: str, variant: str = "independent", n: int = 8000, seed: int = 0) -> dict[str, float]:
    """Balanced accuracy of telling classes a and b apart from all three modalities, image codes read
    perfectly and metadata through its profiles: {"joint": the Bayes rule, "late": the product of
    per-modality likelihoods} (Monte Carlo over `n` lesions of the two classes, ties split evenly)."""
    v = design.VARIANTS.get(variant)
    rng = np.random.default_rng(seed)
    m_at, images = design.MODALITIES.index("metadata"), [0, 1]
    labels = np.arange(n) % 2
    drawn = [v.components[(a, b)[k]][int(rng.integers(len(v.components[(a, b)[k]])))] for k in labels]
    score = {"joint": np.zeros((n, 2)), "late": np.zeros((n, 2))}
    for i, t in enumerate(drawn):
        row = metadata.sample(rng, t[m_at])[0]
        for k, c in enumerate((a, b)):
            comps = v.components[c]
            joint = [_log_likelihood(row, u[m_at]) if all(u[j] == t[j] for j in images) else -np.inf for u in comps]
            score["joint"][i, k] = _logmeanexp(np.array(joint), 0)
            with np.errstate(divide="ignore"):
                late = sum(np.log(np.mean([u[j] == t[j] for u in comps])) for j in images)
            score["late"][i, k] = late + _logmeanexp(np.array([_log_likelihood(row, u[m_at]) for u in comps]), 0)
    return {rule: _balanced_hit(s, labels, 2) for rule, s in score.items()}
