"""`build_model(cfg)`: encoders per modality + missing embeddings + a structure (with its fusion).

Missing modalities are first-class: an absent modality (key missing/None for the batch, or
`mask[m]` False for a sample) is replaced by a learned per-modality *missing* embedding. Modality
dropout (per sample and modality) and field dropout (per metadata field group) train exactly that
state, so switching a modality off at inference stays in distribution.

Optional parts of a model config beyond DEFAULTS: `preprocess` (an image preprocessing applied to
every decoded image before augmentation and resizing, skinui.models.preprocess) and `auxiliary`
(training-only tasks such as DualRefNet's super-resolution decoder, skinui.models.auxiliary:
built only by `build_model(cfg, training=True)`, never saved into a zoo entry).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from skinui.models.auxiliary import build_auxiliary
from skinui.models.encoders import build_image_encoder, build_meta_encoder
from skinui.models.structures import STRUCTURES, ModelOutput
from skinui.vocabulary import IMAGE_MODALITIES, MODALITIES  # noqa: F401  (re-exported)

DEFAULTS: dict[str, Any] = {
    "image_size": 224,
    "image_encoder": {"name": "efficientnet_lite0", "pretrained": True, "shared": False},
    "meta_encoder": {"name": "mlp", "dims": [128, 256]},
    "fusion": {"name": "concat"},
    "structure": {"name": "jf"},
    "modality_dropout": 0.0,
    "field_dropout": 0.0,
}


def stem_style(h: torch.Tensor) -> torch.Tensor:
    """[B, 2C] per-channel mean and standard deviation of a stem feature map [B, C, H, W].

    The stem is the frozen ImageNet part of the encoder; its channel statistics describe what kind of
    picture this is (texture, colour, acquisition) rather than the diagnosis, which is what an
    out-of-distribution check needs (skinui.trust.ood).
    """
    return torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)


def encoder_style(enc: nn.Module, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
    """`stem_style` of an image encoder's frozen stem for pixels x (`h`: its forward_stem(x), if computed).
    An encoder whose stem output is not a feature map (stage_maps) gives its own through `style(x)`."""
    own = getattr(enc, "style", None)
    if callable(own):
        return own(x)
    return stem_style(enc.forward_stem(x) if h is None else h)


def resolve_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in, modalities validated and put in canonical order."""
    out = copy.deepcopy(DEFAULTS)
    out.update(copy.deepcopy(dict(cfg)))
    mods = list(out.get("modalities") or [])
    unknown = [m for m in mods if m not in MODALITIES]
    if not mods or unknown:
        raise ValueError(f"model modalities must be a non-empty subset of {list(MODALITIES)}; got {mods}")
    out["modalities"] = [m for m in MODALITIES if m in mods]
    if "num_classes" not in out:
        raise ValueError("model config needs num_classes")
    if "metadata" in out["modalities"] and not out.get("meta_dim"):
        raise ValueError("a model with metadata needs meta_dim (the fitted MetadataEncoder's dim)")
    return out


class MultimodalModel(nn.Module):
    training_only_prefixes = ("auxiliary.",)  # state-dict prefixes `skinui.zoo.save_entry` never ships

    def __init__(self, cfg: dict[str, Any], training: bool = False) -> None:
        super().__init__()
        self.cfg = cfg = resolve_config(cfg)
        self.modalities: list[str] = cfg["modalities"]
        self.image_modalities = [m for m in self.modalities if m in IMAGE_MODALITIES]
        self.num_classes = int(cfg["num_classes"])
        enc_cfg = cfg["image_encoder"]
        self.shared = bool(enc_cfg.get("shared", False)) and len(self.image_modalities) > 1
        # One module per distinct encoder: a shared encoder is stored once (safetensors refuses aliases).
        keys = ["shared"] if self.shared else self.image_modalities
        self.encoders = nn.ModuleDict({k: build_image_encoder(_for_modality(enc_cfg, k)) for k in keys})
        dims = {m: self.image_encoders[m].out_dim for m in self.image_modalities}
        if "metadata" in self.modalities:
            self.meta_encoder = build_meta_encoder(cfg["meta_encoder"], int(cfg["meta_dim"]))
            dims["metadata"] = self.meta_encoder.out_dim
        self.feature_dims = dims
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(d)) for m, d in dims.items()})
        groups = cfg.get("meta_groups") or []
        self.meta_groups = [sorted(map(int, g)) for g in groups]  # ascending: matches boolean-mask fill order
        missing_row = cfg.get("meta_missing") or [0.0] * int(cfg.get("meta_dim") or 0)
        self.register_buffer("meta_missing", torch.tensor(missing_row, dtype=torch.float32), persistent=False)
        s_cfg = dict(cfg["structure"])
        dim_image = sum(dims[m] for m in self.image_modalities) or None
        s_cls = STRUCTURES.get(s_cfg.pop("name"))
        if getattr(s_cls, "wants_image_dims", False):  # e.g. fusionm4net splits f_image back into its modalities
            s_cfg["image_dims"] = {m: dims[m] for m in self.image_modalities}
        if getattr(s_cls, "wants_map_shapes", False):  # e.g. ammfm / pemm unflatten `stage_maps` features
            s_cfg["map_shapes"] = {m: getattr(self.image_encoders[m], "map_shapes", None) for m in self.image_modalities}
        self.structure = s_cls(dim_image, dims.get("metadata"), self.num_classes, fusion=cfg["fusion"], **s_cfg)
        # Training-only tasks (e.g. a super-resolution decoder): built for training only, never shipped.
        self.auxiliary = nn.ModuleDict()
        for task, spec in (cfg.get("auxiliary") or {}).items() if training else ():
            m = spec.get("modality") or (self.image_modalities[0] if len(self.image_modalities) == 1 else None)
            enc = self.image_encoders.get(m)
            if enc is None or not hasattr(enc, "forward_maps"):
                raise ValueError(f"model.auxiliary.{task} needs an image modality of the model whose encoder has "
                                 f"feature maps (modality: one of {', '.join(self.image_modalities) or 'none'}).")
            self.auxiliary[task] = build_auxiliary(task, spec, enc.out_dim, m)

    @property
    def image_encoders(self) -> dict[str, nn.Module]:
        """Image encoder per image modality (the same module twice when shared)."""
        return {m: self.encoders["shared" if self.shared else m] for m in self.image_modalities}

    def encode(self, batch: dict[str, Any], styles: dict[str, torch.Tensor] | None = None,
               maps: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Features [B, F] for every modality the batch carries (absent ones are left out).

        `styles`, when given, receives each image modality's stem statistics (`stem_style`): what
        the out-of-distribution detector reads, at no extra cost. `maps`, when given, receives the
        last feature map of each image modality an auxiliary task reads (training only).
        """
        feats = {}
        wanted_maps = {t.modality for t in self.auxiliary.values()} if maps is not None else set()
        for m in self.image_modalities:
            if batch.get(m) is None:
                continue
            enc = self.image_encoders[m]
            if styles is None and m not in wanted_maps:
                feats[m] = enc(batch[m])
                continue
            h = enc.forward_stem(batch[m])
            if styles is not None and (h.dim() == 4 or callable(getattr(enc, "style", None))):
                styles[m] = encoder_style(enc, batch[m], h)
            if m in wanted_maps:
                maps[m] = enc.forward_maps(h)
                feats[m] = enc.pool(maps[m])
            else:
                feats[m] = enc.forward_trunk(h)
        if "metadata" in self.modalities and batch.get("metadata") is not None:
            feats["metadata"] = self.meta_encoder(self._field_dropout(batch["metadata"]))
        return feats

    def _field_dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Training only: each field group of each sample set to its encoded 'missing' value with prob p."""
        p = float(self.cfg.get("field_dropout") or 0.0)
        if not (self.training and p > 0 and self.meta_groups):
            return x
        x = x.clone()
        for cols in self.meta_groups:
            drop = torch.rand(x.shape[0], device=x.device) < p
            x[drop[:, None] & _col_mask(cols, x)] = self.meta_missing[cols].repeat(int(drop.sum()))
        return x

    def presence(self, feats: dict[str, torch.Tensor], mask: dict[str, torch.Tensor] | None,
                 batch_size: int) -> dict[str, torch.Tensor]:
        """Per-sample presence per modality, with modality dropout applied in training."""
        mask = mask or {}
        dev = next(iter(feats.values())).device if feats else self.missing[self.modalities[0]].device
        present = {}
        for m in self.modalities:
            if m not in feats:
                present[m] = torch.zeros(batch_size, dtype=torch.bool, device=dev)
            else:
                present[m] = mask[m].to(dev).bool() if m in mask else torch.ones(batch_size, dtype=torch.bool,
                                                                                  device=dev)
        p = float(self.cfg.get("modality_dropout") or 0.0)
        if self.training and p > 0 and len(self.modalities) > 1:
            kept = {m: v & (torch.rand(batch_size, device=dev) >= p) for m, v in present.items()}
            none_left = ~torch.stack(list(kept.values())).any(0)  # never drop every modality of a sample
            present = {m: torch.where(none_left, present[m], kept[m]) for m in present}
        return present

    def head(self, feats: dict[str, torch.Tensor], mask: dict[str, torch.Tensor] | None = None) -> ModelOutput:
        if not feats:
            raise ValueError("the batch carries none of the model's modalities " + str(self.modalities))
        b = next(iter(feats.values())).shape[0]
        present = self.presence(feats, mask, b)
        filled = {}
        for m in self.modalities:
            miss = self.missing[m].expand(b, -1)
            # torch.where keeps the missing embedding in the graph even when unused (DDP-friendly).
            filled[m] = torch.where(present[m][:, None], feats[m], miss) if m in feats else miss
        f_image = torch.cat([filled[m] for m in self.image_modalities], 1) if self.image_modalities else None
        f_meta = filled.get("metadata")
        none = torch.zeros(b, dtype=torch.bool, device=miss.device)
        has_image = torch.stack([present[m] for m in self.image_modalities]).any(0) if self.image_modalities else none
        has_meta = present.get("metadata", none)
        branch_present = torch.stack([has_image, torch.ones_like(has_image), has_meta], 1)
        out = self.structure(f_image, f_meta, branch_present)
        out.features.update(filled)
        if f_image is not None:
            out.features["image"] = f_image
        return out

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        if not (self.training and len(self.auxiliary)):
            return self.head(self.encode(batch), batch.get("mask"))
        maps: dict[str, torch.Tensor] = {}
        out = self.head(self.encode(batch, maps=maps), batch.get("mask"))
        for task, aux in self.auxiliary.items():
            if aux.modality in maps:  # per-sample loss [B]; rows without that image are masked in the loss
                present = (batch.get("mask") or {}).get(aux.modality)
                out.features[f"auxiliary.{task}"] = {
                    "loss": aux(maps[aux.modality], batch[aux.modality]),
                    "present": (present.to(maps[aux.modality].device).float() if present is not None else
                                maps[aux.modality].new_ones(maps[aux.modality].shape[0]))}
        return out

    def auxiliary_loss(self, out: ModelOutput) -> torch.Tensor:
        """sum over training-only tasks of weight x mean per-sample loss over the samples with that image."""
        total = out.logits.new_zeros((), dtype=torch.float32)
        for task, aux in self.auxiliary.items():
            got = out.features.get(f"auxiliary.{task}")
            if got is not None:
                total = total + aux.weight * (got["loss"] * got["present"]).sum() / got["present"].sum().clamp_min(1.0)
        return total

    def loss(self, out: ModelOutput, target: torch.Tensor, class_weights: torch.Tensor | None = None,
             label_smoothing: float = 0.0) -> torch.Tensor:
        """The structure's loss plus the auxiliary tasks' (class weights: only for `weighs_classes` structures)."""
        if getattr(self.structure, "weighs_classes", False):
            main = self.structure.loss(out, target, class_weights=class_weights, label_smoothing=label_smoothing)
        else:
            if class_weights is not None or label_smoothing:
                raise ValueError(f"structure {type(self.structure).__name__} takes no class weights; use "
                                 f"training.optim.compute_loss.")
            main = self.structure.loss(out, target)
        return main + self.auxiliary_loss(out) if len(self.auxiliary) else main


def _for_modality(enc_cfg: dict[str, Any], key: str) -> dict[str, Any]:
    """The image encoder config for one modality: `per_modality: {modality: {option: value}}` (e.g. AMMFM's
    two stage-1 weight files) overrides the shared options for that modality's encoder."""
    over = (enc_cfg.get("per_modality") or {}).get(key) or {}
    return {**{k: v for k, v in enc_cfg.items() if k != "per_modality"}, **over}


def _col_mask(cols: list[int], x: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
    m[cols] = True
    return m[None, :]


def build_model(cfg: dict[str, Any], training: bool = False) -> MultimodalModel:
    """Build a model from a config dict (the YAML `model:` block); see docs/ARCHITECTURE.md.

    `training=True` also builds the training-only parts (`model.auxiliary`); the zoo, the app and
    evaluation build without them."""
    return MultimodalModel(cfg, training=training)


# Imported for their registration side effects (the `dualrefnet` and `fusionm4net` structures and the
# `tdbn` encoder and structure live in their own modules).
from skinui.models import ammfm as _ammfm  # noqa: E402,F401
from skinui.models import dualrefnet as _dualrefnet  # noqa: E402,F401
from skinui.models import fusionm4net as _fusionm4net  # noqa: E402,F401
from skinui.models import pemm as _pemm  # noqa: E402,F401
from skinui.models import product as _product  # noqa: E402,F401
from skinui.models import tdbn as _tdbn  # noqa: E402,F401
