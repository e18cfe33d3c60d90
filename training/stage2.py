"""Stage 2 of the two-stage protocol: start every fusion entry from the same stage-1 image encoder.

`stage2.backbone` names a zoo entry trained in stage 1 (usually the dataset's image-only entry),
or maps each image modality to one (`{dermoscopic: synthderm_d_image, clinical: synthderm_c_image}`).
Its encoder weights are copied into the new model, which `FeatureTask` then keeps frozen; at
export the entry points at the backbone's `weights/shared/` file instead of storing a copy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import ConfigError


def backbone_names(backbone: Any, image_modalities: list[str]) -> dict[str, str | list[str]]:
    """Image modality -> its stage-1 entry, or a list of entries for an `ensemble` encoder's members.

    `backbone` is one name, a list of names (the same for every modality), or a {modality: either} map.
    """
    if isinstance(backbone, (str, list)):
        return {m: backbone for m in image_modalities}
    missing = [m for m in image_modalities if m not in backbone]
    if missing:
        raise ConfigError(f"stage2.backbone names no stage-1 entry for {', '.join(missing)}.")
    return {m: backbone[m] for m in image_modalities}


def members(names: str | list[str]) -> list[str]:
    """One modality's stage-1 entries as a list: the ensemble's members, or the single backbone."""
    return list(names) if isinstance(names, list) else [names]


def backbone_entries(backbone: Any, image_modalities: list[str]) -> set[str]:
    """Every stage-1 entry a stage-2 config reads (ensemble members included)."""
    return {n for names in backbone_names(backbone, image_modalities).values() for n in members(names)}


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in ("pretrained", "weights", "shared")}


def _member_configs(encoder_cfg: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    members = encoder_cfg.get("members") if encoder_cfg.get("name") == "ensemble" else None
    if members is None or len(members) != len(names):
        raise ConfigError(f"stage2.backbone lists {len(names)} stage-1 entries ({', '.join(names)}): "
                          f"model.image_encoder must be {{name: ensemble, members: [...]}} with {len(names)} members.")
    return list(members)


def load_backbone(model: nn.Module, backbone: Any, weights_dir: str | Path) -> None:
    """Copy each image modality's encoder from its stage-1 entry (architectures must match); a list of
    entries fills an ensemble encoder's members in order."""
    from skinui.zoo import ZooError, load_entry

    for m, names in backbone_names(backbone, model.image_modalities).items():
        listed = isinstance(names, list)
        ours = _member_configs(model.cfg["image_encoder"], names) if listed else [model.cfg["image_encoder"]]
        targets = list(model.image_encoders[m].members) if listed else [model.image_encoders[m]]
        for name, our_cfg, target in zip(members(names), ours, targets):
            try:
                source = load_entry(name, weights_dir)
            except ZooError as err:
                raise ConfigError(f"Stage 2 needs the stage-1 entry {name!r} ({err}); train it first "
                                  f"(its config is training/configs/{name}.yaml).") from None
            if m not in source.model.image_modalities:
                raise ConfigError(f"The stage-1 entry {name!r} has no {m} encoder; its modalities are "
                                  f"{', '.join(source.model.modalities)}.")
            theirs = source.model.cfg["image_encoder"]
            if _comparable(our_cfg) != _comparable(theirs) or model.cfg["image_size"] != source.model.cfg["image_size"]:
                raise ConfigError(f"The image encoder of this config ({our_cfg}, size {model.cfg['image_size']}) differs "
                                  f"from the stage-1 entry {name!r}'s ({theirs}); make model.image_encoder match.")
            target.load_state_dict(source.model.image_encoders[m].state_dict())


def average_member_heads(model: nn.Module, backbone: Any, weights_dir: str | Path) -> None:
    """Set an image-only ensemble entry's linear head to the mean of its members' own heads.

    With features [f_1; ...; f_K] concatenated, W = [W_1 ... W_K] / K and b = mean(b_k) give exactly
    the mean of the members' logits: the ensemble the validation split chose, with nothing learned
    on features the members saw in training.
    """
    import torch

    from skinui.zoo import load_entry

    if len(model.image_modalities) != 1 or "metadata" in model.modalities:
        raise ConfigError("stage2.head: average needs an image-only entry (one image modality, no metadata).")
    target = getattr(model.structure, "classifier", None)
    (names,) = backbone_names(backbone, model.image_modalities).values()
    heads = [getattr(load_entry(n, weights_dir).model.structure, "classifier", None) for n in members(names)]
    if target is None or any(h is None for h in heads):
        raise ConfigError("stage2.head: average needs structure late on the entry and on every member.")
    with torch.no_grad():
        target[-1].weight.copy_(torch.cat([h[-1].weight for h in heads], 1) / len(heads))
        target[-1].bias.copy_(torch.stack([h[-1].bias for h in heads]).mean(0))


def load_experts(model: nn.Module, experts: Any, weights_dir: str | Path, meta_columns: list[str] | None) -> dict[str, Any]:
    """A `product` entry (skinui/models/product.py) from two shipped single-modality entries: the image
    expert's encoders and head, the metadata expert's encoder and head, and each one's calibration.
    Nothing is trained. Returns the `model.structure` entries that rebuild it (for the card)."""
    from skinui.zoo import ZooError, load_entry

    if not isinstance(experts, dict) or sorted(experts) != ["image", "metadata"] or \
            not all(isinstance(v, str) for v in experts.values()):
        raise ConfigError("structure product needs model.structure.experts: {image: ENTRY, metadata: ENTRY}, an "
                          "image-only and a metadata-only entry of the same dataset.")
    loaded = {}
    for side, name in experts.items():
        try:
            loaded[side] = load_entry(name, weights_dir)
        except ZooError as err:
            raise ConfigError(f"structure product needs the {side} expert {name!r} ({err}); train it first.") from None
    image, meta = loaded["image"], loaded["metadata"]
    if "metadata" in image.model.modalities or image.model.image_modalities != model.image_modalities:
        raise ConfigError(f"The image expert {image.name!r} must read exactly {', '.join(model.image_modalities)} "
                          f"and no metadata; it reads {', '.join(image.model.modalities)}.")
    if meta.model.modalities != ["metadata"]:
        raise ConfigError(f"The metadata expert {meta.name!r} must read metadata only; it reads "
                          f"{', '.join(meta.model.modalities)}.")
    if image.classes != meta.classes or len(image.classes) != model.num_classes:
        raise ConfigError("The two experts must decide the same classes as this entry.")
    if meta_columns is not None and (meta.encoder is None or meta.encoder.columns != meta_columns):
        raise ConfigError(f"The metadata expert {meta.name!r} encodes its fields differently from this config's "
                          f"split; retrain it on the same split and fields.")
    priors = [(e.card.get("calibration") or {}).get("log_prior") for e in (image, meta)]
    if priors[0] is None or priors[1] is None or not torch.allclose(torch.tensor(priors[0]), torch.tensor(priors[1])):
        raise ConfigError("The two experts must carry the same training prevalence (same split): refit them.")
    for m in model.image_modalities:  # stage2.backbone loaded them already (its shared files ship with the entry)
        ours, theirs = model.image_encoders[m].state_dict(), image.model.image_encoders[m].state_dict()
        if ours.keys() != theirs.keys() or not all(torch.equal(ours[k].cpu(), theirs[k].cpu()) for k in ours):
            raise ConfigError(f"stage2.backbone must name the image expert {image.name!r}'s own stage-1 entries: "
                              f"its {m} encoder differs from the one this config loads.")
    model.meta_encoder.load_state_dict(meta.model.meta_encoder.state_dict())
    model.structure.image_head.load_state_dict(image.model.structure.classifier.state_dict())
    model.structure.meta_head.load_state_dict(meta.model.structure.classifier.state_dict())
    calibration = {side: {"entry": e.name, **{k: e.calibration.get(k) for k in ("temperature", "prior_weight")}}
                   for side, e in loaded.items()}
    return model.structure.set_experts(calibration, priors[0])
