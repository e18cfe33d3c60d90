"""ECE, reliability bins and temperature scaling."""
from __future__ import annotations

import numpy as np
import pytest

from skinui import calibration


def test_ece_hand_computed():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.65, 0.35], [0.65, 0.35]])
    labels = np.array([0, 1, 0, 0])
    # bin of 0.9: accuracy 1/2 (gap 0.4); bin of 0.65: accuracy 1 (gap 0.35); equal counts
    assert calibration.ece(probs, labels) == pytest.approx((0.4 + 0.35) / 2)
    bins = calibration.reliability_bins(probs, labels)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4
    filled = [b for b in bins if b["count"]]
    assert [b["accuracy"] for b in filled] == [1.0, 0.5]
    assert all(b["lower"] < b["confidence"] <= b["upper"] for b in filled)


def test_perfect_calibration_has_zero_ece():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert calibration.ece(probs, np.array([0, 1])) == 0.0


def _overconfident(n=3000, k=5, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    true_p = calibration.softmax(z)
    labels = np.array([rng.choice(k, p=p) for p in true_p])
    return z * scale, labels  # logits 3x too sharp: over-confident


def test_temperature_fitted_on_overconfident_logits_lowers_ece():
    logits, labels = _overconfident()
    t = calibration.fit_temperature(logits[:1500], labels[:1500])
    assert 2.4 < t < 3.6  # recovers the sharpening factor
    before = calibration.ece(calibration.softmax(logits[1500:]), labels[1500:])
    after = calibration.ece(calibration.softmax(logits[1500:], t), labels[1500:])
    assert after < before / 2 and after < 0.05
    # temperature never changes the predicted class
    assert (calibration.softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_calibration_summary_block():
    logits, labels = _overconfident(n=600, seed=1)
    s = calibration.calibration_summary(logits[:300], labels[:300], logits[300:], labels[300:])
    assert set(s) >= {"temperature", "ece", "ece_calibrated", "bins", "bins_calibrated"}
    assert s["ece_calibrated"] < s["ece"]
    assert sum(b["count"] for b in s["bins"]) == 300


def _balanced_world(n: int = 4000, seed: int = 0):
    """Logits of a model trained on balanced classes (log-likelihoods), labels drawn with a skewed prior."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.7, 0.2, 0.07, 0.03])
    labels = rng.choice(4, size=n, p=prior)
    means = np.eye(4) * 2.0
    x = means[labels] + rng.normal(size=(n, 4))
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)  # exact log p(x | y) up to a constant
    return logits, labels, np.log(prior)


def test_prior_calibration_undoes_balanced_training():
    logits, labels, log_prior = _balanced_world()
    t, beta = calibration.fit_prior_calibration(logits[:2000], labels[:2000], log_prior)
    assert 0.8 < beta < 1.2 and 0.8 < t < 1.25  # the truth is T = 1, beta = 1
    s = calibration.calibration_summary(logits[:2000], labels[:2000], logits[2000:], labels[2000:], log_prior=log_prior)
    temperature_only = calibration.calibration_summary(logits[:2000], labels[:2000], logits[2000:], labels[2000:])
    assert s["ece_calibrated"] < 0.03
    assert s["ece_calibrated"] < temperature_only["ece_calibrated"]

    def nll(z):  # T alone cannot undo a prior shift: the log-loss shows it plainly
        p = calibration.softmax(z)
        return -np.log(p[np.arange(len(p)), labels[2000:]]).mean()

    t_only = calibration.fit_temperature(logits[:2000], labels[:2000])
    assert nll(calibration.calibrated_logits(logits[2000:], s)) < nll(logits[2000:] / t_only) - 0.05
    assert s["decision"] == "prevalence_adjusted" and 0.0 <= s["decision_prior_weight"] <= 1.0


def test_uninformative_prior_leaves_beta_at_zero():
    """Balanced training data: log_prior is (nearly) constant, so no prevalence term is fitted."""
    logits, labels, _ = _balanced_world(seed=2)
    near_uniform = np.log(np.array([176.0, 177.0, 176.0, 177.0]) / 706.0)
    t, beta = calibration.fit_prior_calibration(logits[:2000], labels[:2000], near_uniform)
    assert beta == 0.0 and t == pytest.approx(calibration.fit_temperature(logits[:2000], labels[:2000]))
    skewed = np.log(np.array([0.7, 0.2, 0.07, 0.03]))
    assert calibration.fit_prior_calibration(logits[:2000], labels[:2000], skewed)[1] > 0.5  # informative: fitted
    # trained on the natural prevalence: temperature only, the prevalence still drives the decision
    s = calibration.calibration_summary(logits[:2000], labels[:2000], logits[2000:], labels[2000:],
                                        log_prior=skewed, rebalanced=False)
    assert s["prior_weight"] == 0.0 and s["decision"] == "prevalence_adjusted" and s["log_prior"]


def test_prevalence_adjusted_decision_beats_argmax_on_balanced_accuracy():
    logits, labels, log_prior = _balanced_world(seed=1)
    s = calibration.calibration_summary(logits[:2000], labels[:2000], logits[2000:], labels[2000:], log_prior=log_prior)
    cal_z = calibration.calibrated_logits(logits[2000:], s)
    y = labels[2000:]
    from skinui.metrics import balanced_accuracy as bacc
    assert bacc(y, calibration.decide(logits[2000:], s)) > bacc(y, cal_z.argmax(1)) + 0.05
    # without a prevalence in the block the rule is plain argmax
    plain = {"temperature": 2.0}
    assert (calibration.decide(logits, plain) == logits.argmax(1)).all()


def test_ece_floor_is_what_perfect_calibration_measures_on_few_cases():
    from skinui.calibration import ece, ece_floor

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(6, 0.5), size=70)
    floor = ece_floor(probs)
    # labels drawn from the probabilities: calibrated by construction, yet ECE is far from 0 on 70 cases
    seen = [ece(probs, (rng.random((70, 1)) > probs.cumsum(1)).sum(1).clip(max=5)) for _ in range(300)]
    assert abs(np.mean(seen) - floor) < 0.01 and floor > 0.07
    assert ece_floor(rng.dirichlet(np.full(6, 0.5), size=5000)) < floor / 3  # shrinks with more cases
    overconfident = np.eye(6)[rng.integers(0, 6, 70)] * 0.9 + 0.1 / 6  # 92% confident, right 1 time in 6
    assert ece(overconfident, rng.integers(0, 6, 70)) > ece_floor(overconfident) + 0.5


def test_decision_weight_is_tuned_only_when_tuning_wins_on_held_out_halves():
    logits, labels, log_prior = _balanced_world(seed=3)
    z = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    # z already balanced (log p(x|y) normalised): subtracting the prior again hurts, tau = 0 is right
    helps = calibration.check_decision_weight(z[:1500], labels[:1500], log_prior)
    assert helps["tune"] and helps["mean_gain"] > 0.01 and helps["share_losing"] <= 0.2
    # z is the natural posterior (balanced likelihood + log prior): tau = 1 is the Bayes rule, tuning
    # can only chase noise, so it is not adopted
    natural = z + log_prior
    noise = calibration.check_decision_weight(natural[:1500], labels[:1500], log_prior)
    assert not noise["tune"] and noise["mean_gain"] <= 0.005
    # the summary follows the check: tau = 1 unless tuning generalised
    s = calibration.calibration_summary(natural[:1500], labels[:1500], natural[1500:], labels[1500:],
                                        log_prior=log_prior, rebalanced=False)
    assert s["decision_prior_weight"] == 1.0 and s["decision_weight_check"]["tune"] is False
