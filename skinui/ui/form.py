"""The metadata form, generated from the installed entries' saved metadata encoders.

Each dataset gets one group of inputs (the union of its entries' fields, with units, valid ranges
and allowed values; "unknown" everywhere); picking an entry shows its dataset's group and, within
it, exactly the fields that entry encodes. Field specs come from the model cards, so the form needs
neither the dataset on disk nor the model loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from skinui.schema import Field
from skinui.vocabulary import concept

UNKNOWN = "unknown"
BOOL_CHOICES = [UNKNOWN, "yes", "no"]
def _norm(value: Any) -> str:
    return str(value).strip().lower().replace("_", " ").replace("-", " ")


@dataclass(frozen=True)
class FormField:
    """One form input: a dataset's metadata field (the schema's `Field`, levels as the encoder fitted them)."""

    dataset: str
    field: Field

    @property
    def name(self) -> str:
        return self.field.name


def _form_field(dataset: str, f: dict[str, Any]) -> FormField:
    return FormField(dataset, Field.from_dict(f, levels=(f.get("stats") or {}).get("levels")))


def encoder_fields(card: dict[str, Any]) -> list[str]:
    return [f["name"] for f in ((card.get("metadata_encoder") or {}).get("fields") or [])]


def collect_specs(cards: list[dict[str, Any]]) -> dict[str, list[FormField]]:
    """dataset -> form fields (first definition wins; order of first appearance)."""
    out: dict[str, list[FormField]] = {}
    for card in cards:
        ds = str(card.get("dataset"))
        seen = {s.name for s in out.setdefault(ds, [])}
        for f in (card.get("metadata_encoder") or {}).get("fields") or []:
            if f["name"] not in seen:
                out[ds].append(_form_field(ds, f))
                seen.add(f["name"])
    return out


def to_raw(spec: Field, value: Any) -> Any:
    """Form value -> raw value for `MetadataEncoder.validate` (None = unknown)."""
    if value is None or str(value).strip() in (UNKNOWN, ""):
        return None
    if spec.kind == "boolean":
        return {"yes": True, "no": False}.get(str(value), value)
    return value


def to_form(spec: Field, raw: Any) -> Any:
    """Raw metadata value -> what the form component shows."""
    if raw is None:
        return "" if spec.kind == "numeric" else UNKNOWN
    if spec.kind == "boolean":
        return "yes" if str(raw).lower() in ("true", "yes", "1") else "no" if str(raw).lower() in (
            "false", "no", "0") else UNKNOWN
    if spec.kind == "categorical":
        return str(raw) if str(raw) in spec.vocabulary else UNKNOWN
    return f"{raw:g}" if isinstance(raw, (int, float)) else str(raw)


class MetadataForm:
    """Build with `render()` inside a Blocks context; `components` are the event inputs, in order."""

    def __init__(self, cards: list[dict[str, Any]]) -> None:
        self.cards = {c["name"]: c for c in cards}
        self.specs = collect_specs(cards)
        self.fields: list[FormField] = [s for specs in self.specs.values() for s in specs]
        self.groups: dict[str, gr.Group] = {}
        self.components: list[gr.components.Component] = []

    def _component(self, form_field: FormField, visible: bool) -> gr.components.Component:
        spec = form_field.field
        info = spec.description or None
        kw = {"label": spec.label, "info": info, "visible": visible,
              "elem_id": f"field-{form_field.dataset}-{spec.name}"}
        if spec.kind == "numeric":
            # A textbox, not gr.Number: an empty number would arrive as 0, and whatever is typed
            # (out of range, not a number) gets the encoder's warning sentence instead of a silent fix.
            return gr.Textbox(value="", placeholder="unknown", **kw)
        if spec.kind == "boolean":
            return gr.Radio(BOOL_CHOICES, value=UNKNOWN, **kw)
        return gr.Dropdown([UNKNOWN, *spec.vocabulary], value=UNKNOWN, **kw)

    def render(self, selected: str | None) -> None:
        card = self.cards.get(selected or "")
        used = set(encoder_fields(card)) if card else set()
        for ds, specs in self.specs.items():
            show = bool(card) and card.get("dataset") == ds
            with gr.Group(visible=show and bool(specs)) as group:
                gr.Markdown(f"**Patient metadata ({ds})** — leave a field *unknown* if you do not know it.")
                for start in range(0, len(specs), 4):
                    with gr.Row():
                        for spec in specs[start:start + 4]:
                            self.components.append(self._component(spec, spec.name in used))
            self.groups[ds] = group

    def visibility(self, name: str | None) -> list[Any]:
        """Updates for groups then fields, showing what entry `name` encodes."""
        card = self.cards.get(name or "")
        used = set(encoder_fields(card)) if card else set()
        ds = card.get("dataset") if card else None
        groups = [gr.update(visible=(d == ds and bool(used))) for d in self.groups]
        return groups + [gr.update(visible=s.dataset == ds and s.name in used) for s in self.fields]

    def raw_values(self, name: str | None, values: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
        """The selected entry's fields from the form's values (all components, in order)."""
        card = self.cards.get(name or "")
        if not card:
            return {}
        used = set(encoder_fields(card))
        return {s.name: to_raw(s.field, v) for s, v in zip(self.fields, values)
                if s.dataset == card.get("dataset") and s.name in used}

    def carry_over(self, old: str | None, new: str | None, values: tuple[Any, ...] | list[Any]) -> list[Any]:
        """Component values after switching from entry `old` to entry `new` of another dataset.

        What the user typed for the old dataset fills the new dataset's still-unknown fields that
        record the same fact (age, sex, site, ...) where the value is allowed there (matched
        ignoring case, spaces and underscores); everything else is left as it is.
        """
        old_ds = (self.cards.get(old or "") or {}).get("dataset")
        new_ds = (self.cards.get(new or "") or {}).get("dataset")
        out = [gr.update() for _ in self.fields]
        if not old_ds or not new_ds or old_ds == new_ds:
            return out
        typed = {concept(s.name): (s.field, v) for s, v in zip(self.fields, values)
                 if s.dataset == old_ds and to_raw(s.field, v) is not None}
        for i, (form_field, current) in enumerate(zip(self.fields, values)):
            spec = form_field.field
            if form_field.dataset != new_ds or to_raw(spec, current) is not None or concept(spec.name) not in typed:
                continue
            src, value = typed[concept(spec.name)]
            if spec.kind == "numeric" and src.kind == "numeric":
                out[i] = str(value).strip()
            elif spec.kind == "boolean" and src.kind == "boolean":
                out[i] = value
            elif spec.kind == "categorical":
                match = [level for level in spec.vocabulary if _norm(level) == _norm(value)]
                if match:
                    out[i] = match[0]
        return out

    def fill(self, dataset: str, metadata: dict[str, Any]) -> list[Any]:
        """Component values for an example case of `dataset` (other datasets' fields untouched)."""
        return [to_form(s.field, metadata.get(s.name)) if s.dataset == dataset else gr.update() for s in self.fields]
