"""The named `predict` endpoint through `gradio_client`, against the app served in-process."""
from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinui.demo import make_demo_entry
from skinui.ui.app import build_app, launch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri_jiadf", image_size=64)
    make_demo_entry(folder, "dm_late", image_size=64, structure="late", modalities=("dermoscopic", "metadata"))
    demo, _ = build_app(folder)
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    tag = uuid.uuid4().hex[:8]  # unique names, to look for leftovers in gradio's upload folder
    for name, shape in ((f"derm-{tag}.png", (70, 90, 3)), (f"clin-{tag}.jpg", (64, 64, 3))):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def test_predict_endpoint_is_listed(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/predict"]  # every UI event is private: one public contract
    params = [p["parameter_name"] for p in endpoints["/predict"]["parameters"]]
    assert len(params) == 4


def test_predict_default_entry_with_both_images(client, images):
    from gradio_client import handle_file

    out = client.predict("", handle_file(images[0]), handle_file(images[1]),
                         json.dumps({"age": 61, "sex": "female", "growth": "weeks"}), api_name="/predict")
    assert out["entry"] == "tri_jiadf"  # only SynthDerm entries here: the answer says what answered it
    assert len(out["warnings"]) == 1 and "synthetic benchmark" in out["warnings"][0]
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert out["prediction"] == max(out["probabilities"], key=out["probabilities"].get)
    assert sum(out["branch_weights"].values()) == pytest.approx(1.0, abs=1e-4)
    # trust fields: the demo card's sets (fitted on simulated cases); no detector, so nothing is unusual
    assert out["prediction"] in out["prediction_set"] and out["set_coverage"] == pytest.approx(0.9)
    assert out["unusual"] is None
    assert set(out["uncertainty"]) == {"branch disagreement", "test-time-augmentation spread"}
    assert out["uncertainty"]["branch disagreement"]["rank"] is None  # no validation reference in the card
    from gradio.utils import get_upload_folder

    leftovers = [p for name in images for p in Path(get_upload_folder()).rglob(Path(name).name)]
    assert leftovers == []  # the server deleted its copies of the uploads once read


def test_predict_named_entry_missing_modality_and_errors(client, images, tmp_path):
    from gradio_client import handle_file

    out = client.predict("dm_late", None, handle_file(images[1]), '{"age": "old", "sex": "male"}',
                         api_name="/predict")
    assert out["branch_weights"] is None and any("not a number" in w for w in out["warnings"])
    assert any("does not use the clinical" in w for w in out["warnings"])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    bad = client.predict("", handle_file(str(junk)), None, "", api_name="/predict")
    assert bad == {"entry": "tri_jiadf", "error": bad["error"]} and "not a readable image" in bad["error"]
    assert "no model entry called" in client.predict("zzz", None, None, "{}", api_name="/predict")["error"]
