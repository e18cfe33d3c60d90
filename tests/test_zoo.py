"""Zoo entries: save/load round trip bit-for-bit, tamper refusal, shared fp16 backbones, Entry.predict."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from skinui.cases import Case, ConceptVector
from skinui.encoding import MetadataEncoder
from skinui.models import build_model
from skinui.schema import Field, Schema
from skinui.zoo import ZooError, compact_entry, list_entries, load_entry, save_entry, summary

SCHEMA = Schema("toy", ("mel", "nev", "bcc"), (Field("age", "numeric", valid_range=(0, 120)),
                Field("site", "categorical", vocabulary=("arm", "leg"))), "lesion_id", ("dermoscopic", "metadata"))
ROWS = [{"age": 30, "site": "arm"}, {"age": 60, "site": "leg"}, {"age": None, "site": "arm"}]
TINY = {"name": "dermiresnet", "width": 0.0625, "blocks": [1, 1, 1, 1]}


def _encoder() -> MetadataEncoder:
    return MetadataEncoder(SCHEMA).fit(ROWS)


def _model(structure: str = "jiadf", image: dict | None = None, seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = build_model({"modalities": ["dermoscopic", "metadata"], "num_classes": 3, "meta_dim": _encoder().dim,
                         "image_size": 32, "image_encoder": image or TINY, "fusion": {"name": "mmfa", "dim": 8,
                         "heads": 2}, "structure": {"name": structure}, **kw})
    model.train()  # move BatchNorm running stats away from their defaults
    model({"dermoscopic": torch.randn(4, 3, 32, 32), "metadata": torch.randn(4, _encoder().dim)})
    return model.eval()


def _card(name: str = "toy-jiadf", **kw) -> dict:
    return {"name": name, "dataset": "toy", "title": "toy", "classes": list(SCHEMA.classes),
            "metadata_encoder": _encoder().to_dict(), "calibration": {"temperature": 1.5},
            "metrics": {"balanced_accuracy": 0.5, "macro": {"auc": 0.7}}, "licence": "CC0", **kw}


def _cases(n: int = 3) -> list[Case]:
    rng = np.random.default_rng(0)
    return [Case(f"c{i}", rng.integers(0, 255, (40, 48, 3), dtype=np.uint8), None, dict(ROWS[i % 3]))
            for i in range(n)]


def test_round_trip_reproduces_predictions_bit_for_bit(tmp_path):
    from skinui.inference import Entry

    model = _model()
    save_entry(model, _card(), tmp_path)
    loaded = load_entry("toy-jiadf", tmp_path)
    original = Entry("toy-jiadf", _card(), model, _encoder(), SCHEMA, 1.5)
    batch = original.batch(_cases())
    with torch.no_grad():
        assert torch.equal(model(batch).logits, loaded.model(loaded.batch(_cases())).logits)
    a, b = original.predict(_cases()), loaded.predict(_cases())
    assert [p.probabilities for p in a] == [p.probabilities for p in b]
    assert [p.branch_weights for p in a] == [p.branch_weights for p in b]
    card = json.loads((tmp_path / "toy-jiadf.json").read_text())
    assert card["sha256"] and card["modalities"] == ["dermoscopic", "metadata"] and card["model"]["num_classes"] == 3


def test_tampered_weight_file_is_refused(tmp_path):
    save_entry(_model(), _card(), tmp_path)
    path = tmp_path / "toy-jiadf.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="does not match the SHA-256 in its model card"):
        load_entry("toy-jiadf", tmp_path)


def test_shared_fp16_backbone_is_stored_once_and_verified(tmp_path):
    shared = [{"name": "toy-derm", "prefix": "encoders.dermoscopic.", "fp16": True}]
    model_a = _model("jiadf")
    model_b = _model("jf")
    model_b.encoders.load_state_dict(model_a.encoders.state_dict())  # stage 2: same fine-tuned encoder
    save_entry(model_a, _card("a"), tmp_path, shared=shared)
    save_entry(model_b, _card("b"), tmp_path, shared=shared)
    cards = {c["name"]: c for c in list_entries(tmp_path)}
    assert cards["a"]["shared"] == cards["b"]["shared"] and cards["a"]["shared"][0]["dtype"] == "float16"
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["toy-derm.safetensors"]
    loaded = load_entry("a", tmp_path)
    for k, v in model_a.encoders.state_dict().items():  # fp32 again, equal to the fp16-rounded original
        w = loaded.model.encoders.state_dict()[k]
        assert w.dtype == v.dtype and torch.equal(w, v.half().to(v.dtype) if v.is_floating_point() else v)
    # A different encoder may not overwrite a shared file other entries depend on.
    with pytest.raises(ZooError, match="already exists with different weights"):
        save_entry(_model(seed=1), _card("c"), tmp_path, shared=shared)
    shared_file = tmp_path / "shared" / "toy-derm.safetensors"
    shared_file.write_bytes(shared_file.read_bytes()[:-1] + b" ")
    with pytest.raises(ZooError, match="shared weight file"):
        load_entry("b", tmp_path)


def test_listing_names_and_errors(tmp_path, monkeypatch):
    assert list_entries(tmp_path) == [] and list_entries(tmp_path / "absent") == []
    save_entry(_model(), _card(), tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.warns(UserWarning, match="broken.json"):
        cards = list_entries(tmp_path)
    assert [c["name"] for c in cards] == ["toy-jiadf"]
    (tmp_path / "broken.json").unlink()
    s = summary(cards[0])
    assert s["fusion"] == "mmfa" and s["structure"] == "jiadf" and s["metrics"] == {"balanced_accuracy": 0.5, "macro_auc": 0.7}
    with pytest.raises(ZooError, match="not a valid zoo entry name"):
        load_entry("../etc/passwd", tmp_path)
    with pytest.raises(ZooError, match="no zoo entry named 'nope'.*toy-jiadf"):
        load_entry("nope", tmp_path)
    monkeypatch.setenv("SKINUI_WEIGHTS", str(tmp_path))
    assert load_entry("toy-jiadf").name == "toy-jiadf"


def test_predict_warnings_calibration_and_branch_weights(tmp_path):
    save_entry(_model(), _card(), tmp_path)
    entry = load_entry("toy-jiadf", tmp_path)
    assert entry.temperature == 1.5
    cases = [Case("img-only", _cases(1)[0].dermoscopic, None, {}),
             Case("bad-age", None, None, {"age": 300, "site": "leg"})]
    raw, cal = entry.predict(cases, calibrated=False), entry.predict(cases)
    assert any("No metadata given" in w for w in cal[0].warnings)
    assert any("outside the valid range" in w for w in cal[1].warnings)
    assert abs(sum(cal[0].probabilities.values()) - 1) < 1e-6
    assert max(cal[0].probabilities.values()) < max(raw[0].probabilities.values())  # T > 1 softens
    assert cal[0].branch_weights["metadata"] == 0.0 and cal[1].branch_weights["image"] == 0.0
    assert abs(sum(cal[1].branch_weights.values()) - 1) < 1e-6 and set(cal[1].branch_probabilities) == {
        "image", "joint", "metadata"}
    with pytest.raises(ValueError, match="carries none of this model's inputs"):
        entry.predict([Case("empty", None, None, {})])
    with pytest.raises(ValueError, match="needs an image"):
        entry.predict([Case("cv", ConceptVector(np.zeros(7, np.float32), tuple("abcdefg")), None, {})])
    only_meta = entry.predict(_cases(1), modalities=["metadata"])[0]
    assert only_meta.branch_weights["image"] == 0.0


def test_default_backbone_entry_loads_fast(tmp_path):
    image = {"name": "efficientnet_lite0", "pretrained": True}
    save_entry(_model("jf", image=image), _card("lite0"), tmp_path)
    start = time.perf_counter()
    entry = load_entry("lite0", tmp_path)
    assert time.perf_counter() - start < 3.0
    assert entry.model.cfg["image_encoder"]["pretrained"] is False
    assert len(entry.predict(_cases(2))) == 2


def test_fp16_storage_halves_the_file_and_loads_fp32(tmp_path):
    """`compact` re-stores an fp32 entry in fp16: half the bytes, fp16-rounded fp32 weights on load."""
    model = _model("jiadf")
    save_entry(model, _card("full"), tmp_path)
    before = (tmp_path / "full.safetensors").stat().st_size
    size_before, size_after = compact_entry("full", tmp_path)
    assert size_before == before and size_after < 0.55 * before
    card = json.loads((tmp_path / "full.json").read_text())
    assert card["dtype"] == "float16"
    loaded = load_entry("full", tmp_path).model.state_dict()
    for k, v in model.state_dict().items():
        assert loaded[k].dtype == v.dtype
        assert torch.equal(loaded[k], v.half().float() if v.is_floating_point() else v), k
    # compacting again changes nothing: the fp16 -> fp32 -> fp16 round trip is exact
    sha = card["sha256"]
    compact_entry("full", tmp_path)
    assert json.loads((tmp_path / "full.json").read_text())["sha256"] == sha


SHIPPED = Path(__file__).resolve().parents[1] / "weights"
REPORTS = Path(__file__).resolve().parents[1] / "docs" / "reports"


@pytest.mark.parametrize("name", [c["name"] for c in list_entries(SHIPPED)])
def test_every_shipped_entry_loads_and_has_its_evaluation_report(name):
    """Each entry in weights/ verifies and loads strictly, and docs/reports/<name> scored these very weights."""
    entry = load_entry(name, SHIPPED)
    rep = json.loads((REPORTS / name / "report.json").read_text())
    card = entry.card
    assert rep["entry"] == name and rep["split"] == "test" and rep["n_cases"] == card["metrics"]["n_cases"]
    assert rep["balanced_accuracy"] == pytest.approx(card["metrics"]["balanced_accuracy"], abs=1e-9)
    assert rep["macro"]["auc"] == pytest.approx(card["metrics"]["macro"]["auc"], abs=1e-9)
    assert (REPORTS / name / "report.html").is_file()


def test_shipped_weights_stay_under_150_mb():
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total < 150e6, f"weights/ holds {total / 1e6:.0f} MB"


@pytest.mark.parametrize("name", [c["name"] for c in list_entries(SHIPPED)])
def test_every_shipped_card_has_the_current_calibration_and_evidence_schema(name):
    """One decision rule for every entry: a card that predates a field of the schema fails here."""
    from skinui.zoo import card_problems

    card = json.loads((SHIPPED / f"{name}.json").read_text())
    assert card_problems(card) == []


def test_card_problems_names_each_missing_field():
    from skinui.zoo import card_problems

    card = json.loads(next(SHIPPED.glob("ham10000_jf_metablock.json")).read_text())
    assert card_problems(card) == []
    broken = copy.deepcopy(card)
    del broken["calibration"]["decision_prior_weight"]
    del broken["metrics_val"]
    broken["intervals"]["test"]["macro_auc"]["ci"] = []
    problems = card_problems(broken)
    assert "calibration.decision_prior_weight" in problems
    assert "metrics_val.balanced_accuracy" in problems and "intervals.test.macro_auc.ci" in problems
    broken = copy.deepcopy(card)
    broken["calibration"]["decision"] = "argmax"
    assert card_problems(broken) == ["calibration.decision is not prevalence_adjusted"]
    broken = copy.deepcopy(card)  # tau tuned unconditionally, before the check: another decision rule
    del broken["calibration"]["decision_weight_check"]
    assert card_problems(broken) == ["calibration.decision_weight_check"]
    broken["training"]["config"]["split"]["method"] = "kfold"  # a study fold keeps the study's rule
    assert card_problems(broken) == []
