"""DermiResNet (the comparison paper's image encoder): a ResNet whose skips carry learnable weights.

Each residual block computes y = F(x) + alpha * x with a learnable scalar alpha (initialised to 1),
four stages of 64/128/256/512 channels (scaled by `width` for tiny test models), and dropout inside
the last two residual blocks.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from skinui.models.encoders import IMAGE_ENCODERS, ImageEncoder


class WeightedSkipBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Dropout2d(dropout) if dropout else nn.Identity(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))
        self.alpha = nn.Parameter(torch.ones(()))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.alpha * self.shortcut(x))


@IMAGE_ENCODERS.register("dermiresnet")
class DermiResNet(ImageEncoder):
    def __init__(self, width: float = 1.0, blocks: tuple[int, ...] = (2, 2, 2, 2), dropout: float = 0.3,
                 stem_blocks: int = 2, **_: Any) -> None:
        super().__init__()
        chans = [max(4, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(3, chans[0], 7, 2, 3, bias=False), nn.BatchNorm2d(chans[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        n_total = sum(blocks)
        stages, c_in, index = [], chans[0], 0
        for s, (c, n) in enumerate(zip(chans, blocks)):
            layer = []
            for b in range(n):
                index += 1
                drop = dropout if index > n_total - 2 else 0.0  # only the last two residual blocks
                layer.append(WeightedSkipBlock(c_in, c, 2 if (b == 0 and s > 0) else 1, drop))
                c_in = c
            stages.append(nn.Sequential(*layer))
        self.stages = nn.ModuleList(stages)
        self.stem_blocks = stem_blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = chans[-1]
        self.set_target_layer(self.stages[-1][-1])

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages[: self.stem_blocks]:
            x = stage(x)
        return x

    def forward_trunk(self, h: torch.Tensor) -> torch.Tensor:
        for stage in self.stages[self.stem_blocks:]:
            h = stage(h)
        return self.pool(h).flatten(1)

    def stem_modules(self) -> list[nn.Module]:
        return [self.stem, *self.stages[: self.stem_blocks]]
