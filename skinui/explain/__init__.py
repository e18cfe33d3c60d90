"""Explanations as arrays and numbers, one calling convention: `fn(encoded, ..., target=None)`.

`encoded = entry.encode(case)` (`skinui.inference`) runs the backbones once; every method reuses it:

- `gradcam(encoded, modality, target=None) -> np.ndarray[H, W]` in [0, 1]; `gradcams(encoded, target)`
  for every image the case carries
- `relevance(encoded, method="integrated_gradients" | "feature_ablation" | "shapley_value_sampling", target=None)
  -> {field: signed score}` (grouped per field, |score| in [0, 1])
- `modality_ablation(encoded, target=None) -> [{"subset", "modalities", "probabilities", ...}]`
- `explain_case(encoded, target=None) -> CaseExplanation` (all of the above)

`target` is a class index, a class code, or None for the predicted class. Pictures are made from
these in `skinui.plots` (reports) and `skinui.ui` (app). (Modules are named `cam` and
`attribution` so that the functions `gradcam` and `relevance` are never shadowed by a submodule.)
Names are imported on first use, so `METHOD_LABELS` can be read without loading torch (the app's
page builds before it).
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "modality_ablation": "ablation",
    "CaseExplanation": "case", "explain_case": "case",
    "resolve_target": "core",
    "gradcam": "cam", "gradcams": "cam", "supports_gradcam": "cam",
    "RELEVANCE_METHODS": "attribution", "relevance": "attribution",
    "METHOD_LABELS": "methods",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'skinui.explain' has no attribute {name!r}")
    return getattr(importlib.import_module(f"skinui.explain.{_WHERE[name]}"), name)
