"""Names and labels of the metadata relevance methods (torch-free, so the app's page builds fast).

`skinui.explain.attribution` registers one implementation per name in `RELEVANCE_METHODS`.
"""
from __future__ import annotations

METHOD_LABELS = {
    "integrated_gradients": "Integrated Gradients",
    "feature_ablation": "Feature ablation (grouped)",
    "shapley_value_sampling": "Shapley value sampling (grouped)",
}
