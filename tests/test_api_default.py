"""The `predict` endpoint's empty entry name: a real photo goes to a real-data entry, or the answer warns."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from skinui.demo import make_demo_entry
from skinui.ui import api
from skinui.ui.entries import EntryCache


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "synth_tri", image_size=64, val_balanced_accuracy=0.9)
    make_demo_entry(folder, "ham_a", dataset="ham10000", modalities=("dermoscopic", "metadata"), image_size=64,
                    structure="jf", fusion="concat", val_balanced_accuracy=0.5)
    make_demo_entry(folder, "ham_b", dataset="ham10000", modalities=("dermoscopic", "metadata"), image_size=64,
                    structure="jf", fusion="concat", val_balanced_accuracy=0.6)
    make_demo_entry(folder, "pad_a", dataset="pad-ufes-20", modalities=("clinical", "metadata"), image_size=64,
                    structure="jf", fusion="concat", val_balanced_accuracy=0.7)
    return folder


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "lesion.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_a_dermoscopic_image_goes_to_the_best_ham10000_entry_on_validation(zoo, photo):
    cache = EntryCache(zoo)
    out = api.predict(cache, cache.default_name(), "", photo, None, json.dumps({"age": 60, "sex": "male"}))
    assert out["entry"] == "ham_b" and "error" not in out  # not synth_tri, the app's default
    assert not any("SynthDerm" in w for w in out["warnings"])


def test_a_clinical_image_goes_to_a_pad_ufes20_entry(zoo, photo):
    cache = EntryCache(zoo)
    assert api.predict(cache, cache.default_name(), "", None, photo, "{}")["entry"] == "pad_a"
    assert cache.default_name() == "synth_tri"  # the UI's start-up default is unchanged


def test_without_a_real_data_entry_the_answer_warns_loudly(tmp_path, photo):
    make_demo_entry(tmp_path, "synth_only", image_size=64)
    cache = EntryCache(tmp_path)
    out = api.predict(cache, cache.default_name(), "", photo, None, "{}")
    assert out["entry"] == "synth_only" and any("synthetic benchmark" in w for w in out["warnings"])


def test_an_error_answer_is_entry_and_error(zoo):
    cache = EntryCache(zoo)
    out = api.predict(cache, cache.default_name(), "", None, None, "[1, 2]")
    assert set(out) == {"entry", "error"} and "JSON object" in out["error"]
