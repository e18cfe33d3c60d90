"""Stage 2 of the two-stage protocol: start every fusion entry from the same stage-1 image encoder.

`stage2.backbone` names a zoo entry trained in stage 1 (usually the dataset's image-only entry),
or maps each image modality to one (`{dermoscopic: synthderm_d_image, clinical: synthderm_c_image}`).
Its encoder weights are copied into the new model, which `FeatureTask` then keeps frozen; at
export the entry points at the backbone's `weights/shared/` file instead of storing a copy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from training.config import ConfigError


def backbone_names(backbone: str | dict[str, str], image_modalities: list[str]) -> dict[str, str]:
    if isinstance(backbone, str):
        return {m: backbone for m in image_modalities}
    missing = [m for m in image_modalities if m not in backbone]
    if missing:
        raise ConfigError(f"stage2.backbone names no stage-1 entry for {', '.join(missing)}.")
    return {m: backbone[m] for m in image_modalities}


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in ("pretrained", "weights", "shared")}


def load_backbone(model: nn.Module, backbone: str | dict[str, str], weights_dir: str | Path) -> None:
    """Copy each image modality's encoder from its stage-1 entry (architectures must match)."""
    from skinui.zoo import ZooError, load_entry

    for m, name in backbone_names(backbone, model.image_modalities).items():
        try:
            source = load_entry(name, weights_dir)
        except ZooError as err:
            raise ConfigError(f"Stage 2 needs the stage-1 entry {name!r} ({err}); train it first "
                              f"(its config is training/configs/{name}.yaml).") from None
        if m not in source.model.image_modalities:
            raise ConfigError(f"The stage-1 entry {name!r} has no {m} encoder; its modalities are "
                              f"{', '.join(source.model.modalities)}.")
        ours, theirs = model.cfg["image_encoder"], source.model.cfg["image_encoder"]
        if _comparable(ours) != _comparable(theirs) or model.cfg["image_size"] != source.model.cfg["image_size"]:
            raise ConfigError(f"The image encoder of this config ({ours}, size {model.cfg['image_size']}) differs from "
                              f"the stage-1 entry {name!r}'s ({theirs}); make model.image_encoder match.")
        model.image_encoders[m].load_state_dict(source.model.image_encoders[m].state_dict())
