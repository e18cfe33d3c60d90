"""Fusion methods: `fuse(f_image, f_meta) -> f_joint`, one base class, one small subclass each.

Every method is built as `cls(dim_image, dim_meta, **kw)` and exposes `out_dim`. Plumbing used by
several methods (projections to a common width, modality tokens) lives once in `FusionBase`.
Attention-style methods keep their last attention map in `self.last_attention` and gates in
`self.last_gate` for inspection (the app and tests read them; they never feed back into training).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from skinui.registry import Registry

FUSIONS: Registry[type] = Registry("fusion method")


class FusionBase(nn.Module):
    """Shared plumbing; subclasses set `out_dim` and implement `forward(f_image, f_meta)`."""

    out_dim: int

    def __init__(self, dim_image: int, dim_meta: int, dim: int = 256, dropout: float = 0.0, **_: Any) -> None:
        super().__init__()
        self.dim_image, self.dim_meta, self.dim = dim_image, dim_meta, dim
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def project(in_dim: int, out_dim: int, act: type[nn.Module] | None = nn.ReLU) -> nn.Module:
        """Linear projection (plus activation) to a common width."""
        return nn.Sequential(nn.Linear(in_dim, out_dim), act()) if act else nn.Linear(in_dim, out_dim)

    def tokens(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        """Two modality tokens [B, 2, dim]: projections plus a learned modality-type embedding."""
        if not hasattr(self, "tok_image"):
            raise RuntimeError("call self.init_tokens() in __init__ before using tokens()")
        return torch.stack([self.tok_image(f_image), self.tok_meta(f_meta)], 1) + self.type_embed

    def init_tokens(self) -> None:
        self.tok_image = nn.Linear(self.dim_image, self.dim)
        self.tok_meta = nn.Linear(self.dim_meta, self.dim)
        self.type_embed = nn.Parameter(torch.zeros(2, self.dim).normal_(std=0.02))


@FUSIONS.register("concat")
class Concat(FusionBase):
    def __init__(self, dim_image: int, dim_meta: int, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.out_dim = dim_image + dim_meta

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.cat([f_image, f_meta], 1))


@FUSIONS.register("weighted_concat")
class WeightedConcat(Concat):
    """Concatenation with a learnable scalar weight per modality (initialised to 1)."""

    def __init__(self, dim_image: int, dim_meta: int, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.weights = nn.Parameter(torch.ones(2))

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        return super().forward(self.weights[0] * f_image, self.weights[1] * f_meta)


@FUSIONS.register("hadamard")
class Hadamard(FusionBase):
    """Element-wise product of both modalities projected (tanh) to a common width."""

    def __init__(self, dim_image: int, dim_meta: int, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.p_image = self.project(dim_image, self.dim, nn.Tanh)
        self.p_meta = self.project(dim_meta, self.dim, nn.Tanh)
        self.out_dim = self.dim

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.p_image(f_image) * self.p_meta(f_meta))


@FUSIONS.register("tensor")
class TensorFusion(FusionBase):
    """Tensor Fusion Network: outer product of [p_I(f_I), 1] and [p_M(f_M), 1].

    Projecting to `rank_dim` first bounds the width at (rank_dim + 1)^2 whatever the backbone, and
    the appended 1s keep the unimodal terms (and a constant) inside the product.
    """

    def __init__(self, dim_image: int, dim_meta: int, rank_dim: int = 16, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.p_image = self.project(dim_image, rank_dim)
        self.p_meta = self.project(dim_meta, rank_dim)
        self.out_dim = (rank_dim + 1) ** 2

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        one = f_image.new_ones(f_image.shape[0], 1)
        a = torch.cat([self.p_image(f_image), one], 1)
        b = torch.cat([self.p_meta(f_meta), one], 1)
        return self.dropout(torch.einsum("bi,bj->bij", a, b).flatten(1))


@FUSIONS.register("bilinear")
class BilinearFusion(FusionBase):
    """z_k = f_I^T W_k f_M + b_k; full `nn.Bilinear` when small, else low-rank (MLB: P((U f_I) * (V f_M)))."""

    def __init__(self, dim_image: int, dim_meta: int, rank: int = 64, max_full_params: int = 2_000_000,
                 **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.low_rank = dim_image * dim_meta * self.dim > max_full_params
        if self.low_rank:
            self.u = nn.Linear(dim_image, rank, bias=False)
            self.v = nn.Linear(dim_meta, rank, bias=False)
            self.p = nn.Linear(rank, self.dim)
        else:
            self.full = nn.Bilinear(dim_image, dim_meta, self.dim)
        self.out_dim = self.dim

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        z = self.p(self.u(f_image) * self.v(f_meta)) if self.low_rank else self.full(f_image, f_meta)
        return self.dropout(z)


@FUSIONS.register("gated")
class Gated(FusionBase):
    """Gated multimodal unit: z = g * tanh(W_x f_I) + (1 - g) * tanh(W_y f_M), g = sigmoid(W_g [f_I || f_M])."""

    def __init__(self, dim_image: int, dim_meta: int, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.h_image = self.project(dim_image, self.dim, nn.Tanh)
        self.h_meta = self.project(dim_meta, self.dim, nn.Tanh)
        self.gate = self.project(dim_image + dim_meta, self.dim, nn.Sigmoid)
        self.out_dim = self.dim

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        g = self.gate(torch.cat([f_image, f_meta], 1))
        self.last_gate = g.detach()
        return self.dropout(g * self.h_image(f_image) + (1 - g) * self.h_meta(f_meta))


@FUSIONS.register("self_attention")
class SelfAttention(FusionBase):
    """A transformer-style layer over the two modality tokens; output = both tokens concatenated."""

    def __init__(self, dim_image: int, dim_meta: int, heads: int = 4, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.init_tokens()
        self.attn = nn.MultiheadAttention(self.dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(self.dim)
        self.out_dim = 2 * self.dim

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        t = self.tokens(f_image, f_meta)
        o, w = self.attn(t, t, t, need_weights=True)
        self.last_attention = w.detach()  # [B, 2, 2], rows sum to 1
        return self.dropout(self.norm(t + o).flatten(1))


@FUSIONS.register("cross_attention")
class CrossAttention(FusionBase):
    """Image tokens attend to metadata tokens and vice versa.

    Pooled vectors are single tokens, over which attention is trivial, so each modality is first
    projected into `n_tokens` tokens; each side's attended tokens are mean-pooled and concatenated.
    """

    def __init__(self, dim_image: int, dim_meta: int, heads: int = 4, n_tokens: int = 4, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.n_tokens = n_tokens
        self.t_image = nn.Linear(dim_image, n_tokens * self.dim)
        self.t_meta = nn.Linear(dim_meta, n_tokens * self.dim)
        self.image_to_meta = nn.MultiheadAttention(self.dim, heads, batch_first=True)
        self.meta_to_image = nn.MultiheadAttention(self.dim, heads, batch_first=True)
        self.norm_i, self.norm_m = nn.LayerNorm(self.dim), nn.LayerNorm(self.dim)
        self.out_dim = 2 * self.dim

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        ti = self.t_image(f_image).view(-1, self.n_tokens, self.dim)
        tm = self.t_meta(f_meta).view(-1, self.n_tokens, self.dim)
        oi, wi = self.image_to_meta(ti, tm, tm)  # image queries, metadata keys/values
        om, wm = self.meta_to_image(tm, ti, ti)
        self.last_attention = {"image_to_meta": wi.detach(), "meta_to_image": wm.detach()}
        zi, zm = self.norm_i(ti + oi).mean(1), self.norm_m(tm + om).mean(1)
        return self.dropout(torch.cat([zi, zm], 1))


@FUSIONS.register("metablock")
class MetaBlock(FusionBase):
    """Pacheco & Krohling's MetaBlock: T = sigmoid(tanh(V * f_b(U)) + g_b(U)) over feature groups.

    V = image features split into `groups` groups; f_b and g_b map the metadata U to one scale and
    one shift per group (per channel when `groups` is None). Output width = image width.
    """

    def __init__(self, dim_image: int, dim_meta: int, groups: int | None = None, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.groups = groups or dim_image
        if dim_image % self.groups:
            raise ValueError(f"metablock: image width {dim_image} is not divisible by groups={self.groups}")
        self.f_b = nn.Linear(dim_meta, self.groups)
        self.g_b = nn.Linear(dim_meta, self.groups)
        self.out_dim = dim_image

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        v = f_image.view(f_image.shape[0], self.groups, -1)
        t = torch.sigmoid(torch.tanh(v * self.f_b(f_meta)[..., None]) + self.g_b(f_meta)[..., None])
        return self.dropout(t.flatten(1))


@FUSIONS.register("metanet")
class MetaNet(FusionBase):
    """MetaNet (Li et al.): a 1x1-convolution path over the metadata gates each image channel."""

    def __init__(self, dim_image: int, dim_meta: int, hidden: int = 128, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        self.gate = nn.Sequential(nn.Conv1d(dim_meta, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, dim_image, 1),
                                  nn.Sigmoid())
        self.out_dim = dim_image

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        g = self.gate(f_meta[..., None])[..., 0]
        self.last_gate = g.detach()
        return self.dropout(f_image * g)


class QKVAttention(FusionBase):
    """Multi-head scaled dot-product attention over modality tokens, shared by both MMFAs.

    Each token arrives as one vector [q | k | v] of width 3 * dim (split in thirds); each third is
    split into `heads` heads. The attended tokens come back concatenated in token order.
    """

    def __init__(self, dim_image: int, dim_meta: int, heads: int = 4, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, **kw)
        if self.dim % heads:
            raise ValueError(f"{type(self).__name__}: dim {self.dim} is not divisible by heads={heads}")
        self.heads = heads

    def multi_head(self, qkv: torch.Tensor) -> torch.Tensor:
        """[B, T, 3*dim] -> [B, T*dim]; keeps the attention map [B, heads, T, T] in `last_attention`."""
        b, t = qkv.shape[:2]
        q, k, v = qkv.view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # each [B, heads, T, dim/heads]
        w = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1)
        self.last_attention = w.detach()
        return (w @ v).transpose(1, 2).reshape(b, -1)


@FUSIONS.register("mmfa")
class MMFA(QKVAttention):
    """JI-ADF's multimodal feature attention (eq. 8-11).

    Per-modality Q/K/V projections make two tokens (image first); multi-head attention over them
    gives o, projected by g(o) = ReLU(W_o o); the residual W_skip [f_I || f_M] is added:
    f_IM = g(o) + W_skip [f_I || f_M]. `attention: false` / `skip: false` give the paper's ablation.
    Tang et al.'s original MMFA, which differs, is `mmfa_tang`.
    """

    def __init__(self, dim_image: int, dim_meta: int, heads: int = 4, attention: bool = True, skip: bool = True,
                 **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, heads=heads, **kw)
        if not (attention or skip):
            raise ValueError("mmfa needs attention, skip or both switched on")
        self.use_attention, self.use_skip = attention, skip
        if attention:
            self.qkv_image = nn.Linear(dim_image, 3 * self.dim)
            self.qkv_meta = nn.Linear(dim_meta, 3 * self.dim)
            self.g = self.project(2 * self.dim, self.dim)
        if skip:
            self.w_skip = nn.Linear(dim_image + dim_meta, self.dim)
        self.out_dim = self.dim

    def attend(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        qkv = torch.stack([self.qkv_image(f_image), self.qkv_meta(f_meta)], 1)  # [B, 2, 3*dim], image first
        return self.g(self.multi_head(qkv))

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        z = 0
        if self.use_attention:
            z = z + self.attend(f_image, f_meta)
        if self.use_skip:
            z = z + self.w_skip(torch.cat([f_image, f_meta], 1))
        return self.dropout(z)


@FUSIONS.register("mmfa_tang")
class MMFATang(QKVAttention):
    """Tang et al.'s multi-modal fusion attention (Pattern Recognition 154, 110604, 2024), as written there.

    Each modality goes through its own Linear + BatchNorm to one [q | k | v] vector (split in
    thirds); the two tokens are stacked metadata first; multi-head attention mixes them; the
    attended tokens, concatenated, go through Linear + BatchNorm back to the input width, and the
    input itself is added: f_IM = BN(W_o MHA(Q, K, V)) + [f_I || f_M], width D_I + D_M.

    Unlike JI-ADF's `mmfa`: BatchNorm after the Q/K/V and output projections, no ReLU on the
    output, an identity residual instead of a learned W_skip, output width D_I + D_M instead of
    `dim`, and the metadata token first. `dim` (Q/K/V width per token) and `heads` are open in the
    paper's equations and stay configurable.
    """

    def __init__(self, dim_image: int, dim_meta: int, heads: int = 4, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, heads=heads, **kw)
        self.qkv_meta = nn.Sequential(nn.Linear(dim_meta, 3 * self.dim), nn.BatchNorm1d(3 * self.dim))
        self.qkv_image = nn.Sequential(nn.Linear(dim_image, 3 * self.dim), nn.BatchNorm1d(3 * self.dim))
        self.out_dim = dim_image + dim_meta
        self.out = nn.Sequential(nn.Linear(2 * self.dim, self.out_dim), nn.BatchNorm1d(self.out_dim))

    def attend(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        """The attention path alone: BN(W_o MHA(...)), [B, D_I + D_M]."""
        qkv = torch.stack([self.qkv_meta(f_meta), self.qkv_image(f_image)], 1)  # [B, 2, 3*dim], metadata first
        return self.out(self.multi_head(qkv))

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.attend(f_image, f_meta) + torch.cat([f_image, f_meta], 1))


def build_fusion(cfg: dict[str, Any], dim_image: int, dim_meta: int) -> FusionBase:
    cfg = dict(cfg)
    return FUSIONS.get(cfg.pop("name", "concat"))(dim_image, dim_meta, **cfg)
