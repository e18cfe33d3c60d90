"""Bayes' rule across modalities (`product`): two calibrated single-modality experts multiplied.

If the image and the metadata are independent given the diagnosis, p(y | x, m) = p(y | x) p(y | m) / p(y)
up to a constant. The structure holds an image expert's head and a metadata expert's head (copied from
two shipped entries by `training.stage2.load_experts`; nothing is trained), turns each into its
calibrated log-probabilities with that expert's own calibration (temperature T and prevalence weight
beta, `skinui.calibration.calibrated_logits`), and returns

    z = log p(y | x) + log p(y | m) - log pi(y)

(pi: the training split's class frequencies). A case without metadata gets the image expert alone and
one without an image the metadata expert alone: the exact answer when the missing input says nothing.
The experts' calibration and pi are config values (`experts`, `log_prior`), so an entry rebuilds from
its card; the entry's own calibration is then fitted on validation like any other's.
"""
from __future__ import annotations

from typing import Any

import torch

from skinui.models.structures import STRUCTURES, ModelOutput, StructureBase, _head

SIDES = ("image", "metadata")


@STRUCTURES.register("product")
class ProductOfExperts(StructureBase):
    needs_both = True

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, dropout: float = 0.2,
                 experts: dict[str, Any] | None = None, log_prior: list[float] | None = None, **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout, **kw)
        self.image_head = _head(dim_image, num_classes, dropout)
        self.meta_head = _head(dim_meta, num_classes, dropout)
        prior = torch.zeros(num_classes) if log_prior is None else torch.tensor(log_prior, dtype=torch.float32)
        if prior.shape != (num_classes,):
            raise ValueError(f"structure product: log_prior must hold {num_classes} log class frequencies.")
        # config values, saved in the card; buffers so that they travel with the module (not in the state dict)
        self.register_buffer("log_prior", prior, persistent=False)
        for side in SIDES:
            spec = (experts or {}).get(side)
            spec = spec if isinstance(spec, dict) else {}  # an entry name alone (a config before training): identity
            self.register_buffer(f"{side}_calibration", torch.tensor(
                [float(spec.get("temperature") or 1.0), float(spec.get("prior_weight") or 0.0)]), persistent=False)

    def set_experts(self, experts: dict[str, dict[str, Any]], log_prior: list[float]) -> dict[str, Any]:
        """Training: each side's expert ({entry, temperature, prior_weight}) and the training prevalence in;
        returns the `model.structure` entries that rebuild this (written into the card)."""
        self.log_prior = torch.tensor(log_prior, dtype=torch.float32, device=self.log_prior.device)
        out = {}
        for side in SIDES:
            e = experts[side]
            t, beta = float(e["temperature"]), float(e.get("prior_weight") or 0.0)
            if not t > 0:
                raise ValueError(f"structure product: the {side} expert's temperature must be positive, not {t}.")
            setattr(self, f"{side}_calibration", torch.tensor([t, beta], device=self.log_prior.device))
            out[side] = {"entry": e.get("entry"), "temperature": t, "prior_weight": beta}
        return {"experts": out, "log_prior": [float(v) for v in log_prior]}

    def expert(self, z: torch.Tensor, side: str) -> torch.Tensor:
        """The side's calibrated log-probabilities: log_softmax(z / T + beta log pi)."""
        t, beta = getattr(self, f"{side}_calibration").unbind()
        return torch.log_softmax(z.float() / t + beta * self.log_prior, 1)

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor, present: torch.Tensor) -> ModelOutput:
        lp = {"image": self.expert(self.image_head(f_image), "image"),
              "metadata": self.expert(self.meta_head(f_meta), "metadata")}
        has_image, has_meta = present[:, :1], present[:, 2:3]
        z = (torch.where(has_image, lp["image"], torch.zeros_like(lp["image"]))
             + torch.where(has_meta, lp["metadata"], torch.zeros_like(lp["metadata"]))
             - (has_image & has_meta).float() * self.log_prior)
        return ModelOutput(z, z.softmax(1), lp)
