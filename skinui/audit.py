"""Leak audit: how well does *whether a field was filled in* (or a declared leak field's value) predict the label?

A model that sees metadata also sees which fields are empty. When the empty ones are a
data-collection artefact (PAD-UFES-20's lifestyle block was only filled for biopsied lesions),
missingness alone encodes the label and a user who leaves a field blank shifts the prediction.
The audit measures that per field, for the declared leak fields' values, and for the whole
missingness pattern, with a cross-validated lookup-table classifier:

- every case gets a *key* (a field's missing flag, a leak field's value with missing as its own
  level, or the tuple of missing flags over all fields);
- folds are grouped by the dataset's grouping key (a lesion or patient never straddles folds) and
  stratified by label;
- a case's class probabilities are estimated from the per-key class counts on the *other* folds,
  smoothed toward the class prior (an unseen key gets the prior itself);
- the out-of-fold probabilities are scored by macro one-vs-rest AUC (the flag), and the class
  the key singles out best is reported beside it (a key that gives away one rare class, such as
  melanoma, barely moves a mean over eleven classes).

A key that carries no information scores 0.5 and a key that determines the label scores 1.0.
The smoothing prior is the class frequency over all audited cases: it is one constant shared by
every case, so it cannot rank cases, whereas a per-fold prior would shift with each fold's class
mix and bias keys never seen in training (per-case ids) away from 0.5.

Torch-free: numpy and scikit-learn only.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from skinui.cases import Case
from skinui.schema import Schema

PATTERN = "missingness_pattern"
INPUT_PATTERN = "input_missingness_pattern"
METHOD = (
    "Macro one-vs-rest AUC of out-of-fold class probabilities looked up per key (a field's missing flag, a leak "
    "field's value with missing as its own level, or the tuple of missing flags over all fields) from per-key "
    "class counts on the other folds, smoothed toward the class prior (an unseen key gets the prior), with folds "
    "grouped by the dataset's grouping key and stratified by label; 0.5 means no information, 1.0 a perfect leak."
)


class AuditError(ValueError):
    """The audit cannot be run as asked; the message is a sentence a user can act on."""


def assign_folds(labels: Sequence[str], groups: Sequence[str], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per case: whole groups per fold, stratified by label where possible, deterministic for a seed."""
    n_groups = len(set(groups))
    k = min(int(folds), n_groups)
    if k < 2:
        raise AuditError(f"The audit needs at least 2 groups to cross-validate; found {n_groups}.")
    y = np.asarray([str(v) for v in labels])
    g = np.asarray([str(v) for v in groups])
    fold_of = np.full(len(y), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has fewer members than n_splits" is expected
        try:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            parts = list(splitter.split(np.zeros(len(y)), y, g))
        except ValueError:
            order = np.random.default_rng(seed).permutation(sorted(set(g)))
            rank = {name: i for i, name in enumerate(order)}
            parts = list(GroupKFold(n_splits=k).split(np.zeros(len(y)), y, [rank[v] for v in g]))
    for i, (_, test) in enumerate(parts):
        fold_of[test] = i
    return fold_of


def _class_aucs(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """One-vs-rest AUC per class that has at least one positive and one negative case."""
    aucs = {}
    for c, name in enumerate(classes):
        positive = y == c
        if positive.any() and not positive.all():
            aucs[name] = float(roc_auc_score(positive, proba[:, c]))
    return aucs


def key_class_aucs(
    keys: Sequence[Hashable],
    labels: Sequence[str],
    groups: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
    fold_of: np.ndarray | None = None,
    smoothing: float | None = None,
) -> dict[str, float]:
    """One-vs-rest AUC per class with which `keys` predict `labels`, out of fold (see `key_auc`)."""
    labels = [str(v) for v in labels]
    if len(keys) != len(labels):
        raise ValueError(f"{len(keys)} keys but {len(labels)} labels")
    order = list(classes) if classes is not None else sorted(set(labels))
    order += sorted(set(labels) - set(order))
    index = {c: i for i, c in enumerate(order)}
    y = np.asarray([index[v] for v in labels], dtype=np.int64)
    n_classes = len(order)
    present = [c for c in order if c in set(labels)]
    if len(present) < 2:
        return {}
    codes_of: dict[Hashable, int] = {}
    codes = np.asarray([codes_of.setdefault(k, len(codes_of)) for k in keys], dtype=np.int64)
    if len(codes_of) < 2:
        return dict.fromkeys(present, 0.5)
    if fold_of is None:
        if groups is None:
            raise ValueError("key_class_aucs needs groups or fold_of")
        fold_of = assign_folds(labels, groups, folds, seed)
    fold_of = np.asarray(fold_of)
    prior = np.bincount(y, minlength=n_classes) / len(y)
    m = float(n_classes if smoothing is None else smoothing)
    proba = np.zeros((len(y), n_classes))
    for f in np.unique(fold_of):
        test = fold_of == f
        counts = np.zeros((len(codes_of), n_classes))
        np.add.at(counts, (codes[~test], y[~test]), 1.0)
        table = (counts + m * prior) / (counts.sum(axis=1, keepdims=True) + m)
        proba[test] = table[codes[test]]
    return _class_aucs(y, proba, order)


def key_auc(
    keys: Sequence[Hashable],
    labels: Sequence[str],
    groups: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
    fold_of: np.ndarray | None = None,
    smoothing: float | None = None,
) -> float | None:
    """Macro one-vs-rest AUC with which `keys` predict `labels`, out of fold.

    Folds come from `fold_of` (one index per case) or are made from `groups` by `assign_folds`.
    `smoothing` is the prior's weight in pseudo-cases (default: the number of classes, i.e.
    Laplace's add-one when the prior is uniform). Returns 0.5 for a constant key, None when fewer
    than two classes occur.
    """
    aucs = key_class_aucs(keys, labels, groups, classes, folds, seed, fold_of, smoothing)
    return float(np.mean(list(aucs.values()))) if aucs else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def audit(
    cases: list[Case], schema: Schema, folds: int = 5, seed: int = 0, threshold: float = 0.60
) -> dict[str, Any]:
    """The leak-audit object for `cases` read with `schema` (see the module docstring for the method)."""
    if not isinstance(folds, int) or folds < 2:
        raise AuditError(f"--folds must be a whole number of at least 2; got {folds!r}.")
    if not 0.0 <= float(threshold) <= 1.0:
        raise AuditError(f"--threshold must be an AUC between 0 and 1 (e.g. 0.60); got {threshold!r}.")
    notes: list[str] = []
    unlabelled = sum(c.label is None for c in cases)
    cases = [c for c in cases if c.label is not None]
    if unlabelled:
        notes.append(f"{unlabelled} cases without a label were left out of the audit.")
    if not cases:
        raise AuditError(f"The {schema.dataset} folder holds no labelled cases, so there is nothing to audit.")
    labels = [str(c.label) for c in cases]
    groups = [c.group(schema.group_key) for c in cases]
    counts = Counter(labels)
    classes = [c for c in schema.classes if counts[c]] + sorted(set(counts) - set(schema.classes))
    n_groups = len(set(groups))
    if n_groups < folds:
        notes.append(f"Only {n_groups} {schema.group_key} groups, so {n_groups} folds were used instead of {folds}.")
    fold_of = assign_folds(labels, groups, folds, seed)
    if len(classes) < 2:
        notes.append("Only one class occurs, so no AUC can be computed (all are null).")

    def score(keys: list[Hashable]) -> tuple[float | None, dict[str, Any] | None]:
        """Macro AUC, and the class the key singles out best (a leak of one rare class hides in a macro mean)."""
        aucs = key_class_aucs(keys, labels, classes=classes, fold_of=fold_of)
        if not aucs:
            return None, None
        if len(set(keys)) < 2:
            return 0.5, None  # a constant key singles out nothing
        top = max(aucs, key=lambda c: (aucs[c], -classes.index(c)))
        return _round(np.mean(list(aucs.values()))), {"class": top, "auc": _round(aucs[top])}

    recorded = {name for c in cases for name in c.metadata}
    specs = [(f, "input") for f in schema.fields] + [
        (f, "leak") for f in schema.leak_field_specs if f.name not in {g.name for g in schema.fields}
    ]
    fields: dict[str, dict[str, Any]] = {}
    leak_fields: dict[str, dict[str, Any]] = {}
    missing_flags: dict[str, list[bool]] = {}
    for spec, role in specs:
        if spec.name not in recorded:
            notes.append(f"{spec.name} ({role} field) is not recorded in this dataset's metadata; not audited.")
            continue
        values = [c.metadata.get(spec.name) for c in cases]
        missing = [v is None for v in values]
        missing_flags[spec.name] = missing
        n_missing = sum(missing)
        auc, top = score(missing)
        fields[spec.name] = {
            "role": "leak" if spec.name in schema.leak_fields else role,
            "missing": n_missing,
            "missing_rate": round(n_missing / len(cases), 4),
            "missingness_auc": auc,
            "missingness_top_class": top,
        }
        if spec.name in schema.leak_fields:
            auc, top = score(values)  # None (missing) is a level of its own
            leak_fields[spec.name] = {
                "levels": len(set(values)),
                "value_auc": auc,
                "value_top_class": top,
                "why": schema.leak_fields[spec.name],
            }
    for name in sorted(set(schema.leak_fields) - {f.name for f, _ in specs}):
        notes.append(f"Declared leak field {name} has no field spec in the schema; not audited.")

    def pattern(names: list[str]) -> dict[str, Any]:
        keys = [tuple(missing_flags[n][i] for n in names) for i in range(len(cases))]
        auc, top = score(keys)
        return {"fields": len(names), "patterns": len(set(keys)), "auc": auc, "top_class": top}

    input_names = [f.name for f in schema.fields if f.name in missing_flags and f.name not in schema.leak_fields]
    patterns = {PATTERN: pattern(list(missing_flags)), INPUT_PATTERN: pattern(input_names)}

    def over(x: float | None) -> bool:
        return x is not None and x > threshold

    flagged = {n for n, f in fields.items() if over(f["missingness_auc"])}
    flagged |= {n for n, f in leak_fields.items() if over(f["value_auc"])}
    flagged |= {n for n, p in patterns.items() if over(p["auc"])}
    flagged_inputs = sorted(n for n in flagged if fields.get(n, {}).get("role") == "input")
    return {
        "dataset": schema.dataset,
        "cases": len(cases),
        "groups": n_groups,
        "group_key": schema.group_key,
        "classes": {c: counts[c] for c in classes},
        "folds": int(len(np.unique(fold_of))),
        "seed": seed,
        "threshold": threshold,
        "method": METHOD,
        "fields": fields,
        "leak_fields": leak_fields,
        PATTERN: patterns[PATTERN],
        INPUT_PATTERN: patterns[INPUT_PATTERN],
        "flagged": sorted(flagged),
        "flagged_inputs": flagged_inputs,
        "notes": notes,
    }


__all__ = ["METHOD", "AuditError", "assign_folds", "audit", "key_auc", "key_class_aucs"]
