"""DualRefNet (multimodal dual-stage feature refinement): its head, its loss and its regularizer.

The whole system is a config (training/configs/pad_ufes20_dualrefnet.yaml); this module is the part
no other entry has, the `dualrefnet` structure:

- preprocessing: `model.preprocess: {name: shades_of_gray_clahe}` (skinui.models.preprocess);
- stage 1, the image encoder refined by a training-only super-resolution decoder:
  `model.auxiliary: {sr: {name: super_resolution}}` (skinui.models.auxiliary; never shipped);
- metadata MLP 64 -> 128 -> 256 -> 512 (`model.meta_encoder: {name: mlp, dims: [64, 128, 256, 512]}`),
  fusion by concatenation (`model.fusion: {name: concat}`);
- stage 2, this structure: FC to `hidden` (256) units, ReLU, FC to the classes, trained with
  `ce_weight` x class-weighted cross-entropy + `reg_weight` x R, R the class-frequency L1
  regularizer of the last two FC layers (the model adds `weight` x the SR loss):

      R = lam * ( sum_k f_k ||W2[k, :]||_1  +  sum_u g_u ||W1[u, :]||_1 )

  f_k = n_k / N, the class frequencies of the training split (`class_counts`, filled in from the
  training labels by `training.data.model_config`; uniform when absent). The output layer's rows
  belong to classes, so each row is penalised by its class's frequency: a frequent class's weights
  are held smaller, which counters the classifier's pull towards frequent classes. The hidden layer's
  units belong to no class; their frequencies g (`unit_frequency: propagated`, the default) are the
  class frequencies carried back through the output layer,

      g_u = sum_k f_k |W2[k, u]|  /  sum_u' sum_k f_k |W2[k, u']|,

  the share of the frequency-weighted output weight that leaves unit u. g sums to 1 as f does, so
  both terms are on the same scale, and a unit that feeds mostly frequent classes is penalised more.
  g is recomputed from the current W2 at every step and treated as a constant (no gradient flows
  through it). `unit_frequency: uniform` gives every hidden unit 1 / hidden instead. Biases are not
  penalised.

Class weights: the structure declares `weighs_classes`, so `training.optim.compute_loss` hands it the
trainer's class weights (`train.loss.class_weighted: true`: inverse class frequency,
`training.sampling.class_weights`) and it applies them to its cross-entropy term only, instead of
re-weighting the whole loss per class (which would also re-weight the SR loss).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skinui.models.structures import STRUCTURES, JointFusion, ModelOutput

UNIT_FREQUENCY = ("propagated", "uniform")
REDUCTION = ("mean", "sum")


def class_frequencies(class_counts: list[int] | torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """f_k = n_k / N (uniform 1/K without counts)."""
    if class_counts is None:
        return torch.full((num_classes,), 1.0 / num_classes)
    n = torch.as_tensor(class_counts, dtype=torch.float32)
    if n.numel() != num_classes or (n < 0).any() or n.sum() <= 0:
        raise ValueError(f"dualrefnet class_counts must be {num_classes} non-negative counts, not {list(n.tolist())}.")
    return n / n.sum()


def unit_frequencies(w_out: torch.Tensor, freq: torch.Tensor, mode: str = "propagated") -> torch.Tensor:
    """Per-unit frequencies g [H] of the layer feeding `w_out` [K, H]; a constant (no gradient)."""
    h = w_out.shape[1]
    if mode == "uniform":
        return torch.full((h,), 1.0 / h, device=w_out.device)
    if mode != "propagated":
        raise ValueError(f"dualrefnet unit_frequency must be one of {', '.join(UNIT_FREQUENCY)}, not {mode!r}.")
    mass = freq.to(w_out.device) @ w_out.detach().abs()  # [H]: sum_k f_k |W2[k, u]|
    return mass / mass.sum().clamp_min(1e-12)


def class_frequency_l1(w_hidden: torch.Tensor, w_out: torch.Tensor, freq: torch.Tensor, lam: float,
                       unit_frequency: str = "propagated", reduction: str = "mean") -> torch.Tensor:
    """R = lam * (sum_k f_k |W2[k,:]| + sum_u g_u |W1[u,:]|); W1 [H, D], W2 [K, H].

    |row| is the row's mean absolute weight (`reduction: mean`, ||row||_1 / fan-in) or its L1 norm
    (`reduction: sum`)."""
    if reduction not in REDUCTION:
        raise ValueError(f"dualrefnet reduction must be one of {', '.join(REDUCTION)}, not {reduction!r}.")
    freq = freq.to(w_out.device)
    g = unit_frequencies(w_out, freq, unit_frequency)
    rows = (lambda w: w.abs().mean(1)) if reduction == "mean" else (lambda w: w.abs().sum(1))
    return lam * ((freq * rows(w_out)).sum() + (g * rows(w_hidden)).sum())


@STRUCTURES.register("dualrefnet")
class DualRefNet(JointFusion):
    """Fusion, then FC to `hidden`, ReLU, FC to the classes; loss ce_weight x CE_w + reg_weight x R."""

    uses_class_counts = True  # training.data.model_config fills `class_counts` from the training split
    weighs_classes = True  # training.optim.compute_loss passes the class weights to `loss`

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, fusion: dict[str, Any] | None = None,
                 dropout: float = 0.2, hidden: int = 256, ce_weight: float = 0.5, reg_weight: float = 1.0,
                 reg_lambda: float = 0.3, unit_frequency: str = "propagated", reduction: str = "mean",
                 class_counts: list[int] | None = None, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, fusion=fusion, dropout=dropout, **kw)
        if unit_frequency not in UNIT_FREQUENCY:
            raise ValueError(f"dualrefnet unit_frequency must be one of {', '.join(UNIT_FREQUENCY)}, "
                             f"not {unit_frequency!r}.")
        # the two FC layers live in joint_head only (safetensors refuses aliased tensors)
        self.joint_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.fusion.out_dim, hidden), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.ce_weight, self.reg_weight, self.reg_lambda = float(ce_weight), float(reg_weight), float(reg_lambda)
        if reduction not in REDUCTION:
            raise ValueError(f"dualrefnet reduction must be one of {', '.join(REDUCTION)}, not {reduction!r}.")
        self.unit_frequency, self.reduction = unit_frequency, reduction
        self.register_buffer("class_freq", class_frequencies(class_counts, num_classes), persistent=False)

    @property
    def fc_hidden(self) -> nn.Linear:
        return self.joint_head[1]

    @property
    def fc_out(self) -> nn.Linear:
        return self.joint_head[4]

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor, present: torch.Tensor) -> ModelOutput:
        f_joint = self.fusion(f_image, f_meta)
        z = self.joint_head(f_joint)
        return ModelOutput(z, z.softmax(1), features={"joint": f_joint})

    def regularizer(self) -> torch.Tensor:
        """R (lam included) on the current weights of the last two FC layers."""
        return class_frequency_l1(self.fc_hidden.weight, self.fc_out.weight, self.class_freq, self.reg_lambda,
                                  self.unit_frequency, self.reduction)

    def loss(self, out: ModelOutput, target: torch.Tensor, class_weights: torch.Tensor | None = None,
             label_smoothing: float = 0.0) -> torch.Tensor:
        ce = F.cross_entropy(out.logits.float(), target, weight=class_weights, label_smoothing=label_smoothing)
        return self.ce_weight * ce + self.reg_weight * self.regularizer()
