"""Every fusion x structure from config, bimodal and trimodal, any subset of modalities; structure properties."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from skinui.models import FUSIONS, STRUCTURES, build_model

K, B, META = 3, 4, 9
TINY_IMAGE = {"name": "dermiresnet", "width": 0.0625, "blocks": [1, 1, 1, 1]}


def _cfg(modalities, structure="jiadf", fusion="mmfa", **kw):
    return {"modalities": modalities, "num_classes": K, "meta_dim": META, "image_encoder": TINY_IMAGE,
            "meta_encoder": {"name": "mlp", "dims": [16]}, "fusion": {"name": fusion, "dim": 8, "heads": 2},
            "structure": {"name": structure}, **kw}


def _batch(modalities, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = {m: torch.randn(B, 3, 32, 32, generator=g) for m in modalities if m != "metadata"}
    if "metadata" in modalities:
        b["metadata"] = torch.randn(B, META, generator=g)
    return b


def _subsets(mods):
    return [list(s) for r in range(1, len(mods) + 1) for s in itertools.combinations(mods, r)]


BIMODAL, TRIMODAL = ["dermoscopic", "metadata"], ["dermoscopic", "clinical", "metadata"]
TARGET = torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize("structure", [n for n in STRUCTURES.names() if getattr(STRUCTURES.get(n), "generic", True)])
@pytest.mark.parametrize("fusion", FUSIONS.names())
@pytest.mark.parametrize("mods", [BIMODAL, TRIMODAL], ids=["bimodal", "trimodal"])
def test_builds_runs_backward_for_every_subset(structure, fusion, mods):
    torch.manual_seed(0)
    model = build_model(_cfg(mods, structure, fusion))
    for subset in _subsets(mods):
        model.zero_grad()
        out = model(_batch(subset))
        assert out.logits.shape == (B, K) and out.probs.shape == (B, K)
        assert torch.allclose(out.probs.sum(1), torch.ones(B), atol=1e-5)
        assert torch.allclose(out.logits.softmax(1), out.probs, atol=1e-5)
        loss = model.loss(out, TARGET)
        assert torch.isfinite(loss)
        loss.backward()
        if subset == mods:  # every modality present: gradients reach each encoder
            for m in model.image_modalities:
                grads = [p.grad for p in model.image_encoders[m].parameters() if p.grad is not None]
                assert grads and sum(g.abs().sum() for g in grads) > 0, m
            meta_grads = [p.grad for p in model.meta_encoder.parameters() if p.grad is not None]
            assert meta_grads and sum(g.abs().sum() for g in meta_grads) > 0
        else:  # an absent modality's learned missing embedding is what gets trained
            for m in set(mods) - set(subset):
                assert model.missing[m].grad is not None


def test_jiadf_alpha_is_a_simplex_and_drops_absent_branch():
    model = build_model(_cfg(BIMODAL)).eval()
    out = model(_batch(BIMODAL))
    assert out.alpha.shape == (B, 3) and torch.allclose(out.alpha.sum(1), torch.ones(B))
    mask = {"metadata": torch.tensor([True, False, True, False])}
    out = model({**_batch(BIMODAL), "mask": mask})
    assert torch.all(out.alpha[~mask["metadata"], 2] == 0) and torch.allclose(out.alpha.sum(1), torch.ones(B))
    p = sum(out.alpha[:, i, None] * out.branch_logits[b].softmax(1) for i, b in enumerate(("image", "joint", "metadata")))
    assert torch.allclose(out.probs, p, atol=1e-6)


def test_per_sample_mask_equals_absent_modality():
    model = build_model(_cfg(BIMODAL)).eval()
    full = _batch(BIMODAL)
    masked = model({**full, "mask": {"metadata": torch.zeros(B, dtype=torch.bool)}})
    absent = model({"dermoscopic": full["dermoscopic"]})
    assert torch.allclose(masked.probs, absent.probs, atol=1e-6)


def test_jiadf_loss_formula_and_no_aux_rung():
    model = build_model(_cfg(BIMODAL)).eval()
    out = model(_batch(BIMODAL))
    ce = {b: F.cross_entropy(out.branch_logits[b], TARGET) for b in ("image", "joint", "metadata")}
    expected = F.nll_loss(torch.log(out.probs), TARGET) + 0.5 * ce["joint"] + 0.25 * ce["image"] + 0.25 * ce["metadata"]
    assert torch.allclose(model.loss(out, TARGET), expected, atol=1e-5)
    no_aux = build_model({**_cfg(BIMODAL), "structure": {"name": "jiadf", "aux": False}}).eval()
    out = no_aux(_batch(BIMODAL))
    assert torch.allclose(no_aux.loss(out, TARGET), F.nll_loss(out.logits, TARGET))


def test_fixed_average_variant_and_jif_average_present_branches():
    for structure in ({"name": "jiadf", "adaptive": False}, {"name": "jif"}):
        model = build_model({**_cfg(BIMODAL), "structure": structure}).eval()
        out = model({**_batch(BIMODAL), "mask": {"metadata": torch.tensor([True, True, False, False])}})
        third, half = torch.full((3,), 1 / 3), torch.tensor([0.5, 0.5, 0.0])
        assert torch.allclose(out.alpha[:2], third.expand(2, 3)) and torch.allclose(out.alpha[2:], half.expand(2, 3))
    jif = build_model({**_cfg(BIMODAL), "structure": {"name": "jif"}}).eval()
    out = jif(_batch(BIMODAL))
    ce = {b: F.cross_entropy(out.branch_logits[b], TARGET) for b in ("image", "joint", "metadata")}
    assert torch.allclose(jif.loss(out, TARGET), ce["joint"] + 0.5 * ce["image"] + 0.5 * ce["metadata"], atol=1e-5)


def test_jif_inference_all_is_the_mean_of_three_softmaxes_and_ofb_the_fused_head():
    cfg = {**_cfg(BIMODAL, fusion="mmfa_tang"), "structure": {"name": "jif"}}
    batch = {**_batch(BIMODAL), "mask": {"metadata": torch.tensor([True, True, False, True])}}
    torch.manual_seed(0)
    every = build_model(cfg).eval()
    assert every.structure.inference == "all"  # the default: shipped JIF entries keep their behaviour
    torch.manual_seed(0)
    ofb = build_model({**cfg, "structure": {"name": "jif", "inference": "ofb"}}).eval()
    out_all, out_ofb = every({**batch, "mask": {}}), ofb(batch)
    soft = {b: out_all.branch_logits[b].softmax(1) for b in ("image", "joint", "metadata")}
    assert torch.allclose(out_all.probs, (soft["image"] + soft["joint"] + soft["metadata"]) / 3, atol=1e-6)
    assert torch.equal(out_ofb.probs, out_ofb.branch_logits["joint"].softmax(1))  # absent metadata or not
    assert torch.equal(out_ofb.alpha, torch.tensor([[0.0, 1.0, 0.0]]).expand(B, 3))
    # same weights, same branch logits: only the decision differs; the loss is Tang's in both modes
    full = ofb({**batch, "mask": {}})
    assert torch.allclose(full.branch_logits["joint"], out_all.branch_logits["joint"], atol=1e-6)
    ce = {b: F.cross_entropy(full.branch_logits[b], TARGET) for b in ("image", "joint", "metadata")}
    assert torch.allclose(ofb.loss(full, TARGET), ce["joint"] + 0.5 * ce["image"] + 0.5 * ce["metadata"], atol=1e-5)
    with pytest.raises(ValueError, match="not one of all, ofb"):
        build_model({**cfg, "structure": {"name": "jif", "inference": "joint"}})
    with pytest.raises(ValueError, match="adaptively"):
        build_model({**cfg, "structure": {"name": "jiadf", "inference": "ofb"}})


def test_unimodal_baselines_and_structures_that_need_two_modalities():
    for mods in (["dermoscopic"], ["metadata"]):
        model = build_model(_cfg(mods, "late"))
        out = model(_batch(mods))
        assert out.logits.shape == (B, K) and out.alpha is None
    with pytest.raises(ValueError, match="use structure late"):
        build_model(_cfg(["metadata"], "jf"))


def test_late_fusion_decides_per_side_and_differs_from_joint_concat():
    """Late = a classifier per side whose logits are combined; JF + concat = one classifier on [f_I ; f_M]."""
    late = build_model(_cfg(BIMODAL, "late")).eval()
    jf = build_model({**_cfg(BIMODAL, "jf"), "fusion": {"name": "concat"}}).eval()
    assert {n.split(".")[1] for n, _ in late.structure.named_parameters(prefix="s")} == {"image_head", "meta_head",
                                                                                         "combine"}
    out = late(_batch(BIMODAL))
    assert set(out.branch_logits) == {"image", "metadata"} and out.alpha is None
    # initialised as the sum of the two sides' logits
    assert torch.allclose(out.logits, out.branch_logits["image"] + out.branch_logits["metadata"], atol=1e-5)
    # the metadata side cannot change the image side's logits: no feature ever crosses over
    batch = _batch(BIMODAL)
    other = {**batch, "metadata": batch["metadata"] + 1.0}
    assert torch.equal(late(other).branch_logits["image"], out.branch_logits["image"])
    n_late = sum(p.numel() for p in late.structure.parameters())
    n_jf = sum(p.numel() for p in jf.structure.parameters())
    assert n_late != n_jf  # not the same model under two names


def test_shared_trimodal_encoder_is_stored_once_and_features_concatenate():
    model = build_model({**_cfg(TRIMODAL), "image_encoder": {**TINY_IMAGE, "shared": True}})
    assert model.image_encoders["dermoscopic"] is model.image_encoders["clinical"]
    assert list(model.encoders) == ["shared"]
    out = model(_batch(TRIMODAL))
    f = model.image_encoders["dermoscopic"].out_dim
    assert out.features["image"].shape == (B, 2 * f)
    separate = build_model(_cfg(TRIMODAL))
    assert separate.image_encoders["dermoscopic"] is not separate.image_encoders["clinical"]


def test_modality_dropout_trains_missing_state_but_never_drops_everything():
    model = build_model({**_cfg(TRIMODAL), "modality_dropout": 0.5})
    feats = {m: torch.randn(400, d) for m, d in model.feature_dims.items()}
    model.train()
    present = model.presence(feats, None, 400)
    stacked = torch.stack(list(present.values()))
    assert stacked.any(0).all()
    assert 0.3 < present["metadata"].float().mean() < 0.75
    model.eval()
    assert all(v.all() for v in model.presence(feats, None, 400).values())


def test_field_dropout_replaces_groups_with_missing_encoding():
    cfg = {**_cfg(BIMODAL), "field_dropout": 1.0, "meta_groups": [[0, 1], [2, 3, 4]],
           "meta_missing": [0.0, 1.0, 0.0, 0.0, 1.0] + [0.0] * 4}
    model = build_model(cfg)
    x = torch.randn(6, META)
    model.train()
    y = model._field_dropout(x)
    assert torch.equal(y[:, :5], torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0]).expand(6, 5))
    assert torch.equal(y[:, 5:], x[:, 5:])  # columns outside any group untouched
    model.eval()
    assert torch.equal(model._field_dropout(x), x)


def test_concept_vector_modality_and_any_class_count():
    cfg = {**_cfg(["dermoscopic", "metadata"], "jf", "concat"), "num_classes": 11,
           "image_encoder": {"name": "concept_mlp", "in_dim": 7, "out_dim": 8}}
    model = build_model(cfg)
    out = model({"dermoscopic": torch.rand(B, 7), "metadata": torch.randn(B, META)})
    assert out.logits.shape == (B, 11)


def test_member_average_is_the_mean_of_independent_member_heads():
    torch.manual_seed(0)
    s = STRUCTURES.get("member_average")(12, 5, 4, members=3, inner="jf", fusion={"name": "concat"}).eval()
    f_i, f_m, present = torch.randn(6, 12), torch.randn(6, 5), torch.ones(6, 3)
    out = s(f_i, f_m, present)
    parts = [h(p, f_m, present) for h, p in zip(s.heads, f_i.chunk(3, 1))]
    assert torch.allclose(out.probs, torch.stack([p.probs for p in parts]).mean(0), atol=1e-6)
    assert torch.allclose(out.logits.exp(), out.probs, atol=1e-6)
    # each member reads only its own slice of the ensemble's features
    g = f_i.clone()
    g[:, 4:8] += 1.0
    moved = (s(g, f_m, present).features["member_logits"] - out.features["member_logits"]).abs().sum((0, 2))
    assert moved[1] > 0 and moved[0] == 0 and moved[2] == 0
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    per_member = torch.stack([F.cross_entropy(p.logits, target) for p in parts]).mean()
    assert torch.allclose(s.loss(out, target), per_member, atol=1e-6)  # each head on its own cross-entropy
    with pytest.raises(ValueError, match="equal slices"):
        STRUCTURES.get("member_average")(13, 5, 4, members=3)
    with pytest.raises(ValueError, match="inner: late or jf"):
        STRUCTURES.get("member_average")(12, 5, 4, members=3, inner="jiadf")
