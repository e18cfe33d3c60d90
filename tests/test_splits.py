"""Grouped stratified splits: deterministic from a seed, groups never cross, classes stay balanced."""
from __future__ import annotations

from collections import Counter

import pytest

from skinui.cases import Case
from skinui.datasets.splits import (
    SplitError,
    check_groups_disjoint,
    grouped_kfold,
    grouped_split,
    split_cases,
)


def _cases(n_groups: int = 120) -> list[Case]:
    """Groups of 1-3 images; class frequencies 50/30/15/5%, like a long-tailed skin dataset."""
    cases = []
    for g in range(n_groups):
        r = (g * 37) % 100
        label = "nv" if r < 50 else "bkl" if r < 80 else "mel" if r < 95 else "df"
        for k in range(1 + g % 3):
            cases.append(Case(f"img{g}_{k}", label=label, lesion_id=f"L{g}", patient_id=f"P{g // 4}"))
    return cases


def test_split_is_deterministic_and_seed_dependent():
    cases = _cases()
    a, b = grouped_split(cases, "lesion_id", seed=3), grouped_split(cases, "lesion_id", seed=3)
    assert dict(a) == dict(b)
    assert dict(grouped_split(cases, "lesion_id", seed=4)) != dict(a)


@pytest.mark.parametrize("key", ["lesion_id", "patient_id"])
def test_groups_never_cross_and_everything_is_used(key):
    cases = _cases()
    split = grouped_split(cases, key, seed=0)
    check_groups_disjoint(cases, split, key)
    assert sorted(i for idx in split.values() for i in idx) == list(range(len(cases)))


def test_stratification_and_fractions():
    cases = _cases(400)
    split = grouped_split(cases, "lesion_id", fractions=(0.7, 0.15, 0.15), seed=0)
    n = len(cases)
    for part, frac in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        assert abs(len(split[part]) / n - frac) < 0.03
    overall = Counter(c.label for c in cases)
    for part in ("train", "val", "test"):
        counts = Counter(cases[i].label for i in split[part])
        for label, total in overall.items():
            assert abs(counts[label] / len(split[part]) - total / n) < 0.04, (part, label)
        assert counts["df"] > 0  # the rare class reaches every part


def test_kfold_tests_every_case_once_and_keeps_groups():
    cases = _cases()
    folds = grouped_kfold(cases, "patient_id", k=5, seed=1)
    assert len(folds) == 5
    tested = sorted(i for f in folds for i in f["test"])
    assert tested == list(range(len(cases)))
    for f in folds:
        check_groups_disjoint(cases, f, "patient_id")
        assert f["val"] and f["train"]
    assert [dict(f) for f in folds] == [dict(f) for f in grouped_kfold(cases, "patient_id", k=5, seed=1)]


def test_check_groups_disjoint_catches_a_leak():
    cases = _cases(10)
    split = {"train": [0, 1], "val": [], "test": [2]}  # cases 1 and 2 are lesion L1
    with pytest.raises(SplitError, match="cross"):
        check_groups_disjoint(cases, split, "lesion_id")
    with pytest.raises(SplitError, match="both"):
        check_groups_disjoint(cases, {"train": [0], "val": [0], "test": []}, "lesion_id")


def test_split_cases_prefers_the_official_split():
    # An ISIC-2019-style official split with no val part: val is carved from train, grouped.
    cases = [Case(f"img{i}", label="ab"[i % 2], lesion_id=f"L{i}",
                  extra={"official_split": "test" if i % 5 == 0 else "train"}) for i in range(60)]
    split = split_cases("isic2019", cases, seed=0)
    assert "official" in split.method
    assert split["test"] == [i for i in range(len(cases)) if i % 5 == 0]
    assert split["val"] and not set(split["val"]) & set(split["test"])
    plain = split_cases("ham10000", _cases(40), seed=0)
    assert plain.method.startswith("grouped") and plain["test"]
