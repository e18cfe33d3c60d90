"""What every explanation shares: the target class, the head on cached features, signed scores.

Explanations take an `Encoded` (`skinui.inference`: one case through the entry's encoders once)
and a `target`, in captum's spirit: the features are reused, so relevance and ablation run only
`model.head`, and Grad-CAM re-runs only the one image branch it explains.
"""
from __future__ import annotations

from typing import Any

import torch

from skinui.inference import Encoded
from skinui.views import combine


def resolve_target(enc: Encoded, target: int | str | None) -> int:
    """Class index from an index, a class code, or None / "" (the predicted class)."""
    classes = enc.classes
    if target is None or target == "":
        return int(enc.decisions()[0])
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in classes:
            raise ValueError(f"{target!r} is not a class of {enc.entry.name}; choose one of {', '.join(classes)}.")
        return classes.index(target)
    index = int(target)
    if not 0 <= index < len(classes):
        raise ValueError(f"class index {index} is out of range for {enc.entry.name} ({len(classes)} classes).")
    return index


def head_batch(enc: Encoded, rows: int, overrides: dict[str, Any] | None = None,
               mask: dict[str, torch.Tensor] | None = None, view: int | None = None) -> Any:
    """The entry's head on the cached features repeated `rows` times, with some modalities overridden.

    For an entry that averages views (`Entry.averages_views`) the head runs on every view and the
    views are combined, as its predictions are; an override is then one tensor for every view or a
    list with one per view (the photo first). `view`: that one view only (0 = the photo), which is
    how Grad-CAM explains an averaging entry view by view.
    """
    overrides = overrides or {}
    if mask is None and enc.mask is not None:
        mask = {m: v.expand(rows) for m, v in enc.mask.items()}
    views = [{}] + enc.flipped_features() if enc.entry.averages_views else [{}]
    chosen = range(len(views)) if view is None else [view]

    def features(v: int) -> dict[str, torch.Tensor]:
        feats = {m: f.expand(rows, -1) for m, f in {**enc.feats, **views[v]}.items() if m not in overrides}
        feats.update({m: o[v] if isinstance(o, (list, tuple)) else o for m, o in overrides.items()})
        return feats

    outs = [enc.entry.model.head(features(v), mask) for v in chosen]
    return combine(outs)


NOISE_FLOOR = 1e-4  # relative: batched float32 evaluation differs by ~1e-6, which is no relevance


def normalise_signed(scores: dict[str, float]) -> dict[str, float]:
    """Divide by the largest magnitude: |values| in [0, 1], sign kept; float noise becomes exactly 0."""
    top = max((abs(v) for v in scores.values()), default=0.0)
    if top <= 0:
        return dict.fromkeys(scores, 0.0)
    return {k: (float(v) / top if abs(v) > NOISE_FLOOR * top else 0.0) for k, v in scores.items()}
