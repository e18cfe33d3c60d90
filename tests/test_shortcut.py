"""The shortcut experiment (issue 14): the artefact measure, the comparisons and the teaching view, on
constructed inputs with known answers (no training, no data folder)."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from skinui.explain.artefact import artefact_mask, band, resize_mask
from skinui.explain.measures import energy_in_mask
from training.shortcut import CAM_KEYS, CONDITIONS, MODELS, contrasts
from training.shortcut_report import pick_example, table
from training.shortcut_stats import compare, paired_means, replicate_metrics

CLASSES = ["MEL", "NV", "BCC", "BKL", "AKIEC", "SCCKA", "DF", "VASC"]


def _renders(size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two renders of one 'case' that differ on a drawn stroke only (plus sub-threshold noise)."""
    rng = np.random.default_rng(0)
    without = rng.integers(60, 200, (size, size, 3)).astype(np.uint8)
    stroke = np.zeros((size, size), bool)
    stroke[10:13, 5:50] = True
    stroke[13:40, 47:50] = True
    with_ = without.copy()
    with_[stroke] = (40, 20, 120)  # ink
    with_[~stroke] = np.clip(without[~stroke].astype(int) + rng.integers(-3, 4, (int((~stroke).sum()), 3)), 0, 255)
    return with_, without, stroke


def test_artefact_mask_is_where_the_renders_differ():
    with_, without, stroke = _renders()
    mask = artefact_mask(with_, without)
    assert np.array_equal(mask, stroke)  # the +-3 grain is below the threshold
    assert not artefact_mask(without, without).any()
    with pytest.raises(ValueError):
        artefact_mask(with_, without[:10])


def test_a_heatmap_equal_to_the_artefact_scores_one_and_a_uniform_one_its_area():
    _, _, stroke = _renders()
    assert energy_in_mask(stroke.astype(float), stroke) == pytest.approx(1.0)
    assert energy_in_mask(np.ones(stroke.shape), stroke) == pytest.approx(stroke.mean())
    assert energy_in_mask(np.ones(stroke.shape) - stroke, stroke) == pytest.approx(0.0)  # the map avoids it
    wide = band(stroke, 4)
    assert wide[stroke].all() and wide.sum() > stroke.sum()  # contains the stroke, wider
    assert energy_in_mask(np.ones(stroke.shape), wide) == pytest.approx(wide.mean())
    assert np.array_equal(band(stroke, 0), stroke)
    assert resize_mask(stroke, 32).shape == (32, 32) and resize_mask(stroke, 64) is not None


def test_forced_renders_differ_only_where_the_pen_is_and_one_of_them_is_the_case_as_generated():
    from skinui.synth import plan, render
    from training.shortcut import forced_pair

    manifest = {"n": 4, "seed": 0, "size": 64}
    p = plan(4, 0)[1]
    on, off = forced_pair(p, manifest, "pen", "dermoscopic")
    mask = artefact_mask(on, off)
    assert mask.sum() > 20  # a pen arc was drawn
    assert np.abs(on.astype(int) - off.astype(int))[~band(mask, 2)].max() <= 16  # nothing else moved
    natural = render(p, 0, 64).images["dermoscopic"]
    assert np.array_equal(natural, on) or np.array_equal(natural, off)


def _results() -> tuple[np.ndarray, list[str], dict]:
    """8 cases (4 lesions x 2 visits), target class 0. The clean model is right everywhere; the
    shortcut model calls class 0 whenever the artefact is there and misses class 0 when it is not."""
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    groups = ["L1", "L1", "L2", "L2", "L3", "L3", "L4", "L4"]
    right = labels.copy()
    natural = np.array([0, 0, 1, 1, 2, 2, 1, 1])  # misses the one class-0 lesion without a pen
    decisions = {("clean", c): right for c in CONDITIONS}
    decisions.update({("shortcut", "natural"): natural, ("shortcut", "artefact_all"): np.zeros(8, int),
                      ("shortcut", "artefact_none"): np.where(labels == 0, 1, labels)})
    results = {k: (np.eye(3)[d] * 0.8 + 0.2 / 3, d) for k, d in decisions.items()}
    return labels, groups, results


def test_replicate_metrics_count_recall_and_false_calls_of_the_target():
    labels = np.array([0, 0, 1, 2])
    pred = np.array([0, 1, 0, 2])
    m = replicate_metrics(labels, np.eye(3)[pred], pred, np.ones((1, 4)), target=0)
    assert m["target_recall"][0] == pytest.approx(0.5)  # one of two class-0 cases
    assert m["target_false_rate"][0] == pytest.approx(0.5)  # one of the two others called 0
    assert m["accuracy"][0] == pytest.approx(0.5)
    assert m["balanced_accuracy"][0] == pytest.approx((0.5 + 0 + 1) / 3)


def test_compare_scores_every_condition_and_pairs_every_contrast():
    labels, groups, results = _results()
    out = compare(labels, groups, results, 0, contrasts(), n_boot=300)
    s = out["scores"]
    assert s["clean"]["natural"]["balanced_accuracy"]["estimate"] == pytest.approx(1.0)
    assert s["shortcut"]["artefact_all"]["target_false_rate"]["estimate"] == pytest.approx(1.0)
    assert s["shortcut"]["artefact_none"]["target_recall"]["estimate"] == pytest.approx(0.0)
    c = out["contrasts"]
    # identical models on a condition: exactly 0, and an interval of width 0
    assert c["artefact_all_minus_none@clean"]["balanced_accuracy"]["estimate"] == 0
    assert c["artefact_all_minus_none@clean"]["balanced_accuracy"]["ci"] == [0.0, 0.0]
    lure = c["shortcut_minus_clean@artefact_all"]["target_false_rate"]
    assert lure["estimate"] == pytest.approx(1.0) and lure["excludes_zero"]
    miss = c["shortcut_minus_clean@artefact_none"]["target_recall"]
    assert miss["estimate"] == pytest.approx(-1.0) and miss["excludes_zero"]
    did = c["artefact_effect_shortcut_minus_clean"]["target_false_rate"]
    assert did["estimate"] == pytest.approx(1.0 - 0.0 - 0.0 + 0.0)
    nat = c["shortcut_minus_clean@natural"]["balanced_accuracy"]
    assert nat["estimate"] < 0 and nat["ci"][0] <= nat["estimate"] <= nat["ci"][1]
    assert out["n_groups"] == 4 and "lesions" in out["method"]
    assert c["shortcut_minus_clean@natural"]["terms"] == {"shortcut/natural": 1.0, "clean/natural": -1.0}


def test_calls_by_class_counts_who_the_mark_lures_and_same_pattern_reads_the_manifest():
    from training.shortcut import calls_by_class, same_pattern

    labels, _, results = _results()
    calls = calls_by_class(labels, results, ["A", "B", "C"], 0)
    assert calls["shortcut"]["artefact_all"] == {"A": [3, 3], "B": [3, 3], "C": [2, 2]}
    assert calls["shortcut"]["artefact_none"]["A"] == [0, 3] and calls["clean"]["natural"]["B"] == [0, 3]
    manifest = {"codes": {"BKL": {"dermoscopic": "keratotic"}, "SCCKA": {"dermoscopic": "keratotic"},
                          "MEL": {"dermoscopic": "atypical_network"}}}
    assert same_pattern(manifest, "SCCKA", "dermoscopic") == ["BKL"]
    assert same_pattern(manifest, "MEL", "dermoscopic") == [] and same_pattern({}, "MEL", "dermoscopic") == []


def test_compare_refuses_mismatched_groups_and_unknown_terms():
    labels, groups, results = _results()
    with pytest.raises(ValueError, match="one group per case"):
        compare(labels, groups[:-1], results, 0, contrasts(), n_boot=10)
    with pytest.raises(ValueError, match="no result"):
        compare(labels, groups, results, 0, {"x": {("other", "natural"): 1.0}}, n_boot=10)


def _cam_rows(shift: float = 0.1) -> list[dict]:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        clean = {k: float(rng.uniform(0.1, 0.3)) for k in CAM_KEYS}
        clean.update(predicted_with=1, predicted_without=1, stroke_area=0.02, band_area=0.18)
        short = {**clean, **{k: clean[k] + shift for k in CAM_KEYS}, "predicted_with": 0, "predicted_without": 1}
        rows.append({"case_id": f"C{i}", "group": f"L{i // 2}", "label": "NV", "clean": clean, "shortcut": short})
    return rows


def test_paired_means_give_the_per_case_difference_with_a_grouped_interval():
    out = paired_means(_cam_rows(0.1), CAM_KEYS, n_boot=200)
    d = out["artefact_band"]["shortcut_minus_clean"]
    assert d["estimate"] == pytest.approx(0.1) and d["ci"] == pytest.approx([0.1, 0.1]) and d["excludes_zero"]
    assert d["n_groups"] == 6
    same = paired_means(_cam_rows(0.0), CAM_KEYS, n_boot=200)["lesion"]["shortcut_minus_clean"]
    assert same["estimate"] == pytest.approx(0.0) and not same["excludes_zero"]


def test_the_example_is_a_case_the_shortcut_flips_and_the_clean_model_does_not():
    rows = _cam_rows(0.1)
    rows[3]["shortcut"]["artefact_band"] += 0.5  # the largest rise
    rows[5]["shortcut"]["artefact_band"] += 0.9  # larger, but the clean model flips too: not crisp
    rows[5]["clean"]["predicted_without"] = 2
    ex = pick_example(rows, CLASSES, 0)
    assert ex["case_id"] == "C3" and ex["crisp"]
    assert ex["shortcut"]["predicted_with"] == "MEL" and ex["clean"]["predicted_with"] == "NV"
    assert pick_example([], CLASSES, 0) is None


def _result() -> dict:
    """A result shaped exactly as `training.shortcut.run` writes it, from the same functions."""
    labels, groups, results = _results()
    rows = _cam_rows(0.1)
    return {"experiment": "shortcut", "command": "python -m training.shortcut --shortcut pen:MEL",
            "shortcut": {"artefact": "pen", "label": "MEL", "modality": "dermoscopic", "text": "--shortcut pen:MEL",
                         "same_pattern_as": []},
            "entries": {m: {"name": f"synthderm_shortcut_{m}"} for m in MODELS},
            "accuracy": compare(labels, groups, results, 0, contrasts(), n_boot=200),
            "gradcam": {"layer": "blocks.4", "band_radius_px": 8, "n_cases": 12, "n_skipped": 0,
                        "areas": {"stroke": 0.02, "band": 0.18}, "measures": paired_means(rows, CAM_KEYS, 200)},
            "example": pick_example(rows, CLASSES, 0)}


def test_the_table_lists_every_condition_and_contrast():
    text = table(_result())
    for m in MODELS:
        for c in CONDITIONS:
            assert f"| {m} · {c} |" in text
    for name in contrasts():
        assert f"| {name} |" in text
    assert "on the pen band" in text and "+0.100 [+0.100, +0.100]" in text


def test_each_recipe_writes_its_own_markdown_block():
    from training.shortcut import CONFIG, block_key

    result = _result()
    assert block_key({**result, "config": CONFIG}) == block_key({k: v for k, v in result.items() if k != "config"})
    plain = block_key({**result, "config": CONFIG})
    with_meta = block_key({**result, "config": "training/configs/synthderm_shortcut_dm.yaml"})
    assert plain == f"shortcut-pen-{result['shortcut']['label'].lower()}" and with_meta == plain + "-dm"
    assert "synthderm_shortcut_dm.yaml" in table({**result, "config": "training/configs/synthderm_shortcut_dm.yaml"})


def test_teaching_view_without_the_result_says_so_in_a_sentence(tmp_path):
    from skinui.ui import teaching

    assert teaching.load(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert teaching.load(tmp_path / "bad.json") is None
    (tmp_path / "other.json").write_text(json.dumps({"experiment": "something else"}))
    assert teaching.load(tmp_path / "other.json") is None
    text = teaching.markdown(None)
    assert text == teaching.MISSING and "python -m training.shortcut" in text
    assert teaching.picture_html(None) == "" and teaching.caption(None) == ""
    assert "another version" in teaching.markdown({"experiment": "shortcut", "shortcut": {}})


def test_teaching_view_with_the_result_shows_its_numbers_and_words_them_by_the_intervals(tmp_path):
    from skinui.ui import teaching

    path = tmp_path / "shortcut.json"
    path.write_text(json.dumps(_result()))
    result = teaching.load(path)
    text = teaching.markdown(result)
    assert "+0.100 [+0.100, +0.100]" in text  # the Grad-CAM rise on the pen
    assert "Grad-CAM puts more of its weight on the pen" in text  # interval above 0
    assert "MEL recall is lower than the twin's (-100.0 pp" in text  # pen removed: every MEL missed
    assert "it calls more of the other classes MEL (+100.0 pp" in text  # pen everywhere: all called MEL
    nat = result["accuracy"]["contrasts"]["shortcut_minus_clean@natural"]["balanced_accuracy"]
    word = "lower than" if nat["ci"][1] < 0 else "indistinguishable from"
    assert f"balanced accuracy is {word} the twin's" in text
    assert teaching._direction({"estimate": -0.1, "ci": [-0.2, -0.01]}, "up", "down", "same") == "down"
    assert teaching._direction({"estimate": -0.1, "ci": [-0.2, 0.01]}, "up", "down", "same") == "same"
    assert teaching._direction({"estimate": 0.1, "ci": [0.01, 0.2]}, "up", "down", "same") == "up"
    assert "synthderm_shortcut_shortcut" in text and teaching.TAKEAWAY in text
    assert teaching.why(result) == ""  # MEL's pattern is its own
    result["shortcut"]["same_pattern_as"] = ["NV"]
    assert "draws MEL's dermoscopic pattern for NV too" in teaching.markdown(result)
    assert "no model of these images" in teaching.why(result)  # image-only recipe: no other cue to lose
    result["modalities"] = ["dermoscopic", "metadata"]  # a recipe with a real cue elsewhere
    words = teaching.why(result)
    assert "real cue is in the metadata" in words and "no model of these images" not in words
    clean = result["accuracy"]["scores"]["clean"]["natural"]["target_recall"]
    assert teaching._ci(clean, pct=True) in words and "(dermoscopic image + metadata)" in teaching.markdown(result)
    assert teaching.picture_path(result) is None and teaching.picture_html(result) == ""  # no picture named
    result["example"]["figure"] = str(tmp_path / "absent.png")
    assert teaching.picture_html(result) == ""
    (tmp_path / "ex.png").write_bytes(b"\x89PNG fake")
    result["example"]["figure"] = str(tmp_path / "ex.png")
    shown = teaching.picture_html(result)
    assert shown.startswith("<figure") and base64.b64encode(b"\x89PNG fake").decode() in shown
    assert result["example"]["case_id"] in teaching.caption(result) and "NV without it and MEL with it" in teaching.caption(result)


@pytest.mark.parametrize("present", [True, False])
def test_teaching_accordion_builds_with_and_without_the_result(tmp_path, present):
    import gradio as gr

    from skinui.ui import teaching

    path = tmp_path / "shortcut.json"
    if present:
        (tmp_path / "ex.png").write_bytes(b"\x89PNG fake")
        path.write_text(json.dumps({**_result(), "example": {**_result()["example"], "figure": str(tmp_path / "ex.png")}}))
    with gr.Blocks() as demo:
        teaching.build(path)
    shown = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
    assert any(("+0.100" in v) if present else (v == teaching.MISSING) for v in shown)
    strip = next(b for b in demo.blocks.values() if isinstance(b, gr.HTML))
    assert strip.value == ""  # the picture is not in the page until the accordion opens
    assert len(demo.fns) == (1 if present else 0)  # opening it fills the picture in
