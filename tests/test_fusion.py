"""Every fusion method: shapes, gradients to both modalities, and one defining property each."""
from __future__ import annotations

import pytest
import torch

from skinui.models.fusion import FUSIONS, FusionBase, build_fusion

DI, DM, B = 24, 10, 5


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, DI, generator=g, requires_grad=True), torch.randn(B, DM, generator=g, requires_grad=True)


def _build(name: str, **kw) -> FusionBase:
    torch.manual_seed(0)
    return build_fusion({"name": name, "dim": 16, "heads": 2, **kw}, DI, DM)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_shape_and_gradients_reach_both_modalities(name):
    fusion = _build(name)
    fi, fm = _inputs()
    out = fusion(fi, fm)
    assert isinstance(fusion, FusionBase) and out.shape == (B, fusion.out_dim)
    out.pow(2).sum().backward()
    assert fi.grad.abs().sum() > 0 and fm.grad.abs().sum() > 0


def test_registry_holds_every_method():
    assert set(FUSIONS.names()) == {"concat", "weighted_concat", "hadamard", "tensor", "bilinear", "gated",
                                    "self_attention", "cross_attention", "metablock", "metanet", "mmfa",
                                    "mmfa_tang", "projected_add"}


def test_concat_is_plain_concatenation():
    fi, fm = _inputs()
    assert torch.equal(_build("concat")(fi, fm), torch.cat([fi, fm], 1))


def test_weighted_concat_weights_are_learnable():
    fusion = _build("weighted_concat")
    fi, fm = _inputs()
    assert any(p is fusion.weights for p in fusion.parameters())
    fusion(fi, fm).sum().backward()
    assert fusion.weights.grad is not None and fusion.weights.grad.abs().min() > 0
    with torch.no_grad():
        fusion.weights[1] = 0.0
    assert torch.all(fusion(fi, fm)[:, DI:] == 0)


def test_hadamard_is_bounded_product_of_projections():
    fusion = _build("hadamard")
    fi, fm = _inputs()
    out = fusion(fi, fm)
    assert out.abs().max() <= 1.0 and fusion.out_dim == 16
    assert torch.allclose(out, fusion.p_image(fi) * fusion.p_meta(fm))


def test_tensor_fusion_keeps_constant_term_and_bounded_width():
    fusion = _build("tensor", rank_dim=6)
    assert fusion.out_dim == 49
    out = fusion(*_inputs())
    assert torch.all(out[:, -1] == 1.0)  # 1 x 1 from the appended ones
    wide = build_fusion({"name": "tensor", "rank_dim": 6}, 1280, 256)
    assert wide.out_dim == 49  # width does not grow with the backbone


def test_bilinear_is_linear_in_each_input_and_low_rank_when_large():
    fusion = _build("bilinear")
    assert not fusion.low_rank
    fi, fm = _inputs()
    with torch.no_grad():
        f0 = fusion(torch.zeros_like(fi), fm)
        assert torch.allclose(fusion(2 * fi, fm) - f0, 2 * (fusion(fi, fm) - f0), atol=1e-5)
    big = build_fusion({"name": "bilinear", "dim": 256}, 1280, 256)
    assert big.low_rank and sum(p.numel() for p in big.parameters()) < 1_000_000


def test_gated_gate_in_unit_interval_and_mixes():
    fusion = _build("gated")
    fi, fm = _inputs()
    out = fusion(fi, fm)
    g = fusion.last_gate
    assert torch.all((g > 0) & (g < 1))
    assert torch.allclose(out, g * fusion.h_image(fi) + (1 - g) * fusion.h_meta(fm), atol=1e-6)


def test_self_attention_over_two_modality_tokens():
    fusion = _build("self_attention")
    fusion(*_inputs())
    w = fusion.last_attention
    assert w.shape == (B, 2, 2) and torch.allclose(w.sum(-1), torch.ones(B, 2))


def test_cross_attention_image_side_reads_metadata():
    fusion = _build("cross_attention", n_tokens=3).eval()
    fi, fm = _inputs()
    a = fusion(fi, fm)
    w = fusion.last_attention["image_to_meta"]
    assert w.shape == (B, 3, 3) and torch.allclose(w.sum(-1), torch.ones(B, 3))
    b = fusion(fi, fm + 1.0)
    assert not torch.allclose(a[:, :16], b[:, :16])  # image queries attended to changed metadata


def test_metablock_output_is_a_sigmoid_over_groups():
    fusion = _build("metablock", groups=6)
    out = fusion(*_inputs())
    assert fusion.out_dim == DI and torch.all((out > 0) & (out < 1))
    assert fusion.f_b.out_features == 6
    with pytest.raises(ValueError, match="divisible"):
        build_fusion({"name": "metablock", "groups": 5}, DI, DM)


def test_metanet_gates_image_channels_from_metadata():
    fusion = _build("metanet")
    fi, fm = _inputs()
    out = fusion(fi, fm)
    assert torch.all(out.abs() <= fi.abs()) and isinstance(fusion.gate[0], torch.nn.Conv1d)
    assert torch.allclose(out, fi * fusion.last_gate)


def test_mmfa_skip_only_ignores_attention():
    fusion = _build("mmfa", attention=False)
    fi, fm = _inputs()
    out = fusion(fi, fm)
    assert not hasattr(fusion, "qkv_image")
    assert torch.equal(out, fusion.w_skip(torch.cat([fi, fm], 1)))


def test_mmfa_full_is_attention_plus_skip_and_switches_validate():
    full = _build("mmfa")
    fi, fm = _inputs()
    with torch.no_grad():
        out = full(fi, fm)
        assert torch.allclose(out, full.attend(fi, fm) + full.w_skip(torch.cat([fi, fm], 1)), atol=1e-6)
    w = full.last_attention
    assert w.shape == (B, 2, 2, 2) and torch.allclose(w.sum(-1), torch.ones(B, 2, 2))
    attn_only = _build("mmfa", skip=False)
    assert not hasattr(attn_only, "w_skip")
    with pytest.raises(ValueError, match="attention, skip or both"):
        _build("mmfa", attention=False, skip=False)


def _tang_reference(fusion, fi: torch.Tensor, fm: torch.Tensor) -> torch.Tensor:
    """Tang's MMFA written out by hand: Q/K/V as thirds of Linear+BN, metadata token first, MHA,
    Linear+BN on the two attended tokens (metadata's first), plus [f_I ; f_M]."""
    d, h = fusion.dim, fusion.heads
    parts = []
    for proj, x in ((fusion.qkv_meta, fm), (fusion.qkv_image, fi)):  # metadata first
        y = proj[1](proj[0](x))
        parts.append((y[:, :d], y[:, d:2 * d], y[:, 2 * d:]))
    q, k, v = (torch.stack([p[i] for p in parts], 1).view(B, 2, h, d // h).transpose(1, 2) for i in range(3))
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, 2 * d)
    return fusion.out[1](fusion.out[0](o)) + torch.cat([fi, fm], 1)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_mmfa_tang_is_thirds_of_linear_bn_metadata_first_attention_plus_residual(train):
    fusion = _build("mmfa_tang").train(train)
    with torch.no_grad():  # give the BatchNorms non-trivial affine terms and running statistics
        for bn in (fusion.qkv_meta[1], fusion.qkv_image[1], fusion.out[1]):
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    assert fusion.out_dim == DI + DM
    for proj, width in ((fusion.qkv_meta, DM), (fusion.qkv_image, DI)):  # per modality: Linear then BatchNorm
        assert isinstance(proj[0], torch.nn.Linear) and isinstance(proj[1], torch.nn.BatchNorm1d)
        assert proj[0].in_features == width and proj[1].num_features == 3 * fusion.dim
    fi, fm = _inputs()
    with torch.no_grad():
        out = fusion(fi, fm)
        assert out.shape == (B, DI + DM)
        assert torch.allclose(out, _tang_reference(fusion, fi, fm), atol=1e-5)
    assert fusion.last_attention.shape == (B, 2, 2, 2)


def test_mmfa_tang_token_order_is_metadata_first():
    fusion = _build("mmfa_tang").eval()
    fi, fm = _inputs()
    seen = {}
    attend = fusion.multi_head

    def spy(qkv: torch.Tensor) -> torch.Tensor:
        seen["qkv"] = qkv
        return attend(qkv)

    fusion.multi_head = spy
    with torch.no_grad():
        out = fusion(fi, fm)
        assert torch.equal(seen["qkv"][:, 0], fusion.qkv_meta(fm)) and torch.equal(seen["qkv"][:, 1], fusion.qkv_image(fi))
        # the image-first order (JI-ADF's) gives another output from the same weights
        o = attend(torch.stack([fusion.qkv_image(fi), fusion.qkv_meta(fm)], 1))
        assert not torch.allclose(fusion.out(o) + torch.cat([fi, fm], 1), out, atol=1e-4)


def test_mmfa_tang_residual_is_the_plain_concatenation():
    fusion = _build("mmfa_tang")
    with torch.no_grad():  # switch the attention path off at its last BatchNorm
        fusion.out[1].weight.zero_(), fusion.out[1].bias.zero_()
    fi, fm = _inputs()
    for train in (True, False):
        fusion.train(train)
        with torch.no_grad():
            assert torch.equal(fusion(fi, fm), torch.cat([fi, fm], 1))
    assert not hasattr(fusion, "w_skip") and not any(isinstance(m, torch.nn.ReLU) for m in fusion.modules())
