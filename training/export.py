"""Write a run's best weights as a zoo entry, then measure the entry *as shipped*.

`fit` calls `export` at the end; `python -m training export --run DIR` does the same for any run
dir (a finished one, or one killed after some epochs). Steps: save the entry (image encoders
optionally to `weights/shared/`, fp16), load it back with `skinui.zoo.load_entry`, fit the
temperature on the validation split, score the test split with `training.evaluate.report`
(exactly what `python -m training evaluate` computes), and save the card again with
`metrics` (test), `metrics_val` (validation, same decision rule: what choices read) and
`calibration` filled in. The weights are not touched by the second save.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from safetensors.torch import load_file

from skinui.calibration import calibration_summary, log_prevalence, softmax
from skinui.zoo import load_entry, save_entry, shared_specs_of, write_card
from training.data import Prepared
from training.evaluate import EncodeCache, card_metrics, report, subset_logits


def _encoder_keys(model: Any) -> dict[str, str]:
    """Image modality -> the state-dict prefix of its encoder ("encoders.dermoscopic." or "encoders.shared.")."""
    return {m: f"encoders.{'shared' if model.shared else m}." for m in model.image_modalities}


def shared_specs(cfg: dict[str, Any], model: Any, weights_dir: Path) -> list[dict[str, Any]]:
    """Which encoders go to weights/shared/: stage 2 reuses its backbone's file, stage 1 names one."""
    fp16 = bool(cfg["export"].get("fp16", True))
    specs: dict[str, dict[str, Any]] = {}
    if cfg["train"]["mode"] == "features":
        from training.stage2 import backbone_names, members

        for m, backbone in backbone_names(cfg["stage2"]["backbone"], model.image_modalities).items():
            for i, name in enumerate(members(backbone)):  # an ensemble encoder's members, in order
                card = json.loads((weights_dir / f"{name}.json").read_text())
                for spec in shared_specs_of(card):  # the backbone's encoder file, under this model's prefix
                    if spec["prefix"] in (f"encoders.{m}.", "encoders.shared."):
                        key = _encoder_keys(model)[m] + (f"members.{i}." if isinstance(backbone, list) else "")
                        specs[key] = {**spec, "prefix": key}
    elif cfg["export"].get("shared_encoder"):
        keys = sorted(set(_encoder_keys(model).values()))
        for key in keys:
            name = cfg["export"]["shared_encoder"]
            name = name if len(keys) == 1 else f"{name}_{key.split('.')[1]}"
            specs[key] = {"name": name, "prefix": key, "fp16": fp16}
    for m, key in _encoder_keys(model).items():  # frozen parts an encoder loaded from weights/shared (TDBN)
        parts = getattr(model.image_encoders[m], "shared_files", None)
        for sub, name in (parts() if parts else {}).items():
            specs.setdefault(key + sub, {"name": name, "prefix": key + sub, "fp16": True})
    return list(specs.values())


def base_card(cfg: dict[str, Any], prep: Prepared, model: Any, summary: dict[str, Any]) -> dict[str, Any]:
    force = list((cfg.get("metadata") or {}).get("force_leaky") or [])
    model_cfg = json.loads(json.dumps(model.cfg))  # JSON-safe copy
    model_cfg["image_encoder"] = {**model_cfg.get("image_encoder", {}), "pretrained": False, "weights": None}
    return {
        "name": cfg["name"],
        "dataset": prep.dataset,
        "title": cfg.get("title") or cfg["name"],
        "description": cfg.get("description") or "",
        "modalities": list(model.modalities),
        "classes": prep.classes,
        "class_names": dict(prep.schema.class_names),
        "model": model_cfg,
        "metadata_encoder": prep.encoder.to_dict() if prep.encoder is not None else None,
        "leaky": bool(force),
        "force_leaky": force,
        "training": {
            "data": cfg["data_root"],
            "split": prep.split_record,
            "seed": int(cfg["train"]["seed"]),
            "command": summary.get("command", ""),
            "config": cfg,
            "mode": cfg["train"]["mode"],
            "device": summary.get("device"),
            "seconds": summary.get("seconds"),
            "epochs_run": summary.get("epochs_run"),
            "best_epoch": summary.get("best_epoch"),
            "select_metric": summary.get("select_metric"),
            "select_decision": summary.get("select_decision", "argmax of the uncalibrated softmax"),
            "date": dt.date.today().isoformat(),
            "skipped": prep.skipped,
        },
        "licence": prep.schema.licence,
        "citation": prep.schema.citation,
    }


def export(cfg: dict[str, Any], prep: Prepared, model: Any, run_dir: Path, weights_dir: Path,
           summary: dict[str, Any], measure_fp16: bool = True, specs: list[dict[str, Any]] | None = None) -> Path:
    """Save, reload, calibrate on val, score on test; returns the card path (`measure_fp16`: what storing
    the shared encoder in fp16 costs, for a model still in fp32; `specs`: which parts go to weights/shared,
    by default as the config says)."""
    weights_dir = Path(weights_dir)
    card = base_card(cfg, prep, model, summary)
    specs = shared_specs(cfg, model, weights_dir) if specs is None else specs
    fp16 = bool(cfg["export"].get("fp16", True))  # the card's metrics are measured on what is stored
    save_entry(model.cpu(), card, weights_dir, shared=specs, fp16=fp16)
    entry = load_entry(cfg["name"], weights_dir)

    val = [prep.cases[i] for i in prep.split["val"]]
    # shared by every entry on the same encoder (rows are keyed by the encoder's weights)
    cache = EncodeCache(Path((cfg.get("cache") or {}).get("dir") or Path(run_dir).parent / "_cache") / "encode")
    val_labels = prep.labels[prep.split["val"]]
    log_prior = log_prevalence(prep.labels[prep.split["train"]], len(prep.classes))
    rebalanced = cfg["train"]["sampler"] == "balanced" or bool(cfg["train"]["loss"].get("class_weighted"))
    group_key = prep.split_record.get("group_key") or "lesion_id"
    groups = [c.group(group_key) for c in val]
    val_subsets = decide_views(entry, card, val, val_labels, log_prior, rebalanced, groups, cache)
    val_logits = val_subsets[tuple(entry.model.modalities)]
    test_idx = prep.split["test"] or prep.split["val"]  # an official split without test: report on val
    test = [prep.cases[i] for i in test_idx]
    test_labels = prep.labels[test_idx]
    test_logits = subset_logits(entry, test, cache=cache)  # as the entry now predicts (views decided above)
    cal = calibration_summary(val_logits, val_labels, test_logits[tuple(entry.model.modalities)], test_labels,
                              log_prior=log_prior, rebalanced=rebalanced, fit_groups=groups)
    rep, _ = report(entry, test, test_labels, calibration=cal, logits=test_logits)
    card["calibration"] = {**cal, "fitted_on": "val", "measured_on": "test" if prep.split["test"] else "val"}
    card["metrics"] = card_metrics(rep, "test" if prep.split["test"] else "val")
    # Validation scores under the same calibration and decision rule as test: what selection reads.
    rep_val, _ = report(entry, val, val_labels, calibration=cal, logits=val_subsets)
    card["metrics_val"] = card_metrics(rep_val, "val")
    # What storing the shared encoder in fp16 costs, measured where this run trained it (a stage-2
    # run loaded the encoder from that fp16 file, so there is nothing to compare).
    if specs and cfg["train"]["mode"] != "features" and measure_fp16:
        full = model.eval()
        with_fp32 = subset_logits(_with_model(entry, full), val)[tuple(entry.model.modalities)]
        card["training"]["shared_fp16_max_prob_diff"] = float(np.abs(softmax(with_fp32) - softmax(val_logits)).max())
    path = save_entry(entry.model, card, weights_dir, shared=specs, fp16=fp16)
    (Path(run_dir) / "report_test.json").write_text(json.dumps(rep, indent=1))
    return path


def decide_views(entry: Any, card: dict[str, Any], val: list[Any], labels: np.ndarray, log_prior: np.ndarray,
                 rebalanced: bool, groups: list[str], cache: EncodeCache) -> dict[tuple[str, ...], np.ndarray]:
    """For an entry that reads pixels: does it predict from the photo alone or from the mean over its
    flipped views? Decided on held-out halves of validation (`skinui.calibration.check_views`), written to
    `card["views"]` and to the loaded entry's card; returns the validation logits per modality subset as
    the entry now predicts (calibration is fitted on them next)."""
    from skinui.calibration import check_views
    from skinui.views import VIEWS, average_logits

    if not entry.pixel_modalities:
        return subset_logits(entry, val, cache=cache)
    per_view = subset_logits(entry, val, cache=cache, views=tuple(VIEWS))
    check = check_views(per_view[tuple(entry.model.modalities)], labels, log_prior, rebalanced, groups)
    card["views"] = entry.card["views"] = {
        "decision": "averaged" if check["average"] else "single", "views": list(VIEWS),
        "rule": "averaged when, calibrated on one random half of the validation groups and scored on the other "
                "(200 halves, decision weight 1), the views' mean beats the photo alone on balanced accuracy on "
                "average and loses on at most 20% of the halves",
        "check": check}
    return {s: average_logits(z).astype(np.float32) if check["average"] else z[0] for s, z in per_view.items()}


def _with_model(entry: Any, model: Any) -> Any:
    from dataclasses import replace

    return replace(entry, model=model)


def export_run(run: str, weights_dir: str | None = None, data_root: str | None = None, device: str = "auto") -> Path:
    """Re-export a run dir: its resolved config, its data, its best weights."""
    from training.config import load_config
    from training.data import prepare, resolve_root
    from training.loop import build
    from training.runtime import setup

    run_dir = Path(run)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "best.safetensors").is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished training run (config.yaml and best.safetensors are "
                                f"needed); run `python -m training fit` first.")
    cfg = load_config(None, base=yaml.safe_load((run_dir / "config.yaml").read_text()))
    rt = setup(device, "off", False)
    root = resolve_root(cfg["data_root"], data_root)
    cfg["data_root"] = str(root)
    wdir = Path(weights_dir or cfg["export"]["weights_dir"]).resolve()
    prep = prepare(cfg, root)
    model = build(cfg, prep, rt, wdir)
    model.load_state_dict(load_file(str(run_dir / "best.safetensors"), device=str(rt.device)))
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    summary.setdefault("command", (run_dir / "command.txt").read_text().strip() if (run_dir / "command.txt").is_file() else "")
    searched = (summary.get("branch_search") or {}).get("weights")
    if searched and getattr(model.structure, "searches_branch_weights", False):  # AMMFM: not in best.safetensors
        model.structure.branch_weights = model.structure.branch_weights.new_tensor(searched)
        model.cfg["structure"]["branch_weights"] = list(searched)
    return export(cfg, prep, model, run_dir, wdir, summary)


def card_before(card: dict[str, Any], backup: Path) -> dict[str, Any]:
    """The card a re-export starts from. Export first writes a preliminary card (no calibration yet) to reload
    the entry, so a re-export killed after that leaves it in weights/; re-exporting *that* would lose every
    block export does not write (ood, trust, explanations). Each re-export therefore keeps the card it started
    from in its run folder, and a later one starts from that copy when it finds a preliminary card over the
    same weights."""
    if "calibration" not in card and backup.is_file():
        saved = json.loads(backup.read_text())
        if saved.get("sha256") == card.get("sha256") and "calibration" in saved:
            return saved
    backup.write_text(json.dumps(card))
    return card


def reexport_entry(weights: str, data_root: str | None = None, run_dir: str | Path | None = None) -> Path:
    """Re-calibrate and re-score a shipped entry with today's export, without retraining.

    The card's `training.config` is the resolved config its run used, so the data, split and
    metadata encoder are re-derived exactly; the stored weights stand in for the run's best
    checkpoint. For entries whose run folder is gone, or that were not trained by `fit` (FusionM4Net's
    stages). Card keys export does not write (e.g. the study's `alpha_by_class`) are kept. `run_dir`: where
    report_test.json goes (default runs/reexport/NAME).
    """
    from training.data import prepare, resolve_root

    path = Path(weights)
    name, wdir = path.name.removesuffix(".json"), path.parent
    entry = load_entry(name, wdir)
    run_dir = Path(run_dir) if run_dir else Path(__file__).resolve().parents[1] / "runs" / "reexport" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    old = card_before(entry.card, run_dir / "card_before.json")
    cfg = old["training"]["config"]
    root = resolve_root(cfg["data_root"], data_root)
    prep = prepare({**cfg, "data_root": str(root)}, root)
    summary = {k: old["training"].get(k) for k in ("command", "device", "seconds", "epochs_run", "best_epoch",
                                                   "select_metric")}
    # the shared files the entry already ships, as they are (an entry built outside `fit`, e.g. PEMM's
    # shared stage-map encoder, has no config that names them)
    card_path = export(cfg, prep, entry.model, run_dir, wdir.resolve(), summary, measure_fp16=False,
                       specs=shared_specs_of(old))
    card = json.loads(card_path.read_text())
    card = {**card, **{k: v for k, v in old.items() if k not in card}}
    card["training"]["date"] = old["training"].get("date")  # trained then; re-exported now
    if "shared_fp16_max_prob_diff" in old["training"]:  # measured against the fp32 run; not measurable here
        card["training"]["shared_fp16_max_prob_diff"] = old["training"]["shared_fp16_max_prob_diff"]
    card["training"]["reexported"] = dt.date.today().isoformat()
    return write_card(card, wdir)
