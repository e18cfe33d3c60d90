"""training/: configs, fit end to end (all three modes), resume equivalence, the fast path's cache."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.official_layouts import make_ham10000
from safetensors.torch import load_file

from training import checkpoint
from training.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def tiny_config(name: str = "tiny", mode: str = "full", **train) -> dict:
    """A config small enough for CI: 32-px images, tinynet_e (0.8 M parameters), 2 epochs."""
    return {
        "name": name, "dataset": "ham10000", "split": {"method": "grouped", "fractions": [0.5, 0.25, 0.25]},
        "model": {"modalities": ["dermoscopic", "metadata"], "image_size": 32,
                  "image_encoder": {"name": "tinynet_e", "pretrained": False, "stem_blocks": 3},
                  "meta_encoder": {"name": "mlp", "dims": [16]}, "fusion": {"name": "concat", "dim": 16},
                  "structure": {"name": "jiadf"}, "modality_dropout": 0.2, "field_dropout": 0.1},
        "train": {"mode": mode, "epochs": 2, "batch_size": 8, "eval_batch_size": 16,
                  "scheduler": {"name": "plateau", "patience": 0}, **train},
        "fastpath": {"views": 2}, "stage2": {"views": 2},
    }


@pytest.fixture(scope="module")
def ham(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ham")
    make_ham10000(root, n=40)
    return root


def run_fit(cfg: dict, ham: Path, tmp: Path, **kw) -> Path:
    from training.loop import fit

    return fit(load_config(None, base=cfg), str(ham), str(tmp / "runs" / cfg["name"]), "cpu",
               command="pytest", weights_dir=str(tmp / "weights"), **kw)


# -- configs ---------------------------------------------------------------------------------------
def test_every_shipped_config_resolves_and_builds():
    from skinui.models import build_model

    names = set()
    for path in sorted(CONFIGS.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        cfg = load_config(path)
        assert cfg["name"] not in names, f"{path.name}: duplicate entry name"
        names.add(cfg["name"])
        model = dict(cfg["model"], num_classes=3, meta_dim=5)
        enc = cfg["model"]["image_encoder"]
        if enc["name"] == "stage_maps":  # feature maps, not a vector: the same stages of a tiny backbone
            model["image_encoder"] = {**enc, "pretrained": False, "backbone": {"name": "tinynet_e"}}
        elif enc["name"] != "concept_mlp":  # cheap stand-in, same feature width
            members = len(cfg["model"]["image_encoder"].get("members") or [None])  # an ensemble: one slice each
            model["image_encoder"] = {"name": "concept_mlp", "in_dim": 4, "out_dim": 1280 * members}
        build_model(model)  # fusion/structure/modalities combination is valid
    assert {"ham10000_image", "ham10000_jiadf", "pad_ufes20_jiadf", "synthderm_jiadf"} <= names
    assert sum(n.startswith("ham10000_jf_") for n in names) == 11
    assert sum(n.startswith("synthderm_jiadf") for n in names) == 8  # 7 subsets + no-aux


def test_config_bases_overrides_and_typos(tmp_path):
    jiadf = load_config(CONFIGS / "ham10000_jiadf.yaml", ["train.optimizer.lr=3e-4", "stage2.views=4"])
    assert jiadf["train"]["optimizer"] == {"name": "adamw", "lr": 3e-4, "weight_decay": 1e-5, "momentum": 0.9}
    assert jiadf["train"]["scheduler"]["name"] == "plateau" and jiadf["train"]["batch_size"] == 16
    assert jiadf["train"]["sampler"] == "balanced" and jiadf["stage2"]["views"] == 4
    assert jiadf["model"]["fusion"]["name"] == "mmfa" and jiadf["model"]["modalities"] == ["dermoscopic", "metadata"]
    (tmp_path / "bad.yaml").write_text("base: " + str(CONFIGS / "ham10000_jiadf.yaml") + "\ntrain: {epoks: 3}\n")
    with pytest.raises(ConfigError, match="epoks"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(CONFIGS / "ham10000_jiadf.yaml", ["train.epochs"])


# -- building blocks ---------------------------------------------------------------------------------
def test_checkpoint_roundtrip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "epoch": 3, "nested": {"t": (1, torch.ones(2)), "inf": float("inf")}}
    checkpoint.save_state(tmp_path / "last", state)
    checkpoint.save_state(tmp_path / "last", state)  # rewriting leaves exactly one tensor file
    assert len(list(tmp_path.glob("last.*.safetensors"))) == 1 and checkpoint.exists(tmp_path / "last")
    back = checkpoint.load_state(tmp_path / "last")
    assert back["epoch"] == 3 and back["nested"]["t"][0] == 1 and back["nested"]["inf"] == float("inf")
    assert set(back["optimizer"]["state"]) == {0, 1}  # integer parameter ids survive JSON
    torch.testing.assert_close(back["optimizer"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    opt.load_state_dict(back["optimizer"])


def test_checkpoints_take_channels_last_weights(tmp_path):
    """CUDA training runs channels-last: the conv weights it saves are not contiguous (found on an H200)."""
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    checkpoint.save_tensors(tmp_path / "best.safetensors", conv.state_dict())
    checkpoint.save_state(tmp_path / "last", {"model": conv.state_dict(), "epoch": 1})
    torch.testing.assert_close(load_file(str(tmp_path / "best.safetensors"))["weight"], conv.weight.detach())
    torch.testing.assert_close(checkpoint.load_state(tmp_path / "last")["model"]["weight"], conv.weight.detach())


def test_random_crop_keeps_a_square_of_the_asked_area_share():
    from training.data import random_augment

    img = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    aug = {"crop_scale": [0.25, 0.5]}
    sides = {random_augment(img, np.random.default_rng(s), aug).shape[:2] for s in range(40)}
    assert all(h == w and 0.25 - 0.03 <= h * h / 80 ** 2 <= 0.5 + 0.03 for h, w in sides)
    assert len(sides) > 3  # the share is drawn, not fixed
    same = [random_augment(img, np.random.default_rng(7), aug) for _ in range(2)]
    assert np.array_equal(*same)  # a function of the RNG: resumes and workers see the same crops
    assert random_augment(img, np.random.default_rng(0), {}).shape == img.shape  # off by default


def test_sampler_shards_and_balances():
    from training.sampling import EpochSampler, class_weights

    labels = np.array([0] * 90 + [1] * 10)
    shards = [EpochSampler(labels, "shuffle", seed=1, rank=r, world_size=3) for r in range(3)]
    seen = np.concatenate([s.order() for s in shards])
    assert len(seen) == 102 and set(seen) == set(range(100)) and all(len(s) == 34 for s in shards)
    balanced = EpochSampler(labels, "balanced", seed=1).order()
    assert 0.35 < (labels[balanced] == 1).mean() < 0.65
    w = class_weights(labels, 3)
    assert w[2] == 0 and w[1] / w[0] == pytest.approx(9.0)


def test_class_weighted_loss_matches_weighted_cross_entropy():
    from skinui.models import build_model
    from training.optim import compute_loss

    model = build_model({"modalities": ["metadata"], "num_classes": 3, "meta_dim": 4, "structure": {"name": "late"}})
    out = model({"metadata": torch.randn(12, 4)})
    target = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0])
    w = torch.tensor([0.5, 1.0, 2.0])
    expected = torch.nn.functional.cross_entropy(out.logits, target, weight=w)
    torch.testing.assert_close(compute_loss(model, out, target, w), expected)
    torch.testing.assert_close(compute_loss(model, out, target, None), model.loss(out, target))


# -- fit ---------------------------------------------------------------------------------------------
def test_fit_fastpath_then_stage2_write_runs_and_loadable_entries(ham, tmp_path):
    from skinui.zoo import load_entry

    stage1 = tiny_config("tiny_image", "fastpath")
    stage1["model"].update(modalities=["dermoscopic"], structure={"name": "late"})
    stage1["export"] = {"shared_encoder": "tiny_dermoscopic_encoder"}
    run = run_fit(stage1, ham, tmp_path)
    for name in ("config.yaml", "command.txt", "metrics.jsonl", "last.json", "best.safetensors", "summary.json"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("val_macro_f1" in r and "train_loss" in r for r in rows)
    assert list((tmp_path / "runs" / "_cache").glob("fastpath-ham10000-dermoscopic-train-*/data.npy"))

    stage2 = tiny_config("tiny_jiadf", "features")
    stage2["stage2"]["backbone"] = "tiny_image"
    run_fit(stage2, ham, tmp_path)
    weights = tmp_path / "weights"
    entry = load_entry("tiny_jiadf", weights)
    card = entry.card
    assert card["shared"][0]["file"] == "shared/tiny_dermoscopic_encoder.safetensors"
    assert card["shared"] == load_entry("tiny_image", weights).card["shared"]  # one encoder file, two entries
    assert 0.05 <= card["calibration"]["temperature"] <= 20 and len(card["calibration"]["bins"]) == 15
    assert card["training"]["split"]["test_sha256"] and card["training"]["command"] == "pytest"
    assert set(card["metrics"]["modality_ablation"]) == {"D+M", "D", "M"}
    assert card["leaky"] is False and card["metadata_encoder"]["columns"]
    from skinui.datasets import load_dataset

    preds = entry.predict(load_dataset("ham10000", ham).cases[:2])
    assert len(preds) == 2 and preds[0].branch_weights is not None and sum(preds[0].probabilities.values()) == pytest.approx(1)
    # stage 2 kept the stage-1 encoder frozen: the shipped encoder equals the backbone's
    a = load_entry("tiny_image", weights).model.image_encoders["dermoscopic"].state_dict()
    b = entry.model.image_encoders["dermoscopic"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # re-export from the stored entry alone (no run folder): same weights, same numbers
    from training.export import reexport_entry

    shutil.rmtree(tmp_path / "runs" / "tiny_jiadf")
    card2 = json.loads(reexport_entry(str(weights / "tiny_jiadf"), str(ham)).read_text())
    assert card2["sha256"] == card["sha256"] and card2["training"]["reexported"]
    assert card2["metrics"]["balanced_accuracy"] == pytest.approx(card["metrics"]["balanced_accuracy"])
    assert card2["calibration"]["temperature"] == pytest.approx(card["calibration"]["temperature"])
    assert card2["views"]["decision"] == card["views"]["decision"] and card["views"]["check"]["reps"] > 0

    # a re-export killed after export wrote its preliminary card: the next one starts from the card before it,
    # so blocks export does not write (here a study's alpha_by_class) survive
    import training.export as texp
    from skinui.zoo import write_card

    class Killed(Exception):
        pass

    write_card({**card2, "alpha_by_class": {"marker": 1}}, weights)
    real_report = texp.report
    texp.report = lambda *a, **k: (_ for _ in ()).throw(Killed())
    try:
        with pytest.raises(Killed):
            reexport_entry(str(weights / "tiny_jiadf"), str(ham), run_dir=tmp_path / "rx")
    finally:
        texp.report = real_report
    partial = json.loads((weights / "tiny_jiadf.json").read_text())
    assert "calibration" not in partial and "alpha_by_class" not in partial  # what the killed run left
    card2 = json.loads(reexport_entry(str(weights / "tiny_jiadf"), str(ham), run_dir=tmp_path / "rx").read_text())
    assert card2["alpha_by_class"] == {"marker": 1} and card2["calibration"]["temperature"] == pytest.approx(
        card["calibration"]["temperature"])

    # an entry whose views check says "average": calibration, decisions and scores follow the views' mean
    import skinui.calibration
    from skinui.views import VIEWS, average_logits
    from training.evaluate import select_cases, subset_logits

    real = skinui.calibration.check_views
    forced = {"average": True, "mean_gain": 0.01, "share_losing": 0.0, "reps": 1, "views": 4}
    skinui.calibration.check_views = lambda *a, **k: {**real(*a, **k), **forced}
    try:
        card3 = json.loads(reexport_entry(str(weights / "tiny_jiadf"), str(ham)).read_text())
    finally:
        skinui.calibration.check_views = real
    averaging = load_entry("tiny_jiadf", weights)
    assert card3["views"]["decision"] == "averaged" and averaging.averages_views
    val, yv, _ = select_cases(card3, "ham10000", ham, "val")
    per_view = subset_logits(averaging, val, views=tuple(VIEWS))[tuple(averaging.modalities)]
    from skinui.calibration import fit_calibration

    cal3 = card3["calibration"]
    refit = fit_calibration(average_logits(per_view), yv, np.asarray(cal3["log_prior"]), bool(cal3["prior_weight"]))
    assert cal3["temperature"] == pytest.approx(refit["temperature"], rel=1e-3)
    from skinui.calibration import decide
    from skinui.metrics import balanced_accuracy

    # the card's validation score is the averaged entry's, under the calibration fitted on that average
    shown = balanced_accuracy(yv, decide(average_logits(per_view), averaging.calibration))
    assert card3["metrics_val"]["balanced_accuracy"] == pytest.approx(shown)

    # another training seed, same split and encoder, into a scratch zoo: weights/ is not touched
    from training.seeds import run_seed, table

    before = {p.name: p.stat().st_mtime_ns for p in weights.rglob("*")}
    rep = run_seed(load_config(None, base=stage2), 1, tmp_path / "seeds", weights, str(ham))
    assert {p.name: p.stat().st_mtime_ns for p in weights.rglob("*")} == before
    assert rep["n_cases"] == card["metrics"]["n_cases"]  # the same test split
    seeded = load_entry("tiny_jiadf", tmp_path / "seeds" / "seed1" / "weights")
    assert seeded.card["training"]["seed"] == 1 and seeded.card["sha256"] != card["sha256"]
    md = table({"tiny_jiadf": [card["metrics"], rep]})
    assert "| `tiny_jiadf` |" in md and " ± " in md and md.rstrip().endswith("| 2 |")


def test_stage2_on_an_ensemble_encoder_reads_each_member_from_its_own_stage1_entry(ham, tmp_path):
    from skinui.explain.cam import gradcam
    from skinui.zoo import load_entry

    for name, seed in (("tiny_a", 0), ("tiny_b", 1)):
        stage1 = tiny_config(name, "fastpath", seed=seed)
        stage1["model"].update(modalities=["dermoscopic"], structure={"name": "late"})
        stage1["export"] = {"shared_encoder": f"{name}_encoder"}
        run_fit(stage1, ham, tmp_path)
    member = tiny_config()["model"]["image_encoder"]
    stage2 = tiny_config("tiny_ens", "features")
    stage2["model"]["image_encoder"] = {"name": "ensemble", "members": [member, member]}
    stage2["stage2"]["backbone"] = ["tiny_a", "tiny_b"]
    run_fit(stage2, ham, tmp_path)
    weights = tmp_path / "weights"
    entry = load_entry("tiny_ens", weights)
    assert [(p["file"], p["prefix"]) for p in entry.card["shared"]] == [
        ("shared/tiny_a_encoder.safetensors", "encoders.dermoscopic.members.0."),
        ("shared/tiny_b_encoder.safetensors", "encoders.dermoscopic.members.1.")]
    ens = entry.model.image_encoders["dermoscopic"]
    for i, name in enumerate(("tiny_a", "tiny_b")):  # in order, and frozen
        theirs = load_entry(name, weights).model.image_encoders["dermoscopic"].state_dict()
        ours = ens.members[i].state_dict()
        assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
    x = torch.randn(2, 3, 32, 32)
    ens.eval()
    torch.testing.assert_close(ens(x), torch.cat([m(x) for m in ens.members], 1))
    from skinui.datasets import load_dataset

    case = load_dataset("ham10000", ham).cases[0]
    pred = entry.predict([case])[0]
    assert sum(pred.probabilities.values()) == pytest.approx(1)
    heat = gradcam(entry.encode(case), "dermoscopic")
    assert heat.shape == (32, 32) and np.isfinite(heat).all()
    # Grad-CAM's layer is the stack of both members' last feature maps: gradients reach each half
    seen = {}
    hook = ens.target_layer.register_forward_hook(lambda m, a, out: seen.setdefault("maps", out))
    x = torch.randn(1, 3, 64, 64)
    with torch.enable_grad():
        out = ens(x)
        maps = seen["maps"]
        grad, = torch.autograd.grad(out[:, 0].sum() + out[:, -1].sum(), maps)
    hook.remove()
    half = maps.shape[1] // 2
    assert maps.shape[1] == 2 * ens.members[0].out_dim
    assert grad[:, :half].abs().sum() > 0 and grad[:, half:].abs().sum() > 0

    # stage2.head average: an image-only entry whose logits are the mean of the members' own, untrained
    avg = tiny_config("tiny_avg", "features")
    avg["model"].update(modalities=["dermoscopic"], structure={"name": "late"},
                        image_encoder={"name": "ensemble", "members": [member, member]})
    avg["stage2"].update(backbone=["tiny_a", "tiny_b"], head="average")
    run = run_fit(avg, ham, tmp_path)
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 0
    averaged = load_entry("tiny_avg", weights).model.eval()
    members = [load_entry(n, weights).model.eval() for n in ("tiny_a", "tiny_b")]
    batch = {"dermoscopic": torch.randn(3, 3, 32, 32)}
    with torch.no_grad():
        want = torch.stack([m(batch).logits for m in members]).mean(0)
        torch.testing.assert_close(averaged(batch).logits, want, atol=2e-3, rtol=2e-3)  # fp16 storage


def test_resume_after_kill_reaches_the_same_weights(ham, tmp_path, monkeypatch):
    cfg = tiny_config("tiny_resume", "full", optimizer={"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4})
    cfg["export"] = {"enabled": False}
    straight = run_fit(cfg, ham, tmp_path / "a")

    real_save = checkpoint.save_state

    def save_then_die(prefix, state):
        real_save(prefix, state)
        raise KeyboardInterrupt  # the process is killed right after epoch 1's checkpoint

    monkeypatch.setattr(checkpoint, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_fit(cfg, ham, tmp_path / "b")
    monkeypatch.setattr(checkpoint, "save_state", real_save)
    assert checkpoint.load_state(tmp_path / "b" / "runs" / "tiny_resume" / "last")["epoch"] == 1
    resumed = run_fit(cfg, ham, tmp_path / "b", resume=True)

    final_a = checkpoint.load_state(straight / "last")
    final_b = checkpoint.load_state(resumed / "last")
    assert final_b["epoch"] == 2
    for key, value in final_a["model"].items():
        assert torch.equal(value, final_b["model"][key]), key
    best_a, best_b = load_file(str(straight / "best.safetensors")), load_file(str(resumed / "best.safetensors"))
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(final_a["history"]) == drop(final_b["history"])


def test_fastpath_cache_is_fp16_views_and_only_the_trunk_learns(ham, tmp_path):
    from training.data import prepare
    from training.loop import build
    from training.optim import build_optimizer, compute_loss
    from training.runtime import setup
    from training.tasks import make_task

    cfg = load_config(None, base={**tiny_config("tiny_fp", "fastpath"), "cache": {"store": "ram"}})
    prep = prepare(cfg, ham)
    rt = setup("cpu", "off", False)
    model = build(cfg, prep, rt, tmp_path)
    task = make_task(cfg, model, prep, rt, tmp_path / "run")
    task.prepare_model()
    (cache,) = [c["dermoscopic"] for c in task.caches.values()]
    encoder = model.image_encoders["dermoscopic"]
    x = torch.randn(1, 3, 32, 32)
    assert cache.data.dtype == np.float16
    assert cache.data.shape == (len(prep.split["train"]), 2, *encoder.forward_stem(x).shape[1:])
    # view 0 is the plain image through the frozen stem
    from training.data import image_tensor

    first = prep.cases[prep.split["train"][0]].image("dermoscopic")
    with torch.no_grad():
        expected = encoder.forward_stem(image_tensor(first, 32)[None])[0]
    torch.testing.assert_close(torch.from_numpy(cache.data[0, 0].astype(np.float32)), expected, atol=2e-2, rtol=1e-2)

    stem = [p for m in encoder.stem_modules() for p in m.parameters()]
    trunk = [p for n, p in encoder.named_parameters() if p.requires_grad]
    assert stem and trunk and not any(p.requires_grad for p in stem)
    before_stem, before_trunk = [p.clone() for p in stem], [p.clone() for p in trunk]
    optimizer = build_optimizer(model, cfg["train"])
    task.modules_to_train_mode()
    batch, target = next(iter(task.train_batches(0)))
    assert batch["dermoscopic"].shape[1:] == cache.data.shape[2:]
    compute_loss(model, task.module(batch), target, None).backward()
    assert all(p.grad is None for p in stem) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trunk)
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before_stem, stem))
    assert any(not torch.equal(a, b) for a, b in zip(before_trunk, trunk))
    logits = task.predict(prep.split["val"], part="val")
    assert logits.shape == (len(prep.split["val"]), 7) and np.allclose(np.exp(logits).sum(1), 1, atol=1e-4)


def test_retrain_orders_stage1_before_the_stage2_entries_that_read_it():
    from training.retrain import commands, order

    fake = {
        "ens": {"cfg": {"train": {"mode": "features"}, "model": {"modalities": ["dermoscopic", "metadata"]},
                        "stage2": {"backbone": ["a", "b"]}}},
        "b": {"cfg": {"train": {"mode": "full"}, "model": {"modalities": ["dermoscopic"]}}},
        "fusion": {"cfg": {"train": {"mode": "features"}, "model": {"modalities": ["dermoscopic", "metadata"]},
                           "stage2": {"backbone": "a"}}},
        "a": {"cfg": {"train": {"mode": "fastpath"}, "model": {"modalities": ["dermoscopic"]}}},
        # a product of two shipped experts comes after both (and after its own backbone)
        "bayes": {"cfg": {"train": {"mode": "features"}, "stage2": {"backbone": "a"},
                          "model": {"modalities": ["dermoscopic", "metadata"],
                                    "structure": {"name": "product", "experts": {"image": "ens", "metadata": "meta"}}}}},
        "meta": {"cfg": {"train": {"mode": "full"}, "model": {"modalities": ["metadata"]}}},
    }
    got = order(fake)
    assert got.index("a") < got.index("fusion") and max(got.index("a"), got.index("b")) < got.index("ens")
    assert max(got.index("ens"), got.index("meta")) < got.index("bayes")

    weights = Path(__file__).resolve().parents[1] / "weights"
    cmds = [" ".join(c) for c in commands("pad-ufes-20", "DATA", weights, "cpu", [1])]
    fits = [c for c in cmds if " fit " in c]
    at = {c.split("--config ")[1].split()[0].rsplit("/", 1)[1]: i for i, c in enumerate(cmds) if " fit " in c}
    backbone = load_config(CONFIGS / "_pad_ufes20_stage2.yaml", base=None)["stage2"]["backbone"]
    assert at[f"{backbone}.yaml"] < at["pad_ufes20_jf_metablock.yaml"]
    assert cmds.index(f"rm -f {weights}/shared/pad_ufes20_clinical_lite0_gpu.safetensors") < at["pad_ufes20_image_gpu.yaml"]
    last_fit = max(at.values())
    assert all(i > last_fit for i, c in enumerate(cmds) if "training.trust " in c or "training.reports" in c)
    assert all("--data-root DATA" in c for c in fits) and any("training.seeds" in c for c in cmds)
    step = {name: next(i for i, c in enumerate(cmds) if name in c) for name in ("training.seeds", "training.anchor",
                                                                                 "training.results")}
    assert step["training.seeds"] < step["training.anchor"] < step["training.results"]  # pairs the retrained entries
    assert "--pair-entries" in cmds[step["training.anchor"]] and "--data-root DATA" in cmds[step["training.anchor"]]


def test_seed_scratch_zoo_picks_up_files_added_or_changed_since_it_was_made(tmp_path):
    from training.seeds import scratch_zoo

    weights, zoo = tmp_path / "weights", tmp_path / "zoo"
    (weights / "shared").mkdir(parents=True)
    (weights / "shared" / "enc.safetensors").write_bytes(b"a")
    for ext in (".json", ".safetensors"):
        (weights / f"stage1{ext}").write_bytes(b"v1")
    scratch_zoo({"stage1"}, weights, zoo)
    (weights / "shared" / "ood-1.safetensors").write_bytes(b"new")  # a trust run added a file
    (weights / "stage1.json").write_bytes(b"v2")  # the stage-1 entry was retrained
    scratch_zoo({"stage1"}, weights, zoo)
    assert (zoo / "shared" / "ood-1.safetensors").read_bytes() == b"new"
    assert (zoo / "stage1.json").read_bytes() == b"v2" and (zoo / "shared" / "enc.safetensors").read_bytes() == b"a"


def test_seed_runs_are_reused_only_while_their_stage1_encoder_is_the_shipped_one(tmp_path, monkeypatch):
    import training.loop
    from training.seeds import run_seed

    weights = tmp_path / "weights"
    (weights / "shared").mkdir(parents=True)
    for ext in (".json", ".safetensors"):
        (weights / f"enc{ext}").write_text(json.dumps({"sha256": "old"}))
    calls = []

    def fake_fit(cfg, data_root, run_dir, device, command, weights_dir):
        calls.append(run_dir)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "report_test.json").write_text(json.dumps({"balanced_accuracy": 0.5}))

    monkeypatch.setattr(training.loop, "fit", fake_fit)
    cfg = load_config(None, base={**tiny_config("tiny_fusion", "features"), "stage2": {"backbone": "enc"}})
    for _ in range(2):
        run_seed(cfg, 1, tmp_path / "seeds", weights)
    assert len(calls) == 1  # the second call reads the finished run
    (weights / "enc.json").write_text(json.dumps({"sha256": "new"}))  # stage 1 retrained
    run_seed(cfg, 1, tmp_path / "seeds", weights)
    assert len(calls) == 2

    # a finished run exported before the decision-weight check is re-exported (same weights, today's
    # rule), not retrained; once its card carries the check it is read as it is
    import training.export

    exported = []
    card = tmp_path / "seeds" / "seed1" / "weights" / "tiny_fusion.json"
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(json.dumps({"calibration": {"log_prior": [0.0, 0.0], "decision_prior_weight": 0.6}}))

    def fake_export(run, weights_dir, data_root, device):
        exported.append(run)
        card.write_text(json.dumps({"calibration": {"log_prior": [0.0, 0.0], "decision_prior_weight": 1.0,
                                                    "decision_weight_check": {"tune": False}}}))

    monkeypatch.setattr(training.export, "export_run", fake_export)
    run_dir = tmp_path / "seeds" / "seed1" / "tiny_fusion"
    (run_dir / "best.safetensors").write_bytes(b"weights")
    for _ in range(2):
        run_seed(cfg, 1, tmp_path / "seeds", weights)
    assert len(calls) == 2 and len(exported) == 1
    # a photo entry exported before the views check predates today's rule too; a run `fit` did not
    # checkpoint (FusionM4Net's stages) is re-exported from the scratch zoo's entry, its report into the run
    card.write_text(json.dumps({"modalities": ["dermoscopic"], "model": {"image_encoder": {"name": "efficientnet_lite0"}},
                                "calibration": {"decision_weight_check": {"tune": False}}}))
    (run_dir / "best.safetensors").unlink()
    again = []

    def fake_reexport(weights_path, data_root, run_dir):
        again.append((Path(weights_path).name, Path(run_dir)))
        card.write_text(json.dumps({"modalities": ["dermoscopic"], "views": {"decision": "single", "check": {}}}))

    monkeypatch.setattr(training.export, "reexport_entry", fake_reexport)
    for _ in range(2):
        run_seed(cfg, 1, tmp_path / "seeds", weights)
    assert again == [("tiny_fusion.json", run_dir)] and len(exported) == 1 and len(calls) == 2


def test_feature_cache_key_tells_two_folders_with_the_same_case_ids_apart(tmp_path):
    """Two SynthDerm folders share case ids; a cache keyed by ids alone served one's features for the other."""
    import os

    from skinui.cases import Case, ImageRef
    from training.fastpath import images_fingerprint

    def folder(name: str, payload: bytes) -> list:
        (tmp_path / name).mkdir()
        out = []
        for i in range(3):
            p = tmp_path / name / f"SD{i}.png"
            p.write_bytes(payload)
            out.append(Case(case_id=f"SD{i}", dermoscopic=ImageRef(p), label="MEL"))
        return out

    a, b = folder("synthderm", b"a"), folder("synthderm-x", b"a")
    assert images_fingerprint(a, "dermoscopic") == images_fingerprint(list(a), "dermoscopic")
    assert images_fingerprint(a, "dermoscopic") != images_fingerprint(b, "dermoscopic")
    before = images_fingerprint(a, "dermoscopic")
    os.utime(a[0].dermoscopic.path, ns=(1, 1))  # regenerated in place
    assert images_fingerprint(a, "dermoscopic") != before
    assert images_fingerprint(a, "clinical") == images_fingerprint(b, "clinical")  # no clinical image in either
