"""Training configs: YAML files with `base:` inheritance, `--set key=value` overrides and defaults.

A config names everything a run depends on, so the resolved config saved in the run dir (plus
the exact command) reproduces it. Per-entry files are a few lines on top of a shared base:

    base: _ham10000_stage2.yaml        # path relative to this file; a list merges left to right
    name: ham10000_jf_mmfa
    model: {fusion: {name: mmfa}}

Dicts merge key by key; any other value (lists included) replaces the base's.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

MODES = ("full", "fastpath", "features")

DEFAULTS: dict[str, Any] = {
    "name": None,  # zoo entry name (weights/<name>.safetensors); defaults to the config file's stem
    "title": None,
    "description": "",
    "dataset": None,
    "data_root": None,  # relative paths resolve against the repository root
    "split": {
        "method": "auto",  # auto (the dataset's official split if it has one, else grouped) | grouped | kfold
        "seed": 0,
        "fractions": [0.7, 0.15, 0.15],
        "k": 5,
        "fold": 0,
        "group_key": None,  # default: the schema's (lesion_id / patient_id)
    },
    "metadata": {"force_leaky": [], "fields": None},  # fields: None = every clinical field of the schema
    "model": {},  # passed to skinui.models.build_model (num_classes, meta_dim filled in)
    "train": {
        "mode": "full",  # full fine-tuning | fastpath (cached frozen stem) | features (stage 2: cached encoder)
        "epochs": 10,
        "batch_size": 32,
        "eval_batch_size": 64,
        "optimizer": {"name": "adamw", "lr": 1e-4, "weight_decay": 1e-5, "momentum": 0.9},
        "lr_groups": {},  # {image: lr, metadata: lr, head: lr}: per-part learning rates (default: optimizer.lr)
        "scheduler": {"name": "none", "factor": 0.5, "patience": 2, "min_lr": 1e-6, "warmup_epochs": 0},
        "loss": {"class_weighted": False, "label_smoothing": 0.0},
        # mixup on the task's inputs (pixels, cached stems or cached features): lam ~ Beta(alpha, alpha) per batch,
        # loss lam * CE(y_a) + (1 - lam) * CE(y_b); 0 = off
        "mixup": {"alpha": 0.0},
        "sampler": "shuffle",  # shuffle | balanced (inverse class frequency, with replacement)
        "select_metric": "macro_f1",  # macro_f1 | balanced_accuracy | macro_auc (validation, higher is better)
        "early_stopping": 0,  # epochs without improvement before stopping; 0 = never
        "seed": 0,
        "num_workers": 0,
        "amp": "auto",  # auto (CUDA only) | bf16 | fp16 | off
        "channels_last": True,  # CUDA only
        "grad_clip": 0.0,
        "augment": {"flip": True, "rot90": True, "color_jitter": 0.1, "crop_scale": None},  # full mode's random augmentation
    },
    "fastpath": {  # train.mode: fastpath -- frozen stem run once, trunk + fusion + heads trained from the cache
        "views": 8,  # views per training image (skinui.models.preprocess.augment_views: 8 geometric, then jittered)
        "eval_views": 1,  # val/test views averaged (test-time augmentation): 1 = plain, 2 = + horizontal flip
    },
    "stage2": {  # train.mode: features -- frozen stage-1 encoder, fusion + heads trained from cached features
        "backbone": None,  # stage-1 entry (or a list: an ensemble encoder's members; or {modality: either}) whose encoder is reused
        "views": 8,
        "eval_views": 1,
        # learned: train the head on the cached features | average: an image-only entry over an ensemble
        # encoder whose head is the mean of the members' own heads (no training: the members' training
        # features are in-sample for them, so a head learned on them trusts the most overfit member)
        "head": "learned",
    },
    "cache": {
        "store": "disk",  # disk (fp16 .npy memmaps, reused by any run with the same frozen part) | ram
        "dir": None,  # default: <run dir>/../_cache, shared by every run under the same --out parent
        "dtype": "float16",
        "batch_size": 32,
    },
    "export": {
        "weights_dir": "weights",
        "enabled": True,
        "shared_encoder": None,  # stage 1: store the image encoder as weights/shared/<name>.safetensors
        "fp16": True,  # weights stored in fp16 (shared encoders and the entry's own file); metrics measured on them
    },
}


class ConfigError(ValueError):
    """A config that cannot be run; the message says which key to fix."""


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path.name} inherits from itself through base:; remove the cycle.")
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist; pass --config an existing YAML file.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path.name} is not valid YAML ({err}); fix the file and run again.") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a YAML mapping of settings.")
    bases = data.pop("base", None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = deep_merge(merged, _read(path.parent / base, (*seen, path)))
    return deep_merge(merged, data)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.lr_groups.head=1e-3` -> (["train", "lr_groups", "head"], 0.001); values are YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r} must look like key.sub=value.")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string; a number is meant
        try:
            value = float(value)
        except ValueError:
            pass
    return [k for k in key.strip().split(".") if k], value


def set_path(cfg: dict[str, Any], path: list[str], value: Any) -> None:
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {key} is not a section.")
    node[path[-1]] = value


def _check_keys(cfg: dict[str, Any], defaults: dict[str, Any], where: str) -> None:
    """Unknown keys are typos; fail before a long run does the wrong thing."""
    for key, value in cfg.items():
        if key not in defaults:
            raise ConfigError(f"Unknown config key {where}{key!r}; known: {', '.join(sorted(defaults))}.")
        # model / free-form blocks are validated by their consumers
        if isinstance(value, dict) and defaults[key] and isinstance(defaults[key], dict) and key not in (
            "model", "lr_groups", "optimizer", "scheduler", "augment"
        ):
            _check_keys(value, defaults[key], f"{where}{key}.")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), base: dict | None = None) -> dict[str, Any]:
    """Defaults <- YAML file (with its bases) <- `--set` overrides; validated; `name` defaulted."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        cfg = deep_merge(cfg, _read(Path(path)))
    if base:
        cfg = deep_merge(cfg, base)
    for item in overrides:
        keys, value = parse_override(item)
        set_path(cfg, keys, value)
    _check_keys(cfg, DEFAULTS, "")
    if not cfg["name"] and path is not None:
        cfg["name"] = Path(path).stem
    validate(cfg)
    return cfg


def validate(cfg: dict[str, Any]) -> None:
    if not cfg.get("dataset"):
        raise ConfigError("The config names no dataset; set dataset: (e.g. ham10000).")
    if not cfg.get("name"):
        raise ConfigError("The config names no entry; set name:.")
    train = cfg["train"]
    if train["mode"] not in MODES:
        raise ConfigError(f"train.mode must be one of {', '.join(MODES)}, not {train['mode']!r}.")
    if cfg["stage2"]["head"] not in ("learned", "average"):
        raise ConfigError(f"stage2.head must be learned or average, not {cfg['stage2']['head']!r}.")
    if train["mode"] == "features" and not cfg["stage2"]["backbone"]:
        raise ConfigError("train.mode: features needs stage2.backbone, the stage-1 entry whose encoder it reuses.")
    if train["sampler"] not in ("shuffle", "balanced"):
        raise ConfigError("train.sampler must be shuffle or balanced.")
    if train["select_metric"] not in ("macro_f1", "balanced_accuracy", "macro_auc"):
        raise ConfigError("train.select_metric must be macro_f1, balanced_accuracy or macro_auc.")
    fractions = cfg["split"]["fractions"]
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError("split.fractions must be three numbers (train, val, test) summing to 1.")
    alpha = train["mixup"]["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ConfigError(f"train.mixup.alpha must be a number >= 0 (0 = no mixup; e.g. 0.2), not {alpha!r}.")
    if int(train["epochs"]) < 1 or int(train["batch_size"]) < 1:
        raise ConfigError("train.epochs and train.batch_size must be at least 1.")
    if not cfg.get("model", {}).get("modalities"):
        raise ConfigError("model.modalities must list the entry's modalities (e.g. [dermoscopic, metadata]).")
