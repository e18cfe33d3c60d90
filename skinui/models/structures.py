"""How fused features become a decision: late, JF, JIF and JI-ADF, registered in `STRUCTURES`.

A structure receives the image-stream features f_I (all image modalities concatenated), the
metadata features f_M (either may be None for unimodal models) and per-sample branch presence,
and returns a `ModelOutput`. JIF / JI-ADF return `logits = log(P_final)` so temperature scaling
and softmax behave the same for every structure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skinui.models.fusion import build_fusion
from skinui.registry import Registry
from skinui.vocabulary import BRANCHES

STRUCTURES: Registry[type] = Registry("structure")

_EPS = 1e-12


@dataclass
class ModelOutput:
    logits: torch.Tensor  # [B, K]
    probs: torch.Tensor  # [B, K]
    branch_logits: dict[str, torch.Tensor] = field(default_factory=dict)  # image / joint / metadata
    alpha: torch.Tensor | None = None  # [B, 3] branch weights (image, joint, metadata)
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    branch_mask: torch.Tensor | None = None  # [B, 3] float, 1 = branch present (JIF / JI-ADF)


def _head(in_dim: int, num_classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))


def mix_branches(z: dict[str, torch.Tensor], branches: tuple[str, ...], weights: torch.Tensor) -> torch.Tensor:
    """[B, K] sum_b w_b softmax(z_b) in float32: the fixed-weight mixture of several heads' probabilities
    (FusionM4Net's stage 1, AMMFM, PEMM's weighted inference); `weights` [len(branches)], in that order."""
    probs = torch.stack([z[b].float().softmax(1) for b in branches], 1)  # [B, n, K]
    return (weights.float()[None, :, None] * probs).sum(1)


def probability_output(p: torch.Tensor, branch_logits: dict[str, torch.Tensor], **features: torch.Tensor) -> ModelOutput:
    """A structure's output when it mixes probabilities: log p stands in for the logits."""
    return ModelOutput(torch.log(p.clamp_min(_EPS)), p, branch_logits, features=features)


class StructureBase(nn.Module):
    needs_both = False

    def __init__(self, dim_image: int | None, dim_meta: int | None, num_classes: int,
                 fusion: dict[str, Any] | None = None, dropout: float = 0.2, **_: Any) -> None:
        super().__init__()
        if self.needs_both and not (dim_image and dim_meta):
            raise ValueError(f"structure {type(self).__name__} needs an image and a metadata modality; "
                             f"use structure late for a single modality.")
        self.num_classes = num_classes

    def loss(self, out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.logits, target)


@STRUCTURES.register("late")
class Late(StructureBase):
    """Decision-level (late) fusion: a classifier per side, their logits concatenated into the decision.

    With one side (an image-only or metadata-only entry) it is that side's classifier, the
    unimodal baseline. With both, the image side and the metadata side each get a classifier
    and a linear layer combines their logits, `z = W [z_I ; z_M]`: the sides never see each
    other's features, which is what separates late fusion from joint fusion by concatenation
    (`jf` + `concat`, one classifier on `[f_I ; f_M]`).
    """

    def __init__(self, dim_image: int | None, dim_meta: int | None, num_classes: int, dropout: float = 0.2,
                 **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout, **kw)
        if dim_image and dim_meta:
            self.image_head = _head(dim_image, num_classes, dropout)
            self.meta_head = _head(dim_meta, num_classes, dropout)
            self.combine = nn.Linear(2 * num_classes, num_classes)
            with torch.no_grad():  # start as the sum of the two sides' logits
                self.combine.weight.copy_(torch.cat([torch.eye(num_classes)] * 2, 1))
                self.combine.bias.zero_()
        else:
            self.classifier = _head((dim_image or 0) + (dim_meta or 0), num_classes, dropout)

    def forward(self, f_image: torch.Tensor | None, f_meta: torch.Tensor | None,
                present: torch.Tensor) -> ModelOutput:
        if not hasattr(self, "combine"):
            z = self.classifier(f_image if f_image is not None else f_meta)
            return ModelOutput(z, z.softmax(1))
        branches = {"image": self.image_head(f_image), "metadata": self.meta_head(f_meta)}
        z = self.combine(torch.cat([branches["image"], branches["metadata"]], 1))
        return ModelOutput(z, z.softmax(1), branch_logits=branches)


@STRUCTURES.register("jf")
class JointFusion(StructureBase):
    """One fusion module, one joint head."""

    needs_both = True

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, fusion: dict[str, Any] | None = None,
                 dropout: float = 0.2, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout, **kw)
        self.fusion = build_fusion(fusion or {"name": "concat"}, dim_image, dim_meta)
        self.joint_head = _head(self.fusion.out_dim, num_classes, dropout)

    def fuse(self, f_image: torch.Tensor, f_meta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f_joint = self.fusion(f_image, f_meta)
        return f_joint, self.joint_head(f_joint)

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor, present: torch.Tensor) -> ModelOutput:
        f_joint, z = self.fuse(f_image, f_meta)
        return ModelOutput(z, z.softmax(1), features={"joint": f_joint})


@STRUCTURES.register("jif")
class JointIndividualFusion(JointFusion):
    """Joint head plus one head per modality (Tang et al. 2024).

    Loss: weighted branch cross-entropies, Tang's defaults joint 1.0, image 0.5, metadata 0.5.
    Inference (`inference`): `all` (default) averages the posteriors of the present branches,
    Tang's "All"; `ofb` is the fused head's softmax alone, Tang's "OFB" (the individual heads
    then only shape training). An absent branch (all its modalities missing for a sample) gets
    weight 0 when `drop_absent_branch` is on, and its auxiliary loss is masked out for that sample.
    """

    default_weights = {"joint": 1.0, "image": 0.5, "metadata": 0.5}
    INFERENCE = ("all", "ofb")

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, dropout: float = 0.2,
                 loss_weights: dict[str, float] | None = None, drop_absent_branch: bool = True,
                 inference: str = "all", **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout, **kw)
        if inference not in self.INFERENCE:
            raise ValueError(f"structure inference {inference!r} is not one of {', '.join(self.INFERENCE)}.")
        self.image_head = _head(dim_image, num_classes, dropout)
        self.meta_head = _head(dim_meta, num_classes, dropout)
        self.loss_weights = {**self.default_weights, **(loss_weights or {})}
        self.drop_absent_branch = drop_absent_branch
        self.inference = inference

    def branch_weights(self, z: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Fixed weights: [B, 3] rows summing to 1, the mean over present branches (all) or the joint head (ofb)."""
        if self.inference == "ofb":  # the joint branch is always present
            w = torch.zeros_like(mask)
            w[:, BRANCHES.index("joint")] = 1.0
            return w
        return mask / mask.sum(1, keepdim=True)

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor, present: torch.Tensor) -> ModelOutput:
        f_joint, z_joint = self.fuse(f_image, f_meta)
        z = {"image": self.image_head(f_image), "joint": z_joint, "metadata": self.meta_head(f_meta)}
        mask = present.float() if self.drop_absent_branch else torch.ones_like(present, dtype=torch.float)
        alpha = self.branch_weights(z, mask)
        probs = torch.stack([z[b].softmax(1) for b in BRANCHES], 1)  # [B, 3, K]
        p_final = (alpha[..., None] * probs).sum(1)
        return ModelOutput(torch.log(p_final.clamp_min(_EPS)), p_final, z, alpha, {"joint": f_joint}, mask)

    def aux_loss(self, out: ModelOutput, target: torch.Tensor, weights: dict[str, float]) -> torch.Tensor:
        total = out.logits.new_zeros(())
        for i, b in enumerate(BRANCHES):
            if weights.get(b):
                ce = F.cross_entropy(out.branch_logits[b], target, reduction="none")
                m = out.branch_mask[:, i]
                total = total + weights[b] * (ce * m).sum() / m.sum().clamp_min(1.0)
        return total

    def loss(self, out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        return self.aux_loss(out, target, self.loss_weights)


@STRUCTURES.register("jiadf")
class JIADF(JointIndividualFusion):
    """JIF plus adaptive decision fusion (JI-ADF eq. 5-7).

    A gating MLP over [z_I || z_IM || z_M] gives alpha on the simplex (absent branches masked
    before the softmax); P_final = sum_b alpha_b P_b. Loss CE(P_final) + 0.5 L_IM + 0.25 L_I +
    0.25 L_M; `aux: false` keeps only CE(P_final); `adaptive: false` is JI-MMFA's fixed average.
    """

    default_weights = {"joint": 0.5, "image": 0.25, "metadata": 0.25}

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, gate_hidden: int = 64,
                 aux: bool = True, adaptive: bool = True, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, **kw)
        if adaptive and self.inference != "all":
            raise ValueError("jiadf weighs its branches adaptively; inference applies only with adaptive: false.")
        self.aux, self.adaptive = aux, adaptive
        if adaptive:
            self.gate = nn.Sequential(nn.Linear(3 * num_classes, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, 3))

    def branch_weights(self, z: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        if not self.adaptive:
            return super().branch_weights(z, mask)
        scores = self.gate(torch.cat([z[b] for b in BRANCHES], 1))
        return scores.masked_fill(mask == 0, float("-inf")).softmax(1)

    def loss(self, out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        final = F.nll_loss(out.logits, target)
        return final + self.aux_loss(out, target, self.loss_weights) if self.aux else final


@STRUCTURES.register("member_average")
class MemberAverage(StructureBase):
    """One `inner` structure (late or jf) per member of an ensemble image encoder; P = their mean.

    The ensemble encoder concatenates its K members' pooled features, so f_I splits back into K
    equal slices. Each slice gets its own fusion and head with the shared metadata features, and is
    trained on its own cross-entropy (the loss is the mean of the K members' losses, so no member
    leans on another), then the probabilities are averaged: the averaging that validation chose for
    the image-only ensemble, here with metadata. `logits = log(P)` as for JIF/JI-ADF.
    """

    generic = False  # needs an ensemble image encoder: tested on its own, not in the any-encoder sweep

    def __init__(self, dim_image: int, dim_meta: int | None, num_classes: int, members: int = 3, inner: str = "jf",
                 fusion: dict[str, Any] | None = None, dropout: float = 0.2, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout)
        if inner not in ("late", "jf"):
            raise ValueError("member_average takes inner: late or jf (structures trained on plain cross-entropy).")
        if not dim_image or members < 2 or dim_image % members:
            raise ValueError(f"member_average needs an ensemble image encoder whose width ({dim_image}) splits "
                             f"into members: {members} equal slices.")
        self.members = members
        self.heads = nn.ModuleList([STRUCTURES.get(inner)(dim_image // members, dim_meta, num_classes, fusion=fusion,
                                                          dropout=dropout, **kw) for _ in range(members)])

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor | None, present: torch.Tensor) -> ModelOutput:
        outs = [h(part, f_meta, present) for h, part in zip(self.heads, f_image.chunk(self.members, 1))]
        probs = torch.stack([o.probs for o in outs]).mean(0)
        # [B, K, C] so that slicing rows (class-weighted losses) keeps each case's member logits
        return ModelOutput(torch.log(probs.clamp_min(_EPS)), probs,
                           features={"member_logits": torch.stack([o.logits for o in outs], 1)})

    def loss(self, out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        z = out.features["member_logits"]
        return F.cross_entropy(z.flatten(0, 1), target.repeat_interleave(self.members))
