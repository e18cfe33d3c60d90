"""AMMFM and PEMM (the dissertation's chapter 5): AMMFM's attention map comes from the clinical features
and refines the dermoscopic ones (with a residual), at more than one stage; its branch weights are
searched on validation; PEMM's encoder and attention projections are the same modules for both images;
PEMM's loss is 0.1 L_C + 0.4 L_D + 0.5 L_F; both survive save/load; both configs build."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skinui.cases import Case
from skinui.encoding import MetadataEncoder
from skinui.models import build_model
from skinui.models.ammfm import BRANCHES, AsymmetricAttention, StageMaps
from skinui.models.pemm import LOSS_WEIGHTS, SharedCrossAttention
from skinui.schema import Field, Schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = Schema("toy", ("mel", "nev", "bcc"), (Field("age", "numeric", valid_range=(0, 120)),
                Field("site", "categorical", vocabulary=("arm", "leg"))), "lesion_id",
                ("dermoscopic", "clinical", "metadata"))
ROWS = [{"age": 30, "site": "arm"}, {"age": 60, "site": "leg"}, {"age": None, "site": "arm"}]
SIZE = 64  # tinynet_e at 64 px: blocks.4 is 4 x 4, bn2 2 x 2


def _meta() -> MetadataEncoder:
    return MetadataEncoder(SCHEMA).fit(ROWS)


def _encoder_cfg(structure: str) -> dict:
    stages = {"stages": ["blocks.4", "bn2"], "grids": [4, 2]} if structure == "ammfm" else {"stages": ["bn2"], "grids": [2]}
    return {"name": "stage_maps", "pretrained": False, "backbone": {"name": "tinynet_e"}, "shared": structure == "pemm",
            **stages}


def _model(structure: str = "ammfm", **kw):
    torch.manual_seed(0)
    extra = {"key_dim": 4, "value_dim": 8} if structure == "ammfm" else {"dim": 8}
    model = build_model({"modalities": ["dermoscopic", "clinical", "metadata"], "num_classes": 3,
                         "meta_dim": _meta().dim, "image_size": SIZE, "image_encoder": _encoder_cfg(structure),
                         "meta_encoder": {"name": "mlp", "dims": [8]}, "structure": {"name": structure, **extra, **kw}})
    for enc in model.encoders.values():  # BatchNorm statistics of a real batch (a bare net's maps are ~1e-4)
        for mod in enc.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.momentum = 1.0
        enc.net.train()
        with torch.no_grad():
            enc.maps(torch.randn(8, 3, SIZE, SIZE))
        enc.net.eval()
    return model.eval()


def _batch(n: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"dermoscopic": torch.randn(n, 3, SIZE, SIZE, generator=g),
            "clinical": torch.randn(n, 3, SIZE, SIZE, generator=g),
            "metadata": torch.from_numpy(_meta().transform([ROWS[i % 3] for i in range(n)]))}


# -- AMMFM's asymmetric attention -------------------------------------------------------------------------
def test_attention_map_comes_from_the_clinical_features_and_refines_the_dermoscopic_ones():
    torch.manual_seed(0)
    block = AsymmetricAttention(c_clinical=6, c_dermoscopic=10, key_dim=4, value_dim=5).eval()
    x_c, x_d = torch.randn(2, 6, 3, 3), torch.randn(2, 10, 3, 3)  # different widths: a swap cannot even run
    seen = {}
    for name in ("q", "k", "v"):
        getattr(block, name).register_forward_hook(lambda mod, args, out, name=name: seen.update({name: args[0]}))
    y, a = block(x_c, x_d)
    assert seen["q"] is x_c and seen["k"] is x_c and seen["v"] is x_d
    assert a.shape == (2, 9, 9) and torch.allclose(a.sum(-1), torch.ones(2, 9))
    q, k = block.q(x_c).flatten(2), block.k(x_c).flatten(2)
    torch.testing.assert_close(a, torch.softmax(q.transpose(1, 2) @ k / math.sqrt(4), -1))
    # the residual: Y = V + V A^T, V the 1x1 projection of the dermoscopic map
    v = block.v(x_d)
    torch.testing.assert_close(y, v + (v.flatten(2) @ a.transpose(1, 2)).view_as(v))
    # a different clinical map changes the attention map (and Y); a different dermoscopic map does not
    _, a2 = block(x_c + torch.randn_like(x_c), x_d)
    assert not torch.allclose(a, a2)
    y3, a3 = block(x_c, x_d + torch.randn_like(x_d))
    torch.testing.assert_close(a3, a)
    assert not torch.allclose(y3, y)


def test_ammfm_attends_at_more_than_one_stage_driven_by_the_clinical_image():
    model = _model("ammfm")
    assert len(model.structure.blocks) == 2
    assert model.image_encoders["clinical"].map_shapes[0][1:] == (4, 4)
    assert model.image_encoders["clinical"].map_shapes[1][1:] == (2, 2)
    b = _batch()
    with torch.no_grad():
        out = model(b)
        other_c = model({**b, "clinical": torch.randn_like(b["clinical"])})
        other_d = model({**b, "dermoscopic": torch.randn_like(b["dermoscopic"])})
    maps = [out.features["attention.0"], out.features["attention.1"]]
    assert maps[0].shape == (4, 16, 16) and maps[1].shape == (4, 4, 4)
    for i in (0, 1):  # every stage's map follows the clinical image and ignores the dermoscopic one
        assert not torch.allclose(out.features[f"attention.{i}"], other_c.features[f"attention.{i}"])
        torch.testing.assert_close(out.features[f"attention.{i}"], other_d.features[f"attention.{i}"])
    assert not torch.allclose(out.features["fused"], other_d.features["fused"])
    assert set(out.branch_logits) == set(BRANCHES)


def test_ammfm_loss_is_the_summed_cross_entropy_and_the_output_mixes_the_branches_by_their_weights():
    model = _model("ammfm", branch_weights=[0.2, 0.3, 0.5])
    target = torch.tensor([0, 1, 2, 0])
    out = model(_batch())
    want = sum(F.cross_entropy(out.branch_logits[b], target) for b in BRANCHES)
    torch.testing.assert_close(model.loss(out, target), want)
    p = sum(w * out.branch_logits[b].softmax(1) for w, b in zip([0.2, 0.3, 0.5], BRANCHES))
    torch.testing.assert_close(out.probs, p)


def test_branch_weight_search_on_validation_sets_normalised_weights(tmp_path):
    from training.ammfm import search_branch_weights

    class FakeTask:  # the branch probabilities are given: the fused branch alone is right
        pass

    n, k = 30, 3
    labels = np.arange(n) % k
    right, wrong = np.eye(k)[labels] * 0.9 + 0.1 / k, np.eye(k)[(labels + 1) % k] * 0.9 + 0.1 / k
    import training.ammfm as ammfm

    model = _model("ammfm")
    prep = type("P", (), {"split": {"val": np.arange(n)}, "labels": labels})()
    cfg = {"train": {"select_metric": "balanced_accuracy"}, "model": {"structure": {"search_step": 0.1}}}
    orig = ammfm.branch_probs
    ammfm.branch_probs = lambda task, idx, branches: np.stack([wrong, wrong, right], 1)
    try:
        record = search_branch_weights(cfg, FakeTask(), prep, model, tmp_path)
    finally:
        ammfm.branch_probs = orig
    assert record["weights"][2] > 0.5 and abs(sum(record["weights"]) - 1) < 1e-6
    torch.testing.assert_close(model.structure.branch_weights, torch.tensor(record["weights"]))
    assert model.cfg["structure"]["branch_weights"] == record["weights"]
    assert (tmp_path / "branch_search.json").is_file()


# -- PEMM -------------------------------------------------------------------------------------------------
def test_pemm_uses_one_encoder_and_the_same_attention_projections_for_both_images():
    model = _model("pemm")
    assert list(model.encoders) == ["shared"]
    assert model.image_encoders["clinical"] is model.image_encoders["dermoscopic"]
    att = model.structure.attention
    assert isinstance(att, SharedCrossAttention)
    calls = {n: [] for n in ("q", "k", "v", "norm")}
    for name in calls:
        getattr(att, name).register_forward_hook(lambda mod, args, out, name=name: calls[name].append(args[0]))
    b = _batch()
    with torch.no_grad():
        out = model(b)
    # each projection ran for both directions (clinical queries and dermoscopic queries) in the one module
    assert len(calls["q"]) == 2 and len(calls["k"]) == 2 and len(calls["norm"]) == 2
    t_c, t_d = calls["q"]  # queries: clinical tokens, then dermoscopic tokens
    assert torch.equal(calls["k"][0], t_d) and torch.equal(calls["k"][1], t_c)
    assert not torch.equal(t_c, t_d)
    # one set of attention weights in the state dict, no per-modality copies
    keys = [k for k in model.state_dict() if k.startswith("structure.attention.")]
    assert sorted(keys) == sorted(f"structure.attention.{n}.{p}" for n in ("q", "k", "v", "norm")
                                  for p in ("weight", "bias"))
    assert out.features["attention.clinical"].shape == (4, 4, 4)


def test_pemm_loss_is_biased_0_1_clinical_0_4_dermoscopic_0_5_fused():
    assert LOSS_WEIGHTS == {"clinical": 0.1, "dermoscopic": 0.4, "fused": 0.5}
    model = _model("pemm")
    target = torch.tensor([0, 1, 2, 0])
    out = model(_batch())
    ce = {b: F.cross_entropy(out.branch_logits[b], target) for b in BRANCHES}
    torch.testing.assert_close(model.loss(out, target), 0.1 * ce["clinical"] + 0.4 * ce["dermoscopic"] + 0.5 * ce["fused"])
    assert not torch.allclose(model.loss(out, target), sum(ce.values()) / 3)
    torch.testing.assert_close(out.probs, out.branch_logits["fused"].softmax(1))  # inference: fused


# -- both: save/load, configs ----------------------------------------------------------------------------
@pytest.mark.parametrize("structure", ["ammfm", "pemm"])
def test_save_load_round_trip_predicts_identically(tmp_path, structure):
    from skinui.explain import cam
    from skinui.zoo import load_entry, save_entry

    model = _model(structure, **({"branch_weights": [0.1, 0.3, 0.6]} if structure == "ammfm" else {}))
    name = f"toy-{structure}"
    card = {"name": name, "dataset": "toy", "classes": list(SCHEMA.classes), "metadata_encoder": _meta().to_dict(),
            "model": json.loads(json.dumps(model.cfg))}
    save_entry(model, card, tmp_path)
    entry = load_entry(name, tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(entry.model.state_dict()[k], v), k
    rng = np.random.default_rng(0)
    cases = [Case(f"c{i}", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8),
                  rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), dict(ROWS[i % 3])) for i in range(3)]
    with torch.no_grad():
        expected = model(entry.batch(cases)).logits
    torch.testing.assert_close(entry.encode(cases).logits, expected, rtol=0, atol=0)
    preds = entry.predict(cases)
    assert set(preds[0].branch_probabilities) >= set(BRANCHES)
    heat = cam.gradcam(entry.encode(cases[:1]), "dermoscopic")
    assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all()
    for subset in (["dermoscopic"], ["clinical", "metadata"], ["metadata"]):  # the app's modality switches
        probs = np.array([list(p.probabilities.values()) for p in entry.predict(cases, modalities=subset)])
        assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_stage_maps_encoder_is_frozen_cached_whole_and_points_at_its_shared_file():
    enc = StageMaps(backbone={"name": "tinynet_e"}, stages=["bn2", "blocks.4"], grids=[2, 4])
    assert enc.stages == ["blocks.4", "bn2"] and enc.grids == [4, 2]  # network order, each grid with its stage
    assert [s[1:] for s in enc.map_shapes] == [(4, 4), (2, 2)]
    x = torch.randn(2, 3, SIZE, SIZE)
    h = enc.forward_stem(x)
    assert h.shape == (2, enc.out_dim) and torch.equal(enc.forward_trunk(h), h)
    assert enc.stem_modules() == [enc.encoder] and not any(p.requires_grad for p in enc.parameters())
    # out-of-distribution statistics: the backbone's own stem, as for the stage-1 entry whose backbone it is
    from skinui.models.model import encoder_style, stem_style

    torch.testing.assert_close(encoder_style(enc, x), stem_style(enc.encoder.forward_stem(x)))
    # the fast path's cache key tells the same frozen weights read at other stages apart
    other = StageMaps(backbone={"name": "tinynet_e"}, stages=["bn2"], grids=[2])
    assert enc.cache_tag != other.cache_tag
    enc._file = "weights/shared/some_encoder.safetensors"
    assert enc.shared_files() == {"encoder.": "some_encoder"}
    with pytest.raises(ValueError, match="stages"):
        StageMaps(backbone={"name": "tinynet_e"}, stages=["blocks.99"], grids=[2])


@pytest.mark.parametrize("name", ["synthderm_ammfm", "synthderm_pemm"])
def test_configs_build_the_systems(name):
    from training.config import load_config

    cfg = load_config(REPO / "training" / "configs" / f"{name}.yaml")
    assert cfg["train"]["mode"] == "fastpath"
    m = cfg["model"]
    model = build_model({**m, "image_encoder": {**m["image_encoder"], "pretrained": False}, "num_classes": 8,
                         "meta_dim": 20})
    if name == "synthderm_ammfm":
        assert len(model.structure.blocks) == 2 and not model.shared
        w = {k: v["weights"] for k, v in m["image_encoder"]["per_modality"].items()}
        assert w["clinical"] != w["dermoscopic"]
    else:
        assert model.shared and m["structure"]["loss_weights"] == {"clinical": 0.1, "dermoscopic": 0.4, "fused": 0.5}
