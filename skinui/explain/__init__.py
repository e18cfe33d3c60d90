"""Explanations as arrays and numbers, one calling convention: `fn(entry, case, ..., target=None)`.

- `gradcam(entry, case, modality, target=None) -> np.ndarray[H, W]` in [0, 1]
- `relevance(entry, case, method="integrated_gradients" | "feature_ablation", target=None)
  -> {field: signed score}` (grouped per field, |score| in [0, 1])
- `modality_ablation(entry, case) -> [{"subset", "modalities", "probabilities", ...}]`
- `explain_case(entry, case, target=None) -> CaseExplanation` (all of the above from one encode pass)

`target` is a class index, a class code, or None for the predicted class. Pictures are made from
these in `skinui.plots` (reports) and `skinui.ui` (app). (Modules are named `cam` and
`attribution` so that the functions `gradcam` and `relevance` are never shadowed by a submodule.) Names are imported on first use, so
`skinui.explain.methods` can be read without loading torch (the app's page builds before it).
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "modality_ablation": "ablation", "subset_label": "ablation", "subsets": "ablation",
    "CaseExplanation": "case", "explain_case": "case", "prediction_summary": "case",
    "Encoded": "core", "encode_case": "core", "resolve_target": "core",
    "gradcam": "cam", "supports_gradcam": "cam",
    "RELEVANCE_METHODS": "attribution", "relevance": "attribution",
    "METHOD_LABELS": "methods",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'skinui.explain' has no attribute {name!r}")
    return getattr(importlib.import_module(f"skinui.explain.{_WHERE[name]}"), name)
