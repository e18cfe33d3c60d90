"""Dataset schemas: classes, clinical metadata fields, grouping key and label-leaking fields.

A schema is data, not code: the metadata encoder, the app's metadata form and the leak guard
all read it. Per-dataset schemas are registered in `SCHEMAS` by their dataset modules.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from skinui.registry import Registry


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "numeric" | "categorical" | "boolean"
    vocabulary: tuple[str, ...] = ()  # categorical levels (without "unknown", which is implicit)
    unit: str | None = None
    valid_range: tuple[float, float] | None = None  # numeric: values outside are treated as missing
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical", "boolean"):
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], levels: tuple[str, ...] | list[str] | None = None) -> Field:
        """From a saved metadata encoder's field entry; `levels` replaces an open vocabulary."""
        vr = d.get("valid_range")
        return cls(d["name"], d["kind"], tuple(d.get("vocabulary") or levels or ()), d.get("unit"),
                   tuple(vr) if vr is not None else None, d.get("description") or "")

    @property
    def label(self) -> str:
        """'Age (years, 0–120)': name, unit and valid range, for forms and messages."""
        extra = [self.unit] if self.unit else []
        if self.valid_range:
            extra.append(f"{self.valid_range[0]:g}–{self.valid_range[1]:g}")
        text = self.name.replace("_", " ").capitalize()
        return f"{text} ({', '.join(extra)})" if extra else text


@dataclass(frozen=True)
class Schema:
    dataset: str
    classes: tuple[str, ...]
    fields: tuple[Field, ...]  # clinical inputs, in form order
    group_key: str  # "lesion_id" or "patient_id"
    modalities: tuple[str, ...]  # e.g. ("dermoscopic", "metadata")
    leak_fields: dict[str, str] = field(default_factory=dict)  # name -> why it leaks the label
    leak_field_specs: tuple[Field, ...] = ()  # how to encode a leak field if a user forces it
    provenance_fields: dict[str, str] = field(default_factory=dict)  # name -> why not an input
    class_names: dict[str, str] = field(default_factory=dict)  # code -> plain-language name
    # Fields the release fills only on some collection pathway (PAD-UFES-20: only for biopsied
    # lesions), so their missingness encodes the label; evaluation checks that blanking them
    # leaves the predicted probability of `cancer_classes` where it was.
    missingness_block: tuple[str, ...] = ()
    cancer_classes: tuple[str, ...] = ()
    licence: str = ""
    citation: str = ""

    def field(self, name: str) -> Field:
        for f in self.fields + self.leak_field_specs:
            if f.name == name:
                return f
        raise KeyError(f"{self.dataset} has no metadata field {name!r}")

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def input_fields(self, force_leaky: tuple[str, ...] | list[str] = ()) -> tuple[Field, ...]:
        """Clinical input fields; leak fields only when named explicitly in `force_leaky`."""
        unknown = [n for n in force_leaky if n not in self.leak_fields]
        if unknown:
            raise ValueError(f"{unknown} are not leak fields of {self.dataset}; nothing to force")
        return self.fields + tuple(f for f in self.leak_field_specs if f.name in force_leaky)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LeakError(ValueError):
    """A label-leaking field was requested as a model input without being forced."""


def check_inputs(schema: Schema, names: list[str], force_leaky: tuple[str, ...] | list[str] = ()) -> None:
    """Refuse label-leaking fields unless forced; the caller records forced ones (`leaky: true`)."""
    for name in names:
        if name in schema.leak_fields and name not in force_leaky:
            raise LeakError(
                f"{name!r} leaks the label in {schema.dataset} ({schema.leak_fields[name]}); "
                f"it is refused as an input. Pass it in force_leaky to use it anyway "
                f"(the model card will then say leaky: true)."
            )
        if name in schema.provenance_fields:
            raise LeakError(f"{name!r} is provenance, not a clinical input: {schema.provenance_fields[name]}")


SCHEMAS: Registry[Schema] = Registry("schema")
