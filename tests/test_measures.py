"""Grad-CAM against a lesion mask: measures with known answers, and the baseline that gives them meaning."""
from __future__ import annotations

import numpy as np
import pytest

from skinui.cases import Case
from skinui.explain.measures import (
    case_mask,
    centre_baseline,
    energy_in_mask,
    mask_in_input_frame,
    pointing_game,
    summarise,
)
from skinui.models.preprocess import resize_crop


def _disc(size: int = 64, cy: int = 20, cx: int = 44, r: int = 10) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return ((y - cy) ** 2 + (x - cx) ** 2) <= r * r


def test_a_map_equal_to_the_mask_is_all_inside_and_points_in():
    mask = _disc()
    assert energy_in_mask(mask.astype(float), mask) == pytest.approx(1.0)
    assert pointing_game(mask.astype(float) + 0.01 * _disc(r=2), mask) is True


def test_a_uniform_map_scores_the_lesion_area_and_a_flat_map_points_nowhere():
    mask = _disc()
    assert energy_in_mask(np.ones(mask.shape), mask) == pytest.approx(mask.mean())
    assert pointing_game(np.ones(mask.shape), mask) is None and energy_in_mask(np.zeros(mask.shape), mask) is None


def test_a_map_on_the_background_scores_below_the_area():
    mask = _disc()
    assert energy_in_mask((~mask).astype(float), mask) == 0.0 and pointing_game((~mask) * 1.0 + 0.1 * _disc(cy=5, cx=5, r=2), mask) is False


def test_centre_baseline_finds_a_centred_lesion_and_misses_an_off_centre_one():
    centre = centre_baseline((64, 64))
    assert pointing_game(centre, _disc(cy=32, cx=32)) is True and pointing_game(centre, _disc(cy=8, cx=8, r=5)) is False
    assert energy_in_mask(centre, _disc(cy=32, cx=32)) > _disc(cy=32, cx=32).mean()


def test_mask_follows_the_images_resize_and_centre_crop():
    """A 300x200 image with a lesion at a known place: the mask lands where the cropped image shows it."""
    img = np.zeros((200, 300, 3), np.uint8)
    img[80:120, 150:190] = 255  # a square the centre crop keeps ...
    img[80:120, 270:295] = 255  # ... and one it cuts away (the crop spans x 50-250 of 300)
    mask = img[..., 0] > 0
    frame = mask_in_input_frame(mask.astype(np.uint8) * 255, 64)
    cropped = resize_crop(img, 64)[..., 0] > 127
    assert (frame == cropped).mean() > 0.99
    assert 0 < frame.mean() < mask.mean() * 1.5  # the kept square only (about 40x40 of 200x200 -> 4%)


def test_case_mask_belongs_to_the_right_image():
    m = np.full((8, 8), 255, np.uint8)
    both = Case("a", dermoscopic=np.zeros((8, 8, 3), np.uint8), clinical=np.zeros((8, 8, 3), np.uint8),
                mask=m, extra={"mask_clinical": m * 0})
    assert case_mask(both, "dermoscopic") is m and not case_mask(both, "clinical").any()
    clinical_only = Case("b", clinical=np.zeros((8, 8, 3), np.uint8), mask=m)
    assert case_mask(clinical_only, "clinical") is m and case_mask(clinical_only, "dermoscopic") is None


def test_summary_counts_flat_maps_and_averages_the_rest():
    rows = [{"energy": 0.5, "pointing": True, "area": 0.2, "centre_energy": 0.4, "centre_pointing": True},
            {"energy": None, "pointing": None, "area": 0.2, "centre_energy": 0.4, "centre_pointing": False}]
    s = summarise(rows)
    assert s["n"] == 2 and s["flat_maps"] == 1 and s["energy_in_lesion"] == 0.5 and s["centre_pointing_game"] == 0.5


def test_localisation_table_reports_test_only_for_the_layer_chosen_on_validation(tmp_path):
    import json

    from training.localisation import table

    def summary(energy, centre=0.4):
        return {"n": 10, "energy_in_lesion": energy, "pointing_game": 0.5, "lesion_area": 0.2,
                "centre_energy_in_lesion": centre, "centre_pointing_game": 1.0, "flat_maps": 0}

    (tmp_path / "e.val.json").write_text(json.dumps({"entry": "e", "layers": {
        "dermoscopic@bn2": summary(0.30), "dermoscopic@blocks.4": summary(0.35)}}))
    (tmp_path / "e.test.json").write_text(json.dumps({"entry": "e", "layers": {
        "dermoscopic@blocks.4": summary(0.45)}}))
    md = table(tmp_path)
    assert "| `e` · dermoscopic | blocks.4 | 0.350 | 10 | 0.450 |" in md
    assert md.rstrip().endswith("| n/a |")  # no per-case values, no interval: "beats centre?" is not claimed
    assert "bn2" not in md.split("\n", 2)[2]  # the layer not chosen on validation is never reported on test


@pytest.mark.parametrize("module", ["training.localisation", "training.faithfulness"])
def test_measurement_cli_answers_a_wrong_data_folder_with_a_sentence(module, tmp_path, capsys):
    import importlib

    from skinui.demo import make_demo_entry

    make_demo_entry(tmp_path / "weights", "tiny", image_size=32, modalities=("dermoscopic",), structure="late")
    main = importlib.import_module(module).main
    assert main(["--weights", str(tmp_path / "weights" / "tiny"), "--data-root", str(tmp_path), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(tmp_path) in err
