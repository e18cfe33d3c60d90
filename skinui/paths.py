"""Where SkinUI finds its files (torch-free: the app reads it before any model loads)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_weights_dir() -> Path:
    """`SKINUI_WEIGHTS` or the repository's `weights/` folder."""
    return Path(os.environ.get("SKINUI_WEIGHTS") or REPO / "weights")
