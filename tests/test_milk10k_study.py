"""The MILK10k concept-level study: configs, leak refusal, nested tuning, the runner end to end on a tiny fixture,
and the committed per-fold results that the RESULTS tables are computed from."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.official_layouts import make_milk10k

import training.study as ts
from skinui.schema import LeakError
from training.config import load_config
from training.study import (
    STUDIES,
    alpha_by_class,
    choose,
    ids_sha256,
    main,
    read_csv,
    read_section,
    tables,
    write_section,
)

STUDY = STUDIES.get("milk10k-concepts")
REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / STUDY.docs
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


def test_choose_prefers_the_cheapest_near_tie_then_the_score_then_the_grid_order():
    def cand(name, auc, cost):
        return {"recipe": name, "val_macro_auc": auc, "cost": cost}

    tol = ts.TIE_TOLERANCE
    # within the tolerance of the best: the cheaper one wins
    assert choose([cand("big", 0.860, 80), cand("small", 0.860 - tol + 1e-4, 15)])["recipe"] == "small"
    # outside it: the best wins, however expensive
    assert choose([cand("big", 0.860, 80), cand("small", 0.860 - tol - 1e-3, 15)])["recipe"] == "big"
    # equally cheap: the higher score; equal score and cost: the earlier in the grid
    assert choose([cand("a", 0.850, 30), cand("b", 0.852, 30)])["recipe"] == "b"
    assert choose([cand("a", 0.850, 30), cand("b", 0.850, 30)])["recipe"] == "a"
    # a candidate without a validation score is never chosen
    assert choose([cand("nan", float("nan"), 1), cand("none", None, 1), cand("ok", 0.5, 99)])["recipe"] == "ok"
    with pytest.raises(RuntimeError):
        choose([cand("none", None, 1)])


def test_the_grid_is_data_with_unique_names_and_valid_overrides():
    names = [r.name for r in STUDY.grid]
    assert len(names) == len(set(names)) >= 2
    for recipe in STUDY.grid:  # every candidate resolves to a valid config of the tuned entry
        cfg = load_config(STUDY.config_path(STUDY.tune_entry), list(recipe.sets))
        assert {"train.optimizer.lr", "train.batch_size", "train.epochs"} <= {s.split("=")[0] for s in recipe.sets}
        assert cfg["train"]["epochs"] == int(dict(s.split("=") for s in recipe.sets)["train.epochs"])


def test_tune_chooses_each_fold_on_that_folds_validation_lesions_only(tmp_path, monkeypatch):
    """fit is replaced by a fake that records which lesions it scored and returns a fixed score per recipe."""
    from safetensors.torch import save_file

    import training.loop
    from skinui.datasets.splits import grouped_kfold
    from training.data import load_cases, prepare, resolve_root

    data, out, docs = tmp_path / "milk", tmp_path / "study", tmp_path / "docs"
    make_milk10k(data, n=120, images=False)
    # (fold 0, other folds): fold 0 has a clear winner, the others a near-tie of three
    scores = {"lr1e-2_b64_e15": (0.80, 0.80), "lr3e-3_b64_e30": (0.803, 0.803), "lr1e-2_b128_e20_w128": (0.83, 0.804)}
    scored_on: dict[int, set[str]] = {}

    def fake_fit(cfg, data_root=None, out=None, device="auto", command="", **_):
        prep = prepare(cfg, resolve_root(cfg["data_root"], data_root))
        fold = cfg["split"]["fold"]
        assert cfg["train"]["seed"] == fold and not cfg["export"]["enabled"]
        scored_on.setdefault(fold, set()).update(prep.cases[i].case_id for i in prep.split["val"])
        recipe = Path(out).parent.name
        Path(out).mkdir(parents=True, exist_ok=True)
        width = cfg["model"]["fusion"]["dim"]
        save_file({"w": torch.zeros(width, width)}, str(Path(out) / "best.safetensors"))
        (Path(out) / "summary.json").write_text(json.dumps(
            {"best_value": scores[recipe][min(fold, 1)], "best_epoch": 1, "epochs_run": cfg["train"]["epochs"]}))
        return Path(out)

    monkeypatch.setattr(training.loop, "fit", fake_fit)
    record = ts.tune(STUDY, 3, out, docs, str(data), ["split.k=3"], list(scores))
    saved = json.loads((docs / "tuning.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert [f["fold"] for f in saved["folds"]] == [0, 1, 2]  # one choice per fold
    cases, _, _ = load_cases("milk10k", data)
    folds = grouped_kfold(cases, "lesion_id", k=3, seed=0, val_fraction=0.15)
    for f in saved["folds"]:
        k = f["fold"]
        test_ids = {cases[i].case_id for i in folds[k]["test"]}
        val_ids = {cases[i].case_id for i in folds[k]["val"]}
        assert scored_on[k] == val_ids and not scored_on[k] & test_ids  # chosen on val, disjoint from test
        assert f["val_sha256"] == ids_sha256(sorted(val_ids)) and f["test_sha256"] == ids_sha256(sorted(test_ids))
        assert f["lesions"] == {"train": len(folds[k]["train"]), "val": len(val_ids), "test": len(test_ids)}
        # fold 0: w128 is 0.03 better, chosen although costlier; then all three within the tolerance: the cheapest
        chosen = "lr1e-2_b128_e20_w128" if k == 0 else "lr1e-2_b64_e15"
        assert f["chosen"] == chosen and f["sets"] == list(next(r.sets for r in STUDY.grid if r.name == chosen))
        assert {c["recipe"] for c in f["candidates"]} == set(scores)
    assert ts.fold_recipes(docs, 3, ["split.k=3"])[2][0] == "lr1e-2_b64_e15"
    with pytest.raises(ValueError, match="tuned with"):
        ts.fold_recipes(docs, 3, [])
    with pytest.raises(ValueError, match="no choice for fold"):
        ts.fold_recipes(docs, 4, ["split.k=3"])


def test_study_tunes_runs_scores_tables_and_ships_on_a_tiny_fixture(tmp_path):
    data, out, weights, docs = tmp_path / "milk", tmp_path / "study", tmp_path / "weights", tmp_path / "docs"
    make_milk10k(data, n=220, images=False)
    common = ["--data-root", str(data), "--out", str(out), "--folds", "2", "--docs", str(docs)]
    tiny = ["--set", "train.epochs=1", "--set", "split.k=3"]
    entries = ["milk10k-concepts-jiadf", "milk10k-concepts-jiadf-m"]
    assert main(["run", *common, "--only", *entries, *tiny]) == 2  # no recipe before tuning
    assert main(["tune", *common, *tiny, "--grid", "lr1e-2_b64_e15", "lr3e-3_b128_e20"]) == 0
    tuning = json.loads((docs / "tuning.json").read_text())
    assert len(tuning["folds"]) == 2 and tuning["entry"] == "milk10k-concepts-jiadf"
    assert main(["run", *common, "--only", *entries, *tiny]) == 0
    result = json.loads((out / "milk10k-concepts-jiadf" / "fold1" / "result.json").read_text())
    assert result["fold"] == 1 and result["seed"] == 1 and result["decision"] == ts.DECISION
    assert result["recipe"] == tuning["folds"][1]["chosen"]
    assert {"auc", "auc_sens_80", "ap", "dice", "ppv", "npv"} <= set(result["macro"])
    for row in result["alpha_by_class"].values():
        assert np.isclose(row["image"] + row["joint"] + row["metadata"], 1.0, atol=1e-5)
    assert json.loads((out / "milk10k-concepts-jiadf-m" / "fold0" / "result.json").read_text())["alpha_by_class"] is None
    # each run's card: the fold's recipe in its command, and the test lesions tune kept out
    for k in (0, 1):
        card = json.loads((out / "milk10k-concepts-jiadf" / f"fold{k}" / "weights" / "milk10k-concepts-jiadf.json")
                          .read_text())
        assert card["training"]["split"]["test_sha256"] == tuning["folds"][k]["test_sha256"]
        assert all(f"--set {s}" in card["training"]["command"] for s in tuning["folds"][k]["sets"])
    assert tuning["folds"][0]["test_sha256"] != tuning["folds"][1]["test_sha256"]  # disjoint grouped folds
    # the tuning run of the chosen recipe and the entry's run are the same training (same val score)
    chosen = next(c for c in tuning["folds"][1]["candidates"] if c["recipe"] == result["recipe"])
    assert result["val"]["best_value"] == pytest.approx(chosen["val_macro_auc"])

    assert main(["lr", *common, "--set", "split.k=3"]) == 0
    rows = read_csv(docs / "folds.csv")
    assert len(rows) == 4 and {r["recipe"] for r in rows if r["fold"] == 0} == {tuning["folds"][0]["chosen"]}
    assert len(read_csv(docs / "lr_anchor.csv")) == 2 * len(STUDY.subsets)
    md = tables(STUDY, docs, "CMD")
    assert "| JI-ADF | " in md and "| C+D+M | " in md and "| BCC | " in md and "CMD" in md
    assert "Recipe chosen inside each fold" in md and f"**{tuning['folds'][0]['candidates'][0]['val_macro_auc']:.3f}**" in md \
        or f"**{tuning['folds'][0]['candidates'][1]['val_macro_auc']:.3f}**" in md
    # the table is computed from the files alone: without the runs it is the same
    import shutil

    shutil.rmtree(out / "milk10k-concepts-jiadf-m")
    assert tables(STUDY, docs, "CMD") == md
    # a per-fold file that does not match the choices (or the shipped decision rule) is refused
    text = (docs / "folds.csv").read_text()
    (docs / "folds.csv").write_text(text.replace(ts.DECISION, "argmax", 1))
    with pytest.raises(ValueError, match="argmax"):
        tables(STUDY, docs)
    other = next(n for n in ("lr1e-2_b64_e15", "lr3e-3_b128_e20") if n != tuning["folds"][0]["chosen"])
    (docs / "folds.csv").write_text(text.replace(f",{tuning['folds'][0]['chosen']},", f",{other},", 1))
    with pytest.raises(ValueError, match="chose"):
        tables(STUDY, docs)
    (docs / "folds.csv").write_text(text)

    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## MILK10k (concept level)\n\nhand text\n")
    write_section(results, "milk10k-concepts", md)
    assert read_section(results, "milk10k-concepts") == md
    write_section(results, "milk10k-concepts", "second\n")  # replaces, keeps the hand-written text
    text = results.read_text()
    assert "hand text" in text and "second" in text and "| JI-ADF | " not in text

    assert main(["ship", "--out", str(out), "--weights-dir", str(weights), "--only", "milk10k-concepts-jiadf"]) == 0
    card = json.loads((weights / "milk10k-concepts-jiadf.json").read_text())
    fold0 = json.loads((out / "milk10k-concepts-jiadf" / "fold0" / "result.json").read_text())
    assert card["alpha_by_class"] == fold0["alpha_by_class"] and card["training"]["seed"] == 0
    assert card["training"]["recipe"]["name"] == tuning["folds"][0]["chosen"]
    run_card = json.loads((out / "milk10k-concepts-jiadf" / "fold0" / "weights" / "milk10k-concepts-jiadf.json").read_text())
    assert card["dtype"] == run_card["dtype"] == "float16"  # shipped as the run stored (and measured) it
    assert "CC BY-NC" in card["licence"] and card["training"]["split"]["fold"] == 0
    assert card["calibration"]["temperature"] > 0 and "training fit" in card["training"]["command"]
    from skinui.zoo import load_entry

    assert load_entry("milk10k-concepts-jiadf", weights).model.modalities == ["dermoscopic", "clinical", "metadata"]


# -- the committed per-fold results (docs/milk10k) ------------------------------------------------
def test_committed_tuning_has_one_choice_per_fold_made_on_validation_lesions():
    tuning = json.loads((DOCS / "tuning.json").read_text())
    assert tuning["entry"] == STUDY.tune_entry and tuning["sets"] == [] and tuning["tolerance"] == ts.TIE_TOLERANCE
    assert [f["fold"] for f in tuning["folds"]] == list(range(5))
    assert set(tuning["grid"]) == {r.name for r in STUDY.grid}
    for f in tuning["folds"]:
        assert f["scored_on"] == "val" and f["val_sha256"] != f["test_sha256"]
        assert {c["recipe"] for c in f["candidates"]} == set(tuning["grid"])
        assert choose(f["candidates"])["recipe"] == f["chosen"]  # the written rule, re-applied
        assert f["sets"] == tuning["grid"][f["chosen"]]


def test_committed_folds_are_complete_and_results_md_is_reproduced_from_them():
    rows = read_csv(DOCS / "folds.csv")
    tuning = json.loads((DOCS / "tuning.json").read_text())
    assert {(r["entry"], r["fold"]) for r in rows} == {(e, k) for e in STUDY.entries for k in range(5)}
    for r in rows:
        fold = tuning["folds"][r["fold"]]
        assert r["recipe"] == fold["chosen"] and r["test_sha256"] == fold["test_sha256"]
        assert r["n_test"] == fold["lesions"]["test"] and r["decision"] == ts.DECISION
    assert sum(tuning["folds"][k]["lesions"]["test"] for k in range(5)) == 3941  # every lesion tested once
    lr = read_csv(DOCS / "lr_anchor.csv")
    assert {(r["subset"], r["fold"]) for r in lr} == {(s, k) for s, _ in STUDY.subsets for k in range(5)}
    assert {r["C"] for r in lr} == {ts.LR_C}
    assert read_section(REPO / "docs" / "RESULTS.md", "milk10k-concepts") == tables(STUDY, DOCS)


@pytest.mark.data
def test_committed_split_hashes_match_the_data_and_val_never_meets_test():
    from conftest import data_dir

    root = data_dir("milk10k")
    tuning = json.loads((DOCS / "tuning.json").read_text())
    ts._cache_cases()
    for f in tuning["folds"]:
        parts = ts.fold_parts(STUDY, f["fold"], str(root))
        assert not set(parts["val"]) & set(parts["test"]) and not set(parts["train"]) & set(parts["test"])
        assert ids_sha256(parts["val"]) == f["val_sha256"] and ids_sha256(parts["test"]) == f["test_sha256"]


WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


@pytest.mark.parametrize("name", STUDY.ship)
def test_shipped_cards_are_complete(name):
    card = json.loads((WEIGHTS / f"{name}.json").read_text())
    assert card["dataset"] == "milk10k" and not card["leaky"] and "CC BY-NC" in card["licence"]
    assert card["training"]["split"]["fold"] == 0 and card["training"]["seed"] == 0
    assert f"--config training/configs/{name}.yaml" in card["training"]["command"]
    fold0 = json.loads((DOCS / "tuning.json").read_text())["folds"][0]
    assert card["training"]["recipe"]["name"] == fold0["chosen"]  # the recipe tuned on fold 0's val lesions
    assert all(f"--set {s}" in card["training"]["command"] for s in fold0["sets"])
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


def test_replace_section_keeps_the_other_sections(tmp_path):
    from training.markdown import replace_section

    doc = tmp_path / "BENCH.md"
    doc.write_text("# B\n\n## A\nold a\n\n## Mine\nold\n\n## C\nc\n")
    replace_section(doc, "## Mine", "## Mine\nnew\n")
    assert doc.read_text() == "# B\n\n## A\nold a\n\n## Mine\nnew\n\n## C\nc\n"
    replace_section(doc, "## Z", "## Z\nz\n")
    assert doc.read_text().endswith("## C\nc\n\n## Z\nz\n")
