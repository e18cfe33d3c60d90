"""Bad input never breaks the app: every kind of bad upload and typed value gets a sentence."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import lesion_like
from gradio.utils import get_upload_folder
from PIL import Image

from skinui.demo import make_demo_entry
from skinui.ui import api, case_tab
from skinui.ui.entries import EntryCache
from skinui.ui.session import MAX_KEPT_SIDE
from skinui.ui.uploads import read_upload


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri_jiadf", image_size=64)
    make_demo_entry(folder, "tri_jf", image_size=64, structure="jf", fusion="concat")
    return EntryCache(folder)


def upload(name: str, data: bytes | Image.Image) -> str:
    """A file where gradio puts uploads (so the app is allowed to delete it)."""
    folder = Path(get_upload_folder()) / "skinui-test"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(data, Image.Image):
        data.save(path)
    else:
        path.write_bytes(data)
    return str(path)


def rgb(w: int = 64, h: int = 48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("name, data, message", [
    ("empty.png", b"", "empty"),
    ("corrupt.jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg", "not a readable image"),
    ("notes.png", b"%PDF-1.4 a document, not a picture", "not a readable image"),
    ("tiny.png", rgb(8, 8), "at least 32 pixels"),
])
def test_bad_uploads_get_a_sentence_and_are_deleted(name, data, message, monkeypatch):
    monkeypatch.setattr(case_tab, "PREVIEW_GRACE_S", 0.05)
    path = upload(name, data)
    display, kept, status = case_tab.on_upload(path, "dermoscopic")
    assert display is None and kept is None and message in status and status.startswith("⚠️ Dermoscopic")
    assert _gone_soon(path)


def test_decompression_bomb_is_refused():
    # a 9000 x 9000 PNG of one colour: tiny on disk, 81 megapixels once decoded
    path = upload("bomb.png", Image.new("L", (9000, 9000)))
    _, kept, status = case_tab.on_upload(path, "clinical")
    assert kept is None and "too large to analyse safely" in status


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_any_image_mode_becomes_rgb(mode):
    image = rgb().convert("RGB")
    image = image.convert(mode) if mode != "I;16" else Image.fromarray(
        (np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))
    path = upload(f"mode.{'jpg' if mode == 'CMYK' else 'png'}", image)
    display, kept, status = case_tab.on_upload(path, "dermoscopic")
    assert kept.dtype == np.uint8 and kept.shape == (48, 64, 3) and "loaded (64×48 px)" in status


def _gone_soon(path: str, within_s: float = 5.0) -> bool:
    deadline = time.time() + within_s
    while Path(path).exists() and time.time() < deadline:
        time.sleep(0.02)
    return not Path(path).exists()


def test_an_upload_outlives_its_preview_fetch_and_is_then_deleted(monkeypatch):
    """The browser fetches the uploaded file for its preview while the handler runs: not deleted under it."""
    monkeypatch.setattr(case_tab, "PREVIEW_GRACE_S", 0.3)
    path = upload("preview.png", rgb())
    _, kept, status = case_tab.on_upload(path, "dermoscopic")
    assert kept is not None and Path(path).exists()  # still there for the preview request
    assert _gone_soon(path)  # and gone shortly after: nothing is kept


def test_exif_is_dropped_and_big_photos_are_kept_small(monkeypatch):
    monkeypatch.setattr(case_tab, "PREVIEW_GRACE_S", 0.05)
    exif = Image.Exif()
    exif[0x8825] = {2: (48.0, 51.0, 0.0)}  # GPS latitude
    exif[0x0110] = "SecretCam"
    path = upload("gps.jpg", b"")
    rgb(2400, 1200).save(path, exif=exif)
    display, kept, _ = case_tab.on_upload(path, "clinical")
    assert max(kept.shape[:2]) == MAX_KEPT_SIDE and kept.shape[:2] == (512, 1024)
    assert isinstance(kept, np.ndarray) and _gone_soon(path)  # pixels only, original gone


def test_read_upload_never_deletes_files_outside_gradios_cache(tmp_path):
    own = tmp_path / "mine.png"
    rgb().save(own)
    assert read_upload(str(own)).shape == (48, 64, 3)
    assert own.exists()


def test_api_predict_contract(cache):
    derm, clin = upload("d.png", Image.fromarray(lesion_like())), upload("c.png", Image.fromarray(lesion_like(80, 80)))
    out = api.predict(cache, "tri_jiadf", "", derm, clin, json.dumps({"age": 70, "sex": "male", "site": "face"}))
    assert set(out) == {"entry", "probabilities", "prediction", "branch_weights", "warnings",  # DESIGN.md
                        "prediction_set", "set_coverage", "set_mode", "unusual", "uncertainty"}  # trust (docs/TRUST.md)
    assert out["entry"] == "tri_jiadf" and sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out["prediction"] == max(out["probabilities"], key=out["probabilities"].get)
    assert set(out["branch_weights"]) == {"image", "joint", "metadata"}
    # only SynthDerm entries are installed here, so the default's answer to a photo says so, and nothing else
    assert len(out["warnings"]) == 1 and "synthetic benchmark" in out["warnings"][0]
    assert not Path(derm).exists() and not Path(clin).exists()


def test_api_predict_warnings_and_errors(cache):
    out = api.predict(cache, "tri_jiadf", "tri_jf", None, upload("c.png", rgb()), '{"age": 130, "site": "moon"}')
    assert out["branch_weights"] is None  # not a JI-ADF entry
    text = " ".join(out["warnings"])
    assert "outside the valid range" in text and "not one of the known values" in text and "dermoscopic" in text
    assert "not valid JSON" in api.predict(cache, "tri_jiadf", "", None, None, "{age: 3")["error"]
    assert "JSON object" in api.predict(cache, "tri_jiadf", "", None, None, "[1, 2]")["error"]
    assert "no model entry called 'nope'" in api.predict(cache, "tri_jiadf", "nope", None, None, "")["error"]
    assert "none of this model's inputs" in api.predict(cache, "tri_jiadf", "", None, None, "{}")["error"]
    bad = api.predict(cache, "tri_jiadf", "", upload("x.png", b"junk"), upload("y.png", b""), "")
    assert "dermoscopic image" in bad["error"] and "clinical image" in bad["error"]
    assert api.predict(cache, None, "", None, None, "")["error"].startswith("No model entry is installed")
