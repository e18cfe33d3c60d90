"""Trust features: conformal sets, the out-of-distribution detector and the uncertainty measures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from skinui.trust import conformal, ood, uncertainty

CLASSES = ["a", "b", "c", "d"]


def calibrated_cases(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them: a perfectly calibrated model."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(len(CLASSES), 0.6), size=n)
    labels = np.array([rng.choice(len(CLASSES), p=p) for p in probs])
    return probs, labels


def test_quantile_is_the_finite_sample_rank_and_infinite_when_too_few():
    scores = np.arange(1, 10) / 10  # 9 scores: rank ceil(10 * 0.9) = 9, the largest
    assert conformal.quantile(scores, 0.1) == pytest.approx(0.9)
    assert conformal.quantile(scores[:8], 0.1) == float("inf")  # 8 cases cannot bound 90%
    assert conformal.quantile(np.arange(100) / 100, 0.1) == pytest.approx(0.90)  # rank 91 of 100


@pytest.mark.parametrize("score,mode", conformal.VARIANTS)
def test_sets_reach_their_coverage_on_new_cases(score, mode):
    hits, sizes, per_class = [], [], []
    for seed in range(30):
        cal_p, cal_y = calibrated_cases(300, seed)
        new_p, new_y = calibrated_cases(300, 1000 + seed)
        ev = conformal.evaluate(new_p, new_y, conformal.fit(cal_p, cal_y, CLASSES, score, mode, 0.1), CLASSES)
        hits.append(ev["coverage"])
        sizes.append(ev["mean_size"])
        per_class.append([ev["per_class"][c]["coverage"] for c in CLASSES])
    assert np.mean(hits) >= 0.895  # guarantee: >= 0.9 in expectation (30 x 300 cases: sd ~0.003)
    if mode == "class":  # Mondrian: each class covered, not only the average case (sd per class ~0.006)
        assert np.mean(per_class, axis=0).min() >= 0.885
    assert np.mean(sizes) < len(CLASSES)  # and the sets are not trivially everything


def test_sets_always_hold_the_decided_class_and_are_ordered_by_probability():
    block = {"score": "lac", "mode": "marginal", "alpha": 0.1, "threshold": 0.0}  # excludes everything
    probs = np.array([[0.1, 0.6, 0.2, 0.1]])
    member = conformal.sets(probs, block, CLASSES, decided=np.array([2]))
    assert member[0].tolist() == [False, False, True, False]
    wide = conformal.sets(probs, {**block, "threshold": 0.85}, CLASSES)[0]
    assert conformal.ordered_set(probs[0], wide, CLASSES) == ["b", "c"]


def test_a_class_without_enough_validation_cases_is_always_in_its_set():
    probs, labels = calibrated_cases(400, 0)
    labels[labels == 3] = 0
    labels[:5] = 3  # five cases of d: too few for a 90% bound
    block = conformal.fit(probs, labels, CLASSES, "aps", "class", 0.1)
    assert block["thresholds"]["d"] is None and block["thresholds"]["a"] is not None
    assert conformal.sets(probs, block, CLASSES)[:, 3].all()


def test_aps_score_is_the_mass_at_least_as_probable():
    s = conformal.class_scores("aps", np.array([[0.5, 0.3, 0.2]]))
    assert s[0].tolist() == pytest.approx([0.5, 0.8, 1.0])


def test_choice_takes_the_strongest_guarantee_within_one_class_of_the_marginal_size():
    probs, labels = calibrated_cases(400, 3)
    score, mode, tried = conformal.choose(probs, labels, CLASSES, repeats=10)
    assert set(tried) == {f"{s}/{m}" for s, m in conformal.VARIANTS}
    size = {m: min(v["size"] for k, v in tried.items() if k.endswith("/" + m)) for m in conformal.PREFERENCE}
    expected = next(m for m in conformal.PREFERENCE if size[m] <= size["marginal"] + 1.0 or m == "marginal")
    assert mode == expected and tried[f"{score}/{mode}"]["size"] == size[mode]
    labels[labels == 3] = 0
    labels[:4] = 3  # a class too rare for its own bound: class-conditional sets would always hold it
    _, mode, tried = conformal.choose(probs, labels, CLASSES, repeats=10)
    assert tried["lac/class"]["size"] > tried["lac/hybrid"]["size"]


def test_hybrid_gives_rare_classes_the_marginal_threshold():
    probs, labels = calibrated_cases(400, 0)
    labels[labels == 3] = 0
    labels[:5] = 3
    hybrid = conformal.fit(probs, labels, CLASSES, "lac", "hybrid", 0.1)
    marginal = conformal.fit(probs, labels, CLASSES, "lac", "marginal", 0.1)
    own = conformal.fit(probs, labels, CLASSES, "lac", "class", 0.1)
    assert hybrid["fallback"] == ["d"] and hybrid["thresholds"]["d"] == marginal["threshold"]
    assert hybrid["thresholds"]["a"] == own["thresholds"]["a"]


def gaussian_clusters(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.eye(3, 40) * 6
    return centres[labels] + rng.normal(0, 1, (n, 40)) + shift, labels


def test_detector_scores_far_inputs_higher_and_keeps_95_percent_of_validation():
    x, y = gaussian_clusters(600, 0)
    det = ood.fit(x, y, k=8)
    val, _ = gaussian_clusters(400, 1)
    cut = ood.threshold(det.score(val))
    test, _ = gaussian_clusters(400, 2)
    far, _ = gaussian_clusters(200, 3, shift=3.0)
    assert 0.90 <= (det.score(test) <= cut).mean() <= 0.99
    assert ood.auroc(det.score(test), det.score(far)) > 0.95
    assert (det.score(far) > cut).mean() > 0.8


def test_detector_survives_its_file_format():
    x, y = gaussian_clusters(200, 0)
    det = ood.fit(x, y, k=8)
    again = ood.Detector.from_tensors(det.tensors())
    assert np.allclose(again.score(x[:20]), det.score(x[:20]), rtol=1e-4)


def test_auroc_known_values():
    assert ood.auroc(np.array([0, 1, 2]), np.array([3, 4])) == 1.0
    assert ood.auroc(np.array([3, 4]), np.array([0, 1, 2])) == 0.0
    assert ood.auroc(np.ones(5), np.ones(3)) == 0.5


def test_tta_spread_and_branch_disagreement_bounds():
    same = np.tile(np.array([[[0.7, 0.2, 0.1]]]), (4, 1, 1))
    assert uncertainty.tta_spread(same)[0] == pytest.approx(0.0)
    moved = same.copy()
    moved[1, 0] = [0.1, 0.2, 0.7]
    assert uncertainty.tta_spread(moved)[0] > 0.2
    assert uncertainty.branch_disagreement(np.array([[[1.0, 0.0]], [[0.0, 1.0]]]))[0] == pytest.approx(1.0)
    assert uncertainty.branch_disagreement(np.array([[[0.6, 0.4]], [[0.6, 0.4]]]))[0] == pytest.approx(0.0)


def test_views_flip_the_right_axes():
    x = np.arange(6).reshape(1, 2, 3)
    assert np.array_equal(np.flip(x, uncertainty.VIEWS["mirrored"]), x[:, :, ::-1])
    assert np.array_equal(np.flip(x, uncertainty.VIEWS["turned"]), x[:, ::-1, ::-1])


def test_rank_among_validation_quantiles():
    q = uncertainty.reference(np.linspace(0, 1, 101))
    assert uncertainty.rank_among(0.5, q) == pytest.approx(0.5, abs=0.01)
    assert uncertainty.rank_among(2.0, q) == 1.0
    assert uncertainty.rank_among(-1.0, q) == 0.0


# ---- through a shipped entry: what the app, the API and the CLI return ------------------------
@pytest.fixture(scope="module")
def synth_entry():
    from skinui.zoo import load_entry

    return load_entry("synthderm_jf_concat")


def synth_case(i: int = 0):
    from skinui.cases import Case
    from skinui.synth.generate import plan, render

    r = render(plan(12, 123)[i], 123, 128)  # a fresh SynthDerm case, never seen in training
    return Case("fresh", r.images["dermoscopic"], r.images["clinical"], {})


def cat_case():
    from skimage import data

    from skinui.cases import Case

    return Case("cat", dermoscopic=data.chelsea(), clinical=data.chelsea())


def test_a_cat_is_flagged_and_a_fresh_lesion_is_not(synth_entry):
    cat = synth_entry.predict([cat_case()])[0]
    assert cat.unusual and all(v["unusual"] for v in cat.unusual.values())
    assert any("does not look like the images" in w for w in cat.warnings)
    fresh = synth_entry.predict([synth_case(i) for i in range(6)])
    assert sum(v["unusual"] for p in fresh for v in p.unusual.values()) <= 1  # ~5% flagged by design
    for p in fresh:  # the sentence appears exactly when an image is flagged
        flagged = sum(v["unusual"] for v in p.unusual.values())
        assert sum("does not look like" in w for w in p.warnings) == flagged


def test_every_prediction_carries_its_set_and_the_set_holds_the_decision(synth_entry):
    for p in synth_entry.predict([synth_case(i) for i in range(4)]):
        assert p.prediction in p.prediction_set
        assert p.set_coverage == pytest.approx(1 - synth_entry.card["conformal"]["alpha"])
        probs = [p.probabilities[c] for c in p.prediction_set]
        assert probs == sorted(probs, reverse=True)


def test_tta_spread_is_measured_only_when_asked_and_ranked(synth_entry):
    plain = synth_entry.predict([synth_case()])[0]
    assert "test-time-augmentation spread" not in (plain.uncertainty or {})
    tta = synth_entry.predict([synth_case()], tta=True)[0]
    spread = tta.uncertainty["test-time-augmentation spread"]
    assert 0 <= spread["value"] <= 1 and 0 <= spread["rank"] <= 1
    assert tta.probabilities == plain.probabilities  # the views inform, they do not change the answer


def test_averaged_views_predict_from_the_mean_over_the_flipped_views(synth_entry):
    """#17's test-time-augmentation option: probabilities, decision and confidence from the view mean."""
    import numpy as np
    import torch

    case = synth_case()
    enc = synth_entry.encode([case])
    views = enc.view_probabilities()
    assert views.shape[0] == 4 and np.allclose(views[0], enc.probabilities())  # the original view first
    p = synth_entry.predict([case], average_views=True)[0]
    # the views' mean probability, then the card's calibration (what an averaging entry's card is fitted on)
    raw_mean = enc.view_probabilities(calibrated=False).mean(0)
    mean = synth_entry.calibrated_probabilities(torch.from_numpy(np.log(raw_mean))).numpy()[0]
    assert not np.allclose(mean, views.mean(0)[0], atol=1e-4)  # not the mean of calibrated views
    assert [p.probabilities[c] for c in synth_entry.classes] == pytest.approx(mean.tolist(), abs=1e-6)
    assert p.prediction == synth_entry.classes[int(synth_entry.decide(mean[None])[0])]
    assert p.confidence == pytest.approx(p.probabilities[p.prediction])
    # the views really differ, so the option is not the single view under another name
    assert not np.allclose(views[1:], views[0])
    # the set's coverage was calibrated on single views: left out, and the user is told why
    assert p.prediction_set is None and any("calibrated on single views" in w for w in p.warnings)
    raw = synth_entry.predict([case], average_views=True, calibrated=False)[0]
    assert [raw.probabilities[c] for c in synth_entry.classes] == pytest.approx(
        enc.view_probabilities(calibrated=False).mean(0)[0].tolist())


def test_averaged_views_do_nothing_for_an_entry_without_pixels():
    from dataclasses import replace

    from skinui.synth.generate import plan, render
    from skinui.zoo import load_entry

    entry = load_entry("synthderm_jiadf_m")
    case = replace(synth_case(), metadata=render(plan(12, 123)[0], 123, 128).metadata)
    plain, averaged = entry.predict([case])[0], entry.predict([case], average_views=True)[0]
    assert averaged.probabilities == plain.probabilities and averaged.prediction_set == plain.prediction_set


def test_branch_disagreement_for_joint_individual_entries():
    from skinui.zoo import load_entry

    p = load_entry("synthderm_jiadf").predict([synth_case()])[0]
    assert 0 <= p.uncertainty["branch disagreement"]["value"] <= 1


def test_every_shipped_image_entry_has_a_detector_that_loads():
    from skinui.zoo import list_entries, load_entry

    for card in list_entries():
        if card.get("ood"):
            entry = load_entry(card["name"])
            assert set(entry.detectors) == set(card["ood"])
            break
    else:
        pytest.fail("no shipped entry carries an out-of-distribution detector")


def test_trust_sentences():
    from skinui.trust import words

    s = words.set_sentence(["nv", "mel"], 0.9, {"mel": "Melanoma"}, "marginal")
    assert "90%" in s and "**nv** or **mel** (Melanoma)" in s and "on average" in s
    assert "each diagnosis" in words.set_sentence(["nv"], 0.9, None, "class")
    quiet = words.uncertainty_sentences({"branch disagreement": {"value": 0.4, "rank": 0.97, "error_auroc_val": 0.3}})
    assert "no warning sign" in quiet[0] and "uncertain" not in quiet[0]
    assert words.set_sentence(None, None) == ""
    high = words.uncertainty_sentences({"branch disagreement": {"value": 0.4, "rank": 0.97}})[0]
    low = words.uncertainty_sentences({"branch disagreement": {"value": 0.01, "rank": 0.2}})[0]
    assert "disagree" in high and "uncertain" in high and "uncertain" not in low and "agree" in low
    assert words.unusual_sentence({"dermoscopic": {"unusual": True}}).startswith("⚠️ The dermoscopic")
    assert words.unusual_sentence({"dermoscopic": {"unusual": False}}) == ""


def test_batch_cli_writes_the_trust_columns(tmp_path):
    import csv

    from PIL import Image

    from skinui.__main__ import main

    fresh, cat = synth_case(), cat_case()
    for name, case in (("fresh", fresh), ("cat", cat)):
        Image.fromarray(case.dermoscopic).save(tmp_path / f"{name}-d.png")
        Image.fromarray(case.clinical).save(tmp_path / f"{name}-c.png")
    with (tmp_path / "cases.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "dermoscopic", "clinical"])
        w.writerows([[n, f"{n}-d.png", f"{n}-c.png"] for n in ("fresh", "cat")])
    out = tmp_path / "out.csv"
    assert main(["predict", "--entry", "synthderm_jf_concat", "--csv", str(tmp_path / "cases.csv"),
                 "--out", str(out), "--tta"]) == 0
    rows = {r["case_id"]: r for r in csv.DictReader(out.open())}
    assert rows["cat"]["unusual"] == "dermoscopic|clinical" and "does not look like" in rows["cat"]["warnings"]
    assert rows["fresh"]["prediction"] in rows["fresh"]["prediction_set"].split("|")
    assert 0 <= float(rows["fresh"]["tta_spread"]) <= 1 and rows["fresh"]["branch_disagreement"] == ""
    averaged = tmp_path / "averaged.csv"
    assert main(["predict", "--entry", "synthderm_jf_concat", "--csv", str(tmp_path / "cases.csv"),
                 "--out", str(averaged), "--average-views"]) == 0
    row = next(r for r in csv.DictReader(averaged.open()) if r["case_id"] == "fresh")
    assert row["prediction_set"] == "" and "calibrated on single views" in row["warnings"]
    assert row["prob_MEL"] != rows["fresh"]["prob_MEL"]  # the view mean, not the single view


def test_a_cat_sent_to_a_ham10000_entry_is_flagged():
    """The issue's own example: a cat photo to a HAM10000 entry used to get a confident diagnosis, silently."""
    from skimage import data

    from skinui.cases import Case
    from skinui.zoo import load_entry

    p = load_entry("ham10000_jf_weighted_concat").predict([Case("cat", dermoscopic=data.chelsea())])[0]
    assert p.unusual["dermoscopic"]["unusual"] and any("does not look like" in w for w in p.warnings)


def test_uncertainty_block_reads_the_view_average_on_validation_as_well_as_test():
    """#17 decides test-time augmentation on validation: the block must carry both, computed apart."""
    from training.trust import SplitOut, uncertainty_block

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    clean = np.eye(3)[y] * 4.0
    noisy = clean + rng.normal(0, 3.0, (4, 60, 3))  # four views, each noisy; their mean is cleaner
    single = noisy.copy()
    single[0] = clean + rng.normal(0, 6.0, (60, 3))  # the original view alone is worse
    val, test = SplitOut(single), SplitOut(clean + rng.normal(0, 5.0, (4, 60, 3)))
    block = uncertainty_block({"calibration": {}}, val, y, test, y)
    tta = block["tta"]
    assert tta["val_balanced_accuracy_averaged_views"] > tta["val_balanced_accuracy_single_view"]
    assert tta["val_balanced_accuracy_averaged_views"] != tta["test_balanced_accuracy_averaged_views"]


def test_detector_files_no_card_names_are_pruned(tmp_path):
    from training.trust import prune_detectors

    (tmp_path / "shared").mkdir()
    for name in ("ood-aaaa.safetensors", "ood-bbbb.safetensors", "encoder.safetensors"):
        (tmp_path / "shared" / name).write_bytes(b"x")
    (tmp_path / "one.json").write_text(json.dumps({"ood": {"dermoscopic": {"file": "shared/ood-aaaa.safetensors"}}}))
    (tmp_path / "broken.json").write_text("{")
    assert prune_detectors(tmp_path) == []  # a card that cannot be read might name any file
    (tmp_path / "broken.json").unlink()
    assert prune_detectors(tmp_path) == ["ood-bbbb.safetensors"]
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["encoder.safetensors", "ood-aaaa.safetensors"]


def test_a_shipped_detector_is_reused_for_its_encoder_and_a_tampered_one_is_not(tmp_path):
    from training.trust import fit_detector, shipped_detectors

    x, y = gaussian_clusters(200, 0)
    fit = fit_detector(x, y)
    (tmp_path / "shared").mkdir()
    (tmp_path / fit.file).write_bytes(fit.data)
    block = {"file": fit.file, "sha256": fit.sha256, "method": ood.METHOD, "encoder_key": "enc-224:dermoscopic"}
    (tmp_path / "a.json").write_text(json.dumps({"ood": {"dermoscopic": block}}))
    (tmp_path / "b.json").write_text(json.dumps({"ood": {"dermoscopic": {**block, "encoder_key": None}}}))
    found = shipped_detectors(tmp_path)
    assert list(found) == ["enc-224:dermoscopic"] and found["enc-224:dermoscopic"].file == fit.file
    assert np.allclose(found["enc-224:dermoscopic"].detector.score(x[:5]), fit.detector.score(x[:5]), rtol=1e-4)
    assert not found["enc-224:dermoscopic"].measured  # the OOD sets are scored again by the run that reuses it
    (tmp_path / fit.file).write_bytes(fit.data[:-1] + bytes([fit.data[-1] ^ 1]))
    assert shipped_detectors(tmp_path) == {}
