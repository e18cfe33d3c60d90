"""Which clinical fields drove a class: captum attributions grouped per metadata field.

Every method shares captum's convention and one forward function: encoded metadata row(s) ->
calibrated probabilities, with the image features taken from the cached encode pass, so no backbone
runs. Methods are registered by name; each returns signed per-column attributions, which are
summed per field (the encoder's `groups`: one bar per field, not per one-hot column) and divided
by the largest magnitude (|values| in [0, 1], sign = towards or against the class).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from skinui.explain.core import head_batch, normalise_signed, resolve_target
from skinui.explain.methods import METHOD_LABELS
from skinui.inference import Encoded
from skinui.registry import Registry

Method = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, int, Encoded], torch.Tensor]
RELEVANCE_METHODS: Registry[Method] = Registry("relevance method")


def _field_mask(x: torch.Tensor, enc: Encoded) -> torch.Tensor:
    """captum's feature_mask: every column of a field (one-hot levels, missingness flag) shares its group id."""
    feature_mask = torch.zeros_like(x, dtype=torch.long)
    for gid, (_, cols) in enumerate(enc.entry.encoder.groups):
        feature_mask[0, cols] = gid
    return feature_mask


def _per_column(attr: torch.Tensor, enc: Encoded) -> torch.Tensor:
    """captum's grouped perturbation methods give *every* column of a group the group's whole attribution;
    spread it evenly over the columns so that `relevance`'s per-field sum is the field's attribution once
    (summing the copies would multiply each field by its width: a 9-level site would outweigh age 9:2)."""
    width = torch.ones_like(attr)
    for _, cols in enc.entry.encoder.groups:
        width[..., cols] = float(len(cols))
    return attr / width


def _unknown_row(x: torch.Tensor, enc: Encoded) -> torch.Tensor:
    """The encoded row of a case whose every field is unknown (the perturbation methods' baseline)."""
    return torch.as_tensor(enc.entry.encoder.transform([{}]), dtype=x.dtype)


@RELEVANCE_METHODS.register("integrated_gradients")
def _integrated_gradients(forward: Callable, x: torch.Tensor, target: int, enc: Encoded) -> torch.Tensor:
    """Zero baseline, 50 steps, as in the comparison paper."""
    from captum.attr import IntegratedGradients

    with torch.enable_grad():
        return IntegratedGradients(forward).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=50)


@RELEVANCE_METHODS.register("feature_ablation")
def _feature_ablation(forward: Callable, x: torch.Tensor, target: int, enc: Encoded) -> torch.Tensor:
    """Each field in turn set to its encoded 'unknown' value (one batched call for all fields)."""
    from captum.attr import FeatureAblation

    feature_mask, baseline = _field_mask(x, enc), _unknown_row(x, enc)
    with torch.no_grad():
        attr = FeatureAblation(forward).attribute(x, baselines=baseline, target=target, feature_mask=feature_mask,
                                                  perturbations_per_eval=len(enc.entry.encoder.groups))
    return _per_column(attr, enc)


@RELEVANCE_METHODS.register("shapley_value_sampling")
def _shapley_value_sampling(forward: Callable, x: torch.Tensor, target: int, enc: Encoded) -> torch.Tensor:
    """Shapley values over the fields (grouped like feature ablation, same 'unknown' baseline), from 25
    random field orders; a fixed seed inside so the same case always gets the same bars."""
    from captum.attr import ShapleyValueSampling

    feature_mask, baseline = _field_mask(x, enc), _unknown_row(x, enc)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # captum draws its orders from torch's global generator; fork keeps ours untouched
        attr = ShapleyValueSampling(forward).attribute(x, baselines=baseline, target=target, feature_mask=feature_mask,
                                                       n_samples=25, perturbations_per_eval=len(enc.entry.encoder.groups))
    return _per_column(attr, enc)


def metadata_forward(enc: Encoded) -> Callable[[torch.Tensor], torch.Tensor]:
    """Encoded metadata [N, D] -> calibrated probabilities [N, K], image features fixed."""
    model = enc.entry.model

    def forward(meta: torch.Tensor) -> torch.Tensor:
        f_meta = model.encode({"metadata": meta})["metadata"]
        return enc.entry.calibrated_probabilities(head_batch(enc, meta.shape[0], {"metadata": f_meta}).logits)

    return forward


def relevance(enc: Encoded, method: str = "integrated_gradients", target: int | str | None = None,
              scaled: bool = True) -> dict[str, float]:
    """Signed relevance of each metadata field for `target` (None = predicted class): |values| in [0, 1]
    when `scaled`, else in units of the target's calibrated probability (IG: the field's share of
    P(x) - P(zero input); ablation: P drop when the field is set to unknown; Shapley sampling: the field's mean
    P gain when added to the all-unknown row in random field orders). All zeros when the case
    has no metadata. Raises ValueError with a sentence for an unknown method or an entry without metadata."""
    if method not in RELEVANCE_METHODS:
        raise ValueError(f"Unknown relevance method {method!r}; choose one of {', '.join(RELEVANCE_METHODS.names())}.")
    encoder = enc.entry.encoder
    if encoder is None or "metadata" not in enc.entry.model.modalities:
        raise ValueError(f"{enc.entry.name} takes no metadata, so there is no field relevance to show.")
    t = resolve_target(enc, target)
    x = enc.batch.get("metadata")
    names = [name for name, _ in encoder.groups]
    if x is None or (enc.mask is not None and "metadata" in enc.mask and not bool(enc.mask["metadata"].all())):
        return dict.fromkeys(names, 0.0)
    attr = RELEVANCE_METHODS.get(method)(metadata_forward(enc), x.detach().float(), t, enc)
    per_column = attr.detach()[0].numpy().astype(np.float64)
    grouped = {name: float(per_column[cols].sum()) for name, cols in encoder.groups}
    return normalise_signed(grouped) if scaled else grouped


# Every registered method has a label, and every label a method (kept in step by this check, not by hand).
if set(METHOD_LABELS) != set(RELEVANCE_METHODS.names()):
    raise RuntimeError(f"METHOD_LABELS {sorted(METHOD_LABELS)} and RELEVANCE_METHODS "
                       f"{sorted(RELEVANCE_METHODS.names())} disagree; label every registered method.")
