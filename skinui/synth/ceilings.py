"""Bayes ceilings of SynthDerm per modality subset, with the metadata read through its real profiles.

`design.ideal_accuracy` assumes every code is perfectly readable. The image codes nearly are (a
model that reads the picture well recovers them), but the metadata code is only *probable*: the
four patient profiles overlap (a 40-year-old with a trunk lesion may be any of three). Here the
image codes are read perfectly and the metadata code through its exact likelihood under
`metadata.PROFILES`; the Bayes classifier then picks, among the classes that fit the image codes,
the one whose profile best explains the metadata. Monte Carlo over `n` lesions drawn exactly as the
generator draws them (truth values, before the missing-value holes).
"""
from __future__ import annotations

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


def bayes_accuracy(n: int = 8000, seed: int = 0) -> dict[tuple[str, ...], float]:
    """Balanced accuracy of the Bayes classifier per modality subset (balanced classes)."""
    rng = np.random.default_rng(seed)
    classes, m_codes = design.CLASSES, sorted(metadata.PROFILES)
    labels = np.arange(n) % len(classes)
    ll = np.array([[_log_likelihood(metadata.sample(rng, design.code(classes[k], "metadata"))[0], c)
                    for c in m_codes] for k in labels])
    out = {}
    for subset in design.modality_subsets():
        images = [m for m in subset if m != "metadata"]
        # same[j, k]: class j looks exactly like class k in every image modality of the subset
        same = np.array([[all(design.code(c, m) == design.code(d, m) for m in images) for d in classes] for c in classes])
        meta = ll[:, [m_codes.index(design.code(c, "metadata")) for c in classes]] if "metadata" in subset else 0.0
        score = np.where(same[:, labels].T, meta, -np.inf)
        best = score == score.max(1, keepdims=True)
        hit = best[np.arange(n), labels] / best.sum(1)  # ties split evenly
        out[subset] = float(np.mean([hit[labels == k].mean() for k in range(len(classes))]))
    return out
