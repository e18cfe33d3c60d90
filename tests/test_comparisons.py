"""Paired comparisons between zoo entries, what metadata adds, and the collection-artefact check."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from skinui.cases import Case
from training import comparisons as cmp


def _scored(name: str, labels: np.ndarray, correct: np.ndarray, k: int = 3, subsets: dict | None = None) -> cmp.Scored:
    """An entry that is right exactly where `correct` says (probabilities follow the decision)."""
    wrong = (labels + 1) % k
    predicted = np.where(correct, labels, wrong)
    probs = np.full((len(labels), k), 0.1)
    probs[np.arange(len(labels)), predicted] = 0.8
    n = len(labels)
    return cmp.Scored(name, [f"c{i}" for i in range(n)], [f"g{i // 2}" for i in range(n)], labels,
                      {"D+M": (probs, predicted), **(subsets or {})}, "D+M")


def _card(name: str, modalities: list[str], val: float, backbone: str | None = None, leaky: bool = False) -> dict:
    cfg = {"stage2": {"backbone": backbone}} if backbone else {}
    return {"name": name, "modalities": modalities, "leaky": leaky, "training": {"config": cfg},
            "metrics_val": {"balanced_accuracy": val, "macro": {"auc": 0.5}}}


def test_references_choose_the_best_entry_on_validation_and_skip_leaky_ones():
    cards = [_card("img", ["dermoscopic"], 0.55), _card("meta", ["metadata"], 0.40),
             _card("meta_leaky", ["metadata"], 0.99, leaky=True), _card("fuse", ["dermoscopic", "metadata"], 0.70, "img"),
             _card("other", ["dermoscopic", "metadata"], 0.65, "img")]
    assert cmp.best_on_validation(cards) == "fuse"  # the leaky entry's 0.99 never wins
    refs = cmp.references(cards[4], cards)
    assert refs == {"image_only": ["img"], "metadata_only": ["meta"], "best": ["fuse"]}
    assert cmp.references(cards[3], cards)["best"] == []  # the best entry is not compared with itself
    assert cmp.references(cards[0], cards)["image_only"] == []


def test_paired_comparison_separates_a_clearly_better_entry_and_not_a_tie():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    base = rng.random(400) < 0.5
    better = base | (rng.random(400) < 0.6)  # right wherever the baseline is, and on many more cases
    tie = rng.random(400) < 0.5
    cards = [_card("img", ["dermoscopic"], 0.5), _card("fuse", ["dermoscopic", "metadata"], 0.8, "img"),
             _card("tie", ["dermoscopic", "metadata"], 0.5, "img")]
    test = {"img": _scored("img", labels, base), "fuse": _scored("fuse", labels, better),
            "tie": _scored("tie", labels, tie)}
    found = cmp.compare_dataset(cards, test, n_boot=500)
    diff = found["fuse"]["vs_image_only"]["img"]["balanced_accuracy"]
    assert diff["estimate"] > 0.2 and diff["excludes_zero"]
    tie_diff = found["tie"]["vs_image_only"]["img"]["balanced_accuracy"]
    assert not tie_diff["excludes_zero"] and tie_diff["ci"][0] < 0 < tie_diff["ci"][1]
    assert found["tie"]["vs_best"]["fuse"]["balanced_accuracy"]["estimate"] < 0


def test_cases_of_another_split_are_never_paired():
    labels = np.array([0, 1, 2, 0, 1, 2])
    a, b = _scored("a", labels, labels >= 0), _scored("b", labels, labels >= 0)
    b.case_ids = [f"x{i}" for i in range(6)]
    assert cmp._paired(a, b, 100, 0) is None


def test_metadata_adds_is_the_entry_minus_its_own_metadata_off_ablation():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    with_meta = rng.random(300) < 0.9
    without = _scored("x", labels, with_meta & (rng.random(300) < 0.5)).shipped
    s = _scored("x", labels, with_meta, subsets={"D": without})
    adds = cmp.metadata_adds(s, n_boot=300)
    assert adds["without_metadata"] == "D"
    assert adds["balanced_accuracy"]["estimate"] > 0.3 and adds["balanced_accuracy"]["excludes_zero"]
    image_only = cmp.Scored("i", s.case_ids, s.groups, labels, {"D": without}, "D")
    assert cmp.metadata_adds(image_only) is None


def _pad_cases(n: int = 40) -> tuple[list[Case], np.ndarray]:
    rng = np.random.default_rng(2)
    cases, labels = [], []
    for i in range(n):
        y = int(rng.integers(0, 2))  # 0 = benign, 1 = cancer
        complete = y == 1 or i % 3 == 0  # like PAD-UFES-20: cancers always complete
        cases.append(Case(f"c{i}", metadata={"age": 60, "smoke": bool(i % 2) if complete else None},
                          patient_id=f"p{i}"))
        labels.append(y)
    return cases, np.array(labels)


@pytest.mark.parametrize("reads_block, expect_zero", [(False, True), (True, False)])
def test_collection_check_measures_what_blanking_the_block_does(monkeypatch, reads_block, expect_zero):
    """A model that reads the block's missingness moves P(cancer) when it is blanked; one that does not, never."""
    cases, labels = _pad_cases()

    def fake_logits(entry, cs, *a, **k):
        z = np.zeros((len(cs), 2))
        if reads_block:  # "blank means benign"
            z[:, 1] = [2.0 if c.metadata.get("smoke") is not None else -2.0 for c in cs]
        return {("metadata",): z}

    monkeypatch.setattr("training.evaluate.subset_logits", fake_logits)
    schema = SimpleNamespace(missingness_block=("smoke",), cancer_classes=("C",))
    entry = SimpleNamespace(name="e", model=SimpleNamespace(modalities=["metadata"]),
                            card={"classes": ["B", "C"]}, calibration={"temperature": 1.0})
    z = fake_logits(None, cases)[("metadata",)]
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    extras = {"cases": cases, "labels": labels, "groups": [c.patient_id for c in cases],
              "scored": {"M": (probs, probs.argmax(1))}}
    check = cmp.collection_check(entry, schema, extras, n_boot=200)
    assert check["n_complete"] == sum(c.metadata["smoke"] is not None for c in cases) < len(cases)
    if expect_zero:
        assert check["mean_shift_p_cancer"] == 0.0 and check["max_abs_shift_p_cancer"] == 0.0
    else:
        assert check["mean_shift_p_cancer"] < -0.5  # blanking pushes every complete case towards benign
    assert set(check["complete_cases"]) >= {"balanced_accuracy", "macro_auc"}
    assert all(c.metadata["smoke"] is not None or i % 3 for i, c in enumerate(cases))  # originals untouched


def test_no_block_no_check():
    schema = SimpleNamespace(missingness_block=(), cancer_classes=())
    entry = SimpleNamespace(model=SimpleNamespace(modalities=["metadata"]))
    assert cmp.collection_check(entry, schema, {}) is None


def test_anchor_learns_a_field_that_decides_the_label_and_scores_on_the_shared_split(tmp_path):
    """The logistic-regression anchor of training.results: fitted on the training split only."""
    from fixtures.official_layouts import make_ham10000, write_csv

    from training.anchor import anchor

    rows = make_ham10000(tmp_path, n=120)
    for i, r in enumerate(rows):  # the site alone decides the diagnosis, per lesion
        r["localization"] = ("back", "face")[(i // 2) % 2]
        r["dx"] = {"back": "nv", "face": "mel"}[r["localization"]]
    write_csv(tmp_path / "HAM10000_metadata.csv", list(rows[0]), [list(r.values()) for r in rows])
    out = anchor("ham10000", tmp_path)
    assert out["fields"] == ["age", "sex", "localization"]  # dx_type leaks the label: never an input
    for part in ("val", "test"):
        b = out[part]["balanced_accuracy"]
        assert b["estimate"] == 1.0 and b["ci"][0] <= b["estimate"] <= b["ci"][1]
    assert "test_complete" not in out  # HAM10000 declares no collection-confounded block
    assert sum(out["split"]["sizes"].values()) == 120
