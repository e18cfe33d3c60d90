"""Uploaded files: validated into pixels (EXIF dropped) and removed from gradio's cache.

The API deletes an upload as soon as it is read. The app's image boxes wait a few seconds: the
browser fetches the uploaded file for its preview while the upload handler runs, and deleting it
under that fetch broke about one preview in eight (a half-sent file). `PREVIEW_GRACE_S` later it
is gone all the same; nothing is kept.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from skinui.cases import load_image

PREVIEW_GRACE_S = 20.0


def read_upload(path: str | None, delete: bool = True, delay_s: float = 0.0) -> np.ndarray | None:
    """Validate an uploaded file into RGB pixels (EXIF dropped) and delete gradio's temp copy,
    now or `delay_s` seconds later (a daemon timer: the file goes even if the session ends)."""
    if not path:
        return None
    try:
        return load_image(path)
    finally:
        if delete and delay_s > 0:
            timer = threading.Timer(delay_s, delete_upload, [path])
            timer.daemon = True
            timer.start()
        elif delete:
            delete_upload(path)


def delete_upload(path: str) -> None:
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
