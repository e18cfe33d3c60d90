"""What if one metadata field were different? Baseline and what-if probabilities of the analysed case.

A teaching view of how each fusion method uses metadata: one field changes, everything else stays
as analysed, and the image features are reused (`Encoded.with_metadata` re-runs only the metadata
encoder and the head), so an answer takes milliseconds. Pure functions (no gradio): the relevance
tab turns `control()` into widgets and shows `view()`'s sentence and figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from skinui.encoding import UNKNOWN, coerce_value, shown
from skinui.schema import Field
from skinui.ui import figures, texts

YES, NO = "yes", "no"


@dataclass(frozen=True)
class WhatIf:
    """One what-if: the field, its value as analysed and as changed (None = unknown), both predictions."""

    field: Field | None
    before: Any
    after: Any
    baseline: Any  # skinui.inference.Prediction of the case as analysed
    changed: Any | None  # the what-if Prediction; None when it could not be computed
    sentence: str


@dataclass(frozen=True)
class Control:
    """What the value widget shows for a field: a slider (numeric) or a list of choices."""

    kind: str  # "numeric" | "choice"
    minimum: float = 0.0
    maximum: float = 1.0
    step: float = 1.0
    number: float = 0.0  # slider position (the training median when the value is unknown)
    unknown: bool = False  # numeric: the value is unknown
    choices: list[str] = field(default_factory=list)
    choice: str = UNKNOWN


def fields_of(entry: Any) -> list[Field]:
    """The metadata fields the entry reads (its fitted encoder's), categorical levels as fitted.

    Label-leaking fields only appear for an entry trained with them forced (leaky: true), as on the form."""
    encoder = getattr(entry, "encoder", None)
    if encoder is None or "metadata" not in entry.modalities:
        return []
    out = []
    for spec in encoder.specs:
        levels = (encoder.stats.get(spec.name) or {}).get("levels")
        if spec.kind == "categorical" and levels:
            spec = replace(spec, vocabulary=tuple(levels))
        out.append(spec)
    return out


def field_choices(entry: Any) -> list[tuple[str, str]]:
    """(label, name) pairs for the field picker."""
    leaky = set(getattr(entry.encoder, "force_leaky", ()) or ()) if entry.encoder is not None else set()
    return [(f.label + (texts.WHATIF_LEAK_MARK if f.name in leaky else ""), f.name) for f in fields_of(entry)]


def baseline_values(enc: Any) -> dict[str, Any]:
    """The case's metadata as the entry read it (cleaned exactly as `Entry.prepare` does; None = unknown)."""
    if enc.entry.encoder is None:
        return {}
    return enc.entry.encoder.validate(enc.case.metadata or {})[0]


def slider_range(spec: Field, stats: dict[str, Any] | None) -> tuple[float, float, float]:
    """(minimum, maximum, step): the field's valid range, else the training mean ± 4 standard deviations."""
    if spec.valid_range is not None:
        lo, hi = (float(v) for v in spec.valid_range)
    else:
        st = stats or {}
        mean, std = float(st.get("mean", 0.0)), float(st.get("std", 1.0))
        lo, hi = float(math.floor(mean - 4 * std)), float(math.ceil(mean + 4 * std))
    if hi <= lo:
        hi = lo + 1.0
    if lo.is_integer() and hi.is_integer():
        step = 1.0
    elif (2 * lo).is_integer() and (2 * hi).is_integer():
        step = 0.5
    else:
        step = 10.0 ** math.floor(math.log10(hi - lo) - 2)
    return lo, hi, step


def form_value(spec: Field, value: Any) -> str:
    """A clean value as a choice widget shows it ('unknown', 'yes', a level)."""
    if value is None:
        return UNKNOWN
    if spec.kind == "boolean":
        return YES if value else NO
    return str(value)


def control(entry: Any, name: str, value: Any) -> Control | None:
    """The value widget for field `name` of `entry` set to the clean `value`; None for a field it does not read."""
    spec = next((f for f in fields_of(entry) if f.name == name), None)
    if spec is None:
        return None
    if spec.kind == "numeric":
        stats = entry.encoder.stats.get(name) or {}
        lo, hi, step = slider_range(spec, stats)
        at = float(value) if value is not None else float(stats.get("median", lo))
        return Control("numeric", lo, hi, step, min(max(at, lo), hi), unknown=value is None)
    levels = [YES, NO] if spec.kind == "boolean" else list(spec.vocabulary)
    return Control("choice", choices=[UNKNOWN, *levels], choice=form_value(spec, value))


def clean(spec: Field, value: Any) -> tuple[Any, str | None]:
    """(clean value or None, a sentence when `value` cannot be used): the encoder's own rules."""
    typed, problem = coerce_value(spec, value)
    if problem is None and spec.kind == "categorical" and typed is not None and spec.vocabulary \
            and typed not in spec.vocabulary:
        problem = "unlisted"
    if problem is None:
        return typed, None
    label = _label(spec)
    if problem == "out_of_range" and spec.valid_range is not None:
        lo, hi = spec.valid_range
        return None, texts.WHATIF_OUT_OF_RANGE.format(field=label, value=shown(value), lo=f"{lo:g}", hi=f"{hi:g}",
                                                      unit=f" {spec.unit}" if spec.unit else "")
    if problem == "non_numeric":
        return None, texts.WHATIF_NOT_A_NUMBER.format(field=label, value=shown(value))
    known = ", ".join([UNKNOWN, *([YES, NO] if spec.kind == "boolean" else spec.vocabulary)])
    return None, texts.WHATIF_NOT_LISTED.format(field=label, value=shown(value), known=known)


def _label(spec: Field) -> str:
    return spec.name.replace("_", " ").capitalize()


def value_text(spec: Field, value: Any, unit: bool = True) -> str:
    """'63 years', 'unknown', 'yes', 'back' (a site)."""
    if value is None:
        return UNKNOWN
    if spec.kind == "numeric":
        return f"{float(value):g}" + (f" {spec.unit}" if unit and spec.unit else "")
    return form_value(spec, value)


def _pair(a: float, b: float) -> str:
    """'12% → 31%', with decimals when the move is too small to see at whole percents."""
    d = abs(b - a)
    digits = 0 if d >= 0.01 else 1 if d >= 0.001 else 2
    return f"{a:.{digits}%} → {b:.{digits}%}"


def describe(spec: Field, before: Any, after: Any, baseline: Any, changed: Any, entry_name: str,
             notes: list[str] | None = None) -> str:
    """One sentence: the change, the probabilities that moved, and whether the predicted class changes
    (`notes`: warnings the edited case raises that the case as analysed did not)."""
    head = f"{_label(spec)} {value_text(spec, before, unit=after is None)} → {value_text(spec, after)}"
    p0, p1 = baseline.probabilities, changed.probabilities
    deltas = {c: p1[c] - p0[c] for c in p0}
    biggest = max(deltas, key=lambda c: abs(deltas[c]))
    if after == before:
        sentence = texts.WHATIF_SAME.format(field=_label(spec), value=value_text(spec, before), cls=baseline.prediction,
                                            p=f"{p0[baseline.prediction]:.0%}")
    elif abs(deltas[biggest]) < 5e-4:
        sentence = texts.WHATIF_NO_MOVE.format(head=head, entry=entry_name, field=_label(spec).lower(),
                                               cls=baseline.prediction, p=f"{p0[baseline.prediction]:.0%}")
    else:
        named = [baseline.prediction, changed.prediction, biggest]
        named = list(dict.fromkeys(named))  # in order, once each
        moves = ", ".join(f"P({c}) {_pair(p0[c], p1[c])}" for c in named)
        verdict = (f"the prediction stays {baseline.prediction}" if changed.prediction == baseline.prediction
                   else f"the prediction changes from {baseline.prediction} to {changed.prediction}")
        top = max(p1, key=p1.get)
        if top != changed.prediction:  # the card's prevalence-adjusted rule, as on the Prediction tab
            verdict += texts.WHATIF_ADJUSTED.format(top=top)
        sentence = f"{head}: {moves}; {verdict}."
    a0, a1 = baseline.branch_weights, changed.branch_weights
    if a0 and a1 and abs(a1.get("metadata", 0.0) - a0.get("metadata", 0.0)) >= 0.005:
        sentence += " " + texts.WHATIF_ALPHA.format(a0=a0["metadata"], a1=a1["metadata"])
    return sentence + "".join(f" ⚠️ {w}" for w in notes or [])


def run(enc: Any, name: str | None, value: Any) -> WhatIf:
    """Field `name` of the analysed case set to `value` ('unknown' or None = unknown), all else as analysed."""
    baseline = enc.prediction()
    entry = enc.entry
    specs = {f.name: f for f in fields_of(entry)}
    if not specs:
        return WhatIf(None, None, None, baseline, None, texts.WHATIF_NO_METADATA.format(entry=entry.name))
    if name not in specs:
        known = ", ".join(specs)
        return WhatIf(None, None, None, baseline, None,
                      texts.WHATIF_UNKNOWN_FIELD.format(field=shown(name), entry=entry.name, known=known))
    spec = specs[name]
    values = baseline_values(enc)
    before = values.get(name)
    after, problem = clean(spec, value)
    if problem:
        return WhatIf(spec, before, None, baseline, None, problem)
    try:
        edited = enc.with_metadata({**values, name: after})
    except ValueError as err:  # e.g. a metadata-only entry left with no known value at all
        return WhatIf(spec, before, after, baseline, None, f"⚠️ {err}")
    changed = edited.prediction()
    notes = [w for w in edited.notes[0] if w not in enc.notes[0]]
    return WhatIf(spec, before, after, baseline, changed,
                  describe(spec, before, after, baseline, changed, entry.name, notes))


def what_if(enc: Any, name: str | None, value: Any) -> tuple[Any, Any | None, str]:
    """(baseline Prediction, what-if Prediction or None, one plain sentence)."""
    r = run(enc, name, value)
    return r.baseline, r.changed, r.sentence


def baseline_sentence(enc: Any, name: str | None) -> str:
    """What the view says before anything is changed (after an analysis, a field pick, or 'back to the case')."""
    specs = {f.name: f for f in fields_of(enc.entry)}
    if not specs:
        return texts.WHATIF_NO_METADATA.format(entry=enc.entry.name)
    spec = specs.get(name or "") or next(iter(specs.values()))
    pred = enc.prediction()
    return texts.WHATIF_START.format(field=_label(spec), value=value_text(spec, baseline_values(enc).get(spec.name)),
                                     cls=pred.prediction, p=f"{pred.probabilities[pred.prediction]:.0%}")


def figure(r: WhatIf, class_names: dict[str, str] | None = None) -> Any:
    """Baseline bars beside the what-if bars (baseline alone when nothing was computed); legends name the decision."""
    spec = r.field
    name = _label(spec).lower() if spec is not None else ""
    before = f"as analysed ({name} {value_text(spec, r.before)})" if spec is not None else "as analysed"
    before += f": predicts {r.baseline.prediction}"
    if r.changed is None or spec is None:
        return figures.what_if_figure(r.baseline.probabilities, None, before, title="The case as analysed",
                                      class_names=class_names)
    after = f"what if ({name} {value_text(spec, r.after)}): predicts {r.changed.prediction}"
    return figures.what_if_figure(r.baseline.probabilities, r.changed.probabilities, before, after,
                                  title=f"What if {name} were {value_text(spec, r.after)}?", class_names=class_names)


def view(enc: Any, name: str | None, value: Any) -> tuple[str, Any]:
    """(sentence, figure): what the UI shows after a field or value change (the callback's whole work)."""
    r = run(enc, name, value)
    return r.sentence, figure(r, enc.entry.card.get("class_names"))


def baseline_view(enc: Any, name: str | None) -> tuple[str, Any]:
    """(sentence, figure) of the case as analysed: after an analysis, a field pick or 'back to the case'."""
    baseline = enc.prediction()
    spec = next((f for f in fields_of(enc.entry) if f.name == name), None)
    r = WhatIf(spec, baseline_values(enc).get(name) if spec else None, None, baseline, None, "")
    return baseline_sentence(enc, name), figure(r, enc.entry.card.get("class_names"))
