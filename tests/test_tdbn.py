"""TDBN: the cross-attention takes its keys from the segmented stream (queries and values from the
original), the segmenter's ASPP, deep supervision and loss are as written, Dice and IoU are right on
constructed masks, and the entry builds from its config, trains (segmenter, then classifier), ships
its frozen parts as shared files and round-trips through save/load; the app draws its mask."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from skinui.models import build_model
from skinui.models.segmenter import ASPP, DeepUNet, SegOutput, deep_supervision_loss, dice_iou, seg_loss
from skinui.models.tdbn import CrossAttention
from training.config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY_SEG = {"backbone": "tinynet_e", "size": 32, "aspp_channels": 8, "decoder": [8, 8, 8, 8]}


def tiny_model_cfg(**encoder) -> dict:
    """32-px tinynet_e streams and segmenter (tinynet_e: 7 blocks like EfficientNet-Lite0)."""
    return {"modalities": ["clinical", "metadata"], "num_classes": 3, "meta_dim": 5, "image_size": 32,
            "image_encoder": {"name": "tdbn", "pretrained": False, "backbone": {"name": "tinynet_e"},
                              "segmenter": dict(TINY_SEG), "dim": 16, "heads": 2, "ffn": 32, **encoder},
            "meta_encoder": {"name": "mlp", "dims": [8, 16], "batchnorm": True},
            "fusion": {"name": "projected_add"}, "structure": {"name": "tdbn", "hidden": [16, 8]}}


def _batch(n: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"clinical": torch.randn(n, 3, 32, 32, generator=g), "metadata": torch.randn(n, 5, generator=g)}


# -- the cross-attention ----------------------------------------------------------------------------
def test_attention_takes_queries_and_values_from_the_original_and_keys_from_the_segmented_tokens():
    torch.manual_seed(0)
    att = CrossAttention(in_x=6, in_s=4, dim=8, heads=2).eval()  # different widths: a swap cannot even run
    x, s = torch.randn(2, 5, 6), torch.randn(2, 5, 4)
    seen = {}
    for name in ("q", "k", "v"):  # record each projection's input (a hook returning None keeps the output)
        getattr(att, name).register_forward_hook(lambda mod, args, out, name=name: seen.update({name: args[0]}))
    _, w = att(x, s)
    assert seen["q"] is x and seen["v"] is x and seen["k"] is s
    assert w.shape == (2, 2, 5, 5) and torch.allclose(w.sum(-1), torch.ones(2, 2, 5))
    # the weights are softmax(q k^T / sqrt(d)) with k from s
    q = att.q(x).view(2, 5, 2, 4).transpose(1, 2)
    k = att.k(s).view(2, 5, 2, 4).transpose(1, 2)
    torch.testing.assert_close(w, torch.softmax(q @ k.transpose(-2, -1) / 2.0, -1))
    # a different segmented input changes the weights; the values stay the original's
    _, w2 = att(x, s + torch.randn_like(s))
    assert not torch.allclose(w, w2)
    y, _ = att(x, s)
    z = att.out((w @ att.v(x).view(2, 5, 2, 4).transpose(1, 2)).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(y, att.norm(z + att.ffn(z)))  # LayerNorm(Z + FFN(Z))


def test_the_segmented_stream_feeds_the_keys_and_the_mask_changes_only_the_keys():
    torch.manual_seed(0)
    enc = build_model(tiny_model_cfg()).eval().image_encoders["clinical"]
    with torch.no_grad():  # untrained tinynet tokens are about 1e-5: scale the projections so the weights move
        enc.attention.q.weight.mul_(1e5)
        enc.attention.k.weight.mul_(1e5)
    x = torch.randn(2, 3, 64, 64)  # 2 x 2 tokens per stream
    seen = {}
    enc.attention.k.register_forward_hook(lambda m, a, o: seen.__setitem__("k", a[0]))
    enc.attention.q.register_forward_hook(lambda m, a, o: seen.__setitem__("q", a[0]))
    enc.attention.v.register_forward_hook(lambda m, a, o: seen.__setitem__("v", a[0]))
    runs = []
    for mask in (torch.ones(2, 1, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()):
        enc.segment = lambda x, mask=mask: mask  # the segmenter's output, chosen
        with torch.no_grad():
            ho, hs = enc.split(enc.forward_stem(x))
            _, w = enc.attend(ho, hs)
            seg_tokens = enc.segmented.forward_maps(enc.segmented.forward_stem(enc.apply_mask(x, mask)))
        assert torch.equal(seen["k"], seg_tokens.flatten(2).transpose(1, 2))  # keys: the segmented stream
        runs.append((dict(seen), w))
    (first, w1), (second, w2) = runs
    assert torch.equal(first["q"], second["q"]) and torch.equal(first["v"], second["v"])  # x alone
    assert not torch.equal(first["k"], second["k"]) and not torch.allclose(w1, w2)
    # x * M is taken in pixel space: outside the mask the image is black
    m = torch.zeros(1, 1, 64, 64)
    m[..., 8:24, 8:24] = 1
    pix = enc.apply_mask(x[:1], m) * enc.std + enc.mean
    assert torch.allclose(pix[..., 0, 0], torch.zeros(1, 3), atol=1e-6)
    torch.testing.assert_close(pix[..., 16, 16], (x[:1] * enc.std + enc.mean)[..., 16, 16])


def test_an_image_without_a_predicted_lesion_keeps_every_pixel():
    enc = build_model(tiny_model_cfg()).eval().image_encoders["clinical"]
    with torch.no_grad():
        enc.segmenter.threshold.fill_(2.0)  # no probability exceeds it: an empty mask
        assert torch.equal(enc.segment(torch.randn(2, 3, 32, 32)), torch.ones(2, 1, 32, 32))


# -- the segmenter ------------------------------------------------------------------------------------
def test_aspp_has_a_1x1_branch_and_three_3x3_branches_dilated_1_2_3():
    aspp = ASPP(16, 8, (1, 2, 3))
    convs = [b[0] for b in aspp.branches]
    assert len(convs) == 4
    assert convs[0].kernel_size == (1, 1)
    assert [(c.kernel_size, c.dilation, c.padding) for c in convs[1:]] == [((3, 3), (r, r), (r, r)) for r in (1, 2, 3)]
    assert aspp.project[0].in_channels == 4 * 8 and aspp(torch.randn(2, 16, 5, 5)).shape == (2, 8, 5, 5)
    cfg = load_config(REPO / "training" / "configs" / "pad_ufes20_tdbn.yaml")["model"]["image_encoder"]["segmenter"]
    assert cfg["aspp_rates"] == [1, 2, 3]


def test_decoder_has_attention_gates_depthwise_separable_convs_and_two_supervised_levels():
    torch.manual_seed(0)
    net = DeepUNet(**TINY_SEG).eval()
    out = net(torch.randn(2, 3, 48, 48))  # resized to the working size
    assert out.logits.shape == (2, 1, 32, 32) and len(out.aux) == 2 and all(a.shape == (2, 1, 32, 32) for a in out.aux)
    stage = net.decoder[0]
    dw = [m for m in stage.conv.net if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(dw) == 2 and all(m.groups == m.in_channels and m.kernel_size == (3, 3) for m in dw)
    assert isinstance(stage.gate.psi[-1], torch.nn.Sigmoid)
    # skips at stride 16, 8, 4, 2 (deepest first); deep supervision on the stride-4 and stride-8 stages
    assert net.supervised_levels == [2, 1] and [h.in_channels for h in net.aux_heads] == [8, 8]
    assert net.mask(torch.randn(1, 3, 40, 40)).shape == (1, 1, 40, 40)  # at the input's own size


def test_deep_supervision_loss_weighs_the_outputs_1_0_2_0_1():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    final, near, far = (torch.randn(2, 1, 16, 16, generator=g) * s for s in (1.0, 3.0, 0.2))
    out = SegOutput(final, [near, far])
    parts = [seg_loss(t, target) for t in (final, near, far)]
    assert len({round(float(p), 4) for p in parts}) == 3  # distinct, so swapped weights would show
    expected = parts[0] + 0.2 * parts[1] + 0.1 * parts[2]
    torch.testing.assert_close(deep_supervision_loss(out, target), expected)
    torch.testing.assert_close(deep_supervision_loss(out, target, (0.2, 0.1)), expected)
    with pytest.raises(ValueError, match="2 auxiliary outputs"):
        deep_supervision_loss(out, target, (0.2,))


def test_segmenter_loss_is_near_zero_on_a_perfect_mask_and_large_on_its_inverse():
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:12, 4:12] = 1
    perfect = 20 * (2 * target - 1)  # confident logits agreeing with the mask
    assert float(seg_loss(perfect, target)) < 1e-3
    assert float(seg_loss(-perfect, target)) > 10  # BCE about 20 + Dice about 1
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(2, 1, 16, 16), target)
    assert float(seg_loss(torch.zeros(2, 1, 16, 16), target)) > float(bce)  # BCE plus a Dice term


def test_dice_and_iou_on_constructed_masks():
    pred, truth = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    pred[0:2, 0:2] = True  # 4 pixels
    truth[1:3, 0:3] = True  # 6 pixels, 2 shared
    dice, iou = dice_iou(pred, truth)
    assert dice == pytest.approx(2 * 2 / (4 + 6)) and iou == pytest.approx(2 / 8)
    assert dice_iou(truth, truth) == (1.0, 1.0)
    assert dice_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)  # both empty: agreement
    assert dice_iou(pred, ~pred) == (0.0, 0.0)


# -- the entry: config, training, shipping ---------------------------------------------------------------
def test_shipped_config_builds_the_system_as_written():
    cfg = load_config(REPO / "training" / "configs" / "pad_ufes20_tdbn.yaml")
    assert cfg["dataset"] == "pad-ufes-20" and cfg["train"]["mode"] == "fastpath" and not cfg["metadata"]["force_leaky"]
    m = dict(cfg["model"], num_classes=6, meta_dim=35)
    m["image_encoder"] = {**m["image_encoder"], "pretrained": False}
    model = build_model(m)
    enc = model.image_encoders["clinical"]
    assert (enc.attention.heads, enc.out_dim, enc.attention.k.in_features) == (8, 256, 1280)
    assert enc.frozen == "all" and not any(p.requires_grad for mod in enc.stem_modules() for p in mod.parameters())
    meta = [type(layer).__name__ for layer in model.meta_encoder.net]
    assert meta.count("Linear") == 2 and meta.count("BatchNorm1d") == 2 and meta.count("ReLU") == 2
    assert (model.structure.fusion.proj.in_features, model.structure.fusion.proj.out_features) == (256, 256)
    widths = [layer.out_features for layer in model.structure.joint_head if isinstance(layer, torch.nn.Linear)]
    assert widths == [512, 128, 6]
    assert cfg["model"]["image_encoder"]["segmenter"]["weights"].startswith("weights/shared/")


def write_pad(root: Path, n: int = 36) -> None:
    """A tiny PAD-UFES-20 in the official layout: a bright disc on skin, its mask under masks/."""
    rng = np.random.default_rng(0)
    classes = ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]
    header = ["patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
              "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
              "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic", "itch", "grew",
              "hurt", "changed", "bleed", "elevation", "img_id", "biopsed"]
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(n):
        yy, xx = np.mgrid[0:40, 0:40]
        cy, cx, r = rng.integers(14, 26), rng.integers(14, 26), rng.integers(6, 12)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        img = np.full((40, 40, 3), (200, 160, 140), np.uint8) + rng.integers(0, 20, (40, 40, 3)).astype(np.uint8)
        img[disc] = (90 + 20 * (i % 6), 50, 40)
        stem = f"PAT_{i}_{i}_{100 + i}"
        Image.fromarray(img).save(root / "images" / f"{stem}.png")
        Image.fromarray((disc * 255).astype(np.uint8)).save(root / "masks" / f"{stem}_mask.png")
        rows.append([f"PAT_{i}", str(i), "", "", "", "", str(30 + i), "", "", "", "", "", "", "", "ARM", "", "",
                     classes[i % 6], "False", "True", "False", "False", "False", "True", f"{stem}.png", "False"])
    with open(root / "metadata.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])


def test_segmenter_then_classifier_train_ship_as_shared_files_and_round_trip(tmp_path):
    from safetensors.torch import load_file
    from safetensors.torch import save as save_safetensors

    from skinui.zoo import _half, load_entry
    from training.loop import fit
    from training.segment import main as segment

    write_pad(tmp_path / "pad")
    weights = tmp_path / "weights"
    (weights / "shared").mkdir(parents=True)
    torch.manual_seed(0)
    stream = build_model(tiny_model_cfg()).image_encoders["clinical"].original  # a "stage-1" encoder file
    (weights / "shared" / "tiny_stream.safetensors").write_bytes(
        save_safetensors(_half({k: v.contiguous() for k, v in stream.state_dict().items()}), metadata={"format": "pt"}))
    model = tiny_model_cfg(pretrained=True, stream_weights={s: str(weights / "shared" / "tiny_stream.safetensors")
                                                            for s in ("original", "segmented")})
    model["image_encoder"]["segmenter"]["weights"] = str(weights / "shared" / "tiny_seg.safetensors")
    for k in ("num_classes", "meta_dim"):
        model.pop(k)
    cfg = {"name": "tiny_tdbn", "dataset": "pad-ufes-20", "data_root": str(tmp_path / "pad"),
           "split": {"method": "grouped", "seed": 0, "fractions": [0.5, 0.25, 0.25]}, "model": model,
           "train": {"mode": "fastpath", "epochs": 2, "batch_size": 6, "eval_batch_size": 16},
           "fastpath": {"views": 2, "eval_views": 1}, "cache": {"dir": str(tmp_path / "cache")}}
    (tmp_path / "tdbn.yaml").write_text(yaml.safe_dump(cfg))
    seg_cmd = ["--config", str(tmp_path / "tdbn.yaml"), "--set", "model.image_encoder.segmenter.pretrained=false",
               "--epochs", "2", "--batch-size", "6", "--out", str(tmp_path / "seg"), "--weights-dir", str(weights)]
    assert segment(seg_cmd) == 0
    report = json.loads((tmp_path / "seg" / "report.json").read_text())
    prep_split = report["split"]
    assert report["training"]["train_images"] == prep_split["sizes"]["train"]  # the training split only
    for part in ("val", "test"):
        block = report[part]
        assert 0 <= block["dice"]["estimate"] <= 1 and len(block["dice"]["ci"]) == 2 and len(block["iou"]["ci"]) == 2
        assert block["n_images"] == prep_split["sizes"][part]
    assert 0.3 <= report["threshold"] <= 0.7

    run = fit(load_config(tmp_path / "tdbn.yaml"), command="pytest", out=str(tmp_path / "run"),
              device="cpu", weights_dir=str(weights))
    assert (run / "summary.json").is_file()
    card = json.loads((weights / "tiny_tdbn.json").read_text())
    files = {p["prefix"]: p["file"] for p in card["shared"]}
    assert files == {"encoders.clinical.segmenter.": "shared/tiny_seg.safetensors",
                     "encoders.clinical.streams.original.": "shared/tiny_stream.safetensors",
                     "encoders.clinical.streams.segmented.": "shared/tiny_stream.safetensors"}
    own = load_file(str(weights / "tiny_tdbn.safetensors"))
    assert own and not [k for k in own if ".segmenter." in k or ".streams." in k]  # frozen parts: shared, not copied
    assert any(k.startswith("encoders.clinical.attention.") for k in own)
    assert card["model"]["image_encoder"]["pretrained"] is False and "balanced_accuracy" in card["metrics"]

    entry = load_entry("tiny_tdbn", weights)
    from training.data import prepare

    prep = prepare(load_config(tmp_path / "tdbn.yaml"), tmp_path / "pad")
    trained = build_model(card["model"])
    trained.load_state_dict({k: v.float() for k, v in load_file(str(run / "best.safetensors")).items()})
    batch = entry.batch([prep.cases[i] for i in prep.split["test"]])
    with torch.no_grad():
        torch.testing.assert_close(entry.model(batch).logits, trained.eval()(batch).logits, rtol=1e-2, atol=1e-2)

    assert segment([*seg_cmd, "--measure-only", "--update-card"]) == 0
    block = json.loads((weights / "tiny_tdbn.json").read_text())["segmenter"]
    assert {"dice", "iou", "n_images"} <= set(block["test"]) and block["threshold"] == report["threshold"]
    assert "--measure-only" not in block["trained_by"] and "--measure-only" in block["measured_by"]


# -- the app ---------------------------------------------------------------------------------------------
def test_mask_view_draws_the_segmenters_mask_beside_the_panel():
    from skinui.ui import mask_view

    torch.manual_seed(0)
    model = build_model(tiny_model_cfg()).eval()
    x = torch.randn(1, 3, 32, 32)
    enc = SimpleNamespace(entry=SimpleNamespace(model=model), batch={"clinical": x, "mask": {}})
    mask = mask_view.predicted_mask(enc, "clinical")
    expected = model.image_encoders["clinical"].segmenter.mask(x)[0, 0].numpy() > 0.5
    assert mask.shape == (32, 32) and np.array_equal(mask, expected)
    enc.batch["mask"]["clinical"] = torch.tensor([False])
    assert mask_view.predicted_mask(enc, "clinical") is None  # no image given: nothing to draw
    image = np.full((50, 40, 3), 200, np.uint8)
    square = np.zeros((32, 32), bool)
    square[8:24, 8:24] = True
    pic = mask_view.picture(image, square)
    assert pic.shape == image.shape and pic[0, 0].max() < 200 and tuple(pic[25, 20]) == (200, 200, 200)
    card = {"model": {"image_encoder": {"name": "tdbn", "segmenter": {"size": 160}}},
            "segmenter": {"test": {"dice": {"estimate": 0.8, "ci": [0.75, 0.85]}, "n_images": 71}}}
    assert "Dice 0.80 [0.75, 0.85]" in mask_view.caption(card)
    assert mask_view.caption({"model": {"image_encoder": {"name": "efficientnet_lite0"}}}) == ""
    ctx = SimpleNamespace(cache=SimpleNamespace(card=lambda name: {"model": {"image_encoder": {}}}))
    panel = np.zeros((50, 90, 3), np.uint8)
    assert mask_view.beside(ctx, "plain", None, "clinical", image, panel) is panel  # other entries unchanged


def test_shipped_entry_reads_the_stage1_encoder_and_the_measured_segmenter():
    """The shipped card's streams are the PAD-UFES-20 stage-1 encoder's own file, its segmenter is the
    file whose Dice and IoU the card reports, and those scores carry intervals (no model load, no data)."""
    path = REPO / "weights" / "pad_ufes20_tdbn.json"
    if not path.is_file():
        pytest.skip("weights/pad_ufes20_tdbn is not trained yet")
    card = json.loads(path.read_text())
    shared = {p["prefix"]: p for p in card["shared"]}
    stage1 = json.loads((REPO / "weights" / "pad_ufes20_image_gpu.json").read_text())["shared"][0]
    for stream in ("original", "segmented"):
        assert shared[f"encoders.clinical.streams.{stream}."]["sha256"] == stage1["sha256"]
    seg = card["segmenter"]
    assert shared["encoders.clinical.segmenter."]["sha256"] == seg["weights"]["sha256"]
    for part in ("val", "test"):
        for metric in ("dice", "iou"):
            lo, hi = seg[part][metric]["ci"]
            assert 0 <= lo <= seg[part][metric]["estimate"] <= hi <= 1
    assert seg["test"]["n_images"] == card["metrics"]["n_cases"]  # every test image has its mask
    assert "--measure-only" not in seg["trained_by"]
