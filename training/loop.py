"""`python -m training fit`: one plain loop for every mode, device and process count.

Read top to bottom: set up the runtime, prepare data and model, build the task for the mode,
resume if asked, then per epoch train, validate, step the schedule, keep the best weights by the
validation selection metric, log a JSON line and checkpoint. At the end rank 0 exports the best
weights as a zoo entry (`training.export`). Every epoch starts from a seed derived from
(seed, epoch, rank), so `--resume` after a kill reproduces an uninterrupted run exactly.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file
from tqdm.auto import tqdm

from skinui.calibration import softmax
from skinui.metrics import quick_scores
from skinui.models import build_model
from training import checkpoint
from training.data import Prepared, model_config, prepare, resolve_root
from training.fastpath import state_sha256
from training.optim import Schedule, build_optimizer, compute_loss, mixed_loss, mixup
from training.runtime import Runtime, seed_everything, setup, teardown
from training.sampling import class_weights
from training.tasks import Task, make_task

REPO = Path(__file__).resolve().parents[1]


def build(cfg: dict[str, Any], prep: Prepared, rt: Runtime, weights_dir: Path) -> torch.nn.Module:
    """The model for this config and data (stage 2: with the stage-1 encoder loaded), on the device."""
    seed_everything(int(cfg["train"]["seed"]), 0x5EED)  # initial weights depend on the seed only
    model = build_model(model_config(cfg, prep), training=True)  # with its training-only parts, if any
    if cfg["train"]["mode"] == "features":
        from training.stage2 import load_backbone

        load_backbone(model, cfg["stage2"]["backbone"], weights_dir)
    model.to(rt.device)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def validate(task: Task, prep: Prepared) -> dict[str, float | None]:
    val = prep.split["val"]
    logits = task.predict(val, part="val")
    labels = prep.labels[val]
    scores = quick_scores(labels, softmax(logits), len(prep.classes))
    scores["loss"] = float(-np.mean(logits[np.arange(len(labels)), labels]))
    return {f"val_{k}": v for k, v in scores.items()}


def _agree(rt: Runtime, value: float) -> float:
    """Rank 0's number on every rank, so schedule and selection decisions never diverge."""
    if not rt.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=rt.device if rt.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return float(t.item())


def _sync_buffers(rt: Runtime, model: torch.nn.Module) -> None:
    """Rank 0's BatchNorm statistics everywhere: DDP broadcasts buffers before each forward, so after
    the last step of an epoch every rank holds its own; validation and checkpoints need one state."""
    if rt.distributed:
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in history))


def fit(cfg: dict[str, Any], data_root: str | None = None, out: str | None = None, device: str = "auto",
        resume: bool = False, command: str = "", weights_dir: str | None = None, hash_weights: bool = False) -> Path:
    """Train per `cfg`; returns the run directory. Rank 0 writes everything."""
    if (cfg["model"].get("structure") or {}).get("name") == "fusionm4net":  # two stages and an SVM: its own steps
        from training.fusionm4net import fit as fit_fusionm4net

        return fit_fusionm4net(cfg, data_root, out, device, command, weights_dir)
    tr = cfg["train"]
    rt = setup(device, tr["amp"], bool(tr["channels_last"]))
    run_dir = Path(out) if out else REPO / "runs" / cfg["name"]
    wdir = Path(weights_dir or cfg["export"]["weights_dir"])
    wdir = wdir if wdir.is_absolute() else (Path.cwd() / wdir)
    root = resolve_root(cfg.get("data_root"), data_root)
    cfg = {**cfg, "data_root": str(root)}
    if rt.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (run_dir / "command.txt").write_text(command + "\n")
    rt.barrier()
    started = time.time()

    prep = prepare(cfg, root)
    model = build(cfg, prep, rt, wdir)
    task = make_task(cfg, model, prep, rt, run_dir)
    averaged = tr["mode"] == "features" and cfg["stage2"]["head"] == "average"
    product = (cfg["model"].get("structure") or {}).get("name") == "product"
    if averaged:  # nothing to train: the head is the members' heads averaged (training.stage2)
        from training.stage2 import average_member_heads

        average_member_heads(model, cfg["stage2"]["backbone"], wdir)
        tr = {**tr, "epochs": 0}
    elif product:  # nothing to train: two shipped experts multiplied by Bayes' rule (skinui/models/product.py)
        from training.stage2 import load_experts

        columns = prep.encoder.columns if prep.encoder is not None else None
        model.cfg["structure"] = {**model.cfg["structure"], **load_experts(
            model, cfg["model"]["structure"].get("experts"), wdir, columns)}
        tr = {**tr, "epochs": 0}
    else:
        task.prepare_model()
    optimizer = build_optimizer(model, tr)
    schedule = Schedule(optimizer, tr)
    scaler = rt.grad_scaler()
    weights = class_weights(prep.labels[prep.split["train"]], len(prep.classes)).to(rt.device) \
        if tr["loss"]["class_weighted"] else None

    start, best, history = 0, {"value": None, "epoch": 0}, []
    if resume and checkpoint.exists(run_dir / "last"):
        state = checkpoint.load_state(run_dir / "last", device="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        start, best, history = int(state["epoch"]), state["best"], state["history"]
        if rt.is_main:
            _write_history(run_dir / "metrics.jsonl", history)
            tqdm.write(f"resuming {cfg['name']} after epoch {start}")
    elif rt.is_main:
        if resume:
            tqdm.write(f"--resume: no checkpoint in {run_dir}, starting from epoch 1")
        _write_history(run_dir / "metrics.jsonl", [])

    trained = task.module
    if rt.distributed:
        trained = torch.nn.parallel.DistributedDataParallel(
            task.module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
            find_unused_parameters=True)

    metric, patience = tr["select_metric"], int(tr["early_stopping"])
    alpha, smoothing = float(tr["mixup"]["alpha"]), float(tr["loss"]["label_smoothing"])
    epochs = tqdm(range(start, int(tr["epochs"])), desc=cfg["name"], unit="epoch", disable=not rt.is_main,
                  initial=start, total=int(tr["epochs"]))
    for epoch in epochs:
        t0 = time.time()
        seed_everything(int(tr["seed"]), epoch, rt.rank)
        schedule.start_epoch(epoch)
        task.modules_to_train_mode()
        losses = []
        mix_rng = np.random.default_rng([int(tr["seed"]), epoch, rt.rank, 0x313]) if alpha > 0 else None
        bar = tqdm(task.train_batches(epoch), total=task.steps_per_epoch(), desc=f"epoch {epoch + 1}", unit="batch",
                   leave=False, disable=not rt.is_main)
        for batch, target in bar:
            mixed = mixup(batch, target, alpha, mix_rng) if mix_rng is not None else None
            with rt.autocast():
                out = trained(mixed.batch if mixed else batch)
                loss = (mixed_loss(model, out, mixed, weights, smoothing) if mixed
                        else compute_loss(model, out, target, weights, smoothing))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if float(tr["grad_clip"]) > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(tr["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")

        _sync_buffers(rt, model)
        scores = validate(task, prep)
        value = _agree(rt, scores[f"val_{metric}"] if scores[f"val_{metric}"] is not None else float("nan"))
        schedule.end_epoch(value if np.isfinite(value) else None)
        improved = np.isfinite(value) and (best["value"] is None or value > best["value"])
        if improved:
            best = {"value": value, "epoch": epoch + 1}
            if rt.is_main:
                # atomic: a kill mid-write leaves the previous best whole (export --run reads it)
                checkpoint.save_tensors(run_dir / "best.safetensors", model.state_dict())
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None, **scores,
               "lr": [g["lr"] for g in optimizer.param_groups], "seconds": round(time.time() - t0, 2),
               "best": bool(improved)}
        history.append(row)
        if rt.is_main:
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            checkpoint.save_state(run_dir / "last", {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch + 1, "best": best, "history": history})
            epochs.set_postfix({metric: f"{value:.3f}", "best": f"{best['value']:.3f}@{best['epoch']}"})
        rt.barrier()
        if patience and epoch + 1 - best["epoch"] >= patience:
            if rt.is_main:
                tqdm.write(f"early stop: no better val {metric} for {patience} epochs")
            break

    if hash_weights:  # every rank: the DDP test compares these
        (run_dir / f"weights_rank{rt.rank}.sha256").write_text(state_sha256([model]) + "\n")
    if rt.is_main:
        if best["epoch"] and (run_dir / "best.safetensors").is_file():  # a stale file of another run is never read
            model.load_state_dict(load_file(str(run_dir / "best.safetensors"), device=str(rt.device)))
        # The per-epoch validation scores (metrics.jsonl, best_value) decide by argmax on the raw
        # softmax: calibration and the prevalence rule are fitted only after training. They steer
        # selection; compare test numbers with the card's `metrics_val` (same rule), never with these.
        summary = {"epochs_run": len(history), "best_epoch": best["epoch"], "select_metric": metric,
                   "best_value": best["value"], "select_decision": "argmax of the uncalibrated softmax",
                   "seconds": round(time.time() - started + sum(r["seconds"] for r in history[:start]), 1), "device": rt.describe(),
                   "command": command}
        if getattr(model.structure, "searches_branch_weights", False):  # AMMFM: branch weights chosen on validation
            from training.ammfm import search_branch_weights

            summary["branch_search"] = search_branch_weights(cfg, task, prep, model, run_dir)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        if cfg["export"]["enabled"]:
            from training.export import export

            export(cfg, prep, model, run_dir, wdir, summary)
    rt.barrier()
    teardown(rt)
    return run_dir
