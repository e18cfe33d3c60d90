"""Issue 12's bad-input list, through the Python functions and over HTTP against `python app.py`.

Every bad image, metadata value and case gets one sentence (no traceback, no exception class
name, ending in a period, short) that says what to do where it is an error; good-but-odd images
(grayscale, CMYK, 16-bit, a panorama, ...) are answered. The live server then takes a subset of
the same inputs and still answers the next good request from the same and from another client.
"""
from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinui.cases import load_image
from skinui.demo import make_demo_entry
from skinui.ui import api, case_tab
from skinui.ui.entries import EntryCache
from skinui.vocabulary import MODALITY_TITLES

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

ACTION = re.compile(r"\b(please|choose|send|give|upload|resize|put|add|use|try)\b", re.I)
CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b")


def assert_sentence(text: str, action: bool) -> None:
    """One short sentence a user can read: no traceback, no class name, ends in a period."""
    assert isinstance(text, str) and text.strip(), text
    assert "Traceback" not in text and 'File "' not in text and "\n" not in text, text
    assert not CLASS_NAME.search(text), text
    assert text.endswith("."), text
    assert len(text) <= 300, f"{len(text)} characters: {text[:120]}..."
    assert not re.search(r"[.!?] [A-Z]", text), f"more than one sentence: {text}"
    if action:
        assert ACTION.search(text), f"says nothing to do: {text}"


# -- the files ------------------------------------------------------------------------------------
def _rgb(w: int = 64, h: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_16bit() -> bytes:
    return _encoded(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)), "PNG")


def _gif() -> bytes:
    frames = [Image.new("P", (48, 40), c) for c in (10, 200, 90)]
    return _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def exif_rotated_source() -> Image.Image:
    """Left half red, right half blue, 80 wide x 48 high, with a GPS tag to drop."""
    arr = np.zeros((48, 80, 3), np.uint8)
    arr[:, :40] = (220, 20, 20)
    arr[:, 40:] = (20, 20, 220)
    return Image.fromarray(arr)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    exif[0x8825] = {2: (48.0, 51.0, 0.0)}  # GPS latitude: must not survive
    return _encoded(exif_rotated_source(), "JPEG", quality=95, exif=exif)


FILES: dict[str, Callable[[], bytes]] = {
    "good": lambda: _encoded(_rgb(), "PNG"),
    "empty": lambda: b"",
    "truncated_jpeg": lambda: _encoded(_rgb(200, 150), "JPEG", quality=95)[:1500],
    "truncated_png": lambda: _encoded(_rgb(200, 150), "PNG")[:3000],
    "text_as_jpg": lambda: b"Patient notes: lesion on the left forearm, growing for weeks.\n" * 20,
    # 20000 x 20000 of one colour, 1 bit deep: about 50 kB on disk, 400 megapixels once decoded
    "bomb": lambda: _encoded(Image.new("1", (20000, 20000)), "PNG"),
    "one_pixel": lambda: _encoded(Image.new("RGB", (1, 1), (120, 60, 40)), "PNG"),
    "grayscale": lambda: _encoded(_rgb().convert("L"), "PNG"),
    "rgba": lambda: _encoded(_rgb().convert("RGBA"), "PNG"),
    "cmyk": lambda: _encoded(_rgb().convert("CMYK"), "JPEG"),
    "png16": _png_16bit,
    "palette": lambda: _encoded(_rgb().convert("P"), "PNG"),
    "animated_gif": _gif,
    "exif_rotated": _exif_rotated,
    "panorama": lambda: _encoded(_rgb(4000, 100), "JPEG"),
}
SUFFIX = {"text_as_jpg": ".jpg", "truncated_jpeg": ".jpg", "cmyk": ".jpg", "exif_rotated": ".jpg",
          "panorama": ".jpg", "animated_gif": ".gif"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("bad-files")
    paths = {}
    for name, make in FILES.items():
        path = folder / f"{name}{SUFFIX.get(name, '.png')}"
        path.write_bytes(make())
        paths[name] = str(path)
    assert Path(paths["bomb"]).stat().st_size < 200_000  # tiny on disk
    return paths


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri", image_size=64)
    make_demo_entry(folder, "pad", dataset="pad-ufes-20", modalities=("clinical", "metadata"), image_size=64,
                    structure="jf", fusion="concat")
    return folder


@pytest.fixture(scope="module")
def cache(weights) -> EntryCache:
    return EntryCache(weights)


# -- the table ------------------------------------------------------------------------------------
# (id, entry, dermoscopic file, clinical file, metadata_json, outcome, words expected in the message)
# outcome "error": {"entry", "error"} whose error is a sentence saying what to do;
# outcome "ok": an answer, whose warnings (each a sentence) include the words when words are given.
LONG = "x" * 10_000
CASES = [
    ("empty_file", "tri", "empty", None, "", "error", "empty"),
    ("truncated_jpeg", "tri", "truncated_jpeg", None, "", "error", "not a readable image"),
    ("truncated_png", "tri", "truncated_png", None, "", "error", "not a readable image"),
    ("text_renamed_jpg", "tri", "text_as_jpg", None, "", "error", "not a readable image"),
    ("decompression_bomb", "tri", "bomb", None, "", "error", "below 40 megapixels"),
    ("one_pixel", "tri", "one_pixel", None, "", "error", "at least 32 pixels"),
    ("grayscale", "tri", "grayscale", None, "", "ok", None),
    ("rgba", "tri", "rgba", None, "", "ok", None),
    ("cmyk", "tri", "cmyk", None, "", "ok", None),
    ("png_16bit", "tri", "png16", None, "", "ok", None),
    ("palette_png", "tri", "palette", None, "", "ok", None),
    ("animated_gif", "tri", "animated_gif", None, "", "ok", None),
    ("exif_rotated", "tri", "exif_rotated", None, "", "ok", None),
    ("panorama_4000x100", "tri", None, "panorama", "", "ok", None),
    ("age_negative_alone", "tri", None, None, '{"age": -5}', "error", "invalid or unknown"),
    ("age_negative", "tri", None, None, '{"age": -5, "sex": "male"}', "ok", "outside the valid range"),
    ("age_200", "tri", None, None, '{"age": 200, "sex": "female"}', "ok", "outside the valid range"),
    ("age_nan", "tri", None, None, '{"age": NaN, "sex": "male"}', "ok", None),
    ("age_nan_string", "tri", None, None, '{"age": "NaN", "sex": "male"}', "ok", None),
    ("age_infinity", "tri", None, None, '{"age": Infinity, "sex": "male"}', "ok", "not a number"),
    ("age_forty", "tri", None, None, '{"age": "forty", "sex": "female"}', "ok", "not a number"),
    ("unknown_site", "tri", None, None, '{"site": "moon", "age": 50}', "ok", "not one of the known values"),
    ("unknown_field", "tri", None, None, '{"age": 50, "blood_type": "A"}', "ok", "not a metadata field"),
    ("long_value_10kB", "tri", None, None, json.dumps({"site": LONG, "age": 50}), "ok", "not one of the known values"),
    ("long_number_10kB", "tri", None, None, json.dumps({"age": "9" * 10_000, "sex": "male"}), "ok", "not a number"),
    ("age_10k_digit_number", "tri", None, None, '{"age": ' + "9" * 10_000 + "}", "error", "too long or nesting too deep"),
    ("long_field_name_10kB", "tri", None, None, json.dumps({"age": 50, LONG: 1}), "ok", "not a metadata field"),
    ("lone_surrogate_escape", "tri", None, None, '{"site": "\\ud800", "age": 40}', "ok", "not one of the known"),
    ("lone_surrogate_text", "tri", None, None, '{"sex": "\ud800", "age": 40}', "ok", "not one of the known"),
    ("invalid_escape", "tri", None, None, '{"site": "\\x41"}', "error", "not valid JSON"),
    ("json_nested_100k_deep", "tri", None, None, "[" * 100_000 + "]" * 100_000, "error", "nesting too deep"),
    ("json_array", "tri", None, None, "[1, 2, 3]", "error", "JSON object"),
    ("json_string", "tri", None, None, '"age 40"', "error", "JSON object"),
    ("json_number", "tri", None, None, "42", "error", "JSON object"),
    ("invalid_json", "tri", None, None, "{age: 40,", "error", "not valid JSON"),
    ("no_modality", "tri", None, None, "", "error", "none of this model's inputs"),
    ("only_unused_modality", "pad", "good", None, "", "error", "none of this model's inputs"),
    ("unused_modality_ignored", "pad", "good", "good", '{"age": 50}', "ok", "does not use the dermoscopic"),
    ("unknown_entry", "nope", None, None, "", "error", "no model entry called"),
    ("path_entry", "../../etc/passwd", None, None, "", "error", "no model entry called"),
    ("long_entry_5000", "e" * 5000, None, None, "", "error", "no model entry called"),
    ("lone_surrogate_entry", "tri\ud800", None, None, "", "error", "no model entry called"),
]
HTTP_CASES = ["empty_file", "truncated_jpeg", "text_renamed_jpg", "decompression_bomb", "one_pixel", "cmyk",
              "png_16bit", "exif_rotated", "age_nan", "age_forty", "long_value_10kB", "long_field_name_10kB",
              "lone_surrogate_escape", "invalid_escape", "json_nested_100k_deep", "json_array", "invalid_json", "no_modality",
              "unused_modality_ignored", "path_entry", "long_entry_5000"]
BY_ID = {c[0]: c for c in CASES}


def check_answer(out: dict, entry: str, outcome: str, words: str | None) -> None:
    if outcome == "error":
        assert set(out) == {"entry", "error"}, out
        assert_sentence(out["error"], action=True)
        assert words in out["error"], out["error"]
    else:
        assert "error" not in out, out
        assert out["entry"] == entry and sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        for warning in out["warnings"]:
            assert_sentence(warning, action=False)
        if words:
            assert any(words in w for w in out["warnings"]), out["warnings"]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_through_the_api_function(case, cache, files):
    _, entry, derm, clin, meta, outcome, words = case
    out = api.predict(cache, "tri", entry, files.get(derm), files.get(clin), meta)
    check_answer(out, entry, outcome, words)


@pytest.mark.parametrize("name", [n for n in FILES if n != "good"])
def test_bad_image_through_the_upload_handler(name, files, monkeypatch):
    monkeypatch.setattr(case_tab, "PREVIEW_GRACE_S", 0.0)
    _, kept, status = case_tab.on_upload(files[name], "clinical")
    prefix = f"⚠️ {MODALITY_TITLES['clinical']}: "
    refused = [c for c in CASES if c[2] == name and c[5] == "error"]
    if refused:
        assert kept is None and status.startswith(prefix)
        assert_sentence(status.removeprefix(prefix), action=True)
    else:
        assert kept is not None and kept.dtype == np.uint8 and kept.ndim == 3 and kept.shape[2] == 3
        assert "loaded" in status


def test_exif_orientation_is_honoured_and_exif_dropped(files):
    pixels = load_image(files["exif_rotated"])
    assert isinstance(pixels, np.ndarray) and pixels.shape == (80, 48, 3)  # turned upright: 48 wide, 80 high
    upright = np.asarray(exif_rotated_source().transpose(Image.Transpose.ROTATE_270), dtype=np.int16)
    assert np.abs(pixels.astype(np.int16) - upright).mean() < 8  # red on top, blue below, as displayed
    assert pixels[10, 24, 0] > 150 and pixels[70, 24, 2] > 150
    assert Image.fromarray(pixels).getexif() == {}  # pixels only: GPS and every other tag gone


def test_panorama_and_animated_gif_keep_their_shape(files):
    assert load_image(files["panorama"]).shape == (100, 4000, 3)
    assert load_image(files["animated_gif"]).shape == (40, 48, 3)  # the first frame


# -- the live server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    from conftest import running_app

    pytest.importorskip("gradio_client", reason="gradio_client is not installed")
    log = tmp_path_factory.mktemp("log") / "app.log"
    with running_app(weights, log) as (proc, url):
        yield proc, url, log


def test_bad_input_over_http_leaves_the_server_answering(server, files):
    from gradio_client import Client, handle_file

    proc, url, log = server
    first = Client(url, verbose=False)

    def call(client, entry, derm, clin, meta):
        return client.predict(entry, handle_file(files[derm]) if derm else None,
                              handle_file(files[clin]) if clin else None, meta, api_name="/predict")

    for case_id in HTTP_CASES:
        _, entry, derm, clin, meta, outcome, words = BY_ID[case_id]
        out = call(first, entry, derm, clin, meta)
        check_answer(out, entry, outcome, words)
        assert proc.poll() is None, f"the server died on {case_id}: {log.read_text()[-2000:]}"
    # a lone surrogate in the entry name: gradio_client cannot even encode it, so send the escaped JSON by hand
    import httpx

    call_url = f"{url}gradio_api/call/predict"
    event = httpx.post(call_url, content=b'{"data": ["tri\\ud800", null, null, ""]}',
                       headers={"content-type": "application/json"}, timeout=30).json()["event_id"]
    stream = httpx.get(f"{call_url}/{event}", timeout=30).text
    assert "event: complete" in stream and "no model entry called" in stream, stream
    good = ("tri", "good", "good", '{"age": 50, "sex": "female"}')
    for client in (first, Client(url, verbose=False)):  # the same client, then another one
        out = call(client, *good)
        assert "error" not in out and out["entry"] == "tri" and out["prediction"] in out["probabilities"]
    assert proc.poll() is None
    assert "Traceback" not in log.read_text()  # nothing the user sent crashed a handler, even quietly
