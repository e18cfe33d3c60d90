"""Image-quality checks (`skinui.trust.quality`) on images built here: no dataset needed."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from skinui.cases import load_image
from skinui.examples import REAL_DIR, REAL_EXAMPLES
from skinui.trust import quality

MODALITIES = quality.MODALITIES


def lesion_image(size: int = 256, radius: float = 0.3, seed: int = 0) -> np.ndarray:
    """Light skin with a fine texture and a round brown lesion in the centre (radius: share of the side)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    centre = (size - 1) / 2
    img = np.empty((size, size, 3), np.float32)
    img[:] = (205, 160, 140)
    img[np.hypot(yy - centre, xx - centre) < radius * size] = (120, 75, 55)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.0) * 12
    return np.clip(img + texture[..., None], 0, 255).astype(np.uint8)


def kinds(warnings: list[str]) -> set[str]:
    """Which checks fired, by the words each message uses."""
    words = {"blur": "blurred", "dark": "too dark", "bright": "over-exposed", "tiny": "fills very little",
             "small": "too small"}
    return {kind for kind, word in words.items() for w in warnings if word in w}


DEGRADED = {  # name -> (image, the check it must trip)
    "blurred": (cv2.GaussianBlur(lesion_image(), (0, 0), 4), "blur"),
    "black-ish": ((lesion_image() * 0.12).astype(np.uint8), "dark"),
    "white-ish": ((0.15 * lesion_image() + 0.85 * 255).astype(np.uint8), "bright"),
    "tiny lesion": (lesion_image(radius=0.03), "tiny"),
    "1x1": (np.full((1, 1, 3), 120, np.uint8), "small"),
}


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_normal_lesion_image_gets_no_warning(modality):
    assert quality.check_image(lesion_image(), modality) == []


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("name", sorted(DEGRADED))
def test_each_degradation_trips_its_check(name, modality):
    image, kind = DEGRADED[name]
    assert kind in kinds(quality.check_image(image, modality)), name


@pytest.mark.parametrize("case", REAL_EXAMPLES, ids=lambda c: c["case_id"])
def test_shipped_real_examples_get_no_warning(case):
    """The six real cases in the repo (held-out test split, never used for the thresholds)."""
    assert quality.check_image(load_image(REAL_DIR / case["image"]), case["modality"]) == []


def test_there_are_real_examples_to_check():
    assert len(REAL_EXAMPLES) == 6


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_message_is_one_sentence_naming_the_modality_and_what_to_do(modality):
    messages = [m for image, _ in DEGRADED.values() for m in quality.check_image(image, modality)]
    assert kinds(messages) == {"blur", "dark", "bright", "tiny", "small"}  # every kind of message is checked
    for message in messages:
        assert re.fullmatch(r"[A-Z][^.!?]*\.", message), message
        assert modality in message, message
        assert any(verb in message for verb in ("retake", "move closer", "upload")), message


def test_a_dermatoscope_frame_is_not_under_exposure():
    """A round field of view narrower than the picture leaves black edges inside the inscribed circle."""
    image = lesion_image()
    yy, xx = np.mgrid[0:256, 0:256]
    image[np.hypot(yy - 127.5, xx - 127.5) > 0.45 * 256] = 0
    assert quality.check_image(image, "dermoscopic") == []


def test_dark_skin_is_not_under_exposure():
    """A low mean (dark skin) with bright highlights is well exposed; dark highlights are not."""
    well_lit = {**quality.measure(lesion_image()), "mean_luminance": 45.0, "highlights": 150.0}
    assert "dark" not in kinds(quality.warnings_for(well_lit, "clinical"))
    assert "dark" in kinds(quality.warnings_for({**well_lit, "highlights": 40.0}, "clinical"))


@pytest.mark.parametrize("shape", [(1, 1), (1, 4000), (4000, 2), (3, 5000), (63, 900), (225, 227)])
def test_any_size_gives_warnings_without_crashing(shape):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    for modality in MODALITIES:
        warnings = quality.check_image(image, modality)
        assert all(isinstance(w, str) for w in warnings)
        assert ("small" in kinds(warnings)) == (min(shape) < quality.MIN_SIDE)


def test_grey_and_non_contiguous_images_are_measured_like_colour_ones():
    image = lesion_image()
    grey = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert quality.check_image(grey, "dermoscopic") == []
    wide = np.concatenate([image] * 3, axis=1)
    view = wide[:, 256:512]  # a non-contiguous slice: the middle copy
    assert not view.flags.c_contiguous
    assert quality.measure(view) == pytest.approx(quality.measure(image))


def test_measures_do_not_depend_on_resolution():
    small, large = lesion_image(), cv2.resize(lesion_image(), (768, 768), interpolation=cv2.INTER_CUBIC)
    a, b = quality.measure(small), quality.measure(large)
    assert b["lesion_share"] == pytest.approx(a["lesion_share"], rel=0.05)
    assert b["highlights"] == pytest.approx(a["highlights"], abs=3)
    assert 0.7 < b["sharpness"] / a["sharpness"] < 1.4


def test_bad_input_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match="modality"):
        quality.check_image(lesion_image(), "histology")
    with pytest.raises(ValueError, match="RGB uint8"):
        quality.measure(lesion_image().astype(np.float32))


def test_thresholds_cover_both_modalities_and_respect_the_skin_tone_guards():
    for modality in MODALITIES:
        t = quality.THRESHOLDS[modality]
        assert set(t) == {"sharpness_min", "highlights_min", "luminance_max", "dark_share_max", "bright_share_max",
                          "lesion_share_min"}
        assert t["highlights_min"] <= quality.DARK_SKIN_GUARD
        assert t["luminance_max"] >= quality.LIGHT_SKIN_GUARD
