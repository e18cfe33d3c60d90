"""Patient and lesion metadata, drawn from the class's *metadata code* only.

Fields a code does not mention (Fitzpatrick type, diameter) are class-independent: they shape the
images (skin colour, lesion size) but carry no evidence. A small class-independent share of each
field is left missing, as in real registries.
"""
from __future__ import annotations

from typing import Any

import numpy as np

SITES = ("face", "scalp", "neck", "trunk", "back", "upper_extremity", "lower_extremity", "hand")
SEXES = ("female", "male")
GROWTH = ("stable", "months", "weeks")  # how long the lesion has been changing
FITZPATRICK = ("I", "II", "III", "IV", "V", "VI")
FITZPATRICK_P = (0.15, 0.3, 0.22, 0.15, 0.11, 0.07)
MISSING_P = 0.03

# code -> (age mean, age sd, P(female), site probabilities, growth probabilities, P(bleeding), P(itch))
PROFILES: dict[str, tuple[float, float, float, tuple[float, ...], tuple[float, ...], float, float]] = {
    "young_adult": (42, 13, 0.5, (0.04, 0.01, 0.05, 0.32, 0.3, 0.13, 0.14, 0.01), (0.75, 0.2, 0.05), 0.04, 0.1),
    "sun_exposed_elderly": (68, 9, 0.5, (0.38, 0.15, 0.1, 0.04, 0.03, 0.15, 0.03, 0.12), (0.3, 0.65, 0.05), 0.1, 0.25),
    "rapid_growth_elderly": (75, 8, 0.45, (0.2, 0.25, 0.05, 0.03, 0.02, 0.15, 0.05, 0.25), (0.03, 0.12, 0.85), 0.7, 0.25),
    "young_female_leg": (36, 10, 0.78, (0.01, 0.0, 0.01, 0.1, 0.04, 0.14, 0.7, 0.0), (0.85, 0.12, 0.03), 0.02, 0.35),
}
AGE_RANGE = (18, 95)


def _pick(rng: np.random.Generator, levels: tuple[str, ...], p: tuple[float, ...]) -> str:
    w = np.asarray(p, dtype=np.float64)
    return levels[int(rng.choice(len(levels), p=w / w.sum()))]


def sample(rng: np.random.Generator, code: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(truth, observed) metadata of one lesion; observed has holes (None). Draw order is fixed."""
    age_mu, age_sd, p_female, sites, growth, p_bleed, p_itch = PROFILES[code]
    truth: dict[str, Any] = {
        "age": int(np.clip(round(rng.normal(age_mu, age_sd)), *AGE_RANGE)),
        "sex": "female" if rng.random() < p_female else "male",
        "site": _pick(rng, SITES, sites),
        "fitzpatrick": _pick(rng, FITZPATRICK, FITZPATRICK_P),
        "diameter_mm": round(float(np.clip(np.exp(rng.normal(np.log(6.0), 0.35)), 2.0, 20.0)), 1),
        "growth": _pick(rng, GROWTH, growth),
        "bleeding": bool(rng.random() < p_bleed),
        "itch": bool(rng.random() < p_itch),
    }
    holes = rng.random(len(truth)) < MISSING_P
    return truth, {k: (None if hole else v) for (k, v), hole in zip(truth.items(), holes)}
