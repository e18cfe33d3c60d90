"""AMMFM (the dissertation's chapter 5): asymmetric attention from the clinical to the dermoscopic image.

The whole system is a config (training/configs/synthderm_ammfm.yaml); this module holds its two parts:

- the `stage_maps` image encoder: a backbone whose feature maps at several stages (`stages`, module
  paths inside the timm network such as "blocks.4" and "bn2", the last map) are average-pooled to a
  fixed grid (`grids`; at SynthDerm's 128 px, blocks.4 is 8 x 8 and bn2 4 x 4 already, so the pooling
  is the identity) and returned flattened and concatenated: [B, sum_s C_s g_s^2]. The model treats that
  vector like any image feature (missing embedding, modality dropout); the structure unflattens it.
  `frozen: all` (the only mode here) keeps the backbone frozen, so the CPU fast path
  (`train.mode: fastpath`) caches the maps once per view (`forward_stem`) and `forward_trunk` is
  the identity. `weights` (with `pretrained: true`) fills the backbone from a stage-1 encoder file
  in weights/shared/; `shared_files()` lets the entry point at that file instead of storing a copy.
- the `ammfm` structure. At every stage s, with the clinical map X_C and the dermoscopic map X_D
  (N = h x w positions each), an asymmetric attention block

      Q = W_q X_C,  K = W_k X_C  (1x1 convolutions of the clinical features, width `key_dim`)
      A = softmax(Q^T K / sqrt(key_dim))            [N, N], each row a distribution over positions
      V = W_v X_D  (a 1x1 convolution of the dermoscopic features, width `value_dim`)
      Y = V + V A^T                                  (the clinical map refines the dermoscopic one; residual)

  The map comes from the clinical image alone and re-weights the dermoscopic features: the light
  (clinical) stream steers where the strong (dermoscopic) stream looks, never the reverse. Three
  branches: clinical (dropout + linear on the pooled last clinical map), dermoscopic (the same on the
  dermoscopic one) and fused (dropout + linear on [GAP(Y_s) for every stage ; f_M], the metadata
  entering here through the zoo's metadata MLP; the chapter has no metadata). Loss: the summed
  cross-entropy CE_C + CE_D + CE_F; P = w_C P_C + w_D P_D + w_F P_F with the branch weights searched on
  validation after training (training.ammfm.search_branch_weights) and stored in the card.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skinui.models.encoders import IMAGE_ENCODERS, ImageEncoder, build_image_encoder, module_at
from skinui.models.structures import STRUCTURES, ModelOutput, StructureBase, _head, mix_branches, probability_output

BRANCHES = ("clinical", "dermoscopic", "fused")  # the order of `branch_weights` (PEMM's heads too)


@IMAGE_ENCODERS.register("stage_maps")
class StageMaps(ImageEncoder):
    """A frozen backbone's feature maps at several stages, pooled to fixed grids, flattened and concatenated."""

    def __init__(self, backbone: dict[str, Any] | None = None, stages: list[str] | tuple[str, ...] = ("blocks.4", "bn2"),
                 grids: list[int] | tuple[int, ...] = (8, 4), frozen: str = "all", pretrained: bool = False,
                 weights: str | None = None, **_: Any) -> None:
        super().__init__()
        if frozen != "all":
            raise ValueError("stage_maps keeps its backbone frozen (frozen: all); its maps are cached by the fast path.")
        if len(stages) != len(grids) or not stages:
            raise ValueError("stage_maps needs one grid size per stage (stages and grids of the same length).")
        self.encoder = build_image_encoder({"name": "efficientnet_lite0", **(backbone or {}),
                                            "pretrained": bool(pretrained and not weights), "weights": None})
        if pretrained and weights:
            from skinui.models.tdbn import _load_file

            _load_file(self.encoder, weights, "backbone")
        self._file = weights
        self.stages, self.grids = [str(s) for s in stages], [int(g) for g in grids]
        net = self.net
        if not (hasattr(net, "blocks") and hasattr(net, "conv_head")):
            raise ValueError("stage_maps reads EfficientNet/MobileNet-shaped timm backbones (blocks, conv_head, bn2).")
        order = [f"blocks.{i}" for i in range(len(net.blocks))] + ["bn2"]
        unknown = [s for s in self.stages if s not in order]
        if unknown:
            raise ValueError(f"stage_maps stages {unknown} are not among {', '.join(order)}.")
        pairs = sorted(zip(self.stages, self.grids), key=lambda sg: order.index(sg[0]))  # network order
        self.stages, self.grids = [s for s, _ in pairs], [g for _, g in pairs]
        was = net.training
        net.eval()
        with torch.no_grad():
            maps = self.maps(torch.zeros(1, 3, 64, 64))
        net.train(was)
        self.map_shapes = [(int(m.shape[1]), g, g) for m, g in zip(maps, self.grids)]
        self.out_dim = sum(c * h * w for c, h, w in self.map_shapes)
        self.set_target_layer(module_at(net, "bn2"))
        self.encoder.requires_grad_(False)

    @property
    def net(self) -> nn.Module:
        return self.encoder.net

    @property
    def cache_tag(self) -> str:
        """Part of the fast path's cache key: the same frozen weights give other maps with other stages."""
        return f"stage_maps:{','.join(self.stages)}:{','.join(map(str, self.grids))}"

    def train(self, mode: bool = True) -> StageMaps:
        super().train(mode)
        self.encoder.eval()  # frozen BatchNorms keep their statistics
        return self

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map at every stage, in network order."""
        net, out = self.net, {}
        h = net.bn1(net.conv_stem(x))
        for i, block in enumerate(net.blocks):
            h = block(h)
            if f"blocks.{i}" in self.stages:
                out[f"blocks.{i}"] = h
            if len(out) == len(self.stages):
                break
        if "bn2" in self.stages:
            out["bn2"] = net.bn2(net.conv_head(h))
        return [out[s] for s in self.stages]

    def style(self, x: torch.Tensor) -> torch.Tensor:
        """The out-of-distribution statistics (skinui.models.model.stem_style) of the backbone's own stem: the
        same numbers as for the stage-1 entry whose backbone this is (its maps are flattened, not a stem map)."""
        from skinui.models.model import stem_style

        return stem_style(self.encoder.forward_stem(x))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        maps = [F.adaptive_avg_pool2d(m, g) for m, g in zip(self.maps(x), self.grids)]
        return torch.cat([m.flatten(1) for m in maps], 1)

    def forward_trunk(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def stem_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def shared_files(self) -> dict[str, str]:
        """{state-dict sub-prefix: shared file name} when the frozen backbone came from weights/shared/."""
        return {"encoder.": Path(self._file).stem} if self._file and Path(self._file).parent.name == "shared" else {}


def unflatten(f: torch.Tensor, shapes: list[tuple[int, int, int]]) -> list[torch.Tensor]:
    """A `stage_maps` feature [B, D] back into its maps [B, C, h, w] per stage."""
    out, start = [], 0
    for c, h, w in shapes:
        out.append(f[:, start:start + c * h * w].reshape(-1, c, h, w))
        start += c * h * w
    return out


class AsymmetricAttention(nn.Module):
    """Y = V + V A^T with A = softmax(Q^T K / sqrt(d)) from the clinical map, V from the dermoscopic map."""

    def __init__(self, c_clinical: int, c_dermoscopic: int, key_dim: int = 16, value_dim: int = 64) -> None:
        super().__init__()
        self.q = nn.Conv2d(c_clinical, key_dim, 1)
        self.k = nn.Conv2d(c_clinical, key_dim, 1)
        self.v = nn.Conv2d(c_dermoscopic, value_dim, 1)
        self.key_dim, self.out_dim = key_dim, value_dim

    def attention(self, x_c: torch.Tensor) -> torch.Tensor:
        """[B, N, N]: row i = where position i of the dermoscopic map gathers from, decided by the clinical map."""
        q, k = self.q(x_c).flatten(2), self.k(x_c).flatten(2)  # [B, d, N]
        return torch.softmax(q.transpose(1, 2) @ k / math.sqrt(self.key_dim), dim=-1)

    def forward(self, x_c: torch.Tensor, x_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x_c.shape[-2:] != x_d.shape[-2:]:
            x_c = F.adaptive_avg_pool2d(x_c, x_d.shape[-2:])
        a = self.attention(x_c)
        v = self.v(x_d)
        b, d, h, w = v.shape
        refined = (v.flatten(2) @ a.transpose(1, 2)).view(b, d, h, w)
        return v + refined, a


class TwoImageStructure(StructureBase):
    """Shared by AMMFM and PEMM: both images' stage maps out of the concatenated image feature."""

    needs_both = True
    generic = False  # needs two `stage_maps` images: tested on its own (tests/test_ammfm_pemm.py)
    wants_image_dims = True
    wants_map_shapes = True  # skinui.models.model passes {modality: [(C, h, w) per stage]}

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, image_dims: dict[str, int] | None = None,
                 map_shapes: dict[str, list] | None = None, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, **kw)
        dims, shapes = dict(image_dims or {}), {m: [tuple(map(int, s)) for s in v] for m, v in (map_shapes or {}).items()}
        name = type(self).__name__
        if sorted(dims) != ["clinical", "dermoscopic"] or sorted(shapes) != ["clinical", "dermoscopic"]:
            raise ValueError(f"structure {name} needs a clinical and a dermoscopic image, each read by a stage_maps "
                             f"encoder (model.modalities: [dermoscopic, clinical, metadata]).")
        for m in dims:
            if sum(c * h * w for c, h, w in shapes[m]) != dims[m]:
                raise ValueError(f"structure {name}: the {m} feature is not the flattened stage maps {shapes[m]}.")
        self.image_dims, self.map_shapes = dims, shapes
        self.dim_meta = int(dim_meta)

    def split(self, f_image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        out, start = {}, 0
        for m, d in self.image_dims.items():  # the model's modality order
            out[m] = unflatten(f_image[:, start:start + d], self.map_shapes[m])
            start += d
        return out


@STRUCTURES.register("ammfm")
class AMMFM(TwoImageStructure):
    """Asymmetric attention (clinical -> dermoscopic) at every stage, three branches, searched branch weights."""

    searches_branch_weights = True  # training.loop: training.ammfm.search_branch_weights runs before export

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, key_dim: int = 16,
                 value_dim: int | list[int] = 64, dropout: float = 0.2, branch_weights: list[float] | None = None,
                 search_step: float = 0.1, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout, **kw)
        sc, sd = self.map_shapes["clinical"], self.map_shapes["dermoscopic"]
        if len(sc) != len(sd):
            raise ValueError("ammfm needs the same number of stages from both images.")
        vd = list(value_dim) if isinstance(value_dim, (list, tuple)) else [int(value_dim)] * len(sd)
        self.blocks = nn.ModuleList([AsymmetricAttention(c[0], d[0], key_dim, v) for c, d, v in zip(sc, sd, vd)])
        self.heads = nn.ModuleDict({
            "clinical": _head(sc[-1][0], num_classes, dropout),
            "dermoscopic": _head(sd[-1][0], num_classes, dropout),
            "fused": _head(sum(vd) + self.dim_meta, num_classes, dropout)})
        w = torch.tensor(branch_weights if branch_weights is not None else [1 / 3] * 3, dtype=torch.float32)
        if w.shape != (3,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("ammfm branch_weights (clinical, dermoscopic, fused) must be 3 non-negative numbers.")
        self.register_buffer("branch_weights", w / w.sum(), persistent=False)  # a config value, in the card

    def attend(self, maps: dict[str, list[torch.Tensor]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Refined dermoscopic maps and attention maps, one per stage."""
        ys, attn = [], []
        for block, x_c, x_d in zip(self.blocks, maps["clinical"], maps["dermoscopic"]):
            y, a = block(x_c, x_d)
            ys.append(y)
            attn.append(a)
        return ys, attn

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor, present: torch.Tensor) -> ModelOutput:
        maps = self.split(f_image)
        ys, attn = self.attend(maps)
        fused = torch.cat([y.mean((2, 3)) for y in ys] + [f_meta], 1)
        z = {"clinical": self.heads["clinical"](maps["clinical"][-1].mean((2, 3))),
             "dermoscopic": self.heads["dermoscopic"](maps["dermoscopic"][-1].mean((2, 3))),
             "fused": self.heads["fused"](fused)}
        return probability_output(mix_branches(z, BRANCHES, self.branch_weights), z,
                                  **{f"attention.{i}": a for i, a in enumerate(attn)}, fused=fused)

    def loss(self, out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        """The summed cross-entropy CE_C + CE_D + CE_F."""
        return sum(F.cross_entropy(out.branch_logits[b].float(), target) for b in BRANCHES)
