"""The model zoo: `weights/<entry>.safetensors` + `weights/<entry>.json` (the model card).

Loading never unpickles: tensors come from safetensors, the card is JSON, and every weight file's
SHA-256 must match the card before a byte of it is used. Entries that share a backbone (e.g. every
fusion method trained on one fine-tuned encoder) point at `weights/shared/<name>.safetensors`
through the card's `shared: [{"file", "sha256", "prefix", "dtype"}]`. Shared files and the entry's
own file (card `"dtype": "float16"`) may be stored in fp16 and are cast back to fp32 at load time:
inference runs in fp32 either way; fp16 storage halves the download.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from skinui.inference import Entry
from skinui.paths import REPO, default_weights_dir  # noqa: F401  (default_weights_dir re-exported)
from skinui.vocabulary import IMAGE_MODALITIES

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
REQUIRED = ("name", "dataset", "modalities", "classes", "model", "sha256")


# The schema every shipped card must carry in full, so that two entries are always compared under the
# same calibration, the same decision rule and the same kind of evidence (`card_problems`).
CALIBRATION_KEYS = ("temperature", "prior_weight", "log_prior", "decision", "decision_prior_weight", "ece",
                    "ece_calibrated", "ece_floor", "n_bins", "bins", "bins_calibrated", "fitted_on", "measured_on")
METRICS_KEYS = ("split", "balanced_accuracy", "accuracy", "macro_f1", "ece", "ece_calibrated", "ece_floor",
                "n_cases", "macro", "per_class", "modality_ablation")
INTERVAL_SPLITS = ("test", "val")


def takes_pixels(card: dict[str, Any]) -> bool:
    """False for entries whose 'images' are concept scores (MILK10k MONET), which a photo cannot give."""
    return ((card.get("model") or {}).get("image_encoder") or {}).get("name") != "concept_mlp"


def pixel_modalities(card: dict[str, Any]) -> list[str]:
    """The card's image modalities read from pixels: what an uploaded photo can feed, and what has flipped views."""
    return [m for m in card.get("modalities", []) if m in IMAGE_MODALITIES and takes_pixels(card)]


def predates_decision_check(card: dict[str, Any]) -> bool:
    """The card's decisions are not today's rule's: its decision weight tau was tuned on validation
    unconditionally (exports before `skinui.calibration.check_decision_weight`), or it reads pixels and
    was exported before the views check (`skinui.calibration.check_views`) decided between the photo
    alone and the views' mean."""
    return bool(decision_rule_gaps(card))


def decision_rule_gaps(card: dict[str, Any]) -> list[str]:
    """The held-out checks of today's decision rule that the card lacks (`predates_decision_check`)."""
    cal = card.get("calibration") or {}
    gaps = ["calibration.decision_weight_check"] if cal.get("log_prior") is not None and \
        "decision_weight_check" not in cal else []
    if pixel_modalities(card) and "check" not in (card.get("views") or {}):
        gaps.append("views.check")
    return gaps


def card_problems(card: dict[str, Any]) -> list[str]:
    """What a card lacks of the current calibration / decision / evidence schema (empty when complete)."""
    problems = [f"calibration.{k}" for k in CALIBRATION_KEYS if k not in (card.get("calibration") or {})]
    cal = card.get("calibration") or {}
    if cal.get("decision") not in (None, "prevalence_adjusted"):
        problems.append("calibration.decision is not prevalence_adjusted")
    # tau is 1 unless tuning it wins on held-out halves of validation; a k-fold study's cards keep the
    # study's own rule (tau tuned in every fold, for its entries and its anchor alike)
    split = (((card.get("training") or {}).get("config") or {}).get("split") or {}).get("method")
    if split != "kfold":
        problems += decision_rule_gaps(card)
    for block, split in (("metrics", "test"), ("metrics_val", "val")):
        got = card.get(block) or {}
        problems += [f"{block}.{k}" for k in METRICS_KEYS if k not in got]
        if got and got.get("split") != split:
            problems.append(f"{block}.split is not {split}")
    for split in INTERVAL_SPLITS:
        block = (card.get("intervals") or {}).get(split) or {}
        problems += [f"intervals.{split}.{m}.ci" for m in ("balanced_accuracy", "macro_auc")
                     if len((block.get(m) or {}).get("ci") or ()) != 2]
    if "comparisons" not in card:
        problems.append("comparisons")
    conf = card.get("conformal") or {}
    problems += [f"conformal.{k}" for k in ("score", "mode", "alpha", "test") if k not in conf]
    if "uncertainty" not in card:
        problems.append("uncertainty")
    pixels = [m for m in card.get("modalities", []) if m in ("dermoscopic", "clinical")
              and ((card.get("model") or {}).get("image_encoder") or {}).get("name") != "concept_mlp"]
    problems += [f"ood.{m}" for m in pixels if "threshold" not in ((card.get("ood") or {}).get(m) or {})]
    return problems


class ZooError(RuntimeError):
    """A zoo problem a user can act on; `str(err)` is the sentence to show."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(name: str) -> None:
    # Entry names arrive from the UI and the API: never let one walk out of the weights folder.
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise ZooError(f"{name!r} is not a valid zoo entry name (letters, digits, '_', '-', '.' only).")


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"The model card {path.name} cannot be read ({err}); restore or remove it.") from None
    missing = [k for k in REQUIRED if k not in card] if isinstance(card, dict) else list(REQUIRED)
    if missing:
        raise ZooError(f"The model card {path.name} lacks {', '.join(missing)}; it is not a valid zoo entry.")
    return card


def list_entries(weights_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Cards of every valid entry, sorted by name (broken cards are skipped with a warning)."""
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    cards = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            cards.append(_read_card(path))
        except ZooError as err:
            warnings.warn(str(err), stacklevel=2)
    return cards


def _verified_bytes(path: Path, expected: str, what: str) -> bytes:
    try:
        data = path.read_bytes()  # hash and parse the same bytes: no swap between check and use
    except OSError:
        raise ZooError(f"The {what} {path} is missing; restore it or retrain the entry.") from None
    found = sha256_bytes(data)
    if found != expected:
        raise ZooError(
            f"The {what} {path.name} does not match the SHA-256 in its model card (expected {expected[:12]}..., "
            f"found {found[:12]}...): it was modified or corrupted, so it was not loaded. Restore the original "
            f"file or retrain the entry."
        )
    return data


def load_entry(name: str, weights_dir: str | Path | None = None) -> Entry:
    """Verify and load one entry; raises `ZooError` with a sentence on any problem."""
    from skinui.models import build_model

    _check_name(name)
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    card_path = folder / f"{name}.json"
    if not card_path.is_file():
        known = ", ".join(c["name"] for c in list_entries(folder)) or "none"
        raise ZooError(f"There is no zoo entry named {name!r} in {folder}; available entries: {known}.")
    card = _read_card(card_path)
    state = _fp32(_tensors(_verified_bytes(folder / f"{name}.safetensors", card["sha256"], "weight file"), name))
    for part in card.get("shared") or []:
        shared = _tensors(_verified_bytes(_inside(folder, part["file"], card_path), part["sha256"],
                                          "shared weight file"), name)
        state.update({part["prefix"] + k: v for k, v in _fp32(shared).items()})
    cfg = copy.deepcopy(card["model"])
    # The checkpoint carries every weight: build bare (fast, offline), then load.
    cfg["image_encoder"] = {**cfg.get("image_encoder", {}), "pretrained": False, "weights": None}
    try:
        model = build_model(cfg)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ZooError(f"The weights of {name!r} do not fit its model card's architecture ({err}).") from None
    model.eval()
    for modality, path in ((card.get("explain") or {}).get("gradcam_layer") or {}).items():
        try:  # chosen on validation by training.localisation (docs/EXPLANATIONS.md)
            model.image_encoders[modality].set_target_path(path)
        except (AttributeError, IndexError, KeyError, ValueError) as err:
            raise ZooError(f"The model card of {name!r} names a Grad-CAM layer {path!r} its {modality} encoder "
                           f"does not have ({err}).") from None
    encoder = None
    if "metadata" in model.modalities:
        from skinui.encoding import MetadataEncoder

        try:
            encoder = MetadataEncoder.from_dict(card["metadata_encoder"])
        except (KeyError, ValueError, TypeError) as err:
            raise ZooError(f"The model card of {name!r} has no usable metadata encoder ({err}).") from None
    temperature = float((card.get("calibration") or {}).get("temperature") or 1.0)
    return Entry(name, card, model, encoder, _schema(card["dataset"]), temperature,
                 _detectors(card, folder, card_path))


def _tensors(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """safetensors bytes -> tensors; anything else (a pickle whose hash was also forged) is refused."""
    try:
        return load_safetensors(data)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type for any malformed file
        raise ZooError(f"A weight file of {name!r} is not a valid safetensors file ({err}); it was not loaded. "
                       f"Restore the original file or retrain the entry.") from None


def _inside(folder: Path, rel_name: str, card_path: Path) -> Path:
    rel = Path(rel_name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ZooError(f"The model card {card_path.name} points outside the weights folder ({rel}); refused.")
    return folder / rel


def _detectors(card: dict[str, Any], folder: Path, card_path: Path) -> dict[str, Any]:
    """The card's out-of-distribution detectors per image modality (verified like weights)."""
    from safetensors.numpy import load as load_numpy

    from skinui.trust.ood import Detector

    found = {}
    for modality, spec in (card.get("ood") or {}).items():
        data = _verified_bytes(_inside(folder, spec["file"], card_path), spec["sha256"], "out-of-distribution file")
        found[modality] = Detector.from_tensors(load_numpy(data))
    return found


def _fp32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 tensors to fp16; float64 ones stay: a module keeps a tensor in float64 because it must be exact
    (FusionM4Net's SVM: its Platt parameters can exceed fp16's range and turn into inf)."""
    return {k: v.half() if v.dtype in (torch.float32, torch.bfloat16) else v for k, v in state.items()}


def _schema(dataset: str) -> Any:
    try:
        from skinui.datasets import schema_for

        return schema_for(dataset)
    except (ImportError, KeyError, ValueError):
        return None


def save_entry(model: torch.nn.Module, card: dict[str, Any], weights_dir: str | Path | None = None,
               shared: list[dict[str, Any]] | None = None, fp16: bool = False) -> Path:
    """Write `<name>.safetensors` and `<name>.json`; returns the card path.

    `fp16`: store the entry's own floating-point tensors in half precision (card `dtype`).

    Training-only parts (tensors under the model's `training_only_prefixes`, e.g. a super-resolution
    decoder under `auxiliary.`) are never written: an entry holds what inference runs, nothing more.

    `shared`: `[{"name": str, "prefix": str, "fp16": bool}]`; every tensor under `prefix` goes to
    `weights/shared/<name>.safetensors` instead. An existing shared file is reused when its
    content is identical and refused otherwise (other entries depend on it).
    """
    card = copy.deepcopy(card)
    _check_name(card.get("name", ""))
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    drop = tuple(getattr(model, "training_only_prefixes", ()))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if not (drop and k.startswith(drop))}
    if len(card.get("classes", [])) != model.num_classes:
        raise ZooError(f"The card lists {len(card.get('classes', []))} classes but the model has {model.num_classes}.")
    card.setdefault("model", copy.deepcopy(model.cfg))
    card["modalities"] = list(model.modalities)
    card["shared"] = []
    for spec in shared or []:
        _check_name(spec["name"])
        prefix = spec["prefix"]
        part = {k[len(prefix):]: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}
        if not part:
            raise ZooError(f"No model tensor starts with the shared prefix {prefix!r}.")
        if spec.get("fp16"):
            part = _half(part)
        data = save_safetensors(part, metadata={"format": "pt"})
        rel = Path("shared") / f"{spec['name']}.safetensors"
        target = folder / rel
        if target.is_file() and sha256_bytes(target.read_bytes()) != sha256_bytes(data):
            raise ZooError(f"{rel} already exists with different weights that other entries may use; "
                           f"choose another shared name.")
        _atomic_write(target, data)
        card["shared"].append({"file": rel.as_posix(), "sha256": sha256_bytes(data), "prefix": prefix,
                               "dtype": "float16" if spec.get("fp16") else "float32"})
    data = save_safetensors(_half(state) if fp16 else state, metadata={"format": "pt"})
    card["dtype"] = "float16" if fp16 else "float32"
    card["sha256"] = sha256_bytes(data)
    _atomic_write(folder / f"{card['name']}.safetensors", data)
    return write_card(card, folder)


def write_card(card: dict[str, Any], weights_dir: str | Path | None = None) -> Path:
    """(Re)write `<name>.json` atomically; the card is not hashed, so its text may change on its own."""
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    card_path = folder / f"{card['name']}.json"
    _atomic_write(card_path, (json.dumps(card, indent=2, sort_keys=False) + "\n").encode())
    return card_path


def shared_specs_of(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The `shared=` argument of `save_entry` that writes `card`'s shared files unchanged."""
    return [{"name": Path(p["file"]).stem, "prefix": p["prefix"], "fp16": p.get("dtype") == "float16"}
            for p in card.get("shared") or []]


def compact_entry(name: str, weights_dir: str | Path | None = None) -> tuple[int, int]:
    """Re-store an entry's own tensors in fp16 (shared files untouched); returns (bytes before, after).

    fp16 keeps 11 significant bits: the entry's predictions move by rounding only (the test
    reports in docs/reports/ are measured on the stored fp16 weights).
    """
    folder = Path(weights_dir) if weights_dir else default_weights_dir()
    entry = load_entry(name, folder)  # verifies it first: a missing or tampered entry is a ZooError
    before = (folder / f"{name}.safetensors").stat().st_size
    save_entry(entry.model, entry.card, folder, shared=shared_specs_of(entry.card), fp16=True)
    return before, (folder / f"{name}.safetensors").stat().st_size


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def summary(card: dict[str, Any]) -> dict[str, Any]:
    """The `python -m skinui zoo` view of a card."""
    model = card.get("model", {})
    structure = (model.get("structure") or {}).get("name")
    metrics = card.get("metrics") or {}
    brief = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if isinstance(metrics.get("macro"), dict) and "auc" in metrics["macro"]:
        brief["macro_auc"] = metrics["macro"]["auc"]
    return {
        "name": card["name"], "dataset": card["dataset"], "modalities": card["modalities"],
        "fusion": None if structure == "late" else (model.get("fusion") or {}).get("name"),
        "structure": structure, "classes": card["classes"], "metrics": brief,
    }
