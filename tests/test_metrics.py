"""skinui.metrics against hand-computed values, and proof that the numbers come from the ISIC scorer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from skinui import metrics

CLASSES = ["a", "b", "c"]
LABELS = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # a -> a
        [0.3, 0.6, 0.1],  # a -> b
        [0.2, 0.7, 0.1],  # b -> b
        [0.5, 0.3, 0.2],  # b -> a
        [0.1, 0.2, 0.7],  # c -> c
        [0.2, 0.2, 0.6],  # c -> c
    ]
)


def test_hand_computed_example():
    r = metrics.classification_report(LABELS, PROBS, CLASSES)
    assert r["n_cases"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert r["macro_f1"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    a = r["per_class"]["a"]
    # one-vs-rest for "a": TP 1, FN 1, FP 1, TN 3
    assert a["sensitivity"] == pytest.approx(0.5)
    assert a["specificity"] == pytest.approx(0.75)
    assert a["ppv"] == pytest.approx(0.5)
    assert a["npv"] == pytest.approx(0.75)
    assert a["dice"] == pytest.approx(0.5)
    assert a["accuracy"] == pytest.approx(4 / 6)
    # positives score 0.7 and 0.3 against negatives 0.2, 0.5, 0.1, 0.2: 7 of 8 pairs ranked right
    assert a["auc"] == pytest.approx(7 / 8)
    # ranking P N P N N N: precision 1 at the first hit, 2/3 at the second
    assert a["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    c = r["per_class"]["c"]
    assert c["auc"] == pytest.approx(1.0) and c["sensitivity"] == 1.0 and c["dice"] == 1.0
    # the scorer integrates the ROC over the part of the curve where sensitivity >= 0.8:
    # a perfect ranking keeps all of it, an imperfect one loses the low-FPR part
    assert c["auc_sens_80"] == pytest.approx(1.0)
    assert 0.0 <= a["auc_sens_80"] < a["auc"]
    assert r["macro"]["auc"] == pytest.approx((7 / 8 + 7 / 8 + 1.0) / 3)
    assert r["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    json.dumps(r)  # JSON-ready


def test_numbers_come_from_isic_challenge_scoring(monkeypatch):
    import isic_challenge_scoring.metrics as isic

    calls = []

    def fake_auc(truth, pred, weights):
        calls.append(len(truth))
        return 0.123

    monkeypatch.setattr(isic, "auc", fake_auc)
    monkeypatch.setattr(isic, "binary_npv", lambda cm: 0.456)
    r = metrics.classification_report(LABELS, PROBS, CLASSES)
    assert calls == [6, 6, 6]
    assert all(row["auc"] == 0.123 and row["npv"] == 0.456 for row in r["per_class"].values())


def test_absent_class_has_no_auc_and_is_skipped_in_macro():
    labels = np.array([0, 0, 1, 1])
    probs = PROBS[:4]
    r = metrics.classification_report(labels, probs, CLASSES)
    assert r["per_class"]["c"]["auc"] is None and r["per_class"]["c"]["ap"] is None
    assert r["macro"]["auc"] == pytest.approx(np.mean([r["per_class"]["a"]["auc"], r["per_class"]["b"]["auc"]]))
    assert r["balanced_accuracy"] == pytest.approx(0.5)


def test_threshold_decision_uses_probability_above_half():
    r = metrics.classification_report(LABELS, PROBS, CLASSES, decision="threshold")
    # "a" is called only for the 0.7 case (0.5 is not > 0.5): TP 1, FP 0
    assert r["per_class"]["a"]["ppv"] == 1.0 and r["per_class"]["a"]["sensitivity"] == 0.5


def test_quick_scores_match_full_report():
    full = metrics.classification_report(LABELS, PROBS, CLASSES)
    quick = metrics.quick_scores(LABELS, PROBS, 3)
    assert quick["balanced_accuracy"] == pytest.approx(full["balanced_accuracy"])
    assert quick["macro_f1"] == pytest.approx(full["macro_f1"])
    assert quick["macro_auc"] == pytest.approx(full["macro"]["auc"])


def test_roc_curves_and_bad_shapes():
    curves = metrics.roc_curves(LABELS, PROBS, CLASSES)
    assert set(curves) == set(CLASSES)
    assert curves["c"]["tpr"][-1] == 1.0 and curves["c"]["fpr"][0] == 0.0
    with pytest.raises(ValueError):
        metrics.classification_report(LABELS, PROBS[:, :2], CLASSES)
    with pytest.raises(ValueError):
        metrics.classification_report(np.array([0, 5, 1, 1, 2, 2]), PROBS, CLASSES)
