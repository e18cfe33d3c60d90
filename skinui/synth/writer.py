"""Write a SynthDerm folder: images, masks, metadata.csv, ground_truth.jsonl, manifest.json, README.txt."""
from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2

from skinui.synth import design
from skinui.synth.artefacts import Shortcut
from skinui.synth.generate import Planned, plan, render

VERSION = 1
FOLDERS = {"dermoscopic": "dermoscopic", "clinical": "clinical"}
MASK_FOLDERS = {"dermoscopic": "masks", "clinical": "masks_clinical"}
META_FIELDS = ("age", "sex", "site", "fitzpatrick", "diameter_mm", "growth", "bleeding", "itch")
CSV_COLUMNS = ("case_id", "lesion_id", "patient_id", "visit", "split", "label") + META_FIELDS
# PNG settings chosen for speed at a fair size (224 px image ~75 kB): encoding dominates writing.
PNG_IMAGE = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
PNG_MASK = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _render_chunk(args: tuple[list[Planned], int, int, tuple[Shortcut, ...], str, str]) -> list[tuple[dict, dict]]:
    """Render and write a chunk of cases; returns (csv row, ground-truth record) per case."""
    chunk, seed, size, shortcuts, out, variant = args
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one core per worker: workers, not OpenCV threads, give the parallelism
    try:
        rows = []
        for p in chunk:
            r = render(p, seed, size, shortcuts, variant=variant)
            for m in ("dermoscopic", "clinical"):
                cv2.imwrite(os.path.join(out, FOLDERS[m], f"{p.case_id}.png"), cv2.cvtColor(r.images[m], cv2.COLOR_RGB2BGR), PNG_IMAGE)
                cv2.imwrite(os.path.join(out, MASK_FOLDERS[m], f"{p.case_id}.png"), r.masks[m], PNG_MASK)
            row = {"case_id": p.case_id, "lesion_id": p.lesion_id, "patient_id": p.patient_id, "visit": p.visit,
                   "split": p.split, "label": p.label, **r.metadata}
            rows.append(({k: _cell(row.get(k)) for k in CSV_COLUMNS}, r.truth))
        return rows
    finally:
        cv2.setNumThreads(threads)


def generate(n: int, seed: int, out: str | Path, size: int = 224, shortcuts: tuple[Shortcut, ...] = (),
             workers: int = 1, variant: str = "independent") -> Path:
    """Write `n` cases to `out` (created; existing SynthDerm files are overwritten)."""
    if variant not in design.VARIANTS:
        raise ValueError(f"--variant must be one of {', '.join(design.VARIANTS.names())}.")
    if n < 1:
        raise ValueError("--n must be at least 1.")
    if not 32 <= size <= 1024:
        raise ValueError("--size must be between 32 and 1024 pixels.")
    out = Path(out)
    for folder in (*FOLDERS.values(), *MASK_FOLDERS.values()):
        (out / folder).mkdir(parents=True, exist_ok=True)
    planned = plan(n, seed)
    per = max(1, min(64, -(-n // max(1, workers * 4))))
    chunks = [(planned[i:i + per], seed, size, tuple(shortcuts), str(out), variant) for i in range(0, n, per)]
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_render_chunk, chunks))
    else:
        results = [_render_chunk(c) for c in chunks]
    records = [rec for chunk in results for rec in chunk]
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for row, _ in records)
    with open(out / "ground_truth.jsonl", "w", encoding="utf-8") as fh:
        for _, truth in records:
            fh.write(json.dumps(truth, sort_keys=True) + "\n")
    manifest = {"generator": "skinui.synth", "version": VERSION, "n": n, "seed": seed, "size": size,
                "shortcuts": [str(s) for s in shortcuts], "classes": list(design.CLASSES),
                "codes": {k: dict(zip(design.MODALITIES, v)) for k, v in design.CODES.items()}}
    if variant != "independent":  # the default manifest stays byte-identical to earlier datasets
        manifest["variant"] = variant
        manifest["codes"] = {k: [dict(zip(design.MODALITIES, t)) for t in comps]
                             for k, comps in design.VARIANTS.get(variant).components.items()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (out / "README.txt").write_text(readme(manifest), encoding="utf-8")
    return out


def readme(manifest: dict[str, Any]) -> str:
    shortcut = ", ".join(manifest["shortcuts"]) or "none"
    variant = f" --variant {manifest['variant']}" if "variant" in manifest else ""
    return f"""SynthDerm: a synthetic trimodal skin-lesion benchmark with known ground truth (SkinUI).
Generated by: python -m skinui.synth --n {manifest['n']} --seed {manifest['seed']} --size {manifest['size']}{''.join(' --shortcut ' + s for s in manifest['shortcuts'])}{variant}
Shortcuts (artefact:class:modality, training split only): {shortcut}
Synthetic images: no patient data. Not for clinical use.

Layout
  metadata.csv          one row per case: {', '.join(CSV_COLUMNS)}
                        (empty cell = missing; booleans are yes/no)
  dermoscopic/<id>.png  dermoscopic image ({manifest['size']} px RGB)
  clinical/<id>.png     clinical close-up of the same lesion (other scale, lighting, blur, viewpoint)
  masks/<id>.png        lesion mask of the dermoscopic image (255 = lesion)
  masks_clinical/<id>.png  lesion mask of the clinical image
  ground_truth.jsonl    per case: codes per modality, cues drawn, evidence (classes that only one
                        modality separates from this one), artefacts drawn (and forced shortcuts),
                        metadata before values were blanked
  manifest.json         generator settings and the class -> (dermoscopic, clinical, metadata) codes
                        (a list of equally likely code triples per class under --variant interaction)

Splits: the `split` column (train/val/test, about 70/15/15) is drawn once per lesion, so the two
visits of a lesion always share a split; one lesion per patient, so lesion_id and patient_id
group identically. Classes are balanced per block of 8 lesions.
Read it with: python -m skinui.data summary --dataset synthderm --root <this folder>
Design and per-pair evidence table: docs/SYNTHDERM.md in the SkinUI repository.
"""
