"""Shared test fixtures: where the real development data lives, and a quiet, single-thread torch."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


@contextlib.contextmanager
def running_app(weights: Path, log: Path, env: dict[str, str] | None = None, cwd: Path = REPO,
                ready: str | None = None):
    """`python app.py` on a free port with `weights`; yields (process, url); fails the test with the log.

    `env`: the whole environment (default: this one, analytics off); `ready`: a log line to wait
    for (default: the port answering)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"} if env is None else env
    env = {**base, "SKINUI_WEIGHTS": str(weights)}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited: {log.read_text()}")
            if ready is not None and ready in log.read_text():
                break
            if ready is None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
            time.sleep(0.3)
        else:
            pytest.fail(f"app.py did not start: {log.read_text()}")
        yield proc, f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def lesion_like(w: int = 96, h: int = 96, seed: int = 0) -> np.ndarray:
    """A plausible photo for tests that are not about image quality: skin, a dark central spot,
    sensor noise; it passes every check of skinui.trust.quality (tests/test_quality.py checks the checks)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    a = np.clip((0.22 - np.hypot((x - w / 2) / w, (y - h / 2) / h)) / 0.04, 0, 1)[..., None]
    img = np.array([214, 160, 130.0]) * (1 - a) + np.array([90, 55, 40.0]) * a + rng.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)
