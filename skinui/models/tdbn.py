"""TDBN (dual-network attention with lesion segmentation): its image encoder and its head.

The whole system is a config (training/configs/pad_ufes20_tdbn.yaml); this module holds the two parts
no other entry has:

- the `tdbn` image encoder: a frozen lesion segmenter (skinui.models.segmenter.DeepUNet) predicts
  the mask M of the input image x; stream 1 encodes x, stream 2 encodes x * M (in pixel space: the
  background turns black); both last feature maps become token sequences (one token per position,
  7 x 7 = 49 for a 224-px EfficientNet-Lite0), and multi-head cross-attention takes its queries and
  values from the original image's tokens and its keys from the segmented image's tokens,

      Z = MHA(Q = T_x W_q, K = T_{xM} W_k, V = T_x W_v),   Y = LayerNorm(Z + FFN(Z)),

  then global average pooling over the tokens gives the image feature (width `dim`);
- the `projected_add` fusion and the `tdbn` structure: the metadata MLP's output (model.meta_encoder,
  two layers with BatchNorm and ReLU) projected linearly to the image width and added to the image
  feature, then the head width -> 512 -> 128 -> classes (ReLU and dropout between).

Cost: `frozen: all` (the CPU setting) keeps the segmenter and both streams frozen, so the fast
path (`train.mode: fastpath`, training.fastpath) runs them once per image view and caches the two
token maps (`forward_stem`); the attention, the metadata MLP and the head train on the cache
(`forward_trunk`). `frozen: K` (an integer) freezes only the streams' first K blocks and trains the
rest of both streams as well. The segmenter is always frozen at stage 2, so its masks are
deterministic; it is trained on its own by `python -m training.segment`.

Weights: `pretrained: true` (training) fills the segmenter from `segmenter.weights` and the streams
from `stream_weights` (stage-1 encoder files in weights/shared/), else ImageNet for the streams;
the zoo builds with `pretrained: false` and loads every tensor from the entry. `shared_files()`
names the frozen parts that came from weights/shared/, so the entry points at those files instead of
storing copies (training.export).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skinui.models.encoders import IMAGE_ENCODERS, ImageEncoder, build_image_encoder
from skinui.models.fusion import FUSIONS, FusionBase
from skinui.models.preprocess import IMAGENET_MEAN, IMAGENET_STD
from skinui.models.segmenter import DeepUNet
from skinui.models.structures import STRUCTURES, JointFusion


def _load_file(module: nn.Module, path: str | Path, what: str) -> None:
    """A safetensors state dict (fp16 allowed) into `module`, every key matching."""
    from safetensors.torch import load_file

    from skinui.paths import REPO

    p = Path(path)
    p = p if p.is_absolute() else REPO / p
    if p.suffix != ".safetensors":
        raise ValueError(f"tdbn {what}: only .safetensors weight files are accepted, not {p.name}.")
    if not p.is_file():
        hint = " (train it first: python -m training.segment --config ...)" if what == "segmenter" else ""
        raise FileNotFoundError(f"tdbn {what} weights {p} do not exist{hint}.")
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in load_file(str(p)).items()}
    module.load_state_dict(state, strict=True)


class CrossAttention(nn.Module):
    """Multi-head attention, queries and values from `x` (original), keys from `s` (segmented);
    then LayerNorm(Z + FFN(Z)). Returns the tokens [B, N, dim] and the weights [B, heads, N, N]."""

    def __init__(self, in_x: int, in_s: int, dim: int = 256, heads: int = 8, ffn: int = 512,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"tdbn dim {dim} must be a multiple of heads {heads}.")
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(in_x, dim), nn.Linear(in_s, dim), nn.Linear(in_x, dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, h, N, d/h]

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._split(self.q(x)), self._split(self.k(s)), self._split(self.v(x))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        z = (self.drop(weights) @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        z = self.out(z)
        return self.norm(z + self.ffn(z)), weights


@IMAGE_ENCODERS.register("tdbn")
class TDBNEncoder(ImageEncoder):
    """Segmenter + original stream + segmented stream + cross-attention; see the module docstring."""

    def __init__(self, backbone: dict[str, Any] | None = None, segmenter: dict[str, Any] | None = None,
                 stream_weights: dict[str, str] | None = None, frozen: str | int = "all", dim: int = 256,
                 heads: int = 8, ffn: int = 512, dropout: float = 0.1, pretrained: bool = False,
                 weights: str | None = None, **_: Any) -> None:
        super().__init__()
        seg_cfg = dict(segmenter or {})
        seg_weights = seg_cfg.pop("weights", None)
        stream_weights = dict(stream_weights or {})
        if frozen != "all" and not (isinstance(frozen, int) and frozen >= 0):
            raise ValueError(f"tdbn frozen must be all or a number of backbone blocks, not {frozen!r}.")
        self.frozen = frozen
        bb = {"name": "efficientnet_lite0", **(backbone or {}), **({"stem_blocks": frozen} if frozen != "all" else {})}
        self.segmenter = DeepUNet(**{**seg_cfg, "pretrained": False})
        self.streams = nn.ModuleDict()
        for s in ("original", "segmented"):
            file = stream_weights.get(s) if pretrained else None
            self.streams[s] = build_image_encoder({**bb, "pretrained": bool(pretrained and not file), "weights": None})
            if file:
                _load_file(self.streams[s], file, f"{s} stream")
        if pretrained:
            if not seg_weights:
                raise ValueError("tdbn needs segmenter.weights (the trained segmenter) when pretrained: true.")
            _load_file(self.segmenter, seg_weights, "segmenter")
        self._files = {"segmenter.": seg_weights, **{f"streams.{s}.": stream_weights.get(s) for s in self.streams}}
        self._seg_channels = self.segmented.out_dim if frozen == "all" else self._stem_width(self.segmented)
        c = self.original.out_dim
        self.attention = CrossAttention(c, self.segmented.out_dim, dim, heads, ffn, dropout)
        self.out_dim = dim
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None], persistent=False)
        self.set_target_layer(self.original.target_layer)
        for module in self.stem_modules():  # frozen in every mode (the segmenter always)
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> TDBNEncoder:
        super().train(mode)
        for module in self.stem_modules():  # frozen BatchNorms keep their statistics
            module.eval()
        return self

    @property
    def original(self) -> nn.Module:
        return self.streams["original"]

    @property
    def segmented(self) -> nn.Module:
        return self.streams["segmented"]

    @property
    def net(self) -> nn.Module:
        """The original stream's backbone: Grad-CAM layer paths ("bn2", "blocks.5") are read inside it."""
        return self.original.net

    def set_target_path(self, path: str) -> None:
        self.original.set_target_path(path)
        self.set_target_layer(self.original.target_layer)

    # -- the mask and the two inputs -----------------------------------------------------------------
    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """The segmenter's binary mask [B, 1, H, W]; an image where it finds no lesion keeps every pixel."""
        m = self.segmenter.mask(x)
        empty = m.flatten(1).sum(1) == 0
        return torch.where(empty[:, None, None, None], torch.ones_like(m), m)

    def apply_mask(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """x * M in pixel space (background black), normalised again."""
        return ((x * self.std + self.mean) * m - self.mean) / self.std

    # -- stem (frozen, cached by the fast path) and trunk (trained) -------------------------------------
    def _stem_of(self, stream: nn.Module, x: torch.Tensor) -> torch.Tensor:
        h = stream.forward_stem(x)
        return stream.forward_maps(h) if self.frozen == "all" else h

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Both streams' frozen outputs stacked along channels: [B, C_orig + C_seg, h, w]."""
        xs = self.apply_mask(x, self.segment(x))
        return torch.cat([self._stem_of(self.original, x), self._stem_of(self.segmented, xs)], 1)

    def split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward_stem's stack -> the two streams' last feature maps."""
        ho, hs = h.split([h.shape[1] - self._seg_channels, self._seg_channels], 1)
        if self.frozen != "all":
            ho, hs = self.original.forward_maps(ho), self.segmented.forward_maps(hs)
        return ho, hs

    @staticmethod
    def _stem_width(stream: nn.Module) -> int:
        """Channels of a stream's stem output (a dry run in eval mode: BatchNorm statistics untouched)."""
        was = stream.training
        stream.eval()
        with torch.no_grad():
            width = int(stream.forward_stem(torch.zeros(1, 3, 64, 64)).shape[1])
        stream.train(was)
        return width

    def attend(self, ho: torch.Tensor, hs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature maps -> (attended tokens [B, N, dim], attention weights [B, heads, N, N])."""
        return self.attention(ho.flatten(2).transpose(1, 2), hs.flatten(2).transpose(1, 2))

    def forward_trunk(self, h: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.attend(*self.split(h))
        return tokens.mean(1)

    def stem_modules(self) -> list[nn.Module]:
        if self.frozen == "all":
            return [self.segmenter, self.original, self.segmented]
        return [self.segmenter, *self.original.stem_modules(), *self.segmented.stem_modules()]

    def shared_files(self) -> dict[str, str]:
        """{state-dict sub-prefix: shared file name} for the frozen parts loaded from weights/shared/."""
        frozen = {"segmenter."} | ({"streams.original.", "streams.segmented."} if self.frozen == "all" else set())
        return {k: Path(v).stem for k, v in self._files.items()
                if v and k in frozen and Path(v).parent.name == "shared"}


@FUSIONS.register("projected_add")
class ProjectedAdd(FusionBase):
    """f_image + W f_meta: the metadata features projected linearly to the image width and added."""

    def __init__(self, dim_image: int, dim_meta: int, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.proj = nn.Linear(dim_meta, dim_image)
        self.out_dim = dim_image

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        return self.dropout(f_image + self.proj(f_meta))


@STRUCTURES.register("tdbn")
class TDBNHead(JointFusion):
    """The fusion (`projected_add` in TDBN), then width -> hidden[0] -> hidden[1] -> classes (ReLU, dropout)."""

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, hidden: tuple[int, ...] | list[int] = (512, 128),
                 dropout: float = 0.3, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout, **kw)
        layers: list[nn.Module] = []
        width = self.fusion.out_dim
        for h in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.joint_head = nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(width, num_classes))


def segmenter_of(encoder: nn.Module) -> Any:
    """The encoder's lesion segmenter interface (`segment`), or None for encoders without one."""
    return encoder if callable(getattr(encoder, "segment", None)) and hasattr(encoder, "segmenter") else None

