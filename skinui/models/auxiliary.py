"""Training-only auxiliary tasks: modules that shape an image encoder while it trains and are never shipped.

A model config lists them by task name under `model.auxiliary`, e.g. DualRefNet's

    auxiliary: {sr: {name: super_resolution, modality: clinical, weight: 1.0, layers: 6}}

`build_model(cfg, training=True)` (what `python -m training fit` builds) builds them, under
`auxiliary.<task>.` in the state dict, so checkpoints and `--resume` carry them. `build_model(cfg)`
(what `skinui.zoo.load_entry`, the app, the API and the CLI build) never does, and
`skinui.zoo.save_entry` drops every tensor under a model's `training_only_prefixes` (`auxiliary.`),
so a shipped entry holds no auxiliary weight and its predictions cannot depend on one. The card's
`model.auxiliary` (and `training.config`) still record what the entry was trained with.

In training mode `MultimodalModel.forward` runs each task on the last feature map of its modality's
encoder and the (augmented, preprocessed) input image, and stores the per-sample loss in
`out.features["auxiliary.<task>"]`; `MultimodalModel.auxiliary_loss` adds `weight` x its mean over
the samples that carry that image. Evaluation (eval mode) never runs them.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skinui.models.preprocess import IMAGENET_MEAN, IMAGENET_STD
from skinui.registry import Registry

AUXILIARIES: Registry[type] = Registry("auxiliary task")


class AuxiliaryTask(nn.Module):
    """Base: `forward(fmap [B, C, h, w], image [B, 3, H, W]) -> per-sample loss [B]`."""

    def __init__(self, in_channels: int, modality: str, weight: float = 1.0, **_: Any) -> None:
        super().__init__()
        self.in_channels, self.modality, self.weight = in_channels, modality, float(weight)

    def forward(self, fmap: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@AUXILIARIES.register("super_resolution")
class SuperResolution(AuxiliaryTask):
    """DualRefNet's auxiliary super-resolution decoder: last feature map -> the input image at `scale` x.

    `layers` upsampling layers, each a 4x4 transposed convolution of stride 2 (doubling height and
    width), the hidden ones followed by BatchNorm + ReLU, the last giving 3 channels: six layers take
    a stride-32 backbone's 7x7 map of a 224-px image to 448 px, twice the input. `widths` are the
    hidden layers' channels (len = layers - 1). The target is the network's own input (after
    preprocessing and augmentation) upscaled `scale` x by `upsample` interpolation; with
    `target: pixels` (default) both are compared in [0, 1] pixel intensities (ImageNet normalisation
    undone, a sigmoid on the decoder), with `target: normalized` in the normalised input space (no
    sigmoid). Loss: per-sample mean squared error over every pixel and channel.
    """

    def __init__(self, in_channels: int, modality: str, weight: float = 1.0, layers: int = 6,
                 widths: list[int] | tuple[int, ...] = (256, 128, 64, 32, 16), scale: int = 2,
                 upsample: str = "bicubic", target: str = "pixels", **kw: Any) -> None:
        super().__init__(in_channels, modality, weight, **kw)
        widths = list(widths)
        if len(widths) != layers - 1:
            raise ValueError(f"super_resolution: widths lists the {layers - 1} hidden layers' channels for "
                             f"layers={layers}; got {len(widths)}.")
        if target not in ("pixels", "normalized"):
            raise ValueError(f"super_resolution target must be pixels or normalized, not {target!r}.")
        self.scale, self.upsample_mode, self.target_space = int(scale), upsample, target
        chans = [in_channels, *widths, 3]
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks.append(nn.ConvTranspose2d(chans[i], chans[i + 1], 4, stride=2, padding=1, bias=i == layers - 1))
            if i < layers - 1:
                blocks += [nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
        if target == "pixels":
            blocks.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*blocks)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None], persistent=False)

    def target(self, image: torch.Tensor) -> torch.Tensor:
        """The input image upscaled `scale` x (pixels in [0, 1], or the normalised space)."""
        x = image.float()
        if self.target_space == "pixels":
            x = x * self.std + self.mean
        up = F.interpolate(x, scale_factor=self.scale, mode=self.upsample_mode,
                           align_corners=False if self.upsample_mode in ("bilinear", "bicubic") else None)
        return up.clamp(0.0, 1.0) if self.target_space == "pixels" else up

    def reconstruct(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.decoder(fmap)

    def forward(self, fmap: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pred, target = self.reconstruct(fmap).float(), self.target(image)
        if pred.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"super_resolution: the decoder turns a "
                             f"{tuple(fmap.shape[-2:])} feature map into {tuple(pred.shape[-2:])} pixels but the "
                             f"{self.scale}x target is {tuple(target.shape[-2:])}; set layers so that 2**layers "
                             f"equals {self.scale} x the backbone's downsampling.")
        return (pred - target).pow(2).flatten(1).mean(1)


def build_auxiliary(task: str, spec: dict[str, Any], in_channels: int, default_modality: str | None) -> AuxiliaryTask:
    """One `model.auxiliary` entry: `{name: ..., modality: ..., weight: ..., **options}`."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if not name:
        raise ValueError(f"model.auxiliary.{task} needs a name (one of {', '.join(AUXILIARIES.names())}).")
    spec.setdefault("modality", default_modality)
    return AUXILIARIES.get(name)(in_channels, **spec)
