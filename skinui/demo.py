"""Untrained zoo entries for tests, benchmarks and trying the app before any weights are shipped.

A demo entry is a real zoo entry (built by `build_model`, saved by `save_entry`, loaded through
the SHA-256 check) whose weights are random and whose card says so. Its metadata encoder is fitted
on rows drawn at random from the dataset's schema, and its calibration block comes from
`skinui.calibration` run on random held-out logits, so every view has something real to draw.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from skinui.schema import Schema


def random_rows(schema: Schema, n: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of raw metadata drawn uniformly from the schema (about 10% missing per field)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {}
        for f in schema.fields:
            if rng.random() < 0.1:
                row[f.name] = None
            elif f.kind == "numeric":
                lo, hi = f.valid_range or (0.0, 100.0)
                row[f.name] = round(float(rng.uniform(lo, min(hi, lo + 100))), 1)
            elif f.kind == "boolean":
                row[f.name] = bool(rng.random() < 0.5)
            else:
                row[f.name] = str(rng.choice(f.vocabulary)) if f.vocabulary else f"level{rng.integers(3)}"
        rows.append(row)
    return rows


def make_demo_entry(weights_dir: str | Path, name: str = "demo_jiadf", *, dataset: str = "synthderm",
                    modalities: tuple[str, ...] = ("dermoscopic", "clinical", "metadata"), image_size: int = 224,
                    backbone: str = "efficientnet_lite0", structure: str = "jiadf", fusion: str = "mmfa",
                    shared_encoder: bool = False, seed: int = 0,
                    val_balanced_accuracy: float | None = None) -> dict[str, Any]:
    """Build, calibrate on random logits and save an untrained entry; returns its card.

    `val_balanced_accuracy` stands in for a validation score (what the app's default choice reads)."""
    import torch

    from skinui.calibration import calibration_summary
    from skinui.datasets import schema_for
    from skinui.encoding import MetadataEncoder
    from skinui.models import build_model
    from skinui.zoo import save_entry

    schema = schema_for(dataset)
    encoder = MetadataEncoder(schema).fit(random_rows(schema, seed=seed)) if "metadata" in modalities else None
    cfg = {
        "modalities": list(modalities), "num_classes": len(schema.classes), "image_size": image_size,
        "image_encoder": {"name": backbone, "pretrained": False, "shared": shared_encoder},
        "meta_encoder": {"name": "mlp", "dims": [64]},
        "fusion": {"name": fusion}, "structure": {"name": structure},
    }
    if encoder is not None:
        cfg["meta_dim"] = encoder.dim
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (400, len(schema.classes)))
    labels = np.where(rng.random(400) < 0.6, logits.argmax(1), rng.integers(0, len(schema.classes), 400))
    card = {
        "name": name, "dataset": dataset, "title": f"Demo {structure}/{fusion} (untrained)",
        "description": "Random weights for tests and demonstrations: its predictions mean nothing.",
        "modalities": list(modalities), "classes": list(schema.classes), "model": copy.deepcopy(cfg),
        "metadata_encoder": encoder.to_dict() if encoder is not None else None,
        "leaky": False, "force_leaky": [],
        "training": {"data": "none", "split": "none", "seed": seed, "command": "skinui.demo",
                     "device": "none", "seconds": 0},
        "metrics": {"balanced_accuracy": 1 / len(schema.classes)},
        "calibration": calibration_summary(logits[:200], labels[:200], logits[200:], labels[200:]),
        "licence": "CC0-1.0 (untrained demo)",
    }
    card["conformal"] = _demo_sets(logits, labels, card)
    if val_balanced_accuracy is not None:
        card["metrics_val"] = {"split": "val", "balanced_accuracy": float(val_balanced_accuracy)}
    save_entry(model, card, weights_dir)
    return card


def _demo_sets(logits: np.ndarray, labels: np.ndarray, card: dict[str, Any]) -> dict[str, Any]:
    """Prediction sets fitted on the same simulated cases as the demo's calibration (first half),
    measured on the second: the machinery runs as for a real entry, on made-up numbers."""
    from skinui.calibration import calibrated_logits, softmax
    from skinui.trust import conformal

    probs = softmax(calibrated_logits(logits, card["calibration"]))
    block = conformal.fit(probs[:200], labels[:200], card["classes"], "lac", "marginal")
    block["test"] = conformal.evaluate(probs[200:], labels[200:], block, card["classes"])
    return block
