"""Shared test fixtures: where the real development data lives, and a quiet, single-thread torch."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("SKINUI_DATA", REPO.parent / "shared" / "data"))


def data_dir(name: str) -> Path:
    """Path of a dataset under ../shared/data, skipping the test with a reason when it is absent."""
    path = DATA_ROOT / name
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is absent (set SKINUI_DATA to its parent folder)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    # CI has 2 cores; tests are small, so one intra-op thread avoids oversubscription.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    yield
