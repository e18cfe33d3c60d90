"""skinui.stats: group-bootstrap intervals checked against the reference metrics, duplication and known distributions."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import sklearn.metrics

from skinui import metrics, stats


def _random_case(n: int, k: int, seed: int, n_groups: int | None = None):
    """Random labels, tie-heavy probabilities (rounded to 0.1), their argmax and group ids."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n) + 0.3 * np.eye(k)[labels]  # better than chance, so AUC is not ~0.5
    probs = np.round(probs / probs.sum(axis=1, keepdims=True), 1)
    groups = rng.integers(0, n_groups or n, n)
    return labels, probs, probs.argmax(axis=1), groups


def _sklearn_macro_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    aucs = [sklearn.metrics.roc_auc_score(labels == c, probs[:, c])
            for c in range(probs.shape[1]) if 0 < (labels == c).sum() < labels.size]
    return float(np.mean(aucs))


def _correct_with(labels: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Two-class decisions that are right exactly where `correct` is True."""
    return np.where(correct, labels, 1 - labels)


def _two_class_probs(predicted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Probabilities whose argmax is `predicted`, with a spread of confidences so AUC is informative."""
    top = rng.uniform(0.55, 0.95, predicted.size)
    probs = np.empty((predicted.size, 2))
    probs[np.arange(predicted.size), predicted] = top
    probs[np.arange(predicted.size), 1 - predicted] = 1 - top
    return probs


# ----------------------------------------------------------------------------- agreement with the references


def test_unit_weights_match_reference_metrics_and_isic_scorer():
    labels, probs, predicted, _ = _random_case(400, 5, seed=3)
    assert len(np.unique(probs)) < 12  # rounded: many ties, so the 1/2 tie rule matters
    ones = np.ones((1, labels.size))
    ba = stats.balanced_accuracy_w(labels, predicted, ones)
    auc = stats.macro_auc_w(labels, probs, ones)
    assert ba.shape == auc.shape == (1,)
    assert ba[0] == pytest.approx(metrics.balanced_accuracy(labels, predicted), abs=1e-12)
    assert auc[0] == pytest.approx(_sklearn_macro_auc(labels, probs), abs=1e-12)
    report = metrics.classification_report(labels, probs, list("abcde"), predicted=predicted)
    assert auc[0] == pytest.approx(report["macro"]["auc"], abs=1e-12)
    assert ba[0] == pytest.approx(report["balanced_accuracy"], abs=1e-12)


def test_unit_weights_skip_a_class_absent_from_labels():
    labels, probs, predicted, _ = _random_case(300, 4, seed=4)
    labels = np.where(labels == 3, 0, labels)  # class 3 never occurs: no AUC, no recall for it
    ones = np.ones((1, labels.size))
    assert stats.balanced_accuracy_w(labels, predicted, ones)[0] == pytest.approx(
        metrics.balanced_accuracy(labels, predicted), abs=1e-12)
    assert stats.macro_auc_w(labels, probs, ones)[0] == pytest.approx(_sklearn_macro_auc(labels, probs), abs=1e-12)
    report = metrics.classification_report(labels, probs, list("abcd"), predicted=predicted)
    assert stats.macro_auc_w(labels, probs, ones)[0] == pytest.approx(report["macro"]["auc"], abs=1e-12)


def test_weighted_equals_duplicated():
    labels, probs, predicted, groups = _random_case(120, 4, seed=5, n_groups=40)
    w = stats.group_weights(groups, n_boot=25, seed=1)
    ba = stats.balanced_accuracy_w(labels, predicted, w)
    auc = stats.macro_auc_w(labels, probs, w)
    for b in range(w.shape[0]):
        idx = np.repeat(np.arange(labels.size), w[b].astype(int))  # each case repeated weight-many times
        assert ba[b] == pytest.approx(metrics.balanced_accuracy(labels[idx], predicted[idx]), abs=1e-12)
        assert auc[b] == pytest.approx(_sklearn_macro_auc(labels[idx], probs[idx]), abs=1e-12)
    assert np.ptp(ba) > 0 and np.ptp(auc) > 0  # the replicates really differ


def test_non_integer_weights_match_sklearn_sample_weight():
    labels, probs, _, _ = _random_case(200, 3, seed=6)
    w = np.random.default_rng(0).uniform(0, 2, (3, labels.size))
    auc = stats.macro_auc_w(labels, probs, w)
    for b in range(3):
        expected = np.mean([sklearn.metrics.roc_auc_score(labels == c, probs[:, c], sample_weight=w[b])
                            for c in range(3)])
        assert auc[b] == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- group weights


def test_group_weights_resample_whole_groups():
    groups = ["p1", "p1", "p2", ("lesion", 7), "p3", "p3", "p3", 42]  # any hashable id
    w = stats.group_weights(groups, n_boot=500, seed=0)
    assert w.shape == (500, 8) and w.dtype == np.float64
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 4] == w[:, 5]) and np.all(w[:, 5] == w[:, 6])
    per_group = w[:, [0, 2, 3, 4, 7]]  # one column per distinct group
    assert np.all(per_group.sum(axis=1) == 5)  # G draws per replicate
    assert np.all(per_group == np.round(per_group)) and per_group.min() >= 0
    assert per_group.mean() == pytest.approx(1.0, abs=0.05)  # each group drawn once on average
    assert per_group.max() >= 3  # with replacement


def test_determinism_for_a_seed_and_different_seeds_differ():
    labels, probs, predicted, groups = _random_case(200, 3, seed=7, n_groups=60)
    assert np.array_equal(stats.group_weights(groups, 100, seed=3), stats.group_weights(groups, 100, seed=3))
    assert not np.array_equal(stats.group_weights(groups, 100, seed=3), stats.group_weights(groups, 100, seed=4))
    r1 = stats.bootstrap_scores(labels, probs, predicted, groups, n_boot=300, seed=11)
    r2 = stats.bootstrap_scores(labels, probs, predicted, groups, n_boot=300, seed=11)
    r3 = stats.bootstrap_scores(labels, probs, predicted, groups, n_boot=300, seed=12)
    assert r1 == r2
    assert r1["balanced_accuracy"]["ci"] != r3["balanced_accuracy"]["ci"]
    assert r1["balanced_accuracy"]["estimate"] == r3["balanced_accuracy"]["estimate"]  # full sample, seed-free


# ----------------------------------------------------------------------------- intervals


def test_bootstrap_scores_report_is_json_ready_and_consistent():
    labels, probs, predicted, groups = _random_case(300, 4, seed=8, n_groups=100)
    r = stats.bootstrap_scores(labels, probs, predicted, groups, n_boot=400, seed=0, level=0.9)
    assert json.loads(json.dumps(r, allow_nan=False)) == r
    assert (r["n_boot"], r["n_groups"], r["n_cases"], r["level"]) == (400, len(np.unique(groups)), 300, 0.9)
    assert r["method"] == "percentile bootstrap over groups"
    report = metrics.classification_report(labels, probs, list("abcd"), predicted=predicted)
    assert r["balanced_accuracy"]["estimate"] == pytest.approx(report["balanced_accuracy"], abs=1e-12)
    assert r["macro_auc"]["estimate"] == pytest.approx(report["macro"]["auc"], abs=1e-12)
    for key in ("balanced_accuracy", "macro_auc"):
        lo, hi = r[key]["ci"]
        assert lo < r[key]["estimate"] < hi and hi - lo < 0.2


def test_percentile_interval_ignores_nan():
    values = np.r_[np.arange(1, 101, dtype=float), [np.nan] * 50]
    lo, hi = stats.percentile_interval(values, level=0.9)
    assert (lo, hi) == pytest.approx(np.percentile(np.arange(1, 101), [5, 95]))
    assert all(math.isnan(v) for v in stats.percentile_interval([np.nan, np.nan]))
    with pytest.raises(ValueError):
        stats.percentile_interval(values, level=1.0)


def test_coverage_and_width_on_a_known_distribution():
    """Cases i.i.d. correct with p = 0.8, one case per group: a 95% interval should cover the truth ~95% of the time."""
    p, n0, n1, n_sets = 0.8, 100, 200, 200
    labels = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    n = labels.size
    # balanced accuracy = (recall_0 + recall_1) / 2, so its variance is (pq/n0 + pq/n1) / 4
    analytic_width = 2 * 1.96 * math.sqrt(p * (1 - p) * (1 / n0 + 1 / n1) / 4)
    rng = np.random.default_rng(2024)
    covered, widths = 0, []
    for s in range(n_sets):
        predicted = _correct_with(labels, rng.random(n) < p)
        w = stats.group_weights(np.arange(n), n_boot=1000, seed=s)
        lo, hi = stats.percentile_interval(stats.balanced_accuracy_w(labels, predicted, w))
        covered += lo <= p <= hi
        widths.append(hi - lo)
    assert 0.88 <= covered / n_sets <= 0.99
    assert np.mean(widths) == pytest.approx(analytic_width, rel=0.25)


def test_clustered_groups_widen_the_interval():
    """Ten images of a lesion that are all right or all wrong are one piece of evidence, not ten."""
    rng = np.random.default_rng(9)
    n_groups, size = 60, 10
    groups = np.repeat(np.arange(n_groups), size)
    labels = rng.integers(0, 2, groups.size)
    predicted = _correct_with(labels, (rng.random(n_groups) < 0.8)[groups])
    probs = _two_class_probs(predicted, rng)
    by_group = stats.bootstrap_scores(labels, probs, predicted, groups, n_boot=1000, seed=0)
    by_case = stats.bootstrap_scores(labels, probs, predicted, np.arange(groups.size), n_boot=1000, seed=0)
    assert by_group["n_groups"] == n_groups and by_case["n_groups"] == groups.size
    width = {k: r["balanced_accuracy"]["ci"][1] - r["balanced_accuracy"]["ci"][0]
             for k, r in (("group", by_group), ("case", by_case))}
    assert width["group"] > 2 * width["case"]


def test_replicate_missing_a_class_is_not_nan():
    """A rare class seen in one lesion only: replicates without that lesion score the classes they have."""
    labels, probs, predicted, groups = _random_case(150, 3, seed=10, n_groups=30)
    labels = np.where(labels == 2, 0, labels)
    rare = np.flatnonzero(groups == groups[0])[:2]
    labels[rare] = 2
    w = stats.group_weights(groups, n_boot=300, seed=0)
    ba = stats.balanced_accuracy_w(labels, predicted, w)
    auc = stats.macro_auc_w(labels, probs, w)
    missing = np.flatnonzero(w[:, rare[0]] == 0)
    assert 50 < missing.size < 250  # about (1 - 1/30)^30 ~ 36% of replicates lack the rare class
    assert not np.isnan(ba).any() and not np.isnan(auc).any()
    for b in missing[:10]:
        idx = np.repeat(np.arange(labels.size), w[b].astype(int))
        assert not (labels[idx] == 2).any()
        two = [sklearn.metrics.roc_auc_score(labels[idx] == c, probs[idx, c]) for c in (0, 1)]
        assert auc[b] == pytest.approx(np.mean(two), abs=1e-12)  # the absent class is skipped, not scored 0 or 1
        assert ba[b] == pytest.approx(metrics.balanced_accuracy(labels[idx], predicted[idx]), abs=1e-12)


def test_no_qualifying_class_gives_nan_auc_but_finite_balanced_accuracy():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    predicted = probs.argmax(axis=1)
    w = np.array([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    auc = stats.macro_auc_w(labels, probs, w)
    ba = stats.balanced_accuracy_w(labels, predicted, w)
    assert math.isnan(auc[0]) and ba[0] == pytest.approx(1 / 3)  # only class 0 present: 1 of 3 weight right
    assert math.isnan(auc[1]) and math.isnan(ba[1])  # an empty replicate has nothing to score
    assert auc[2] == pytest.approx(1.0) and ba[2] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- paired comparisons


def test_identical_models_differ_by_exactly_zero():
    labels, probs, predicted, groups = _random_case(200, 3, seed=12, n_groups=70)
    d = stats.paired_difference(labels, groups, (probs, predicted), (probs.copy(), predicted.copy()), n_boot=300)
    for key in ("balanced_accuracy", "macro_auc"):
        assert d[key]["estimate"] == 0 and d[key]["ci"] == [0.0, 0.0]
        assert d[key]["excludes_zero"] is False and d[key]["p_a_better"] == 0.0
    assert stats.indistinguishable(d) and stats.indistinguishable(d, "macro_auc")
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["method"] == "paired percentile bootstrap over groups" and d["n_groups"] == len(np.unique(groups))


def test_model_right_on_a_superset_is_clearly_better():
    rng = np.random.default_rng(13)
    n = 300
    labels = rng.integers(0, 2, n)
    right_b = rng.random(n) < 0.7
    right_a = right_b | (rng.random(n) < 0.5)  # a also fixes about half of b's mistakes
    pred_a, pred_b = _correct_with(labels, right_a), _correct_with(labels, right_b)
    d = stats.paired_difference(labels, np.arange(n), (_two_class_probs(pred_a, rng), pred_a),
                                (_two_class_probs(pred_b, rng), pred_b), n_boot=1000, seed=0)
    ba = d["balanced_accuracy"]
    assert ba["estimate"] > 0.1
    assert ba["excludes_zero"] is True and ba["ci"][0] > 0 and ba["p_a_better"] > 0.975
    assert not stats.indistinguishable(d)
    # the reverse comparison is its mirror image
    r = stats.paired_difference(labels, np.arange(n), (_two_class_probs(pred_b, rng), pred_b),
                                (_two_class_probs(pred_a, rng), pred_a), n_boot=1000, seed=0)
    assert r["balanced_accuracy"]["estimate"] == pytest.approx(-ba["estimate"])
    assert r["balanced_accuracy"]["ci"] == pytest.approx([-ba["ci"][1], -ba["ci"][0]])


def test_pairing_narrows_the_interval_for_correlated_models():
    """Models that share most mistakes: the paired interval is far narrower than unpaired intervals would suggest."""
    rng = np.random.default_rng(14)
    n = 400
    labels = rng.integers(0, 2, n)
    right_b = rng.random(n) < 0.75
    right_a = right_b.copy()
    flip = rng.choice(n, 20, replace=False)
    right_a[flip] = ~right_a[flip]
    pred_a, pred_b = _correct_with(labels, right_a), _correct_with(labels, right_b)
    probs_a, probs_b = _two_class_probs(pred_a, rng), _two_class_probs(pred_b, rng)
    d = stats.paired_difference(labels, np.arange(n), (probs_a, pred_a), (probs_b, pred_b), n_boot=1000)
    single = stats.bootstrap_scores(labels, probs_b, pred_b, np.arange(n), n_boot=1000)
    paired_width = np.diff(d["balanced_accuracy"]["ci"])[0]
    single_width = np.diff(single["balanced_accuracy"]["ci"])[0]
    assert paired_width < 0.6 * single_width


def test_equally_good_independent_models_are_usually_indistinguishable():
    rng = np.random.default_rng(15)
    n, n_sets, contains = 300, 40, 0
    labels = rng.integers(0, 2, n)
    for s in range(n_sets):
        pred_a = _correct_with(labels, rng.random(n) < 0.8)
        pred_b = _correct_with(labels, rng.random(n) < 0.8)
        d = stats.paired_difference(labels, np.arange(n), (_two_class_probs(pred_a, rng), pred_a),
                                    (_two_class_probs(pred_b, rng), pred_b), n_boot=500, seed=s)
        contains += stats.indistinguishable(d)
        assert 0 < d["balanced_accuracy"]["p_a_better"] < 1
    assert contains / n_sets >= 0.85  # nominally 95%
