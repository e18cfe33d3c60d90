"""What the shortcut experiment (`training.shortcut`) shows: the example case, its picture, the tables."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.shortcut import CONDITIONS, MODELS, set_layer, with_image


def pick_example(rows: list[dict[str, Any]], classes: list[str], target: int) -> dict[str, Any] | None:
    """A case a teacher can read at a glance: not of the shortcut's class, called that class by the
    shortcut model only when the pen is there, the clean model unmoved by it; the largest rise of the
    shortcut model's map on the pen among those (else the largest rise overall)."""
    def rise(r: dict[str, Any]) -> float:
        a, b = r["shortcut"]["artefact_band"], r["clean"]["artefact_band"]
        return -1.0 if a is None or b is None else a - b

    crisp = [r for r in rows if r["label"] != classes[target] and r["shortcut"]["predicted_with"] == target
             and r["shortcut"]["predicted_without"] != target
             and r["clean"]["predicted_with"] == r["clean"]["predicted_without"]]
    pool = crisp or rows
    if not pool:
        return None
    best = max(pool, key=rise)
    return {"case_id": best["case_id"], "label": best["label"], "crisp": bool(crisp), "n_crisp": len(crisp),
            "rule": "of the cases not of the shortcut's class that the shortcut model calls that class only with the "
                    "mark while the clean model's call does not change, the largest rise of the map on the mark",
            **{m: {"predicted_with": classes[best[m]["predicted_with"]],
                   "predicted_without": classes[best[m]["predicted_without"]],
                   "artefact_band": best[m]["artefact_band"]} for m in MODELS}}


def figure(entries: dict[str, Any], case: Any, modality: str, off: np.ndarray, on: np.ndarray,
           example: dict[str, Any], classes: list[str], layer: str | None, path: str | Path) -> None:
    """One strip: the image without and with the pen, then each model's Grad-CAM on the pen-marked one."""
    import cv2

    from skinui.explain.cam import gradcam_encoded
    from skinui.ui.figures import overlay

    panels = [(off, "no pen"), (on, "pen drawn")]
    for m in ("clean", "shortcut"):
        before = set_layer(entries[m], modality, layer)
        try:
            enc = entries[m].encode(with_image(case, modality, on))
            pred = int(enc.decisions()[0])
            cam = gradcam_encoded(enc, modality, pred)
        finally:
            entries[m].model.image_encoders[modality].set_target_layer(before)
        panels.append((overlay(on, cam, 0.5), f"{m}: {classes[pred]} {enc.probabilities()[0, pred]:.0%}"))
    side = 192
    tiles = []
    for img, title in panels:
        tile = cv2.resize(np.ascontiguousarray(img), (side, side), interpolation=cv2.INTER_NEAREST)
        head = np.full((24, side, 3), 255, np.uint8)
        cv2.putText(head, title, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles += [np.vstack([head, tile]), np.full((side + 24, 4, 3), 255, np.uint8)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack(tiles[:-1]), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


METRIC_LABELS = {"balanced_accuracy": "balanced accuracy", "macro_auc": "macro AUC",
                 "target_recall": "{label} recall", "target_false_rate": "other classes called {label}"}


def table(result: dict[str, Any]) -> str:
    """Markdown: the scores per model and condition, then every difference with its interval."""
    from training.faithfulness import fmt_ci

    label = result["shortcut"]["label"]
    acc, cam = result["accuracy"], result["gradcam"]
    heads = [v.format(label=label) for v in METRIC_LABELS.values()]
    lines = [f"Recipe: `{result.get('config') or 'training/configs/synthderm_dermoscopic_image.yaml'}` (both models).", "",
             "| model · test images | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for m in MODELS:
        for c in CONDITIONS:
            s = acc["scores"][m][c]
            lines.append(f"| {m} · {c} | " + " | ".join(fmt_ci(s[k]) for k in METRIC_LABELS) + " |")
    lines += ["", "| difference (95% CI, paired over lesions) | " + " | ".join(heads) + " |",
              "|---|" + "---:|" * len(heads)]
    for name, block in acc["contrasts"].items():
        lines.append(f"| {name} | " + " | ".join(fmt_ci(block[k], signed=True) for k in METRIC_LABELS) + " |")
    lines += ["", f"Grad-CAM at `{cam['layer']}`, predicted class, on the {cam['n_cases']} pen-marked test images "
              f"whose pen stroke is visible ({cam['n_skipped']} left out); a uniform map scores the area share "
              f"(stroke {cam['areas']['stroke']:.3f}, band {cam['areas']['band']:.3f}):", "",
              "| share of the map | clean model (95% CI) | shortcut model (95% CI) | shortcut − clean (95% CI) |",
              "|---|---:|---:|---:|"]
    words = {"artefact_stroke": "on the pen stroke", "artefact_band": f"on the pen band (±{cam['band_radius_px']} px)",
             "artefact_band_target": f"on the pen band, map of {label}",
             "artefact_band_absent": "on the same band, pen absent",
             "artefact_band_rise": "band: pen drawn − pen absent", "lesion": "on the lesion (pen drawn)"}
    for key, text in words.items():
        b = cam["measures"][key]
        lines.append(f"| {text} | {fmt_ci(b['clean'])} | {fmt_ci(b['shortcut'])} | "
                     f"{fmt_ci(b['shortcut_minus_clean'], signed=True)} |")
    return "\n".join(lines) + "\n"
