"""Group-aware, label-stratified splits: a lesion (or patient) never sits on both sides.

The assignment is a seeded greedy: groups are stratified by their majority label, shuffled,
placed largest first, each into the part whose share of that label is furthest below its target.
That keeps class proportions close to the fractions even for rare classes, never splits a group,
and is deterministic for a seed. Official splits (Derm7pt, an ISIC test set) are used when the
dataset has one.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from skinui.cases import Case

PARTS = ("train", "val", "test")


class SplitError(ValueError):
    """A split is invalid (a group crosses parts, an index repeats)."""


class Split(dict):
    """`{"train": [idx], "val": [idx], "test": [idx]}` that also records how it was made."""

    def __init__(self, parts: dict[str, list[int]], method: str) -> None:
        super().__init__({p: sorted(parts.get(p, [])) for p in PARTS})
        self.method = method


def _groups(cases: list[Case], group_key: str) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        groups[case.group(group_key)].append(i)
    return groups


def _assign(cases: list[Case], members: list[list[int]], weights: list[float], seed: int) -> list[int]:
    """Bucket index per group (same order as `members`), stratified by each group's majority label."""
    w = np.asarray(weights, dtype=np.float64) / float(sum(weights))
    rng = np.random.default_rng(seed)
    strata: dict[str, list[int]] = defaultdict(list)
    for g, idx in enumerate(members):
        labels = Counter(str(cases[i].label) for i in idx)
        top = max(labels.values())
        strata[min(lab for lab, n in labels.items() if n == top)].append(g)
    bucket = [0] * len(members)
    total = np.zeros(len(w))
    for label in sorted(strata):
        order = [strata[label][j] for j in rng.permutation(len(strata[label]))]
        order.sort(key=lambda g: -len(members[g]))  # stable: the shuffle breaks ties between equal sizes
        placed, per = 0, np.zeros(len(w))
        for g in order:
            size = len(members[g])
            deficit = w * (placed + size) - per
            overall = w * (total.sum() + size) - total
            b = int(np.lexsort((-overall, -deficit))[0])  # largest label deficit, then overall deficit
            bucket[g] = b
            per[b] += size
            total[b] += size
            placed += size
    return bucket


def grouped_split(
    cases: list[Case], group_key: str, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> Split:
    """Stratified train/val/test indices with whole groups on one side only."""
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise SplitError(f"fractions must be three non-negative numbers, got {fractions}")
    groups = _groups(cases, group_key)
    members = list(groups.values())
    bucket = _assign(cases, members, list(fractions), seed)
    parts: dict[str, list[int]] = {p: [] for p in PARTS}
    for g, idx in enumerate(members):
        parts[PARTS[bucket[g]]].extend(idx)
    return Split(parts, f"grouped by {group_key}, stratified, fractions {list(fractions)}, seed {seed}")


def grouped_kfold(
    cases: list[Case], group_key: str, k: int = 5, seed: int = 0, val_fraction: float = 0.15
) -> list[Split]:
    """k folds; fold i tests on group-fold i, and carves a stratified grouped val set from the rest."""
    if k < 2:
        raise SplitError(f"k-fold needs k >= 2, got {k}")
    members = list(_groups(cases, group_key).values())
    fold_of = _assign(cases, members, [1.0] * k, seed)
    inner = min(max(val_fraction / (1.0 - 1.0 / k), 0.0), 1.0)
    folds = []
    for i in range(k):
        rest = [g for g in range(len(members)) if fold_of[g] != i]
        val_of = _assign(cases, [members[g] for g in rest], [1.0 - inner, inner], seed + 1 + i)
        parts: dict[str, list[int]] = {p: [] for p in PARTS}
        for g in range(len(members)):
            if fold_of[g] == i:
                parts["test"].extend(members[g])
        for g, b in zip(rest, val_of):
            parts["val" if b == 1 else "train"].extend(members[g])
        folds.append(Split(parts, f"grouped {k}-fold by {group_key}, fold {i}, seed {seed}"))
    return folds


def check_groups_disjoint(cases: list[Case], split: dict[str, list[int]], group_key: str) -> None:
    """Raise `SplitError` if any group (or case index) appears in more than one part."""
    seen_idx: dict[int, str] = {}
    owner: dict[str, str] = {}
    crossing: set[str] = set()
    for part, indices in split.items():
        for i in indices:
            if i in seen_idx:
                raise SplitError(f"case {cases[i].case_id} is in both {seen_idx[i]} and {part}")
            seen_idx[i] = part
            g = cases[i].group(group_key)
            if owner.setdefault(g, part) != part:
                crossing.add(g)
    if crossing:
        shown = ", ".join(sorted(crossing)[:5])
        raise SplitError(f"{len(crossing)} {group_key} groups cross split parts (e.g. {shown}); the split leaks.")


def split_cases(
    dataset: Any,
    cases: list[Case],
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    use_official: bool = True,
) -> Split:
    """The dataset's official split when it has one (val carved from train if it lacks one), else grouped.

    `dataset` is an adapter, an adapter class or a dataset name; its schema gives the group key.
    """
    from skinui.datasets import DATASETS

    adapter = DATASETS.get(dataset) if isinstance(dataset, str) else dataset
    group_key = adapter.schema.group_key
    official = adapter.official_split(cases) if use_official else None
    if not official:
        split = grouped_split(cases, group_key, fractions, seed)
    elif official.get("val"):
        split = Split(official, "official")
    else:
        train = sorted(official.get("train", []))
        val_share = fractions[1] / max(fractions[0] + fractions[1], 1e-9)
        inner = grouped_split([cases[i] for i in train], group_key, (1 - val_share, val_share, 0.0), seed)
        split = Split(
            {"train": [train[j] for j in inner["train"]], "val": [train[j] for j in inner["val"]],
             "test": official.get("test", [])},
            f"official test; val carved from official train, grouped by {group_key}, seed {seed}",
        )
    check_groups_disjoint(cases, split, group_key)
    return split
