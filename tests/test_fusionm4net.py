"""FusionM4Net: the fused feature is the element-wise sum, the loss is the three branches' summed
cross-entropy, the branch-weight grid search finds the right weights, the SVM is fitted on out-of-sample
stage-1 probabilities, the torch SVM equals scikit-learn's, and the entry survives save/load."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skinui.cases import Case
from skinui.encoding import MetadataEncoder
from skinui.models import build_model
from skinui.models.fusionm4net import BRANCHES, RBFSVC, FusionM4Net
from skinui.schema import Field, Schema
from training.fusionm4net import (
    combine,
    fit_svm,
    half_split,
    missing_metadata_is_unknown,
    out_of_sample,
    search_weights,
    simplex_grid,
    svm_inputs,
    svm_probabilities,
)

SCHEMA = Schema("toy", ("mel", "nev", "bcc"), (Field("age", "numeric", valid_range=(0, 120)),
                Field("site", "categorical", vocabulary=("arm", "leg"))), "lesion_id",
                ("dermoscopic", "clinical", "metadata"))
ROWS = [{"age": 30, "site": "arm"}, {"age": 60, "site": "leg"}, {"age": None, "site": "arm"}]
TINY = {"name": "dermiresnet", "width": 0.0625, "blocks": [1, 1, 1, 1]}


def _encoder() -> MetadataEncoder:
    return MetadataEncoder(SCHEMA).fit(ROWS)


def _model(**structure):
    torch.manual_seed(0)
    enc = _encoder()
    model = build_model({"modalities": ["dermoscopic", "clinical", "metadata"], "num_classes": 3, "meta_dim": enc.dim,
                         "image_size": 32, "image_encoder": TINY, "meta_encoder": {"name": "mlp", "dims": []},
                         "meta_missing": enc.transform([{}])[0].tolist(),
                         "structure": {"name": "fusionm4net", **structure}})
    missing_metadata_is_unknown(model)  # as training.fusionm4net.fit does
    return model.eval()


def _svc(x: np.ndarray, y: np.ndarray, c: float = 1.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return fit_svm(x, y, c, "scale", 0)


def _inputs(model, n: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"dermoscopic": torch.randn(n, 3, 32, 32, generator=g), "clinical": torch.randn(n, 3, 32, 32, generator=g),
            "metadata": torch.from_numpy(_encoder().transform([ROWS[i % 3] for i in range(n)]))}


def _attach_svm(model, n: int = 60, seed: int = 0, stage_weights=(0.4, 0.6)):
    """An SVC fitted on [metadata ; P1]-shaped inputs, attached with the given stage weights."""
    rng = np.random.default_rng(seed)
    dim = model.structure.svm_width()
    x = rng.normal(size=(n, dim))
    y = np.arange(n) % 3
    x[:, 0] += y
    svc = _svc(x, y)
    model.cfg["structure"] = {**model.cfg["structure"], **model.structure.attach([0.2, 0.3, 0.5], stage_weights, svc)}
    return svc


# -- stage 1: FusionNet ---------------------------------------------------------------------------------------
def test_fused_feature_is_the_elementwise_sum_of_the_two_image_features():
    model = _model()
    s = model.structure
    assert list(s.image_dims) == ["dermoscopic", "clinical"]  # the model's order of the concatenated features
    seen = {}
    for b in BRANCHES:
        s.heads[b].register_forward_hook(lambda mod, args, out, b=b: seen.__setitem__(b, args[0].detach()))
    batch = _inputs(model)
    with torch.no_grad():
        feats = model.encode(batch)
        model.head(feats)
    torch.testing.assert_close(seen["fusion"], feats["dermoscopic"] + feats["clinical"], rtol=0, atol=0)
    torch.testing.assert_close(seen["clinical"], feats["clinical"], rtol=0, atol=0)  # each branch its own image
    torch.testing.assert_close(seen["dermoscopic"], feats["dermoscopic"], rtol=0, atol=0)
    assert isinstance(s.project["clinical"], torch.nn.Identity)  # equal widths: no projection
    # unequal widths: each feature projected to the common width, then summed
    t = FusionM4Net(10, 4, 3, image_dims={"dermoscopic": 6, "clinical": 4}, width=5)
    d, c = torch.randn(2, 6), torch.randn(2, 4)
    fused = t.fuse(t.split(torch.cat([d, c], 1)))
    torch.testing.assert_close(fused, t.project["clinical"](c) + t.project["dermoscopic"](d))
    with pytest.raises(ValueError, match="clinical and a dermoscopic"):
        FusionM4Net(6, 4, 3, image_dims={"dermoscopic": 6})


def test_loss_is_the_summed_cross_entropy_of_the_three_branches_and_trains_each():
    from training.optim import compute_loss

    model = _model()
    model.train()
    out = model(_inputs(model, n=6))
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    expected = sum(F.cross_entropy(out.branch_logits[b], target) for b in BRANCHES)
    torch.testing.assert_close(model.structure.loss(out, target), expected)
    loss = compute_loss(model, out, target, None, 0.0)  # the training loop's path
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(model.structure.heads[b][1].weight.grad.abs().sum() > 0 for b in BRANCHES)
    # P1 is the branch-weighted mixture of the three softmaxes (uniform before the search)
    model.eval()
    with torch.no_grad():
        out = model(_inputs(model, n=6))
    mix = sum(out.branch_logits[b].softmax(1) for b in BRANCHES) / 3
    torch.testing.assert_close(out.probs, mix)


def test_branch_weight_grid_search_finds_the_right_weights():
    grid = simplex_grid(3, 0.1)
    assert grid.shape == (66, 3) and np.allclose(grid.sum(1), 1) and (grid >= 0).all()
    # clinical is right with confidence on the first half and mildly wrong on the second, dermoscopic the other
    # way round: only a mixture with both above 0.2 gets every case right, and the NLL is lowest at (0.5, 0.5);
    # the fusion branch is uninformative (uniform), so any weight on it only raises the NLL.
    n = 40
    y = np.zeros(n, dtype=int)
    good, bad = np.array([0.9, 0.1]), np.array([0.4, 0.6])
    clinical = np.array([good if i < n // 2 else bad for i in range(n)])
    dermoscopic = np.array([bad if i < n // 2 else good for i in range(n)])
    fusion = np.full((n, 2), 0.5)
    y[::4] = 1  # some cases of the other class, mirrored, so the metric is defined
    for p in (clinical, dermoscopic):
        p[::4] = p[::4, ::-1]
    w, rows = search_weights([clinical, dermoscopic, fusion], y, grid, "balanced_accuracy")
    np.testing.assert_allclose(w, [0.5, 0.5, 0.0])
    assert len(rows) == 66 and max(r["balanced_accuracy"] for r in rows) == 1.0
    assert min(r["balanced_accuracy"] for r in rows if r["weights"][0] in (0.0, 1.0)) < 1.0  # one branch fails
    # a perfect branch among adversarial ones: all the weight goes to it; weights are normalised
    perfect = np.eye(2)[y] * 0.8 + 0.1
    wrong = np.eye(2)[1 - y] * 0.9 + 0.05
    w, _ = search_weights([wrong, wrong, perfect], y, 2 * grid, "balanced_accuracy")
    np.testing.assert_allclose(w, [0, 0, 1])
    np.testing.assert_allclose(simplex_grid(2, 0.05)[:, 0], np.linspace(1, 0, 21))


# -- stage 2: the SVM's training inputs ---------------------------------------------------------------------------
def test_svm_is_fitted_on_out_of_sample_stage1_probabilities():
    rng = np.random.default_rng(0)
    groups = [f"lesion{i // 2}" for i in range(80)]  # two visits per lesion
    labels = np.repeat(rng.integers(0, 4, 40), 2)
    halves = half_split(groups, labels, seed=0)
    for g in set(groups):  # a lesion never straddles the halves
        assert len({halves[i] for i, gg in enumerate(groups) if gg == g}) == 1
    assert abs(int((halves == 0).sum()) - int((halves == 1).sum())) <= 2
    for c in range(4):  # both halves hold every class
        assert (labels[halves == 0] == c).any() and (labels[halves == 1] == c).any()
    # a memorising stage 1: it knows the label of every row it was fitted on, and nothing else
    fitted_on: list[set[int]] = []

    def fit(rows):
        fitted_on.append(set(rows.tolist()))
        return {int(r): int(labels[r]) for r in rows}

    def predict(memory, rows):
        return np.array([np.eye(4)[memory[r]] if r in memory else np.full(4, 0.25) for r in rows.tolist()])

    probs, models = out_of_sample(halves, fit, predict)
    assert len(models) == 2 and fitted_on[0] | fitted_on[1] == set(range(80)) and not fitted_on[0] & fitted_on[1]
    np.testing.assert_array_equal(probs, np.full((80, 4), 0.25))  # no row was predicted by a model that saw it
    for i in range(80):  # the model that produced row i's probability is the one fitted on the other half
        assert i not in fitted_on[1 - halves[i]] and i in fitted_on[halves[i]]
    # and these are the SVM's inputs: [metadata ; P1]
    meta = rng.normal(size=(80, 3)).astype(np.float32)
    branch = np.repeat(probs[:, None], 3, 1)
    x = svm_inputs(meta, branch, np.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(x, np.concatenate([meta, combine(branch, np.array([0.2, 0.3, 0.5]))], 1), rtol=1e-6)


# -- stage 2: the SVM in torch -----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 4])
def test_torch_svm_equals_scikit_learn(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(90, 5))
    y = np.arange(90) % k
    x[:, 0] += 1.5 * y
    svc = _svc(x, y, c=3.0)
    spec = RBFSVC.spec_of(svc)
    svm = RBFSVC(k, spec["n_support"], spec["dim"]).load_sklearn(svc)
    xt = rng.normal(size=(40, 5)) + np.array([1.0, 0, 0, 0, 0])
    svc.decision_function_shape = "ovo"
    ovo = svc.decision_function(xt)
    ovo = ovo if k > 2 else -ovo[:, None]  # scikit-learn flips the sign of a binary SVC's decision values
    proba = svm_probabilities(svc, xt)
    dec = svm.decision(torch.from_numpy(xt)).numpy()
    np.testing.assert_allclose(dec, ovo, rtol=0, atol=1e-10)
    got = svm(torch.from_numpy(xt)).numpy()
    np.testing.assert_allclose(got, proba, rtol=0, atol=1e-10)
    assert not np.allclose(proba, 1 / k)  # a real test: the probabilities vary


def test_structure_combines_stage1_and_svm_probabilities_and_gradients_pass_the_svm():
    model = _model()
    svc = _attach_svm(model)
    batch = _inputs(model, n=4)
    with torch.no_grad():
        feats = model.encode(batch)
        out = model.head(feats)
    p1 = out.features["p1"].double().numpy()
    z = {b: out.branch_logits[b].softmax(1).double().numpy() for b in BRANCHES}
    np.testing.assert_allclose(p1, 0.2 * z["clinical"] + 0.3 * z["dermoscopic"] + 0.5 * z["fusion"], atol=1e-6)
    x = np.concatenate([batch["metadata"].numpy(), out.features["p1"].numpy()], 1).astype(np.float64)
    p2 = svm_probabilities(svc, x)
    np.testing.assert_allclose(out.features["p2"].double().numpy(), p2, atol=1e-6)
    np.testing.assert_allclose(out.probs.double().numpy(), 0.4 * p1 + 0.6 * p2, atol=1e-6)
    torch.testing.assert_close(out.logits, out.probs.log())
    # Grad-CAM's gradient reaches the image features through the SVM alone (stage weights 0 / 1)
    model.structure.attach([0.2, 0.3, 0.5], [0.0, 1.0], svc)
    f = {m: v.clone().requires_grad_(True) for m, v in feats.items()}
    model.head(f).logits[:, 1].sum().backward()
    assert f["dermoscopic"].grad.abs().sum() > 0 and f["metadata"].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="inputs"):
        model.structure.attach([1, 1, 1], [1, 1], _svc(np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 3))


def test_save_load_round_trip_predicts_identically_and_grad_cam_runs(tmp_path):
    from skinui.explain import cam
    from skinui.zoo import load_entry, save_entry

    model = _model()
    _attach_svm(model)
    card = {"name": "toy-fusionm4net", "dataset": "toy", "classes": list(SCHEMA.classes),
            "metadata_encoder": _encoder().to_dict(), "model": json.loads(json.dumps(model.cfg))}
    save_entry(model, card, tmp_path)  # fp32 file: the SVM's float64 tensors stay float64
    stored = json.loads((tmp_path / "toy-fusionm4net.json").read_text())
    assert stored["model"]["structure"]["svm"]["n_support"] == model.structure.svm.n_support
    entry = load_entry("toy-fusionm4net", tmp_path)
    assert entry.model.structure.svm.support.dtype == torch.float64
    for k, v in model.state_dict().items():
        assert torch.equal(entry.model.state_dict()[k], v), k
    torch.testing.assert_close(entry.model.structure.branch_weights, model.structure.branch_weights)
    torch.testing.assert_close(entry.model.structure.stage_weights, model.structure.stage_weights)
    rng = np.random.default_rng(0)
    cases = [Case(f"c{i}", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8),
                  rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), dict(ROWS[i % 3])) for i in range(3)]
    batch = entry.batch(cases)
    with torch.no_grad():
        expected = model(batch).logits
    enc = entry.encode(cases)
    torch.testing.assert_close(enc.logits, expected, rtol=0, atol=0)
    preds = entry.predict(cases)
    assert set(preds[0].branch_probabilities) == {*BRANCHES, "svm"} and preds[0].branch_weights is None
    assert preds[0].tasks is None  # a single-task entry
    heat = cam.gradcam(entry.encode(cases[:1]), "dermoscopic")  # through stage 1 and the SVM
    assert heat.shape == (32, 32) and np.isfinite(heat).all()
    for subset in (["dermoscopic"], ["clinical", "metadata"], ["metadata"]):  # the app's modality switches
        probs = np.array([list(p.probabilities.values()) for p in entry.predict(cases, modalities=subset)])
        assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)
    # no metadata: the SVM reads the encoding of 'every field unknown', as for a training case without any
    bare = entry.encode([Case("x", cases[0].dermoscopic, cases[0].clinical, {})])
    assert not bool(bare.mask["metadata"][0])
    with torch.no_grad():
        typed = entry.model.head({**bare.feats, "metadata": torch.from_numpy(_encoder().transform([{}]))})
    torch.testing.assert_close(bare.logits, typed.logits, rtol=0, atol=0)


# -- multi-task: Derm7pt's seven-point criteria -------------------------------------------------------------------
def test_derm7pt_criteria_are_grouped_as_the_derm7pt_package_groups_them(tmp_path):
    from fixtures.official_layouts import make_derm7pt

    from skinui.datasets import DATASETS, load_dataset

    adapter = DATASETS.get("derm7pt")
    assert adapter.tasks["vascular_structures"] == ("absent", "regular", "irregular")
    assert {t: len(c) for t, c in adapter.tasks.items()} == {
        "pigment_network": 3, "streaks": 3, "pigmentation": 3, "regression_structures": 2, "dots_and_globules": 3,
        "blue_whitish_veil": 2, "vascular_structures": 3}
    case = Case("x", extra={"criteria": {"pigmentation": "localized regular", "vascular_structures": "within regression",
                                         "regression_structures": "combinations", "streaks": None,
                                         "pigment_network": "atypical", "dots_and_globules": "made up"}})
    got = adapter.task_labels(case)
    assert got["pigmentation"] == 1 and got["vascular_structures"] == 1 and got["regression_structures"] == 1
    assert got["pigment_network"] == 2
    assert got["streaks"] == -1 and got["dots_and_globules"] == -1 and got["blue_whitish_veil"] == -1  # unknown
    make_derm7pt(tmp_path, n=8)
    cases = {c.case_id: c for c in load_dataset("derm7pt", tmp_path).cases}
    assert adapter.task_labels(cases["1"])["vascular_structures"] == 2  # "dotted" is irregular
    assert adapter.task_labels(cases["2"])["regression_structures"] == -1  # left blank in meta.csv
    assert DATASETS.get("ham10000").task_labels(cases["1"]) == {}  # datasets without further tasks


def _multitask_model(tasks=None):
    return _model(tasks=tasks or {"veil": 2, "network": 3})


def test_multitask_loss_adds_each_tasks_three_branches_and_skips_unknown_labels():
    from training.optim import compute_loss

    model = _multitask_model()
    model.train()
    out = model(_inputs(model, n=6))
    diagnosis = torch.tensor([0, 1, 2, 0, 1, 2])
    veil = torch.tensor([0, 1, -1, 1, 0, -1])
    network = torch.tensor([2, -1, -1, -1, -1, -1])
    target = torch.stack([diagnosis, veil, network], 1)
    known = veil >= 0
    expected = sum(F.cross_entropy(out.branch_logits[b], diagnosis) for b in BRANCHES)
    expected = expected + sum(F.cross_entropy(out.features[f"task.veil.{b}"][known], veil[known]) for b in BRANCHES)
    expected = expected + sum(F.cross_entropy(out.features[f"task.network.{b}"][:1], network[:1]) for b in BRANCHES)
    torch.testing.assert_close(compute_loss(model, out, target, None, 0.0), expected)
    # a diagnosis-only target trains the diagnosis alone (what a dataset without criteria gives)
    torch.testing.assert_close(model.structure.loss(out, diagnosis),
                               sum(F.cross_entropy(out.branch_logits[b], diagnosis) for b in BRANCHES))
    compute_loss(model, out, target, None, 0.0).backward()
    heads = model.structure.task_heads
    assert all(heads[t][b][1].weight.grad.abs().sum() > 0 for t in ("veil", "network") for b in BRANCHES)
    with pytest.raises(ValueError, match="number of classes"):
        _model(tasks={"veil": 1})


def test_each_task_has_its_own_weights_and_svm_and_survives_save_load(tmp_path):
    from skinui.zoo import load_entry, save_entry

    model = _multitask_model()
    _attach_svm(model)  # the diagnosis
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, model.structure.svm_width(2)))
    y = np.arange(40) % 2
    x[:, 0] += 2 * y
    svc = _svc(x, y)
    entries = model.structure.attach([0.0, 1.0, 0.0], [0.5, 0.5], svc, task="veil")
    assert entries["task_svms"]["veil"]["n_support"] == [int(n) for n in svc.n_support_]
    model.cfg["structure"] = {**model.cfg["structure"], **entries}
    batch = _inputs(model, n=4)
    with torch.no_grad():
        out = model(batch)
    # veil: P1 is the dermoscopic branch alone (weights 0/1/0), P2 its own SVM on [metadata ; veil's P1]
    p1 = out.features["task.veil.dermoscopic"].softmax(1).double().numpy()
    xv = np.concatenate([batch["metadata"].numpy(), p1.astype(np.float32)], 1).astype(np.float64)
    np.testing.assert_allclose(out.features["task.veil"].double().numpy(), 0.5 * p1 + 0.5 * svm_probabilities(svc, xv),
                               atol=1e-6)
    # network has no SVM yet: its output is its uniform branch mixture; the diagnosis is untouched by the tasks
    mix = sum(out.features[f"task.network.{b}"].softmax(1) for b in BRANCHES) / 3
    torch.testing.assert_close(out.features["task.network"], mix)
    plain = _model()
    plain.load_state_dict(model.state_dict(), strict=False)
    _attach_svm(plain)
    with torch.no_grad():
        torch.testing.assert_close(plain(batch).probs, out.probs)
    card = {"name": "toy-m4", "dataset": "toy", "classes": list(SCHEMA.classes),
            "metadata_encoder": _encoder().to_dict(), "model": json.loads(json.dumps(model.cfg)),
            "fusionm4net": {"tasks": {"veil": {"classes": ["absent", "present"]}}}}
    save_entry(model, card, tmp_path, fp16=True)  # fp16 storage leaves the SVMs' float64 tensors exact
    entry = load_entry("toy-m4", tmp_path)
    for name, t in model.structure.state_dict().items():
        if t.dtype == torch.float64:
            assert torch.equal(entry.model.structure.state_dict()[name], t), name
    assert entry.model.structure.task_svm["veil"].support.dtype == torch.float64
    torch.testing.assert_close(entry.model.structure.task_weights("veil")[1], torch.tensor([0.5, 0.5]))
    rng = np.random.default_rng(0)
    cases = [Case(f"c{i}", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8),
                  rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), dict(ROWS[i % 3])) for i in range(2)]
    pred = entry.predict(cases)[0]
    assert set(pred.tasks) == {"veil", "network"} and list(pred.tasks["veil"]) == ["absent", "present"]
    assert list(pred.tasks["network"]) == ["0", "1", "2"]  # no names anywhere: indices
    assert sum(pred.tasks["network"].values()) == pytest.approx(1, abs=1e-5)


def _derm7pt_config(name: str, modalities: list[str], **extra) -> dict:
    """CI-sized Derm7pt configs: tinynet_e at 32 px on the fixture of the official layout."""
    from training.config import load_config

    cfg = {"name": name, "dataset": "derm7pt", "split": {"method": "auto"},
           "model": {"modalities": modalities, "image_size": 32,
                     "image_encoder": {"name": "tinynet_e", "pretrained": False, "stem_blocks": 3},
                     "meta_encoder": {"name": "mlp", "dims": [8]}, "structure": {"name": "late"}},
           "train": {"mode": "fastpath", "epochs": 1, "batch_size": 8, "eval_batch_size": 16},
           "fastpath": {"views": 1}, "stage2": {"views": 1}, **extra}
    return load_config(None, base=cfg)


def test_derm7pt_multitask_fusionm4net_trains_end_to_end_on_the_official_layout(tmp_path):
    """Both stage-1 encoders, then FusionM4Net with the seven criteria: one SVM and weights per task, each
    criterion scored on validation and test in the card, every prediction carrying the criteria."""
    from fixtures.official_layouts import make_derm7pt

    from skinui.datasets import load_dataset
    from skinui.zoo import load_entry
    from training.config import load_config
    from training.loop import fit

    root, weights = tmp_path / "derm7pt", tmp_path / "weights"
    make_derm7pt(root, n=60)
    run = lambda cfg: fit(cfg, str(root), str(tmp_path / "runs" / cfg["name"]), "cpu", "pytest",  # noqa: E731
                          weights_dir=str(weights))
    for m in ("dermoscopic", "clinical"):
        run(_derm7pt_config(f"d7_{m}", [m], export={"shared_encoder": f"d7_{m}_encoder"}))
    shipped = load_config("training/configs/derm7pt_fusionm4net.yaml")
    structure = {**shipped["model"]["structure"], "search": {"branch_step": 0.5, "stage_step": 0.5, "svm_C": [1.0]}}
    cfg = _derm7pt_config("d7_m4", ["dermoscopic", "clinical", "metadata"],
                          stage2={"views": 1, "backbone": {"dermoscopic": "d7_dermoscopic", "clinical": "d7_clinical"}})
    cfg["model"].update(meta_encoder={"name": "mlp", "dims": []}, structure=structure)
    cfg["train"].update(mode="features", epochs=2, select_metric="balanced_accuracy")
    run(cfg)
    card = json.loads((weights / "d7_m4.json").read_text())
    tasks = card["fusionm4net"]["tasks"]
    assert set(tasks) == set(shipped["model"]["structure"]["tasks"])
    assert tasks["vascular_structures"]["classes"] == ["absent", "regular", "irregular"]
    for t, row in tasks.items():
        assert sum(row["branch_weights"].values()) == pytest.approx(1) and sum(row["stage_weights"].values()) == pytest.approx(1)
        assert sum(row["svm"]["n_support"]) > 0 and row["svm"]["torch_vs_search_max_abs_diff_val"] < 1e-5
        for part in ("val", "test"):
            assert row[part]["balanced_accuracy"]["ci"][0] is not None, (t, part)
    assert tasks["regression_structures"]["val"]["n_cases"] == 12  # the blank row is in training
    assert set(card["model"]["structure"]["task_svms"]) == set(tasks)
    entry = load_entry("d7_m4", weights)
    cases = load_dataset("derm7pt", root).cases[:3]
    pred = entry.predict(cases)[0]
    assert set(pred.tasks) == set(tasks) and list(pred.tasks["pigment_network"]) == ["absent", "typical", "atypical"]
    assert all(sum(p.values()) == pytest.approx(1, abs=1e-5) for p in pred.tasks.values())
    assert sum(pred.probabilities.values()) == pytest.approx(1, abs=1e-5) and len(pred.probabilities) == 5
    # a task the dataset does not label, or with the wrong number of classes, is refused with a sentence
    from training.fusionm4net import resolve_tasks

    with pytest.raises(ValueError, match="not labelled in derm7pt"):
        resolve_tasks({"ulceration": 2}, "derm7pt")
    with pytest.raises(ValueError, match="streaks: 3"):
        resolve_tasks({"streaks": 2}, "derm7pt")
    with pytest.raises(ValueError, match="none"):
        resolve_tasks({"streaks": 3}, "ham10000")
