"""What SynthDerm's design says an explanation should find, for a case and the class it is told from.

Explanations answer "why this class rather than that one", so the truth is defined for a class pair
(a, b): the case's true class and its rival (e.g. the model's runner-up). Torch-free, read from
`design.CODES` and `metadata.PROFILES`, never from a trained model.

- `field_informativeness(a, b)`: per metadata field, the **total-variation distance** between the
  field's distributions under the two classes' metadata profiles, 0.5 * sum_v |P_a(v) - P_b(v)|,
  in [0, 1]. It is what that field alone can do for the pair: the best two-class balanced accuracy
  from the field alone is (1 + TV) / 2. Exactly 0 when the two classes share a metadata code, and
  always 0 for `fitzpatrick` and `diameter_mm` (drawn independently of the class). Age is the
  generator's rounded, clipped Gaussian, so its distribution is exact too. The 3% missing values
  are class-independent and scale every field alike, so they are left out (ranks do not change).
- `field_cues(a, b)`: the binary version: 1 where TV > 0 (the profiles differ in that field).
- `case_field_informativeness(a, b, values)`: the case-level version, |log P_a(x_f) / P_b(x_f)|
  of the value the case shows (0 when missing): how much this case's own value tells a from b.
- `evidence_modalities(a, b, modalities)`: the modalities whose codes differ for a and b (only
  they can tell the pair apart), restricted to the ones an entry sees.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from skinui.synth import design, metadata

FIELDS = ("age", "sex", "site", "fitzpatrick", "diameter_mm", "growth", "bleeding", "itch")
Profile = tuple[float, float, float, tuple[float, ...], tuple[float, ...], float, float]
_LOG_FLOOR = 1e-12  # a value impossible under one profile: a large but finite log ratio


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _age_distribution(mu: float, sd: float) -> dict[Any, float]:
    """P(age = k) as drawn: round(N(mu, sd)) clipped to AGE_RANGE (the tails pile up at the ends)."""
    lo, hi = metadata.AGE_RANGE
    cdf = {k: _normal_cdf((k + 0.5 - mu) / sd) for k in range(lo - 1, hi + 1)}
    out = {k: cdf[k] - cdf[k - 1] for k in range(lo + 1, hi)}
    out[lo], out[hi] = cdf[lo], 1.0 - cdf[hi - 1]
    return out


def _normalised(levels: Sequence[Any], weights: Sequence[float]) -> dict[Any, float]:
    total = float(sum(weights))
    return {v: float(w) / total for v, w in zip(levels, weights)}


def field_distribution(code: str, field: str, profiles: Mapping[str, Profile] | None = None) -> dict[Any, float]:
    """The field's distribution under metadata code `code`; class-independent fields get one fixed
    distribution (the same for every code, so they can never tell two classes apart)."""
    mu, sd, p_female, sites, growth, p_bleed, p_itch = (profiles or metadata.PROFILES)[code]
    table: dict[str, dict[Any, float]] = {
        "age": _age_distribution(mu, sd) if field == "age" else {},
        "sex": {"female": p_female, "male": 1.0 - p_female},
        "site": _normalised(metadata.SITES, sites),
        "fitzpatrick": _normalised(metadata.FITZPATRICK, metadata.FITZPATRICK_P),
        "diameter_mm": {"any": 1.0},  # log-normal, identical for every class: its exact shape is irrelevant
        "growth": _normalised(metadata.GROWTH, growth),
        "bleeding": {True: p_bleed, False: 1.0 - p_bleed},
        "itch": {True: p_itch, False: 1.0 - p_itch},
    }
    if field not in table:
        raise ValueError(f"{field!r} is not a SynthDerm metadata field; choose one of {', '.join(FIELDS)}.")
    return table[field]


def total_variation(p: Mapping[Any, float], q: Mapping[Any, float]) -> float:
    return 0.5 * sum(abs(p.get(v, 0.0) - q.get(v, 0.0)) for v in set(p) | set(q))


def _codes(a: str, b: str, codes: Mapping[str, tuple[str, str, str]] | None) -> tuple[str, str]:
    table = codes or design.CODES
    m = design.MODALITIES.index("metadata")
    return table[a][m], table[b][m]


def field_informativeness(a: str, b: str, codes: Mapping[str, tuple[str, str, str]] | None = None,
                          profiles: Mapping[str, Profile] | None = None) -> dict[str, float]:
    """{field: TV distance in [0, 1]} between classes a and b's metadata profiles (0: the field says nothing)."""
    ca, cb = _codes(a, b, codes)
    return {f: (0.0 if ca == cb else round(total_variation(field_distribution(ca, f, profiles),
                                                            field_distribution(cb, f, profiles)), 12))
            for f in FIELDS}


def field_cues(a: str, b: str, codes: Mapping[str, tuple[str, str, str]] | None = None,
               profiles: Mapping[str, Profile] | None = None) -> dict[str, int]:
    """{field: 1 if the two classes' profiles differ in that field, else 0}."""
    return {f: int(v > 0) for f, v in field_informativeness(a, b, codes, profiles).items()}


def _as_value(field: str, value: Any) -> Any:
    """A case's value in the design's terms (booleans arrive as True or "yes"; ages as numbers or text)."""
    if value is None or value == "":
        return None
    if field in ("bleeding", "itch"):
        return str(value).strip().lower() in ("true", "yes", "1")
    if field == "age":
        lo, hi = metadata.AGE_RANGE
        return int(min(max(round(float(value)), lo), hi))
    return "any" if field == "diameter_mm" else str(value)


def case_field_informativeness(a: str, b: str, values: Mapping[str, Any],
                               codes: Mapping[str, tuple[str, str, str]] | None = None,
                               profiles: Mapping[str, Profile] | None = None) -> dict[str, float]:
    """{field: |log P_a(value) / P_b(value)|} for the values this case shows (0 when missing or when
    the classes share a metadata code)."""
    ca, cb = _codes(a, b, codes)
    out = {}
    for f in FIELDS:
        v = _as_value(f, values.get(f))
        if ca == cb or v is None:
            out[f] = 0.0
            continue
        pa = field_distribution(ca, f, profiles).get(v, 0.0)
        pb = field_distribution(cb, f, profiles).get(v, 0.0)
        out[f] = abs(math.log(max(pa, _LOG_FLOOR)) - math.log(max(pb, _LOG_FLOOR)))
    return out


def evidence_modalities(a: str, b: str, modalities: Sequence[str] | None = None,
                        codes: Mapping[str, tuple[str, str, str]] | None = None) -> tuple[str, ...]:
    """Modalities (of `modalities`, default all three) whose codes differ for a and b, in design order."""
    table = codes or design.CODES
    seen = design.MODALITIES if modalities is None else tuple(modalities)
    return tuple(m for i, m in enumerate(design.MODALITIES) if m in seen and table[a][i] != table[b][i])


def evidence_side(a: str, b: str, modalities: Sequence[str] | None = None,
                  codes: Mapping[str, tuple[str, str, str]] | None = None) -> str:
    """Where the evidence for a against b lies, among `modalities`: "images", "metadata", "both" or
    "none" (the pair is indistinguishable with these inputs)."""
    sep = evidence_modalities(a, b, modalities, codes)
    image, meta = any(m != "metadata" for m in sep), "metadata" in sep
    return {(True, True): "both", (True, False): "images", (False, True): "metadata"}.get((image, meta), "none")
