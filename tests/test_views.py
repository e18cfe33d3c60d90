"""Averaged views as an entry's own decision (issue 17): the check that decides it, and one prediction
path that reads it everywhere (predictions, sets, what-if, ablation, relevance, Grad-CAM, evaluation)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from skinui.views import FLIPPED, VIEWS, average_logits

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def test_average_logits_is_the_log_of_the_views_mean_probability():
    z = np.random.default_rng(0).normal(size=(4, 5, 3)) * 3
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    got = average_logits(z)
    assert np.allclose(np.exp(got), p.mean(0))  # a log-probability already: softmax(got) is the mean
    assert np.allclose(average_logits(torch.from_numpy(z)).numpy(), got, atol=1e-5)
    assert FLIPPED == ("mirrored", "flipped", "turned") and list(VIEWS)[0] == "original"


def _views(noise_in_flips: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 600)
    signal = 1.5 * np.eye(3)[y]
    photo = signal + rng.normal(0, 2.0, (600, 3))
    if noise_in_flips:  # each view is the lesion seen again with its own noise: the mean cancels some of it
        flips = [signal + rng.normal(0, 2.0, (600, 3)) for _ in FLIPPED]
    else:  # the flipped views carry no signal at all: averaging them in can only blur the photo
        flips = [rng.normal(0, 2.0, (600, 3)) for _ in FLIPPED]
    return np.stack([photo, *flips]), y


def test_check_views_averages_only_when_the_mean_wins_on_held_out_halves():
    from skinui.calibration import check_views

    z, y = _views(noise_in_flips=True)
    helps = check_views(z, y, np.log(np.full(3, 1 / 3)), groups=np.arange(600) // 2)
    assert helps["average"] and helps["mean_gain"] > 0.05 and helps["share_losing"] <= 0.2 and helps["views"] == 4
    z, y = _views(noise_in_flips=False)
    hurts = check_views(z, y, np.log(np.full(3, 1 / 3)))
    assert not hurts["average"] and hurts["mean_gain"] < 0


@pytest.fixture(scope="module")
def pair():
    """synthderm_jf_concat as shipped, and the same weights with a card that averages the views."""
    from skinui.zoo import load_entry

    entry = load_entry("synthderm_jf_concat")
    card = {**entry.card, "views": {"decision": "averaged", "views": list(VIEWS), "check": {"average": True}}}
    return entry, replace(entry, card=card)


def _case(i: int = 0):
    from skinui.cases import Case
    from skinui.synth.generate import plan, render

    r = render(plan(12, 321)[i], 321, 128)
    return Case(f"fresh{i}", r.images["dermoscopic"], r.images["clinical"], r.metadata)


def test_an_averaging_entry_predicts_from_the_calibrated_mean_of_its_views(pair):
    single, averaging = pair
    assert averaging.averages_views and not single.averages_views
    case = _case()
    enc = averaging.encode(case)
    views = enc.view_logits()
    assert views.shape[0] == 4 and torch.allclose(views[0], single.encode(case).logits, atol=1e-5)
    assert torch.allclose(enc.logits, average_logits(views), atol=1e-5)
    p = enc.prediction()
    want = averaging.calibrated_probabilities(average_logits(views))[0].numpy()
    assert [p.probabilities[c] for c in averaging.classes] == pytest.approx(want.tolist(), abs=1e-6)
    assert p.prediction_set and p.prediction in p.prediction_set  # its sets are fitted on what it predicts
    assert not any("calibrated on single views" in w for w in p.warnings)
    # asking for averaged views again changes nothing: the entry already averages
    assert averaging.predict([case], average_views=True)[0].probabilities == p.probabilities
    assert p.probabilities != single.predict([case])[0].probabilities


def test_what_if_ablation_and_relevance_read_the_same_averaged_numbers(pair):
    from skinui.explain.ablation import modality_ablation
    from skinui.explain.core import head_batch

    _, averaging = pair
    case = _case(1)
    enc = averaging.encode(case)
    assert torch.allclose(head_batch(enc, 1).logits, enc.logits, atol=1e-5)
    assert torch.allclose(enc.with_metadata(dict(case.metadata)).logits, enc.logits, atol=1e-5)
    every = [r for r in modality_ablation(enc) if r["modalities"] == averaging.modalities]  # nothing switched off
    shown = enc.probabilities()[0]
    assert [every[0]["probabilities"][c] for c in averaging.classes] == pytest.approx(shown.tolist(), abs=1e-5)
    # one view only, as Grad-CAM explains an averaging entry view by view, is not the average
    assert not torch.allclose(head_batch(enc, 1, view=1).logits, enc.logits, atol=1e-4)


def test_gradcam_of_an_averaging_entry_is_the_mean_of_its_views_maps_flipped_back(pair):
    from skinui.explain.cam import ImageBranch, _cam, gradcam

    single, averaging = pair
    case = _case(2)
    enc = averaging.encode(case)
    target = int(enc.decisions()[0])
    heat = gradcam(enc, "dermoscopic", target)
    x = enc.batch["dermoscopic"]
    maps = [np.flip(_cam(ImageBranch(enc, "dermoscopic", v), torch.flip(x, axes), target), axes)
            for v, axes in enumerate(VIEWS.values())]
    mean = np.mean(maps, 0)
    assert heat.shape == maps[0].shape and heat.max() == pytest.approx(1.0)
    assert np.allclose(heat, mean / mean.max(), atol=1e-5)
    # a map of the mirrored view, flipped back, is not the mirrored view's map: the un-flip matters
    assert not np.allclose(maps[1], np.flip(maps[1], -1), atol=1e-3)
    assert not np.allclose(heat, gradcam(single.encode(case), "dermoscopic", target), atol=1e-3)


def test_faithfulness_scores_every_view_of_a_perturbed_image_for_an_averaging_entry(pair):
    from skinui.explain.faithfulness import target_probabilities

    _, averaging = pair
    enc = averaging.encode(_case(3))
    target = int(enc.decisions()[0])
    got = target_probabilities(enc, "dermoscopic", enc.batch["dermoscopic"], target)
    assert got[0] == pytest.approx(float(enc.probabilities()[0, target]), abs=1e-5)


def test_evaluation_scores_an_averaging_entry_as_it_predicts(pair):
    from training.evaluate import subset_logits

    _, averaging = pair
    cases = [_case(i) for i in range(4)]
    per_view = subset_logits(averaging, cases, batch_size=3, views=tuple(VIEWS))
    full = tuple(averaging.modalities)
    assert per_view[full].shape == (4, 4, len(averaging.classes))
    shown = subset_logits(averaging, cases, batch_size=3)
    assert np.allclose(shown[full], average_logits(per_view[full]), atol=1e-4)
    enc = averaging.encode(cases)
    assert np.allclose(shown[full], enc.logits.numpy(), atol=1e-4)


def test_a_pixel_card_without_the_views_check_predates_todays_rule():
    from skinui.zoo import card_problems, decision_rule_gaps, pixel_modalities

    card = json.loads((WEIGHTS / "synthderm_jf_concat.json").read_text())
    assert pixel_modalities(card) and card["views"]["decision"] in ("single", "averaged")
    assert "views.check" not in card_problems(card)
    stale = {k: v for k, v in card.items() if k != "views"}
    assert "views.check" in card_problems(stale) and decision_rule_gaps(stale) == ["views.check"]
    concepts = json.loads((WEIGHTS / "milk10k-concepts-jiadf.json").read_text())
    assert not pixel_modalities(concepts) and "views.check" not in decision_rule_gaps(concepts)
    metadata_only = json.loads((WEIGHTS / "synthderm_jiadf_m.json").read_text())
    assert not pixel_modalities(metadata_only)


def test_every_explanation_measurement_was_made_on_the_views_its_entry_predicts_from():
    """A Grad-CAM or relevance measured before an entry switched to averaged views explains another model."""
    from skinui.views import decision

    folder = WEIGHTS.parent / "docs" / "explanations"
    cards = {p.stem: json.loads(p.read_text()) for p in WEIGHTS.glob("*.json")}
    checked = 0
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        if result["entry"] in cards:
            assert result.get("views", "single") == decision(cards[result["entry"]]), path.name
            checked += 1
    assert checked > 20


def test_no_card_carries_an_explanation_block_without_its_measurement_file():
    """`--update-cards` drops a block whose file is gone, so a removed (stale) measurement cannot linger in the app."""
    folder = WEIGHTS.parent / "docs" / "explanations"
    files = {"explain": "test", "explain_faithfulness": "faith-test", "explain_relevance": "truth-relevance.test"}
    for path in sorted(WEIGHTS.glob("*.json")):
        card = json.loads(path.read_text())
        for key, suffix in files.items():
            if key in card:
                assert (folder / f"{card['name']}.{suffix}.json").is_file(), f"{card['name']}: {key}"


def test_update_cards_writes_measured_blocks_and_drops_the_others(tmp_path):
    from training.measure_cli import write_blocks

    base = {"dataset": "d", "modalities": ["dermoscopic"], "classes": ["x", "y"], "model": {}, "sha256": "0"}
    for name, extra in (("a", {"explain": {"old": 1}}), ("b", {"explain": {"old": 2}}), ("c", {})):
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name, **base, **extra}))
    assert write_blocks(tmp_path, "explain", {"a": {"new": 1}}) == ["a"]
    cards = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert cards["a"]["explain"] == {"new": 1} and "explain" not in cards["b"] and cards["c"] == {"name": "c", **base}
