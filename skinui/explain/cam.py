"""Grad-CAM per image branch with pytorch-grad-cam, the other inputs held fixed.

`ImageBranch` is the single-input wrapper: it maps one image tensor to the model's logits while
every other modality enters as its cached feature vector, so pytorch-grad-cam sees an ordinary
image classifier and only that branch's backbone runs. A forward hook detaches the target layer's
output, which makes the backward stop there: Grad-CAM needs gradients at that layer, not below it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from skinui.explain.core import head_batch, resolve_target
from skinui.inference import Encoded, Entry
from skinui.views import VIEWS
from skinui.vocabulary import IMAGE_MODALITIES


class ImageBranch(nn.Module):
    """image tensor [B,3,H,W] -> logits [B,K] with the other modalities' features fixed."""

    def __init__(self, enc: Encoded, modality: str, view: int | None = None) -> None:
        super().__init__()
        self.model = enc.entry.model  # a submodule, so pytorch-grad-cam finds the parameters' device
        self.enc = enc
        self.modality = modality
        self.view = view  # an averaging entry: the other inputs as in this view (`head_batch`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = self.model.image_encoders[self.modality](x)
        return head_batch(self.enc, x.shape[0], {self.modality: image}, view=self.view).logits


def _cut_below(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
    # A leaf that requires grad: backward ends at the target layer instead of the input.
    return output.detach().requires_grad_(True)


def supports_gradcam(entry: Entry, modality: str) -> bool:
    encoders = entry.model.image_encoders
    return modality in encoders and getattr(encoders[modality], "target_layer", None) is not None


def gradcam_encoded(enc: Encoded, modality: str, target: int) -> np.ndarray | None:
    """Heatmap [H, W] in [0, 1] at the model's input size; None when the branch has no pixels."""
    x = enc.batch.get(modality)
    if x is None or x.ndim != 4 or not supports_gradcam(enc.entry, modality):
        return None
    if enc.mask is not None and modality in enc.mask and not bool(enc.mask[modality].all()):
        return None  # the image is masked out: the model does not look at it
    if not enc.entry.averages_views:
        return _cam(ImageBranch(enc, modality), x, target)
    # An entry that predicts from the views' mean is explained on each view (its input flipped, the other
    # inputs as in that view), each map flipped back onto the photo, and the maps averaged: the
    # flip-averaging of pytorch-grad-cam's aug_smooth, for the class the averaged prediction decides.
    heat = np.mean([np.flip(_cam(ImageBranch(enc, modality, v), torch.flip(x, axes), target), axes)
                    for v, axes in enumerate(VIEWS.values())], 0)
    top = float(heat.max())
    return (heat / top if top > 0 else heat).astype(np.float32)


def _cam(wrapper: ImageBranch, x: torch.Tensor, target: int) -> np.ndarray:
    # imported here: pytorch-grad-cam pulls in scikit-learn and matplotlib (seconds at app start)
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = wrapper.model.image_encoders[wrapper.modality].target_layer
    handle = layer.register_forward_hook(_cut_below)  # before pytorch-grad-cam's hooks, so it runs first
    cam = None
    try:
        cam = GradCAM(model=wrapper, target_layers=[layer])
        with torch.enable_grad():
            heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        return np.asarray(heat[0], dtype=np.float32)
    finally:
        if cam is not None:
            cam.activations_and_grads.release()
        handle.remove()


def gradcam(enc: Encoded, modality: str, target: int | str | None = None) -> np.ndarray:
    """Grad-CAM of `modality` for `target` (index, class code or None = predicted class).

    Raises ValueError with a sentence when the entry or the case has no such image.
    """
    if not supports_gradcam(enc.entry, modality):
        raise ValueError(f"{enc.entry.name} has no {modality} image branch with a convolutional layer to explain.")
    heat = gradcam_encoded(enc, modality, resolve_target(enc, target))
    if heat is None:
        raise ValueError(f"This case has no {modality} image, so there is nothing to explain on it.")
    return heat


def gradcams(enc: Encoded, target: int | str | None = None) -> dict[str, np.ndarray]:
    """Grad-CAM of every image the entry reads and the case carries (modality -> heatmap)."""
    t = resolve_target(enc, target)
    return {m: h for m in IMAGE_MODALITIES if (h := gradcam_encoded(enc, m, t)) is not None}
