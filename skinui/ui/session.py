"""Per-user state (held in one `gr.State`, never shared) and the app's build-time context."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import gradio as gr
import numpy as np

from skinui.cases import IMAGE_MODALITIES
from skinui.ui.entries import EntryCache
from skinui.ui.form import MetadataForm
from skinui.ui.inputs import CaseInputs, build_case

# Uploads are kept at most this size (longest side): the model sees 224 px, and a 40-megapixel
# photo held per session would cost 120 MB of memory for nothing.
MAX_KEPT_SIDE = 1024


def shrink(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    scale = MAX_KEPT_SIDE / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def UploadImage(**kw: Any) -> gr.Image:  # noqa: N802 (reads like the component it builds)
    """A `gr.Image(type="filepath")` that hands over the uploaded file's path untouched.

    Stock `gr.Image` opens the file with PIL before our code sees it, so a corrupt or huge file
    fails inside gradio with a generic error; here every byte is judged by `skinui.cases.load_image`.
    (An instance override, not a subclass: gradio writes a .pyi stub beside any component subclass.)
    """
    image = gr.Image(type="filepath", **kw)
    stock = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        return stock(payload)

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


@dataclass
class Session:
    """One browser session's case and latest results."""

    images: dict[str, np.ndarray | None] = field(default_factory=lambda: dict.fromkeys(IMAGE_MODALITIES))
    metadata: dict[str, Any] = field(default_factory=dict)  # raw values as typed (for the selected entry)
    entry: str | None = None  # entry the results below belong to
    explanation: Any = None  # skinui.explain.CaseExplanation
    cams: dict[str, np.ndarray] = field(default_factory=dict)
    cam_target: str | None = None
    compare: dict[str, Any] | None = None  # second entry on the Grad-CAM tab: name, target, cams
    warnings: list[str] = field(default_factory=list)
    # entry name -> skinui.inference.Encoded of this case: encoded once, reused by every tab
    encoded: dict[str, Any] = field(default_factory=dict)

    def inputs(self) -> CaseInputs:
        return CaseInputs(dict(self.images), dict(self.metadata))

    def with_(self, **changes: Any) -> Session:
        return replace(self, **changes)


@contextmanager
def encoded_case(cache: EntryCache, session: Session, name: str) -> Iterator[Any]:
    """The session's case encoded by entry `name` (cached per session), with the entry held for use."""
    with cache.use(name) as entry:
        enc = session.encoded.get(name)
        if enc is None:
            enc = session.encoded[name] = entry.encode(build_case(entry, session.inputs()))
        yield enc


View = Callable[[Session], list[Any]]


@dataclass
class AppContext:
    """Shared, read-only after build: the entry cache, the form, and the views refreshed after analysis."""

    cache: EntryCache
    default: str | None
    form: MetadataForm
    views: list[tuple[list[Any], View]] = field(default_factory=list)
    components: dict[str, Any] = field(default_factory=dict)

    def add_view(self, outputs: list[Any], fn: View) -> None:
        self.views.append((outputs, fn))

    @property
    def view_outputs(self) -> list[Any]:
        return [c for outputs, _ in self.views for c in outputs]

    def render_views(self, session: Session) -> list[Any]:
        return [v for _, fn in self.views for v in fn(session)]
