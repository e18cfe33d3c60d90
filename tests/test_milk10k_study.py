"""The MILK10k concept-level study: configs, leak refusal, the study runner end to end on a tiny fixture."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.official_layouts import make_milk10k

from skinui.schema import LeakError
from training.config import load_config
from training.study import STUDIES, alpha_by_class, main, tables, write_section

STUDY = STUDIES.get("milk10k-concepts")
CONFIGS = sorted((Path(__file__).resolve().parents[1] / "training" / "configs").glob("milk10k-concepts-*.yaml"))


def test_every_study_entry_has_a_config_and_every_config_is_in_the_study():
    assert {p.stem for p in CONFIGS} == set(STUDY.entries)
    assert set(STUDY.ship) <= set(STUDY.entries) and len(STUDY.ship) == 12
    assert [s for s, _ in STUDY.subsets] == ["C", "D", "M", "C+D", "C+M", "D+M", "C+D+M"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_configs_use_concept_encoders_and_no_leak_fields(path):
    cfg = load_config(path)
    assert cfg["dataset"] == "milk10k" and cfg["metadata"]["force_leaky"] == []
    assert cfg["model"]["image_encoder"]["name"] == "concept_mlp"
    assert cfg["split"]["method"] == "kfold" and cfg["split"]["fold"] == 0 and cfg["train"]["seed"] == 0


@pytest.mark.parametrize("field", ["diagnosis_full", "diagnosis_confirm_type", "invasion_thickness_interval",
                                   "attribution"])
def test_leak_and_provenance_fields_are_refused_as_inputs(tmp_path, field):
    from training.data import prepare

    make_milk10k(tmp_path, n=88, images=False)
    cfg = load_config(STUDY.config_path("milk10k-concepts-jiadf"),
                      [f"metadata.fields=[age_approx, {field}]", "split.k=3"])
    with pytest.raises(LeakError, match=field):
        prepare(cfg, tmp_path)
    # without naming them, the encoder sees the clinical fields only
    prep = prepare(load_config(STUDY.config_path("milk10k-concepts-jiadf"), ["split.k=3"]), tmp_path)
    assert prep.encoder.field_names == ["age_approx", "sex", "skin_tone_class", "site"]


def test_alpha_by_class_rows_are_means_and_sum_to_one():
    rng = np.random.default_rng(0)
    alpha = rng.dirichlet([1, 1, 1], size=40)
    labels = np.repeat([0, 2], 20)
    out = alpha_by_class(alpha, labels, ["A", "B", "C"])
    assert set(out) == {"A", "C"} and out["A"]["n"] == 20
    assert np.isclose(out["C"]["joint"], alpha[20:, 1].mean())
    for row in out.values():
        assert np.isclose(row["image"] + row["joint"] + row["metadata"], 1.0)


def test_study_runs_scores_tables_and_ships_on_a_tiny_fixture(tmp_path, capsys):
    data, out, weights = tmp_path / "milk", tmp_path / "study", tmp_path / "weights"
    make_milk10k(data, n=220, images=False)
    common = ["--data-root", str(data), "--out", str(out), "--folds", "2"]
    tiny = ["--set", "train.epochs=1", "--set", "split.k=3", "--set", "train.batch_size=32"]
    entries = ["milk10k-concepts-jiadf", "milk10k-concepts-jiadf-m"]
    assert main(["run", *common, "--only", *entries, *tiny]) == 0
    result = json.loads((out / "milk10k-concepts-jiadf" / "fold1" / "result.json").read_text())
    assert result["fold"] == 1 and result["seed"] == 1
    assert {"auc", "auc_sens_80", "ap", "dice", "ppv", "npv"} <= set(result["macro"])
    for row in result["alpha_by_class"].values():
        assert np.isclose(row["image"] + row["joint"] + row["metadata"], 1.0, atol=1e-5)
    assert json.loads((out / "milk10k-concepts-jiadf-m" / "fold0" / "result.json").read_text())["alpha_by_class"] is None
    # the two test folds are disjoint lesion sets (grouped folds)
    hashes = {json.loads((out / "milk10k-concepts-jiadf" / f"fold{k}" / "weights" / "milk10k-concepts-jiadf.json")
                         .read_text())["training"]["split"]["test_sha256"] for k in (0, 1)}
    assert len(hashes) == 2

    assert main(["lr", *common, "--set", "split.k=3"]) == 0
    md = tables(STUDY, out, "CMD")
    assert "| JI-ADF | " in md and "| C+D+M | " in md and "| BCC | " in md and "CMD" in md
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## MILK10k (concept level)\n\nhand text\n")
    write_section(results, "milk10k-concepts", md)
    write_section(results, "milk10k-concepts", "second\n")  # replaces, keeps the hand-written text
    text = results.read_text()
    assert "hand text" in text and "second" in text and "| JI-ADF | " not in text

    assert main(["ship", "--out", str(out), "--weights-dir", str(weights), "--only", *entries]) == 0
    card = json.loads((weights / "milk10k-concepts-jiadf.json").read_text())
    fold0 = json.loads((out / "milk10k-concepts-jiadf" / "fold0" / "result.json").read_text())
    assert card["alpha_by_class"] == fold0["alpha_by_class"] and card["training"]["seed"] == 0
    run_card = json.loads((out / "milk10k-concepts-jiadf" / "fold0" / "weights" / "milk10k-concepts-jiadf.json").read_text())
    assert card["dtype"] == run_card["dtype"] == "float16"  # shipped as the run stored (and measured) it
    assert "CC BY-NC" in card["licence"] and card["training"]["split"]["fold"] == 0
    assert card["calibration"]["temperature"] > 0 and "training fit" in card["training"]["command"]
    from skinui.zoo import load_entry

    assert load_entry("milk10k-concepts-jiadf", weights).model.modalities == ["dermoscopic", "clinical", "metadata"]


WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


@pytest.mark.parametrize("name", STUDY.ship)
def test_shipped_cards_are_complete(name):
    card = json.loads((WEIGHTS / f"{name}.json").read_text())
    assert card["dataset"] == "milk10k" and not card["leaky"] and "CC BY-NC" in card["licence"]
    assert card["training"]["split"]["fold"] == 0 and card["training"]["seed"] == 0
    assert f"--config training/configs/{name}.yaml" in card["training"]["command"]
    assert 0 < card["metrics"]["macro"]["auc"] <= 1 and card["calibration"]["temperature"] > 0
    if card["model"]["structure"]["name"] == "jiadf":
        assert set(card["alpha_by_class"]) == set(card["classes"])
        for row in card["alpha_by_class"].values():
            assert abs(row["image"] + row["joint"] + row["metadata"] - 1) < 1e-4
    else:
        assert card["alpha_by_class"] is None or card["model"]["structure"]["name"] == "jif"


@pytest.mark.data
def test_shipped_jiadf_reproduces_its_card_on_its_test_split():
    from conftest import data_dir

    from skinui.metrics import quick_scores
    from skinui.zoo import load_entry
    from training.evaluate import select_cases
    from training.study import alpha_by_class_of

    root = data_dir("milk10k")
    entry = load_entry("milk10k-concepts-jiadf", WEIGHTS)
    cases, labels, _ = select_cases(entry.card, "milk10k", root, "test")  # verifies the recorded test hash
    probs = np.array([[p.probabilities[c] for c in entry.classes] for p in entry.predict(cases, calibrated=False)])
    assert abs(quick_scores(labels, probs, len(entry.classes))["macro_auc"] - entry.card["metrics"]["macro"]["auc"]) < 0.01
    alpha = alpha_by_class_of(WEIGHTS, "milk10k-concepts-jiadf", str(root))
    for cls, row in entry.card["alpha_by_class"].items():
        assert alpha[cls]["n"] == row["n"] and alpha[cls]["joint"] == pytest.approx(row["joint"], abs=1e-4)
