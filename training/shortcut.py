"""`python -m training.shortcut`: a planted shortcut, trained and measured (issue 14's teaching example).

    python -m training.shortcut [--shortcut pen:SCCKA] [--clean-data runs/data/synthderm]
        [--data runs/data/synthderm-pen-sccka] [--work runs/shortcut] [--retrain] [--layer blocks.4]
        [--out docs/reports/shortcut-synthderm.json] [--figure docs/reports/shortcut-synthderm.png|none]
    python -m training.shortcut --table docs/reports/shortcut-synthderm.json [--write docs/EXPLANATIONS.md]

1. Data: the clean SynthDerm folder and the same seed with `--shortcut ARTEFACT:CLASS` (each generated
   if missing: 2000 cases, seed 0, 128 px). The shortcut changes training images only: every training
   image of CLASS gets the mark in its dermoscopic image, no other training image has one.
2. Two entries, one recipe (`training/configs/synthderm_dermoscopic_image.yaml`, the shipped
   dermoscopic encoder's CPU fast path, seed 0), one trained on each folder, written to
   `WORK/weights`, never to weights/ (the shortcut entry is deliberately broken). Each run gets its
   own stem cache: the fast path's cache key names cases, not pixels, so the two folders would share one.
3. The test split (shortcut-free: the two folders hold the same test files) under three conditions:
   `natural` (the files: the mark at its class-independent rate), `artefact_all` (every test image
   re-rendered with the mark forced on) and `artefact_none` (forced off). Forcing re-renders the case
   from its keyed streams as a training case with the shortcut tied to (or away from) its own class;
   nothing else in the image changes, so the two renders differ exactly where the mark is
   (`skinui.explain.artefact`): the mark's mask, without touching the generator.
4. Accuracy per model x condition and every contrast, paired over the same bootstrap replicates
   (lesions; `training.shortcut_stats`); Grad-CAM of both models at one layer on the marked images:
   the share of the map on the mark (its stroke, and a band of half a Grad-CAM cell around it), per
   case, shortcut minus clean with intervals, and the same map's share of that band when the mark is
   absent (does the map follow the mark, or sit there anyway?). One example picture.

The default ties the pen to SCCKA, whose dermoscopic pattern SynthDerm shares with BKL and AKIEC (so the
mark is the only dermoscopic cue that tells it apart in training); `--shortcut pen:MEL` ties it to a class
with a distinct pattern of its own (docs/EXPLANATIONS.md compares the two).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = "training/configs/synthderm_dermoscopic_image.yaml"
CONDITIONS = ("natural", "artefact_all", "artefact_none")
MODELS = ("shortcut", "clean")
CAM_KEYS = ("artefact_stroke", "artefact_band", "artefact_band_target", "artefact_band_absent",
            "artefact_band_rise", "lesion")
MIN_STROKE_PX = 20  # a pen mark mostly outside the frame or under the vignette is not scored
BAND_RADIUS = 8  # px at 128: half a cell of blocks.4's 8x8 Grad-CAM grid
SEED, N, SIZE = 0, 2000, 128


def contrasts() -> dict[str, dict[tuple[str, str], float]]:
    """Every difference the experiment reports (model/condition -> coefficient)."""
    out: dict[str, dict[tuple[str, str], float]] = {}
    for c in CONDITIONS:
        out[f"shortcut_minus_clean@{c}"] = {("shortcut", c): 1.0, ("clean", c): -1.0}
    for m in MODELS:
        out[f"artefact_all_minus_none@{m}"] = {(m, "artefact_all"): 1.0, (m, "artefact_none"): -1.0}
    out["artefact_effect_shortcut_minus_clean"] = {
        ("shortcut", "artefact_all"): 1.0, ("shortcut", "artefact_none"): -1.0,
        ("clean", "artefact_all"): -1.0, ("clean", "artefact_none"): 1.0}
    return out


# -- data and training ----------------------------------------------------------------------------------
def ensure_data(root: Path, shortcut: str | None) -> dict[str, Any]:
    """The folder's manifest, generating the folder first when it is missing."""
    if not (root / "manifest.json").is_file():
        from skinui.synth import CLASSES, Shortcut, generate

        cuts = (Shortcut.parse(shortcut, CLASSES),) if shortcut else ()
        print(f"generating {root} ({N} cases, seed {SEED}, {SIZE} px, shortcut {shortcut or 'none'})", flush=True)
        generate(N, SEED, root, size=SIZE, shortcuts=cuts)
    return json.loads((root / "manifest.json").read_text())


def block_key(result: dict[str, Any]) -> str:
    """The markdown block of one experiment, e.g. shortcut-pen-sccka (default recipe), shortcut-pen-sccka-dm."""
    cut = result["shortcut"]
    key = f"shortcut-{cut['artefact']}-{cut['label'].lower()}"
    config = result.get("config") or CONFIG
    if config != CONFIG:  # the recipe's own tag: synthderm_shortcut_dm.yaml -> dm
        key += "-" + Path(config).stem.replace("synthderm_", "").replace("shortcut_", "")
    return key


def entry_name(tag: str) -> str:
    return f"synthderm_shortcut_{tag}"


def train(tag: str, data: Path, work: Path, device: str, retrain: bool, config: str = CONFIG) -> str:
    """Fit the recipe `config` on `data` into WORK/weights as synthderm_shortcut_<tag> (kept when present)."""
    name = entry_name(tag)
    if (work / "weights" / f"{name}.json").is_file() and not retrain:
        return name
    from training.config import load_config
    from training.loop import fit

    title = load_config(config, [])["title"]
    # this entry's own encoder file: retraining replaces it (the zoo refuses to overwrite a shared file)
    (work / "weights" / "shared" / f"{name}_lite0.safetensors").unlink(missing_ok=True)

    sets = [f"name={name}", f"export.shared_encoder={name}_lite0", f"cache.dir={work / f'_cache_{tag}'}",
            f"title={title}, shortcut experiment ({tag})"]
    command = (f"python -m training fit --config {config} --data-root {data} --out {work / f'run-{tag}'} "
               f"--device {device} --weights-dir {work / 'weights'} " + " ".join(f"--set {shlex.quote(s)}" for s in sets))
    fit(load_config(config, sets), str(data), str(work / f"run-{tag}"), device, False, command, str(work / "weights"))
    return name


# -- forced renders -------------------------------------------------------------------------------------
def forced_pair(planned: Any, manifest: dict[str, Any], artefact: str, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(image with the artefact, image without it) for one planned case, all else equal."""
    from skinui.synth import CLASSES, Shortcut, render

    p = replace(planned, split="train")  # shortcuts act on the training split only
    other = next(c for c in CLASSES if c != p.label)
    kw = {"variant": manifest["variant"]} if manifest.get("variant") else {}
    size, seed = int(manifest["size"]), int(manifest["seed"])
    on = render(p, seed, size, shortcuts=(Shortcut(artefact, p.label, modality),), **kw)
    off = render(p, seed, size, shortcuts=(Shortcut(artefact, other, modality),), **kw)
    return on.images[modality], off.images[modality]


def render_conditions(cases: list[Any], manifest: dict[str, Any], artefact: str, modality: str) -> dict[str, Any]:
    """Per condition the test images, plus per case the artefact's stroke mask and whether the
    folder's own file is one of the two renders (it must be: the renderer is the generator)."""
    from skinui.explain.artefact import artefact_mask
    from skinui.synth import plan

    planned = {p.case_id: p for p in plan(int(manifest["n"]), int(manifest["seed"]))}
    out: dict[str, Any] = {c: [] for c in CONDITIONS}
    out["stroke"], out["file_is_render"] = [], 0
    for case in cases:
        on, off = forced_pair(planned[case.case_id], manifest, artefact, modality)
        natural = case.image(modality)
        out["natural"].append(natural)
        out["artefact_all"].append(on)
        out["artefact_none"].append(off)
        out["stroke"].append(artefact_mask(on, off))
        out["file_is_render"] += int(np.array_equal(natural, on) or np.array_equal(natural, off))
    return out


# -- measuring ------------------------------------------------------------------------------------------
def with_image(case: Any, modality: str, image: np.ndarray) -> Any:
    from skinui.cases import Case

    # metadata travels with the image (a recipe may read it); the other image does not enter
    return Case(case_id=case.case_id, label=case.label, lesion_id=case.lesion_id, patient_id=case.patient_id,
                metadata=dict(case.metadata), **{modality: image})


def predict(entry: Any, cases: list[Any], modality: str, images: list[np.ndarray],
            batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities and the card's decisions, as the app and the test metrics make them."""
    probs, preds = [], []
    for i in range(0, len(cases), batch):
        enc = entry.encode([with_image(c, modality, im) for c, im in zip(cases[i:i + batch], images[i:i + batch])])
        probs.append(enc.probabilities())
        preds.append(enc.decisions())
    return np.concatenate(probs), np.concatenate(preds)


def cam_row(entry: Any, case: Any, modality: str, on: np.ndarray, off: np.ndarray, stroke: np.ndarray,
            lesion: np.ndarray | None, target: int) -> dict[str, Any]:
    """One model's Grad-CAM shares on one case: predicted class on the pen-marked image (stroke, band,
    lesion), the shortcut's class on it (band), and the predicted class on the pen-free image (band)."""
    from skinui.explain.artefact import band, resize_mask
    from skinui.explain.cam import gradcam_encoded
    from skinui.explain.measures import energy_in_mask

    enc_on, enc_off = entry.encode(with_image(case, modality, on)), entry.encode(with_image(case, modality, off))
    pred_on, pred_off = int(enc_on.decisions()[0]), int(enc_off.decisions()[0])
    cam_on = gradcam_encoded(enc_on, modality, pred_on)
    size = cam_on.shape[0]
    s = resize_mask(stroke, size)
    b = resize_mask(band(stroke, BAND_RADIUS * stroke.shape[0] // SIZE), size)
    row = {"predicted_with": pred_on, "predicted_without": pred_off,
           "artefact_stroke": energy_in_mask(cam_on, s), "artefact_band": energy_in_mask(cam_on, b),
           "artefact_band_target": energy_in_mask(gradcam_encoded(enc_on, modality, target), b),
           "artefact_band_absent": energy_in_mask(gradcam_encoded(enc_off, modality, pred_off), b),
           "lesion": energy_in_mask(cam_on, resize_mask(lesion > 127, size)) if lesion is not None else None,
           "stroke_area": float(s.mean()), "band_area": float(b.mean())}
    a, z = row["artefact_band"], row["artefact_band_absent"]
    row["artefact_band_rise"] = None if a is None or z is None else a - z
    return row


def set_layer(entry: Any, modality: str, layer: str | None) -> Any:
    """Point the entry's Grad-CAM at `layer`; returns the previous layer (to restore)."""
    enc = entry.model.image_encoders[modality]
    before = enc.target_layer
    if layer:
        enc.set_target_path(layer)
    return before


def run(args: argparse.Namespace) -> dict[str, Any]:
    from skinui.explain.measures import case_mask
    from skinui.synth import CLASSES, Shortcut
    from skinui.zoo import load_entry
    from training.evaluate import select_cases
    from training.measure_cli import case_group
    from training.shortcut_report import pick_example
    from training.shortcut_stats import compare, paired_means

    cut = Shortcut.parse(args.shortcut, CLASSES)
    args.data = args.data or Path(f"runs/data/synthderm-{cut.artefact}-{cut.label.lower()}")
    manifests = {"clean": ensure_data(args.clean_data, None), "shortcut": ensure_data(args.data, args.shortcut)}
    names = {"shortcut": train(f"{cut.artefact}_{cut.label.lower()}", args.data, args.work, args.device, args.retrain,
                               args.config),
             "clean": train("clean", args.clean_data, args.work, args.device, args.retrain, args.config)}
    entries = {m: load_entry(n, args.work / "weights") for m, n in names.items()}
    cases, _, _ = select_cases(entries["clean"].card, "synthderm", args.clean_data.resolve(), "test")
    same_test = all((args.data / cut.modality / f"{c.case_id}.png").read_bytes()
                    == (args.clean_data / cut.modality / f"{c.case_id}.png").read_bytes() for c in cases)
    cases = cases[: args.max_cases] if args.max_cases else cases
    classes = entries["clean"].classes
    target = classes.index(cut.label)
    labels = np.array([classes.index(c.label) for c in cases])
    groups = [case_group(entries["clean"].card, c) for c in cases]
    images = render_conditions(cases, manifests["clean"], cut.artefact, cut.modality)
    print(f"{len(cases)} test cases rendered under {', '.join(CONDITIONS)}", flush=True)

    results = {(m, c): predict(entries[m], cases, cut.modality, images[c]) for m in MODELS for c in CONDITIONS}
    accuracy = compare(labels, groups, results, target, contrasts(), args.n_boot)
    accuracy["calls_by_class"] = calls_by_class(labels, results, classes, target)
    print("accuracy measured; Grad-CAM next", flush=True)

    rows: list[dict[str, Any]] = []
    layers = {m: set_layer(entries[m], cut.modality, args.layer) for m in MODELS}
    try:
        for i, case in enumerate(cases):
            stroke = images["stroke"][i]
            if int(stroke.sum()) < MIN_STROKE_PX:
                continue
            lesion = case_mask(case, cut.modality)
            per = {m: cam_row(entries[m], case, cut.modality, images["artefact_all"][i], images["artefact_none"][i],
                              stroke, lesion, target) for m in MODELS}
            rows.append({"case_id": case.case_id, "group": groups[i], "label": case.label, **per})
    finally:
        for m in MODELS:
            entries[m].model.image_encoders[cut.modality].set_target_layer(layers[m])
    cam = {"layer": args.layer, "band_radius_px": BAND_RADIUS, "min_stroke_px": MIN_STROKE_PX,
           "n_cases": len(rows), "n_skipped": len(cases) - len(rows),
           "areas": _areas(rows), "measures": paired_means(rows, CAM_KEYS, args.n_boot)}
    example = pick_example(rows, classes, target)
    if example and args.figure not in (None, "", "none"):
        from training.shortcut_report import figure

        i = next(k for k, c in enumerate(cases) if c.case_id == example["case_id"])
        figure(entries, cases[i], cut.modality, images["artefact_none"][i], images["artefact_all"][i], example,
               classes, args.layer, args.figure)
        example["figure"] = args.figure
    return {
        "experiment": "shortcut", "issue": 14,
        "command": "python -m training.shortcut " + " ".join(sys.argv[1:]), "config": args.config,
        "modalities": list(entries["clean"].modalities),
        "shortcut": {"artefact": cut.artefact, "label": cut.label, "modality": cut.modality,
                     "text": f"--shortcut {args.shortcut}",
                     "same_pattern_as": same_pattern(manifests["clean"], cut.label, cut.modality)},
        "data": {"clean": str(args.clean_data), "shortcut": str(args.data), "test_files_identical": same_test,
                 "test_split": "the entries' recorded test split (shortcut-free by design)",
                 "forced_renders_match_files": f"{images['file_is_render']} of {len(cases)}"},
        "entries": {m: _entry_summary(entries[m]) for m in MODELS},
        "conditions": {"natural": "the test files as generated (the artefact at its class-independent rate)",
                       "artefact_all": "every test image re-rendered with the artefact forced on",
                       "artefact_none": "every test image re-rendered with the artefact forced off"},
        "accuracy": accuracy, "gradcam": cam, "example": example,
        "cases": [_rounded(r) for r in rows],
    }


def calls_by_class(labels: np.ndarray, results: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
                   classes: list[str], target: int) -> dict[str, dict[str, dict[str, list[int]]]]:
    """model -> condition -> true class -> [cases called the shortcut's class, cases]: which classes the
    mark lures (counts, to read beside the intervals of the rates)."""
    out: dict[str, dict[str, dict[str, list[int]]]] = {}
    for (model, condition), (_, pred) in results.items():
        out.setdefault(model, {})[condition] = {
            c: [int(((labels == k) & (pred == target)).sum()), int((labels == k).sum())] for k, c in enumerate(classes)}
    return out


def same_pattern(manifest: dict[str, Any], label: str, modality: str) -> list[str]:
    """The classes SynthDerm draws with the same pattern as `label` in `modality` (from the folder's
    manifest): the ones no image of that modality can tell it from, whatever the model."""
    codes = manifest.get("codes") or {}
    mine = (codes.get(label) or {}).get(modality)
    return [c for c, v in codes.items() if c != label and mine is not None and (v or {}).get(modality) == mine]


def _areas(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    def mean(key: str) -> float | None:
        vals = [r["clean"][key] for r in rows]
        return float(np.mean(vals)) if vals else None

    return {"stroke": mean("stroke_area"), "band": mean("band_area")}


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    def r(v: Any) -> Any:
        return round(v, 4) if isinstance(v, float) else {k: r(x) for k, x in v.items()} if isinstance(v, dict) else v

    return r(row)


def _entry_summary(entry: Any) -> dict[str, Any]:
    card = entry.card
    training = card.get("training") or {}
    return {"name": entry.name, "data": training.get("data"), "command": training.get("command"),
            "seconds": training.get("seconds"), "best_epoch": training.get("best_epoch"),
            "sha256": card.get("sha256"),
            "card_test_balanced_accuracy": (card.get("metrics") or {}).get("balanced_accuracy"),
            "card_val_balanced_accuracy": (card.get("metrics_val") or {}).get("balanced_accuracy")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.shortcut", description=__doc__.splitlines()[0])
    ap.add_argument("--clean-data", type=Path, default=Path("runs/data/synthderm"))
    ap.add_argument("--data", type=Path, default=None, help="the shortcut folder (default runs/data/synthderm-ARTEFACT-CLASS)")
    ap.add_argument("--shortcut", default="pen:SCCKA", help="ARTEFACT:CLASS[:MODALITY], as skinui.synth takes it")
    ap.add_argument("--config", default=CONFIG, help="the recipe both entries are trained with (default: the shipped "
                    "dermoscopic encoder's; training/configs/synthderm_shortcut_dm.yaml adds metadata)")
    ap.add_argument("--work", type=Path, default=Path("runs/shortcut"), help="runs, caches and the two entries")
    ap.add_argument("--retrain", action="store_true", help="train again even where WORK/weights has the entry")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--layer", default="blocks.4", help="Grad-CAM layer for both models (the shipped entry's choice)")
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("docs/reports/shortcut-synthderm.json"))
    ap.add_argument("--figure", default="docs/reports/shortcut-synthderm.png", help="the example picture ('none': no picture)")
    ap.add_argument("--table", type=Path, default=None, help="print (or --write) the tables of a result JSON")
    ap.add_argument("--write", type=Path, default=None, help="with --table: replace its block in this markdown file")
    args = ap.parse_args(argv)
    from training.shortcut_report import table

    if args.table is not None:
        result = json.loads(args.table.read_text())
        body = table(result)
        if args.write:  # one block per experiment, e.g. shortcut-pen-sccka
            from training.markdown import write_section

            key = block_key(result)
            write_section(args.write, key, body, f"python -m training.shortcut --table {args.table} --write {args.write}")
        else:
            print(body)
        return 0
    from training.measure_cli import to_json

    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_json({k: v for k, v in result.items() if v is not None}) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
