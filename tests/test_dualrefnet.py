"""DualRefNet: its preprocessing (same in training and inference), its training-only super-resolution
decoder (never shipped, never read by a prediction), its class-frequency L1 regularizer (equal to its
formula) and its class-weighted cross-entropy (inverse class frequency)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import data_dir
from fixtures.official_layouts import make_ham10000
from safetensors.torch import load_file

from skinui.models import build_model
from skinui.models.dualrefnet import class_frequency_l1, unit_frequencies
from skinui.models.preprocess import clahe, preprocess_image, shades_of_gray, to_tensor
from training.config import load_config

REPO = Path(__file__).resolve().parents[1]
PRE = {"name": "shades_of_gray_clahe", "p": 6, "clip": 2.0, "tiles": 8}
SPLIT = {"split": {"method": "grouped", "fractions": [0.5, 0.25, 0.25]}}
SR = {"sr": {"name": "super_resolution", "layers": 6, "widths": [8, 8, 8, 8, 8]}}


def tiny_model_cfg(modality: str = "dermoscopic", **kw) -> dict:
    """32-px tinynet_e (a 1 x 1 last map: six 2x layers give 64 px, twice the input)."""
    return {"modalities": [modality, "metadata"], "num_classes": 3, "meta_dim": 5, "image_size": 32,
            "image_encoder": {"name": "tinynet_e", "pretrained": False},
            "meta_encoder": {"name": "mlp", "dims": [8, 16]}, "fusion": {"name": "concat"},
            "structure": {"name": "dualrefnet", "hidden": 16, "class_counts": [6, 3, 1]},
            "auxiliary": {k: {**v, "modality": modality} for k, v in SR.items()}, "preprocess": PRE, **kw}


def _batch(n: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"dermoscopic": torch.randn(n, 3, 32, 32, generator=g), "metadata": torch.randn(n, 5, generator=g)}


# -- preprocessing -----------------------------------------------------------------------------------
def test_shades_of_gray_removes_a_colour_cast_and_clahe_equalises_lightness():
    rng = np.random.default_rng(0)
    scene = rng.uniform(40, 200, size=(64, 64, 1)) * np.ones(3)  # a grey world...
    cast = np.clip(scene * np.array([1.3, 1.0, 0.7]), 0, 255).astype(np.uint8)  # ...under a reddish light
    out = shades_of_gray(cast, p=6).astype(np.float64)
    norms = np.power(np.mean(np.power(out, 6), axis=(0, 1)), 1 / 6)
    assert norms.max() / norms.min() < 1.02  # the illuminant estimate is grey afterwards
    grey = np.full((8, 8, 3), 90, np.uint8)
    np.testing.assert_array_equal(shades_of_gray(grey), grey)  # a grey illuminant changes nothing
    flat = np.clip(rng.normal(120, 6, size=(64, 64, 3)), 0, 255).astype(np.uint8)  # low contrast
    eq = clahe(flat, clip=2.0, tiles=8)
    assert eq.dtype == np.uint8 and eq.shape == flat.shape and eq.std() > flat.std()
    img = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess_image(img, PRE), clahe(shades_of_gray(img, 6), 2.0, 8))
    assert preprocess_image(img, None) is img
    with pytest.raises(KeyError, match="image preprocessing"):
        preprocess_image(img, {"name": "sharpen"})


def test_preprocessing_is_the_same_in_training_fast_path_and_inference(tmp_path):
    """The tensor training builds for a case (no augmentation) is the tensor the app builds."""
    from skinui.inference import Entry
    from training.data import CaseDataset, prepare
    from training.evaluate import EncodeCache
    from training.fastpath import build_view_cache

    make_ham10000(tmp_path, n=24)
    cfg = load_config(None, base={"name": "t", "dataset": "ham10000", "model": tiny_model_cfg(), **SPLIT})
    prep = prepare(cfg, tmp_path)
    model = build_model({**tiny_model_cfg(), "meta_dim": prep.encoder.dim}).eval()
    entry = Entry("t", {"classes": prep.classes}, model, prep.encoder, prep.schema)
    idx = list(range(4))
    served = entry.batch([prep.cases[i] for i in idx])["dermoscopic"]
    trained = torch.stack([CaseDataset(prep, idx, model.modalities, 32, preprocess=PRE)[j]["dermoscopic"]
                           for j in range(4)])
    torch.testing.assert_close(served, trained, rtol=0, atol=0)
    raw = torch.stack([CaseDataset(prep, idx, model.modalities, 32)[j]["dermoscopic"] for j in range(4)])
    assert not torch.equal(raw, served)  # the preprocessing did act
    expected = torch.stack([to_tensor(prep.cases[i].image("dermoscopic"), 32, PRE) for i in idx])
    torch.testing.assert_close(served, expected, rtol=0, atol=0)
    # the fast path's view 0 (the unaugmented view) is the same picture
    cache = build_view_cache(prep, idx, "dermoscopic", 2, lambda x: x, 32, torch.device("cpu"), dtype="float32",
                             preprocess=PRE)
    torch.testing.assert_close(cache.take(np.arange(4), np.zeros(4, int)), served, rtol=0, atol=0)
    # cached encoder outputs never mix preprocessed and raw inputs
    enc = model.image_encoders["dermoscopic"]
    assert EncodeCache.key(enc, 32, PRE) != EncodeCache.key(enc, 32) == EncodeCache.key(enc, 32, None)


# -- the super-resolution decoder: training only --------------------------------------------------------
def test_sr_decoder_reconstructs_twice_the_input_and_its_loss_is_mse():
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg(), training=True).train()
    batch = _batch()
    out = model(batch)
    sr = model.auxiliary["sr"]
    maps = model.image_encoders["dermoscopic"].forward_maps(model.image_encoders["dermoscopic"].forward_stem(
        batch["dermoscopic"]))
    pred = sr.reconstruct(maps)
    assert pred.shape == (4, 3, 64, 64) and len([m for m in sr.decoder if isinstance(m, torch.nn.ConvTranspose2d)]) == 6
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    target = F.interpolate(batch["dermoscopic"] * std + mean, scale_factor=2, mode="bicubic",
                           align_corners=False).clamp(0, 1)
    per_sample = out.features["auxiliary.sr"]["loss"]
    torch.testing.assert_close(per_sample, ((pred - target) ** 2).flatten(1).mean(1), rtol=1e-4, atol=1e-6)
    # total loss = structure (0.5 CE + 1.0 R) + 1.0 x mean SR loss
    target_y = torch.tensor([0, 1, 2, 0])
    expected = 0.5 * F.cross_entropy(out.logits, target_y) + model.structure.regularizer() + per_sample.mean()
    torch.testing.assert_close(model.loss(out, target_y), expected)
    model.loss(out, target_y).backward()
    assert sr.decoder[0].weight.grad.abs().sum() > 0  # the decoder trains the encoder through the map
    assert model.image_encoders["dermoscopic"].net.conv_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="2\\*\\*layers"):  # five layers cannot reach 2x
        bad = build_model({**tiny_model_cfg(), "auxiliary": {"sr": {"name": "super_resolution", "layers": 5,
                                                                    "widths": [8, 8, 8, 8]}}}, training=True)
        bad.train()(_batch())


def test_sr_decoder_is_dropped_at_inference_and_predictions_do_not_depend_on_it(tmp_path):
    from skinui.zoo import save_entry

    torch.manual_seed(0)
    trained = build_model(tiny_model_cfg(), training=True)
    assert any(k.startswith("auxiliary.sr.") for k in trained.state_dict())
    assert not len(build_model(tiny_model_cfg()).auxiliary)  # what the zoo and the app build
    card = {"name": "tiny_dualrefnet", "dataset": "ham10000", "classes": ["a", "b", "c"],
            "model": json.loads(json.dumps(trained.cfg))}
    card["model"]["image_encoder"] = {**card["model"]["image_encoder"], "pretrained": False}
    save_entry(trained, card, tmp_path)
    stored = load_file(str(tmp_path / "tiny_dualrefnet.safetensors"))
    assert stored and not [k for k in stored if "auxiliary" in k or "decoder" in k]
    served = build_model(json.loads((tmp_path / "tiny_dualrefnet.json").read_text())["model"])  # as load_entry does
    served.load_state_dict(stored, strict=True)  # the inference architecture has no decoder, and nothing is missing
    served.eval()
    assert not len(served.auxiliary) and served.cfg["auxiliary"] == card["model"]["auxiliary"]
    batch = _batch()
    trained.eval()
    with torch.no_grad():
        before = trained(batch).logits
        for p in trained.auxiliary.parameters():  # scramble the decoder: nothing a prediction reads changes
            p.add_(torch.randn_like(p))
        torch.testing.assert_close(trained(batch).logits, before, rtol=0, atol=0)
        torch.testing.assert_close(served(batch).logits, before, rtol=1e-6, atol=1e-6)
        assert "auxiliary.sr" not in trained(batch).features  # eval mode never runs it


def test_fast_path_refuses_a_model_with_an_auxiliary_decoder(tmp_path):
    from training.data import prepare
    from training.fastpath import FastPathTask
    from training.runtime import setup

    make_ham10000(tmp_path, n=24)
    cfg = load_config(None, base={"name": "t", "dataset": "ham10000", "model": tiny_model_cfg(), **SPLIT,
                                  "train": {"mode": "fastpath"}})
    prep = prepare(cfg, tmp_path)
    model = build_model({**tiny_model_cfg(), "meta_dim": prep.encoder.dim}, training=True)
    with pytest.raises(ValueError, match="train.mode: full"):
        FastPathTask(cfg, model, prep, setup("cpu", "off", False), tmp_path)


# -- the regularizer and the class weights --------------------------------------------------------------
def test_class_frequency_l1_equals_its_formula_on_a_constructed_layer():
    w1 = torch.tensor([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]])  # hidden layer: 3 units x 2 inputs
    w2 = torch.tensor([[2.0, 0.0, -1.0], [1.0, -3.0, 0.0]])  # output layer: 2 classes x 3 units
    f = torch.tensor([0.75, 0.25])  # class frequencies
    # per-unit frequencies: sum_k f_k |W2[k,u]| = [1.75, 0.75, 0.75], normalised to sum 1
    g = torch.tensor([1.75, 0.75, 0.75]) / 3.25
    torch.testing.assert_close(unit_frequencies(w2, f), g)
    # reduction "mean" (the default): each row's mean absolute weight, ||row||_1 / fan-in
    expected = 0.3 * ((0.75 * 3.0 / 3 + 0.25 * 4.0 / 3) + (g[0] * 3.0 / 2 + g[1] * 0.5 / 2 + g[2] * 4.0 / 2))
    torch.testing.assert_close(class_frequency_l1(w1, w2, f, 0.3), expected)
    # reduction "sum": the rows' L1 norms; unit_frequency "uniform": g_u = 1 / H
    torch.testing.assert_close(class_frequency_l1(w1, w2, f, 0.3, reduction="sum"),
                               0.3 * ((0.75 * 3.0 + 0.25 * 4.0) + (g[0] * 3.0 + g[1] * 0.5 + g[2] * 4.0)))
    torch.testing.assert_close(class_frequency_l1(w1, w2, f, 0.3, "uniform", "sum"),
                               torch.tensor(0.3 * ((0.75 * 3.0 + 0.25 * 4.0) + (3.0 + 0.5 + 4.0) / 3)))
    # the same on the structure's own last two FC layers, class frequencies from class_counts 3:1
    s = build_model({**tiny_model_cfg(), "num_classes": 2, "auxiliary": None,
                     "structure": {"name": "dualrefnet", "hidden": 3, "class_counts": [3, 1]}}).structure
    s.fusion = torch.nn.Identity()
    s.joint_head[1] = torch.nn.Linear(2, 3)
    s.joint_head[4] = torch.nn.Linear(3, 2)
    with torch.no_grad():
        s.fc_hidden.weight.copy_(w1)
        s.fc_out.weight.copy_(w2)
    torch.testing.assert_close(s.regularizer(), expected)
    # g is a constant: the output layer's gradient is lam * f_k * sign(W2) alone
    s.regularizer().backward()
    torch.testing.assert_close(s.fc_out.weight.grad, 0.3 * f[:, None] * torch.sign(w2) / 3)
    torch.testing.assert_close(s.fc_hidden.weight.grad, 0.3 * g[:, None] * torch.sign(w1) / 2)
    assert s.fc_hidden.bias.grad is None  # biases are not penalised


def test_class_weights_are_inverse_frequency_and_reach_the_cross_entropy_only():
    from training.data import model_config
    from training.optim import compute_loss
    from training.sampling import class_weights

    labels = np.array([0] * 6 + [1] * 3 + [2])
    w = class_weights(labels, 3)
    counts = np.bincount(labels)
    assert np.allclose(w.numpy() * counts, (w.numpy() * counts)[0])  # w_k proportional to 1 / n_k
    assert w.mean().item() == pytest.approx(1.0)
    torch.manual_seed(0)
    model = build_model(tiny_model_cfg(), training=True).train()
    out = model(_batch(6))
    target = torch.tensor([0, 0, 1, 2, 0, 1])
    sr = out.features["auxiliary.sr"]["loss"].mean()
    expected = 0.5 * F.cross_entropy(out.logits, target, weight=w) + model.structure.regularizer() + sr
    torch.testing.assert_close(compute_loss(model, out, target, w), expected)  # SR loss: not class-weighted

    class Prep:  # what model_config reads
        classes = ["a", "b", "c"]
        split = {"train": list(range(10))}
        encoder = None

    Prep.labels = labels
    structure = model_config({"model": {**tiny_model_cfg(), "structure": {"name": "dualrefnet"}}}, Prep)["structure"]
    assert structure["class_counts"] == [6, 3, 1]


# -- from config to a shipped entry ---------------------------------------------------------------------
def test_shipped_config_builds_the_system_as_written():
    cfg = load_config(REPO / "training" / "configs" / "pad_ufes20_dualrefnet.yaml")
    assert cfg["dataset"] == "pad-ufes-20" and cfg["train"]["mode"] == "full" and cfg["train"]["loss"]["class_weighted"]
    m = dict(cfg["model"], num_classes=6, meta_dim=10, image_encoder={"name": "efficientnet_lite0", "pretrained": False})
    model = build_model(m, training=True)
    assert model.meta_encoder.out_dim == 512 and [layer.out_features for layer in model.meta_encoder.net
                                                  if isinstance(layer, torch.nn.Linear)] == [64, 128, 256, 512]
    s = model.structure
    assert (s.fc_hidden.in_features, s.fc_hidden.out_features, s.fc_out.out_features) == (1280 + 512, 256, 6)
    assert (s.ce_weight, s.reg_weight, s.reg_lambda) == (0.5, 1.0, 0.3) and model.auxiliary["sr"].weight == 1.0
    with torch.no_grad():
        fmap = torch.zeros(1, 1280, 7, 7)
        assert model.auxiliary["sr"].reconstruct(fmap).shape == (1, 3, 448, 448)  # 2 x 224
    assert model.cfg["preprocess"] == {"name": "shades_of_gray_clahe", "p": 6, "clip": 2.0, "tiles": 8, "space": "lab"}


def test_fit_full_mode_exports_an_entry_without_the_decoder(tmp_path):
    from skinui.zoo import load_entry
    from training.loop import fit

    make_ham10000(tmp_path / "ham", n=40)
    cfg = {"name": "tiny_dualrefnet", "dataset": "ham10000", "split": {"method": "grouped", "fractions": [0.5, 0.25, 0.25]},
           "model": {**tiny_model_cfg(), "num_classes": None, "meta_dim": None},
           "train": {"mode": "full", "epochs": 1, "batch_size": 8, "eval_batch_size": 16,
                     "loss": {"class_weighted": True}}}
    for k in ("num_classes", "meta_dim"):
        cfg["model"].pop(k)
    cfg["model"]["structure"] = {"name": "dualrefnet", "hidden": 16}
    run = fit(load_config(None, base=cfg), str(tmp_path / "ham"), str(tmp_path / "runs" / "t"), "cpu",
              command="pytest", weights_dir=str(tmp_path / "weights"))
    assert any(k.startswith("auxiliary.sr.") for k in load_file(str(run / "best.safetensors")))  # checkpoints keep it
    stored = load_file(str(tmp_path / "weights" / "tiny_dualrefnet.safetensors"))
    assert not [k for k in stored if k.startswith("auxiliary.")]
    entry = load_entry("tiny_dualrefnet", tmp_path / "weights")
    card = entry.card
    assert card["model"]["preprocess"] == PRE and card["calibration"]["prior_weight"] is not None
    assert sum(card["model"]["structure"]["class_counts"]) == card["training"]["split"]["sizes"]["train"]
    assert "metrics_val" in card and "metrics" in card


# -- the shipped entry (real data) ------------------------------------------------------------------------
def test_shipped_entry_has_no_decoder_and_serves_what_training_saw():
    from skinui.zoo import card_problems, load_entry
    from training.data import CaseDataset, prepare

    if not (REPO / "weights" / "pad_ufes20_dualrefnet.json").is_file():
        pytest.skip("weights/pad_ufes20_dualrefnet is not trained yet")
    root = data_dir("pad-ufes-20")
    stored = load_file(str(REPO / "weights" / "pad_ufes20_dualrefnet.safetensors"))
    assert not [k for k in stored if k.startswith("auxiliary.")]
    entry = load_entry("pad_ufes20_dualrefnet")
    assert card_problems(entry.card) == []
    assert entry.model.cfg["preprocess"]["name"] == "shades_of_gray_clahe"
    prep = prepare({**entry.card["training"]["config"], "data_root": str(root)}, root)
    idx = prep.split["test"][:3]
    served = entry.batch([prep.cases[i] for i in idx])["clinical"]
    trained = torch.stack([CaseDataset(prep, idx, entry.modalities, 224, preprocess=entry.model.cfg["preprocess"])[j]
                           ["clinical"] for j in range(len(idx))])
    torch.testing.assert_close(served, trained, rtol=0, atol=0)
    assert len(entry.predict([prep.cases[i] for i in idx])) == 3
