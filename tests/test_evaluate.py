"""`python -m training evaluate`: every report key, the HTML report, and a test split that cannot leak."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.official_layouts import make_ham10000
from test_training import run_fit, tiny_config

from skinui.vocabulary import subset_name, subsets
from training.__main__ import main

MACRO_KEYS = {"auc", "auc_sens_80", "ap", "sensitivity", "specificity", "dice", "ppv", "npv"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("eval")
    ham = tmp / "ham"
    make_ham10000(ham, n=40)
    cfg = tiny_config("tiny_eval", "full", epochs=1)
    run_fit(cfg, ham, tmp)
    return ham, tmp / "weights"


def test_subsets_cover_every_non_empty_combination():
    three = subsets(["dermoscopic", "clinical", "metadata"])
    assert len(three) == 7 and [subset_name(s) for s in three][:4] == ["D+C+M", "D+C", "D+M", "C+M"]
    assert [subset_name(s) for s in subsets(["clinical", "metadata"])] == ["C+M", "C", "M"]


def test_evaluate_writes_every_report_key_and_html(trained, tmp_path, capsys):
    ham, weights = trained
    out = tmp_path / "report"
    assert main(["evaluate", "--weights", str(weights / "tiny_eval"), "--dataset", "ham10000", "--data-root", str(ham),
                 "--split", "test", "--out", str(out), "--device", "cpu"]) == 0
    rep = json.loads((out / "report.json").read_text())
    for key in ("balanced_accuracy", "accuracy", "macro_f1", "macro", "per_class", "ece", "ece_calibrated",
                "modality_ablation", "n_cases"):
        assert key in rep, key
    assert MACRO_KEYS <= set(rep["macro"])
    assert set(rep["per_class"]) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert all(MACRO_KEYS <= set(row) for row in rep["per_class"].values())
    assert set(rep["modality_ablation"]) == {"D+M", "D", "M"}
    assert all(set(v) == {"balanced_accuracy", "macro_auc"} for v in rep["modality_ablation"].values())
    card = json.loads((weights / "tiny_eval.json").read_text())
    assert rep["n_cases"] == card["training"]["split"]["sizes"]["test"]
    # the entry's card was scored by the same code on the same split
    assert rep["balanced_accuracy"] == pytest.approx(card["metrics"]["balanced_accuracy"])
    html = (out / "report.html").read_text()
    assert html.count("plotly-graph-div") >= 4 and "Reliability" in html and "Confusion matrix" in html

    all_out = tmp_path / "all"
    assert main(["evaluate", "--weights", str(weights / "tiny_eval"), "--data-root", str(ham), "--split", "all",
                 "--out", str(all_out), "--device", "cpu"]) == 0
    assert json.loads((all_out / "report.json").read_text())["n_cases"] == 40


def test_evaluate_can_score_the_view_average_beside_the_single_view(trained, tmp_path, capsys):
    """#17: test-time augmentation as an evaluation option, its cost stated, the single view kept as the card's."""
    from skinui.datasets import load_dataset
    from skinui.zoo import load_entry
    from training.evaluate import averaged_views

    ham, weights = trained
    out = tmp_path / "views"
    assert main(["evaluate", "--weights", str(weights / "tiny_eval"), "--data-root", str(ham), "--split", "test",
                 "--out", str(out), "--device", "cpu", "--average-views"]) == 0
    rep = json.loads((out / "report.json").read_text())
    block = rep["average_views"]
    assert block["views"] == ["original", "mirrored", "flipped", "turned"] and "4x" in block["cost"]
    # the single view in the block is the report's own number: same cases, same rule
    assert block["single"]["balanced_accuracy"] == pytest.approx(rep["balanced_accuracy"])
    assert "averaged over 4 views" in capsys.readouterr().out
    # and the averaged number is the view mean the app's option returns, case by case
    entry = load_entry("tiny_eval", weights)
    cases = load_dataset("ham10000", ham).cases[:6]
    labels = np.array([entry.classes.index(c.label) for c in cases])
    got = averaged_views(entry, cases, labels)
    preds = entry.predict(cases, average_views=True)
    from skinui.metrics import quick_scores

    probs = np.array([[p.probabilities[c] for c in entry.classes] for p in preds])
    want = quick_scores(labels, probs, len(entry.classes), predicted=entry.decide(probs))
    assert got["averaged"]["balanced_accuracy"] == pytest.approx(want["balanced_accuracy"])
    assert "average_views" not in json.loads((weights / "tiny_eval.json").read_text())["metrics"]


def test_a_case_without_any_input_is_still_scored(trained):
    from skinui.cases import Case
    from skinui.datasets import load_dataset
    from skinui.zoo import load_entry
    from training.evaluate import subset_logits

    ham, weights = trained
    cases = load_dataset("ham10000", ham).cases[:3]
    empty = Case("no-inputs", metadata={}, label="nv")  # no image, no metadata: the model's prior
    logits = subset_logits(load_entry("tiny_eval", weights), [*cases, empty], batch_size=2)
    assert set(logits) == {("dermoscopic", "metadata"), ("dermoscopic",), ("metadata",)}
    assert all(z.shape == (4, 7) and np.isfinite(z).all() for z in logits.values())


def test_test_split_refuses_a_different_dataset_folder(trained, tmp_path, capsys):
    ham, weights = trained
    other = tmp_path / "other"
    shutil.copytree(ham, other)
    lines = (other / "HAM10000_metadata.csv").read_text().splitlines()
    (other / "HAM10000_metadata.csv").write_text("\n".join(lines[:-4]) + "\n")  # two lesions fewer
    code = main(["evaluate", "--weights", str(weights / "tiny_eval"), "--data-root", str(other), "--split", "test",
                 "--out", str(tmp_path / "r"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "not the one tiny_eval was trained on" in err and "Traceback" not in err
    assert main(["evaluate", "--weights", str(weights / "missing"), "--data-root", str(ham),
                 "--out", str(tmp_path / "r")]) == 2
    assert "no zoo entry named 'missing'" in capsys.readouterr().err


@pytest.mark.data
def test_real_pad_ufes20_metadata_entry_end_to_end(tmp_path):
    from conftest import data_dir

    pad = data_dir("pad-ufes-20")
    cfg = tiny_config("pad_meta_smoke", "full", epochs=15, batch_size=32, select_metric="macro_auc",
                      optimizer={"name": "adam", "lr": 1e-2})
    cfg.update(dataset="pad-ufes-20", split={"method": "grouped", "fractions": [0.7, 0.15, 0.15]})
    cfg["model"].update(modalities=["metadata"], structure={"name": "late"}, modality_dropout=0.0)
    run_fit(cfg, pad, tmp_path)
    out = tmp_path / "report"
    assert main(["evaluate", "--weights", str(tmp_path / "weights" / "pad_meta_smoke"), "--data-root", str(pad),
                 "--out", str(out), "--device", "cpu"]) == 0
    rep = json.loads((out / "report.json").read_text())
    card = json.loads((tmp_path / "weights" / "pad_meta_smoke.json").read_text())
    assert rep["n_cases"] == card["training"]["split"]["sizes"]["test"] > 50
    assert set(rep["per_class"]) == {"ACK", "BCC", "MEL", "NEV", "SCC", "SEK"}
    # 15 epochs on the 8 clean clinical fields rank better than chance (the 21-field version passed on the
    # leaky block's blanks after 2 epochs)
    assert rep["macro"]["auc"] > 0.6


def test_encode_cache_reuses_backbone_features_and_changes_nothing(trained, tmp_path):
    from skinui.datasets import load_dataset
    from skinui.zoo import load_entry
    from training.evaluate import EncodeCache, subset_logits

    ham, weights = trained
    cases = load_dataset("ham10000", ham).cases[:6]
    entry = load_entry("tiny_eval", weights)
    plain = subset_logits(entry, cases, batch_size=4)
    first = subset_logits(entry, cases, batch_size=4, cache=EncodeCache(tmp_path / "enc"))
    assert len(list((tmp_path / "enc").glob("*.npz"))) == 1

    calls = []
    encoder = entry.model.image_encoders["dermoscopic"]
    handle = encoder.register_forward_hook(lambda *a: calls.append(1))
    second = subset_logits(entry, cases, batch_size=4, cache=EncodeCache(tmp_path / "enc"))  # a new process, same disk
    handle.remove()
    assert not calls  # every image came from the cache
    for s in plain:
        np.testing.assert_allclose(first[s], plain[s], atol=1e-5)
        np.testing.assert_allclose(second[s], plain[s], atol=1e-5)


def test_reports_for_every_entry_update_cards_and_list_what_was_skipped(trained, tmp_path):
    from training.reports import main as reports_main

    ham, weights = trained
    folder = tmp_path / "weights"
    shutil.copytree(weights, folder)
    card_path = folder / "tiny_eval.json"
    card = json.loads(card_path.read_text())
    card["metrics"]["balanced_accuracy"] = 0.999  # stale number: --update-cards must replace it
    card_path.write_text(json.dumps(card))
    (folder / "other.json").write_text(json.dumps({**card, "name": "other", "dataset": "pad-ufes-20"}))
    out = tmp_path / "reports"
    measured = tmp_path / "explanations"  # a faithfulness measurement of the entry, two cases
    measured.mkdir()
    rows = [{"case_id": f"c{i}", "group": f"g{i}", "deletion_auc": 0.3, "random_deletion_auc": 0.35,
             "insertion_auc": 0.5, "random_insertion_auc": 0.45} for i in range(2)]
    summary = {"n": 2, "deletion_auc": 0.3, "random_deletion_auc": 0.35, "insertion_auc": 0.5, "random_insertion_auc": 0.45,
               "beats_random_deletion": 1.0, "beats_random_insertion": 1.0, "full_probability": 0.6,
               "baseline_probability": 0.2}
    (measured / "tiny_eval.faith-test.json").write_text(json.dumps({"entry": "tiny_eval", "split": "test", "method": {
        "steps": 16}, "images": {"dermoscopic": {"layer": "bn2", "summary": summary, "cases": rows}}}))
    assert reports_main(["--weights-dir", str(folder), "--data", f"ham10000={ham}", "--out", str(out),
                         "--device", "cpu", "--update-cards", "--explanations", str(measured)]) == 0
    rep = json.loads((out / "tiny_eval" / "report.json").read_text())
    assert 0 < rep["ece_floor"] < 1
    explained = rep["explanations"]  # what was measured, with intervals, and what was not, with the reason
    assert explained["gradcam_localisation"] == "not measured (no lesion masks)"
    assert explained["gradcam_faithfulness"]["dermoscopic"]["deletion_margin"]["estimate"] == pytest.approx(0.05)
    assert explained["relevance_truth"].startswith("not measured (no known truth on HAM10000")
    updated = json.loads(card_path.read_text())
    assert updated["metrics"]["balanced_accuracy"] == pytest.approx(rep["balanced_accuracy"]) != 0.999
    assert updated["calibration"]["ece_floor"] == rep["ece_floor"]
    html = (out / "tiny_eval" / "report.html").read_text()
    assert '<script src="../plotly.min.js">' in html and "cdn.plot.ly" not in html  # offline, one shared copy
    assert "Explanations, measured" in html and "Grad-CAM on the lesion: not measured (no lesion masks)" in html
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    index = (out / "README.md").read_text()
    assert "| tiny_eval | ham10000 |" in index and "other (no --data pad-ufes-20=DIR)" in index
