"""Uploaded files: validated into pixels (EXIF dropped) and removed from gradio's cache at once."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from skinui.cases import load_image


def read_upload(path: str | None, delete: bool = True) -> np.ndarray | None:
    """Validate an uploaded file into RGB pixels (EXIF dropped) and delete gradio's temp copy."""
    if not path:
        return None
    try:
        return load_image(path)
    finally:
        if delete:
            _delete_temp(path)


def _delete_temp(path: str) -> None:
    """Remove an upload from gradio's cache (never a file outside it) and its empty folder."""
    from gradio.utils import get_upload_folder

    p = Path(path)
    cache = Path(get_upload_folder()).resolve()
    try:
        resolved = p.resolve()
        if cache in resolved.parents:
            resolved.unlink(missing_ok=True)
            if resolved.parent != cache and not any(resolved.parent.iterdir()):
                resolved.parent.rmdir()
    except OSError:
        pass  # an already-removed temp file is the goal anyway
