"""Leak audit (`skinui.audit`, `python -m skinui.data audit`): known answers on constructed data, then real PAD-UFES-20."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import data_dir
from fixtures.official_layouts import make_ham10000

from skinui.audit import assign_folds, audit, key_auc
from skinui.cases import Case
from skinui.data import main
from skinui.schema import Field, Schema

SCHEMA = Schema(
    dataset="toy",
    classes=("benign", "bcc", "mel"),
    fields=(
        Field("age", "numeric", unit="years"),
        Field("smoke", "boolean"),
        Field("noise", "boolean"),
        Field("history", "boolean"),
        Field("never_recorded", "boolean"),
    ),
    group_key="patient_id",
    modalities=("clinical", "metadata"),
    leak_fields={"biopsed": "records the diagnostic pathway", "case_code": "a per-case id"},
    leak_field_specs=(Field("biopsed", "categorical", ("benign", "bcc", "mel")), Field("case_code", "categorical")),
)


def _cases(n_patients: int = 120, per_patient: int = 3, seed: int = 0) -> list[Case]:
    """Each patient has one label and shares the missingness of `smoke` and `history`; `noise` is random.

    `smoke` is missing exactly for benign lesions; `history` exactly for mel, so the pattern
    (smoke, history) tells all three classes apart while each field alone does not.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for p in range(n_patients):
        label = ("benign", "bcc", "mel")[p % 3]
        for k in range(per_patient):
            cases.append(Case(
                f"c{p}_{k}", label=label, patient_id=f"P{p}",
                metadata={
                    "age": 40.0 + p % 30,
                    "smoke": None if label == "benign" else bool(k % 2),
                    "noise": None if rng.random() < 0.3 else True,
                    "history": None if label == "mel" else False,
                    "biopsed": label,
                    "case_code": f"c{p}_{k}",
                },
            ))
    return cases


@pytest.fixture(scope="module")
def report() -> dict:
    return audit(_cases(), SCHEMA, folds=5, seed=0, threshold=0.60)


def test_binary_label_encoded_by_missingness_scores_1():
    labels = ["benign" if i % 2 else "cancer" for i in range(60)]
    keys = [label == "benign" for label in labels]
    assert key_auc(keys, labels, groups=[f"g{i // 2}" for i in range(60)]) == pytest.approx(1.0)


def test_field_whose_missingness_is_the_label_is_flagged(report):
    smoke = report["fields"]["smoke"]
    assert smoke["missing"] == 120 and smoke["missing_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # Missing iff benign: perfect for benign, the two cancers share the "present" key (0.75 each).
    assert smoke["missingness_auc"] == pytest.approx((1.0 + 0.75 + 0.75) / 3, abs=1e-4)
    assert smoke["missingness_top_class"] == {"class": "benign", "auc": 1.0}
    assert "smoke" in report["flagged"] and "smoke" in report["flagged_inputs"]


def test_random_missingness_is_near_half_and_not_flagged(report):
    noise = report["fields"]["noise"]
    assert 0.2 < noise["missing_rate"] < 0.4
    assert abs(noise["missingness_auc"] - 0.5) < 0.08
    assert "noise" not in report["flagged"]


def test_never_missing_field_scores_exactly_half(report):
    assert report["fields"]["age"]["missing"] == 0
    assert report["fields"]["age"]["missingness_auc"] == 0.5
    assert report["fields"]["age"]["missingness_top_class"] is None
    assert "age" not in report["flagged"]


def test_leak_field_equal_to_the_label_scores_1(report):
    leak = report["leak_fields"]["biopsed"]
    assert leak["value_auc"] == 1.0 and leak["levels"] == 3
    assert leak["why"] == SCHEMA.leak_fields["biopsed"]
    assert report["fields"]["biopsed"]["role"] == "leak"
    assert "biopsed" in report["flagged"] and "biopsed" not in report["flagged_inputs"]


def test_missingness_pattern_separates_what_single_fields_do_not(report):
    assert report["fields"]["history"]["missingness_auc"] < 0.95
    pattern = report["missingness_pattern"]
    assert pattern["auc"] == 1.0 and pattern["patterns"] >= 3
    assert report["input_missingness_pattern"]["auc"] == 1.0  # smoke and history are inputs here
    assert {"missingness_pattern", "input_missingness_pattern"} <= set(report["flagged"])


def test_folds_keep_groups_whole_and_unseen_keys_fall_back_to_the_prior(report):
    cases = _cases()
    labels = [c.label for c in cases]
    groups = [c.patient_id for c in cases]
    fold_of = assign_folds(labels, groups, folds=5, seed=0)
    assert set(fold_of) == set(range(5))
    for g in set(groups):
        assert len({fold_of[i] for i, h in enumerate(groups) if h == g}) == 1
    # A per-case id is never seen in training, so it carries nothing out of fold.
    assert report["leak_fields"]["case_code"]["value_auc"] == 0.5
    # A per-patient id would score 1.0 if a patient straddled folds (each patient has one label).
    assert key_auc(groups, labels, groups=groups, folds=5, seed=0) == pytest.approx(0.5)
    assert key_auc(groups, labels, groups=[c.case_id for c in cases], folds=5, seed=0) > 0.95


def test_unrecorded_field_is_skipped_with_a_note_and_output_is_deterministic(report):
    assert "never_recorded" not in report["fields"]
    assert any("never_recorded" in note for note in report["notes"])
    assert report == audit(_cases(), SCHEMA, folds=5, seed=0, threshold=0.60)
    assert json.loads(json.dumps(report)) == report
    assert report["cases"] == 360 and report["groups"] == 120 and report["folds"] == 5
    assert report["classes"] == {"benign": 120, "bcc": 120, "mel": 120}
    assert report["flagged"] == sorted(report["flagged"])


def test_cli_prints_one_json_object(tmp_path, capsys):
    make_ham10000(tmp_path, n=28)
    assert main(["audit", "--dataset", "ham10000", "--root", str(tmp_path), "--folds", "3", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)  # exactly one JSON object
    assert out["dataset"] == "ham10000" and out["folds"] == 3 and out["seed"] == 1
    assert set(out["fields"]) == {"age", "sex", "localization", "dx_type"}
    assert set(out["leak_fields"]) == {"dx_type"}
    assert {"flagged", "missingness_pattern", "method", "notes"} <= set(out)


@pytest.mark.parametrize("args", [
    ("--root", "{tmp}/absent"),
    ("--root", "{tmp}", "--folds", "1"),
    ("--root", "{tmp}", "--folds", "five"),
    ("--root", "{tmp}", "--threshold", "1.5"),
])
def test_cli_errors_are_one_sentence_and_exit_2(tmp_path, capsys, args):
    make_ham10000(tmp_path, n=6)
    argv = ["audit", "--dataset", "ham10000", *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err and captured.err.strip().endswith(".")
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.data
def test_pad_ufes20_collection_artefact_is_flagged():
    from skinui.datasets import load_dataset, schema_for

    result = load_dataset("pad-ufes-20", data_dir("pad-ufes-20"))
    out = audit(result.cases, schema_for("pad-ufes-20"), folds=5, seed=0, threshold=0.60)
    assert out["fields"]["smoke"]["missingness_auc"] > 0.6 and "smoke" in out["flagged"]
    assert out["missingness_pattern"]["auc"] > 0.6 and "missingness_pattern" in out["flagged"]
    for name in ("age", "region"):
        assert out["fields"][name]["missing"] == 0 and name not in out["flagged"]
