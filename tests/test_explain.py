"""The explain layer on tiny real zoo entries (random weights, 64 px): shapes, consistency, cost."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from skinui.cases import Case
from skinui.demo import make_demo_entry
from skinui.explain import (
    RELEVANCE_METHODS,
    explain_case,
    gradcam,
    modality_ablation,
    relevance,
)
from skinui.explain.attribution import metadata_forward
from skinui.explain.cam import ImageBranch
from skinui.explain.methods import METHOD_LABELS
from skinui.vocabulary import subset_name
from skinui.zoo import load_entry

SIZE = 64


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri_jiadf", image_size=SIZE)
    make_demo_entry(folder, "tri_shared_jf", image_size=SIZE, structure="jf", fusion="concat", shared_encoder=True)
    make_demo_entry(folder, "bi_jif", image_size=SIZE, structure="jif", fusion="gated",
                    modalities=("clinical", "metadata"))
    return {name: load_entry(name, folder) for name in ("tri_jiadf", "tri_shared_jf", "bi_jif")}


def make_case(seed: int = 0, **overrides) -> Case:
    rng = np.random.default_rng(seed)
    fields = dict(
        dermoscopic=rng.integers(0, 255, (80, 96, 3), dtype=np.uint8),
        clinical=rng.integers(0, 255, (72, 72, 3), dtype=np.uint8),
        metadata={"age": 63, "sex": "female", "site": "face", "growth": "weeks", "bleeding": True},
    )
    fields.update(overrides)
    return Case("t", **fields)


def test_gradcam_shape_range_and_target(entries):
    entry, case = entries["tri_jiadf"], make_case()
    for modality in ("dermoscopic", "clinical"):
        heat = gradcam(entry.encode(case), modality)
        assert heat.shape == (SIZE, SIZE) and heat.dtype == np.float32
        assert 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0.5
    by_name = gradcam(entry.encode(case), "dermoscopic", target="BCC")
    by_index = gradcam(entry.encode(case), "dermoscopic", target=entry.classes.index("BCC"))
    np.testing.assert_allclose(by_name, by_index, atol=1e-6)
    assert not np.allclose(by_name, gradcam(entry.encode(case), "dermoscopic", target="NV"), atol=1e-3)


def test_gradcam_leaves_no_hooks_and_no_parameter_gradients(entries):
    entry = entries["tri_jiadf"]
    layer = entry.model.image_encoders["dermoscopic"].target_layer
    gradcam(entry.encode(make_case()), "dermoscopic")
    assert not layer._forward_hooks  # hooks of the wrapper and of pytorch-grad-cam are removed
    assert all(p.grad is None for p in entry.model.image_encoders["dermoscopic"].parameters())


def test_single_input_wrapper_reproduces_the_model(entries):
    entry = entries["tri_jiadf"]
    enc = entry.encode(make_case())
    with torch.no_grad():
        wrapped = ImageBranch(enc, "clinical")(enc.batch["clinical"])
        full = entry.model(enc.batch).logits
    torch.testing.assert_close(wrapped, full)


def test_gradcam_with_a_shared_encoder(entries):
    heat = gradcam(entries["tri_shared_jf"].encode(make_case()), "clinical")
    assert heat.shape == (SIZE, SIZE) and heat.max() > 0.5


def test_gradcam_refuses_missing_images_with_a_sentence(entries):
    with pytest.raises(ValueError, match="no clinical image"):
        gradcam(entries["tri_jiadf"].encode(make_case(clinical=None)), "clinical")
    with pytest.raises(ValueError, match="no dermoscopic image branch"):
        gradcam(entries["bi_jif"].encode(make_case()), "dermoscopic")
    with pytest.raises(ValueError, match="not a class"):
        gradcam(entries["tri_jiadf"].encode(make_case()), "clinical", target="XYZ")


@pytest.mark.parametrize("method", sorted(METHOD_LABELS))
def test_relevance_one_signed_score_per_field(entries, method):
    entry = entries["tri_jiadf"]
    scores = relevance(entry.encode(make_case()), method=method)
    assert list(scores) == entry.encoder.field_names  # grouped: one per field, not per column
    magnitudes = np.abs(list(scores.values()))
    assert magnitudes.max() == pytest.approx(1.0) and (magnitudes <= 1.0 + 1e-9).all()


def test_every_relevance_method_has_a_label():
    assert set(RELEVANCE_METHODS.names()) == set(METHOD_LABELS)


def test_modality_ablation_reports_the_target_class(entries):
    enc = entries["tri_jiadf"].encode(make_case())
    rows = modality_ablation(enc, target="DF")
    assert all(r["target"] == "DF" and r["target_probability"] == r["probabilities"]["DF"] for r in rows)
    assert modality_ablation(enc)[0]["target"] == enc.prediction().prediction


def test_encode_then_prediction_is_predict(entries):
    """One prediction path: Entry.predict is encode + predictions, to the last bit."""
    entry, case = entries["tri_jiadf"], make_case(clinical=None)
    direct, encoded = entry.predict([case])[0], entry.encode(case).prediction()
    assert direct == encoded and any("clinical" in w for w in direct.warnings)
    with pytest.raises(ValueError, match="one case"):
        entry.encode([case, case]).prediction()


def test_integrated_gradients_is_complete(entries):
    """Attributions sum to f(x) - f(zero baseline) for the target (IG's completeness axiom)."""
    entry = entries["tri_jiadf"]
    enc = entry.encode(make_case())
    forward, x = metadata_forward(enc), enc.batch["metadata"].float()
    attr = RELEVANCE_METHODS.get("integrated_gradients")(forward, x, 2, enc)
    with torch.no_grad():
        gap = forward(x)[0, 2] - forward(torch.zeros_like(x))[0, 2]
    assert float(attr.sum()) == pytest.approx(float(gap), abs=2e-3)


def test_feature_ablation_gives_zero_to_unknown_fields(entries):
    entry = entries["tri_jiadf"]
    case = make_case(metadata={"age": 63, "sex": None, "site": "face"})
    scores = relevance(entry.encode(case), method="feature_ablation")
    assert scores["sex"] == 0.0 and scores["itch"] == 0.0  # ablating an unknown field changes nothing
    assert max(abs(scores["age"]), abs(scores["site"])) > 0


def test_relevance_is_zero_without_metadata(entries):
    scores = relevance(entries["tri_jiadf"].encode(make_case(metadata={})), method="integrated_gradients")
    assert scores and all(v == 0.0 for v in scores.values())


def test_modality_ablation_matches_running_the_model_without_those_inputs(entries):
    entry, case = entries["tri_jiadf"], make_case()
    rows = modality_ablation(entry.encode(case))
    assert [r["subset"] for r in rows] == ["D+C+M", "D+C", "D+M", "C+M", "D", "C", "M"]
    for row in (rows[0], rows[2], rows[5]):
        direct = entry.predict([case], modalities=row["modalities"])[0]
        for k, p in direct.probabilities.items():
            assert row["probabilities"][k] == pytest.approx(p, abs=1e-5)
        assert row["prediction"] == direct.prediction and row["complete"]


def test_modality_ablation_marks_subsets_the_case_cannot_fill(entries):
    rows = modality_ablation(entries["tri_jiadf"].encode(make_case(dermoscopic=None)))
    incomplete = {r["subset"] for r in rows if not r["complete"]}
    assert incomplete == {"D+C+M", "D+C", "D+M", "D"}
    bimodal = modality_ablation(entries["bi_jif"].encode(make_case()))
    assert [r["subset"] for r in bimodal] == ["C+M", "C", "M"]
    assert subset_name(("dermoscopic", "metadata")) == "D+M"


def test_explain_case_agrees_with_predict_and_has_every_part(entries):
    entry, case = entries["tri_jiadf"], make_case()
    ex = explain_case(entry.encode(case))
    pred = entry.predict([case])[0]
    assert ex.prediction == pred.prediction and ex.confidence == pytest.approx(pred.confidence, abs=1e-5)
    assert ex.branch_weights == pytest.approx(pred.branch_weights, abs=1e-5)
    assert sum(ex.branch_weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert set(ex.cams) == {"dermoscopic", "clinical"} and set(ex.relevance) == set(METHOD_LABELS)
    assert len(ex.ablation) == 7 and ex.target == ex.prediction
    assert set(ex.seconds) == {"predict", "gradcam", "relevance", "ablation", "total"}


def test_explain_case_for_a_chosen_class_and_a_partial_case(entries):
    entry = entries["tri_jiadf"]
    ex = explain_case(entry.encode(make_case(clinical=None)), target="DF")
    assert ex.target == "DF" and set(ex.cams) == {"dermoscopic"}
    assert any("clinical" in w for w in ex.warnings)  # the entry says the clinical image was missing
    bimodal = explain_case(entries["bi_jif"].encode(make_case()))
    assert set(bimodal.cams) == {"clinical"} and bimodal.branch_weights is not None
