"""PEMM (the dissertation's chapter 5): one shared encoder, shared-projection cross-attention, biased loss.

The whole system is a config (training/configs/synthderm_pemm.yaml); this module holds its structure.
Both images go through ONE image encoder (`model.image_encoder.shared: true`: the model stores one
module, `encoders.shared`, and uses it for the clinical and the dermoscopic image), a `stage_maps`
encoder (skinui.models.ammfm) returning the last feature map. The `pemm` structure turns each map into
tokens T_C, T_D [N, C] and runs cross-attention in both directions with projections shared between
the modalities (one W_q, W_k, W_v, one LayerNorm, the same modules for both images):

    Z_C = LN(T_C W_v + softmax(T_C W_q (T_D W_k)^T / sqrt(d)) T_D W_v)    (clinical queries, dermoscopic keys/values)
    Z_D = LN(T_D W_v + softmax(T_D W_q (T_C W_k)^T / sqrt(d)) T_C W_v)    (and the reverse)

then separate classifiers: clinical on [GAP(T_C) ; GAP(Z_C)], dermoscopic on [GAP(T_D) ; GAP(Z_D)],
fused on [GAP(Z_C) ; GAP(Z_D) ; f_M] (the metadata through the zoo's metadata MLP; the chapter has none).
Loss: the biased sum 0.1 L_C + 0.4 L_D + 0.5 L_F (`loss_weights`). Inference (`inference`): `fused`
(default, the fused classifier alone) or `weighted` (the three branches' probabilities mixed with the
loss weights).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skinui.models.ammfm import BRANCHES, TwoImageStructure
from skinui.models.structures import STRUCTURES, ModelOutput, _head, mix_branches, probability_output

LOSS_WEIGHTS = {"clinical": 0.1, "dermoscopic": 0.4, "fused": 0.5}


class SharedCrossAttention(nn.Module):
    """Cross-attention whose projections (and LayerNorm) serve both directions: the same modules for both images."""

    def __init__(self, channels: int, dim: int = 32) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(channels, dim), nn.Linear(channels, dim), nn.Linear(channels, dim)
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, N, C] attend to `context` [B, M, C]: (Z [B, N, dim], weights [B, N, M])."""
        a = torch.softmax(self.q(queries) @ self.k(context).transpose(1, 2) / math.sqrt(self.dim), dim=-1)
        return self.norm(self.v(queries) + a @ self.v(context)), a


@STRUCTURES.register("pemm")
class PEMM(TwoImageStructure):
    """Shared cross-attention both ways, three separate classifiers, loss 0.1 L_C + 0.4 L_D + 0.5 L_F."""

    INFERENCE = ("fused", "weighted")

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, dim: int = 32, dropout: float = 0.2,
                 loss_weights: dict[str, float] | None = None, inference: str = "fused", **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout, **kw)
        sc, sd = self.map_shapes["clinical"], self.map_shapes["dermoscopic"]
        if sc[-1] != sd[-1]:
            raise ValueError("pemm reads both images with one shared encoder: their maps must have the same shape.")
        if inference not in self.INFERENCE:
            raise ValueError(f"pemm inference must be one of {', '.join(self.INFERENCE)}, not {inference!r}.")
        c = sc[-1][0]
        self.attention = SharedCrossAttention(c, dim)
        self.heads = nn.ModuleDict({"clinical": _head(c + dim, num_classes, dropout),
                                    "dermoscopic": _head(c + dim, num_classes, dropout),
                                    "fused": _head(2 * dim + self.dim_meta, num_classes, dropout)})
        self.loss_weights = {**LOSS_WEIGHTS, **(loss_weights or {})}
        self.inference = inference

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor, present: torch.Tensor) -> ModelOutput:
        maps = self.split(f_image)
        t_c, t_d = (maps[m][-1].flatten(2).transpose(1, 2) for m in ("clinical", "dermoscopic"))  # [B, N, C]
        z_c, a_c = self.attention(t_c, t_d)
        z_d, a_d = self.attention(t_d, t_c)
        g_c, g_d = z_c.mean(1), z_d.mean(1)
        z = {"clinical": self.heads["clinical"](torch.cat([t_c.mean(1), g_c], 1)),
             "dermoscopic": self.heads["dermoscopic"](torch.cat([t_d.mean(1), g_d], 1)),
             "fused": self.heads["fused"](torch.cat([g_c, g_d, f_meta], 1))}
        if self.inference == "fused":
            p = z["fused"].float().softmax(1)
        else:
            w = torch.tensor([self.loss_weights[b] for b in BRANCHES], device=z["fused"].device)
            p = mix_branches(z, BRANCHES, w / w.sum())
        return probability_output(p, z, **{"attention.clinical": a_c, "attention.dermoscopic": a_d})

    def loss(self, out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        """The biased sum 0.1 CE_C + 0.4 CE_D + 0.5 CE_F."""
        return sum(self.loss_weights[b] * F.cross_entropy(out.branch_logits[b].float(), target) for b in BRANCHES)

