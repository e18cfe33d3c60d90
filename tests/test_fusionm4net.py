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
