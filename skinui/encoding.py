"""Patient metadata -> a float32 matrix, fitted on the training split and saved with the model.

`coerce_value` is the single place where a raw value (a CSV string, a typed-in form entry, a JSON
number) becomes a typed value or missing; dataset adapters and `MetadataEncoder.validate` both use
it, so training data and a case typed into the app are cleaned identically.

Encoding (ARCHITECTURE.md): numeric fields get median imputation, standardisation and a
missingness flag; categorical and boolean fields get one-hot columns plus an `unknown` level,
which doubles as their missingness flag. The modal level is recorded for form defaults only.
"""
from __future__ import annotations

import math
import re
import reprlib
from collections import Counter
from typing import Any

import numpy as np

from skinui.schema import Field, Schema, check_inputs

MISSING_TOKENS = frozenset({"", "nan", "none", "null", "unknown", "unk", "n/a", "na", "?"})
TRUE_TOKENS = frozenset({"true", "yes", "y", "t", "1", "1.0"})
FALSE_TOKENS = frozenset({"false", "no", "n", "f", "0", "0.0"})
UNKNOWN = "unknown"


def _key(text: str) -> str:
    """Lenient match key: case, spaces, underscores, slashes and hyphens do not matter."""
    return re.sub(r"[\s_/\-]+", " ", text.strip().lower())


def is_missing(raw: Any) -> bool:
    if raw is None:
        return True
    if isinstance(raw, float) and math.isnan(raw):
        return True
    return isinstance(raw, str) and raw.strip().lower() in MISSING_TOKENS


def coerce_value(spec: Field, raw: Any) -> tuple[Any, str | None]:
    """(typed value or None, problem or None); problem is 'non_numeric', 'out_of_range' or 'unlisted'."""
    if is_missing(raw):
        return None, None
    if spec.kind == "numeric":
        if isinstance(raw, bool):
            return None, "non_numeric"
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None, "non_numeric"
        if not math.isfinite(value):
            return None, "non_numeric"
        if spec.valid_range is not None and not spec.valid_range[0] <= value <= spec.valid_range[1]:
            return None, "out_of_range"
        return value, None
    if spec.kind == "boolean":
        if isinstance(raw, (bool, np.bool_)):
            return bool(raw), None
        token = str(raw).strip().lower()
        if token in TRUE_TOKENS:
            return True, None
        if token in FALSE_TOKENS:
            return False, None
        return None, "unlisted"
    text = str(raw).strip()
    if not spec.vocabulary:  # open vocabulary: levels are learned when the encoder is fitted
        return text, None
    match = {_key(level): level for level in spec.vocabulary}.get(_key(text))
    return (match, None) if match is not None else (None, "unlisted")


# Warnings quote what was typed; a 10 kB value (or field name) must not turn one into a 10 kB
# message, so quotes are cut to a readable length ('xxxx...xxxx').
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = _QUOTE.maxlong = 40


def shown(value: Any) -> str:
    """`repr(value)`, cut to about 40 characters for a warning sentence."""
    return _QUOTE.repr(value)


def _label(spec: Field) -> str:
    return spec.name.replace("_", " ").capitalize()


def _row_values(row: Any) -> dict[str, Any]:
    """Accept a Case (its `metadata`) or a plain mapping."""
    return getattr(row, "metadata", row) or {}


class MetadataEncoder:
    """Fit on training rows, then `transform` any rows (or a typed-in case) identically."""

    VERSION = 1

    def __init__(
        self,
        schema: Schema | None,
        force_leaky: tuple[str, ...] | list[str] = (),
        fields: list[str] | None = None,
    ) -> None:
        self.schema = schema
        self.force_leaky = tuple(force_leaky)
        self.specs: list[Field] = []
        self.stats: dict[str, dict[str, Any]] = {}
        self._fitted = False
        if schema is not None:
            available = schema.input_fields(self.force_leaky)  # ValueError for a non-leak name
            names = list(fields) if fields is not None else [f.name for f in available]
            check_inputs(schema, names, self.force_leaky)  # LeakError for an unforced leak field
            for name in names:
                try:
                    self.specs.append(schema.field(name))
                except KeyError:
                    raise ValueError(
                        f"{name!r} is not a metadata field of {schema.dataset}; choose from "
                        f"{', '.join(schema.field_names)}."
                    ) from None

    # -- fitting ----------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self._fitted

    @property
    def leaky(self) -> bool:
        return bool(self.force_leaky)

    def fit(self, rows: list[Any]) -> MetadataEncoder:
        """Learn imputation values, scaling and categorical levels from the training rows only."""
        rows = [_row_values(r) for r in rows]
        if not rows:
            raise ValueError("The metadata encoder needs at least one training case to fit on.")
        for spec in self.specs:
            values = [v for v in (coerce_value(spec, r.get(spec.name))[0] for r in rows) if v is not None]
            if spec.kind == "numeric":
                arr = np.asarray(values, dtype=np.float64)
                std = float(arr.std()) if arr.size > 1 else 0.0
                self.stats[spec.name] = {
                    "median": float(np.median(arr)) if arr.size else 0.0,
                    "mean": float(arr.mean()) if arr.size else 0.0,
                    "std": std if std > 1e-8 else 1.0,
                    "observed": int(arr.size),
                }
            else:
                counts = Counter(str(v) for v in values)
                if spec.kind == "boolean":
                    levels = ["true", "false"]
                    counts = Counter(str(v).lower() for v in values)
                else:
                    levels = list(spec.vocabulary) or sorted(counts)
                self.stats[spec.name] = {
                    "levels": levels,
                    "mode": counts.most_common(1)[0][0] if counts else None,
                    "observed": len(values),
                }
        self._fitted = True
        return self

    # -- shape ------------------------------------------------------------------------------------
    def _field_columns(self, spec: Field) -> list[str]:
        if spec.kind == "numeric":
            return [spec.name, f"{spec.name}__missing"]
        return [f"{spec.name}={level}" for level in self.stats[spec.name]["levels"]] + [f"{spec.name}={UNKNOWN}"]

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("The metadata encoder is not fitted yet; call fit() on the training cases first.")

    @property
    def columns(self) -> list[str]:
        self._require_fitted()
        return [c for spec in self.specs for c in self._field_columns(spec)]

    @property
    def dim(self) -> int:
        return len(self.columns)

    @property
    def groups(self) -> list[tuple[str, list[int]]]:
        """(field name, its column indices, missingness flag included): for grouped ablation."""
        self._require_fitted()
        out, start = [], 0
        for spec in self.specs:
            width = len(self._field_columns(spec))
            out.append((spec.name, list(range(start, start + width))))
            start += width
        return out

    @property
    def field_names(self) -> list[str]:
        return [s.name for s in self.specs]

    def defaults(self) -> dict[str, Any]:
        """Training-set median (numeric) or mode (categorical/boolean): a form's neutral prefill."""
        self._require_fitted()
        return {s.name: self.stats[s.name]["median" if s.kind == "numeric" else "mode"] for s in self.specs}

    # -- encoding ---------------------------------------------------------------------------------
    def _encode_field(self, spec: Field, raw: Any) -> list[float]:
        value, _ = coerce_value(spec, raw)
        st = self.stats[spec.name]
        if spec.kind == "numeric":
            x = st["median"] if value is None else value
            return [(x - st["mean"]) / st["std"], 1.0 if value is None else 0.0]
        levels = st["levels"]
        onehot = [0.0] * (len(levels) + 1)
        key = None if value is None else (str(value).lower() if spec.kind == "boolean" else str(value))
        onehot[levels.index(key) if key in levels else len(levels)] = 1.0
        return onehot

    def transform(self, rows: list[Any]) -> np.ndarray:
        """float32 [N, dim]; missing or unseen values go to the median / `unknown` column."""
        self._require_fitted()
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for i, row in enumerate(rows):
            values = _row_values(row)
            out[i] = [x for spec in self.specs for x in self._encode_field(spec, values.get(spec.name))]
        return out

    def fit_transform(self, rows: list[Any]) -> np.ndarray:
        return self.fit(rows).transform(rows)

    # -- typed-in values ----------------------------------------------------------------------------
    def validate(self, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Clean typed-in values exactly as training did; each problem becomes a warning sentence."""
        clean: dict[str, Any] = {}
        warnings: list[str] = []
        for spec in self.specs:
            given = raw.get(spec.name)
            value, problem = coerce_value(spec, given)
            levels = self.stats.get(spec.name, {}).get("levels")
            if spec.kind == "categorical" and value is not None and levels is not None and value not in levels:
                value, problem = None, "unlisted"
            if problem:
                warnings.append(self._warning(spec, given, problem, levels))
            clean[spec.name] = value
        for name in raw:
            if name in clean or is_missing(raw[name]):  # an empty column is no input: nothing to warn about
                continue
            if self.schema is not None and name in self.schema.leak_fields:
                why = self.schema.leak_fields[name]
                warnings.append(f"{shown(name)} is not an input of this model because it leaks the label: {why}; it was ignored.")
            else:
                warnings.append(f"{shown(name)} is not a metadata field of this model; it was ignored.")
        return clean, warnings

    @staticmethod
    def _warning(spec: Field, given: Any, problem: str, levels: list[str] | None) -> str:
        unit = f" {spec.unit}" if spec.unit else ""
        if problem == "out_of_range" and spec.valid_range is not None:
            lo, hi = spec.valid_range
            return f"{_label(spec)} {shown(given)} is outside the valid range {lo:g}-{hi:g}{unit}; it was treated as missing."
        if problem == "non_numeric":
            return f"{_label(spec)} {shown(given)} is not a number; it was treated as missing."
        if spec.kind == "boolean":
            return f"{_label(spec)} {shown(given)} is not yes or no; it was treated as unknown."
        known = ", ".join(levels or spec.vocabulary)
        return f"{_label(spec)} {shown(given)} is not one of the known values ({known}); it was treated as unknown."

    # -- persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: field specs and fitted statistics, enough to rebuild without the schema."""
        self._require_fitted()
        return {
            "version": self.VERSION,
            "dataset": self.schema.dataset if self.schema is not None else None,
            "force_leaky": list(self.force_leaky),
            "fields": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "vocabulary": list(s.vocabulary),
                    "unit": s.unit,
                    "valid_range": list(s.valid_range) if s.valid_range is not None else None,
                    "description": s.description,
                    "stats": self.stats[s.name],
                }
                for s in self.specs
            ],
            "columns": self.columns,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetadataEncoder:
        if d.get("version") != cls.VERSION:
            raise ValueError(f"Metadata encoder format {d.get('version')!r} is not supported (expected {cls.VERSION}).")
        enc = cls(None, force_leaky=d.get("force_leaky", ()))
        if d.get("dataset"):
            try:
                from skinui.datasets import schema_for

                enc.schema = schema_for(d["dataset"])
            except (ValueError, KeyError):  # an unknown dataset only costs the leak-field warnings
                enc.schema = None
        for f in d["fields"]:
            enc.specs.append(Field.from_dict(f))
            enc.stats[f["name"]] = dict(f["stats"])
        enc._fitted = True
        if "columns" in d and enc.columns != d["columns"]:
            raise ValueError("The saved metadata encoder is inconsistent: its columns do not match its fields.")
        return enc
