"""Load, in the bounded form CI can afford (the full 20 x 10 run and the 10-minute soak are
`python bench/load.py`, figures in docs/BENCHMARKS.md "Load and soak")."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def load():
    pytest.importorskip("gradio_client", reason="gradio_client is not installed")
    sys.path.insert(0, str(REPO / "bench"))
    import load as module

    return module


@pytest.mark.slow
def test_concurrent_clients_get_their_own_answers_and_nothing_is_kept(load, tmp_path):
    from skinui.demo import make_demo_entry

    weights = tmp_path / "weights"
    make_demo_entry(weights, "tri_jiadf", image_size=64)
    cases = load.synth_cases(tmp_path, 4, "tri_jiadf")
    with load.serve(weights) as server:
        reference = load.serial(server.url, cases, passes=1)
        assert reference["not_reproduced"] == 0
        assert reference["min_case_distance"] > load.TOLERANCE  # cross-talk would be visible
        got = load.concurrent(server.url, cases, 3, server.proc.pid)
        uploads = server.uploads
    assert got["requests"] == 12 and got["errors"] == 0, got["error_examples"]
    assert got["cross_talk"] == 0
    assert uploads is not None and not uploads.exists()  # the app's private upload folder went with it


@pytest.mark.slow
def test_a_full_queue_answers_with_a_sentence_at_once(load):
    out = load.queue_full_check(max_size=2)
    assert out["http"].startswith("HTTP 503: SkinUI is busy") and "try again in" in out["http"]
    assert out["http_s"] < 5  # refused at once, never left hanging
    assert out["queued_served"] == out["queued"] and out["after"] == "answered"
