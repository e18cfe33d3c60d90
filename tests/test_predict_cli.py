"""`python -m skinui zoo` and `python -m skinui predict`: bad rows get an error, the batch goes on."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lesion_like
from PIL import Image

from skinui.__main__ import main
from skinui.zoo import save_entry

REPO = Path(__file__).resolve().parents[1]


def _entry(tmp_path: Path) -> Path:
    from test_zoo import _card, _model  # the zoo test's tiny model and card

    weights = tmp_path / "weights"
    save_entry(_model(), _card("toy"), weights)
    return weights


def _write_images(folder: Path) -> None:
    Image.fromarray(lesion_like(96, 96)).save(folder / "good.png")  # passes the quality checks
    (folder / "broken.png").write_bytes(b"not an image at all")


def test_predict_csv_bad_rows_get_errors(tmp_path, capsys):
    weights = _entry(tmp_path)
    _write_images(tmp_path)
    rows = [
        {"case_id": "ok", "dermoscopic": "good.png", "clinical": "", "age": "45", "site": "arm"},
        {"case_id": "missing-file", "dermoscopic": "nope.png", "clinical": "", "age": "50", "site": "leg"},
        {"case_id": "broken", "dermoscopic": "broken.png", "clinical": "", "age": "", "site": ""},
        {"case_id": "nothing", "dermoscopic": "", "clinical": "", "age": "", "site": ""},
        {"case_id": "meta-only", "dermoscopic": "", "clinical": "", "age": "999", "site": "leg"},
    ]
    with (tmp_path / "cases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out" / "predictions.csv"
    rc = main(["predict", "--entry", "toy", "--csv", str(tmp_path / "cases.csv"), "--out", str(out),
               "--weights-dir", str(weights)])
    assert rc == 0
    got = {r["case_id"]: r for r in csv.DictReader(out.open())}
    assert list(got) == [r["case_id"] for r in rows]
    assert list(next(iter(got.values())))[:7] == ["case_id", "prob_mel", "prob_nev", "prob_bcc", "prediction",
                                                  "confidence", "error"]
    for ok in ("ok", "meta-only"):
        probs = [float(got[ok][f"prob_{c}"]) for c in ("mel", "nev", "bcc")]
        assert abs(sum(probs) - 1) < 1e-4 and got[ok]["error"] == "" and got[ok]["prediction"] in ("mel", "nev", "bcc")
    assert "outside the valid range" in got["meta-only"]["warnings"]
    assert "was not found" in got["missing-file"]["error"] and got["missing-file"]["prediction"] == ""
    assert got["broken"]["error"] and "Traceback" not in got["broken"]["error"]
    assert "none of this model's inputs" in got["nothing"]["error"]
    assert "3 with an error" in capsys.readouterr().err
    assert list(got["ok"])[-4:] == ["prediction_set", "unusual", "branch_disagreement", "tta_spread"]
    assert got["ok"]["tta_spread"] == "" and got["broken"]["prediction_set"] == ""  # no --tta; no prediction


def test_predict_unknown_entry_and_missing_csv_are_sentences(tmp_path, capsys):
    weights = _entry(tmp_path)
    assert main(["predict", "--entry", "nope", "--csv", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o.csv"),
                 "--weights-dir", str(weights)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "x.csv").write_text("case_id,age\n1,3\n")
    assert main(["predict", "--entry", "nope", "--csv", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o.csv"),
                 "--weights-dir", str(weights)]) == 2
    assert "no zoo entry named 'nope'" in capsys.readouterr().err


def test_zoo_command_prints_json(tmp_path, capsys):
    env = {**os.environ, "SKINUI_WEIGHTS": str(tmp_path / "empty")}
    run = subprocess.run([sys.executable, "-m", "skinui", "zoo"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and json.loads(run.stdout) == []
    weights = _entry(tmp_path)
    capsys.readouterr()
    assert main(["zoo", "--weights-dir", str(weights)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["name"] == "toy" and entry["fusion"] == "mmfa" and entry["structure"] == "jiadf"
    assert entry["modalities"] == ["dermoscopic", "metadata"] and entry["classes"] == ["mel", "nev", "bcc"]


def test_compact_converts_only_fp32_entries_and_reports_sizes(tmp_path, capsys):
    weights = _entry(tmp_path)
    assert main(["compact", "--weights-dir", str(weights)]) == 0
    assert "toy:" in capsys.readouterr().err
    card = json.loads((weights / "toy.json").read_text())
    assert card["dtype"] == "float16"
    assert main(["compact", "--weights-dir", str(weights)]) == 0  # nothing left in fp32: nothing to do
    assert capsys.readouterr().err == ""
    assert main(["compact", "missing", "--weights-dir", str(weights)]) == 1
    assert "no zoo entry named 'missing'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory) -> Path:
    """Untrained HAM10000 (dermoscopic + metadata) and PAD-UFES-20 (clinical + metadata) entries,
    a MILK10k concept-score entry and an image-only HAM10000 entry."""
    from skinui.demo import make_demo_entry

    weights = tmp_path_factory.mktemp("demo") / "weights"
    make_demo_entry(weights, "ham10000_jiadf", dataset="ham10000", modalities=("dermoscopic", "metadata"),
                    image_size=64)
    make_demo_entry(weights, "pad_jiadf", dataset="pad-ufes-20", modalities=("clinical", "metadata"), image_size=64)
    make_demo_entry(weights, "milk_concepts", dataset="milk10k", modalities=("dermoscopic", "clinical", "metadata"),
                    backbone="concept_mlp", image_size=64)
    make_demo_entry(weights, "ham_image_only", dataset="ham10000", modalities=("dermoscopic",), structure="late",
                    image_size=64)
    return weights


def _run(folder: Path, weights: Path, entry: str, rows: list[dict[str, str]]) -> tuple[dict[str, dict], bytes]:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with (folder / "cases.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    out = folder / "predictions.csv"
    assert main(["predict", "--entry", entry, "--csv", str(folder / "cases.csv"), "--out", str(out),
                 "--weights-dir", str(weights)]) == 0
    return {r["case_id"]: r for r in csv.DictReader(out.open(newline=""))}, out.read_bytes()


def _probs(row: dict[str, str]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k.startswith("prob_")}


UNUSED_CLINICAL = ("The clinical image column is not used by ham10000_jiadf (it reads: dermoscopic image, "
                   "metadata); it was ignored.")


def test_unused_image_columns_get_a_warning(tmp_path, demo_weights):
    _write_images(tmp_path)
    got, _ = _run(tmp_path, demo_weights, "ham10000_jiadf", [
        {"case_id": "both", "dermoscopic": "good.png", "clinical": "good.png", "age": "50"},
        {"case_id": "derm-only", "dermoscopic": "good.png", "clinical": "", "age": "50"},
        {"case_id": "clin-only", "dermoscopic": "", "clinical": "good.png", "age": ""},
    ])
    assert got["both"]["error"] == "" and got["both"]["prediction"] and UNUSED_CLINICAL in got["both"]["warnings"]
    assert _probs(got["both"]) == _probs(got["derm-only"])  # the clinical column changes nothing
    assert "clinical" not in got["derm-only"]["warnings"]
    assert "none of this model's inputs" in got["clin-only"]["error"] and UNUSED_CLINICAL in got["clin-only"]["warnings"]


def test_bad_file_in_an_unused_image_column_is_never_opened(tmp_path, demo_weights):
    _write_images(tmp_path)
    got, _ = _run(tmp_path, demo_weights, "ham10000_jiadf", [
        {"case_id": "missing-clinical", "dermoscopic": "good.png", "clinical": "nope.png", "age": "50"},
        {"case_id": "broken-clinical", "dermoscopic": "good.png", "clinical": "broken.png", "age": "50"},
        {"case_id": "derm-only", "dermoscopic": "good.png", "clinical": "", "age": "50"},
    ])
    for case in ("missing-clinical", "broken-clinical"):
        assert got[case]["error"] == "" and got[case]["prediction"] and UNUSED_CLINICAL in got[case]["warnings"]
        assert _probs(got[case]) == _probs(got["derm-only"])


def test_output_csv_has_lf_line_endings(tmp_path, demo_weights):
    _, raw = _run(tmp_path, demo_weights, "ham10000_jiadf", [{"case_id": "a", "age": "50"}, {"case_id": "b"}])
    assert b"\r" not in raw and raw.count(b"\n") == 3


def test_other_datasets_metadata_names_map_onto_pad_fields(tmp_path, demo_weights, capsys):
    got, _ = _run(tmp_path, demo_weights, "pad_jiadf", [
        {"case_id": "pad-names", "age": "40", "region": "ARM"},
        {"case_id": "ham-names", "age": "40", "sex": "male", "localization": "arm"},
        {"case_id": "site", "age": "40", "site": "Arm"},
        {"case_id": "own-name-wins", "age": "40", "region": "ARM", "localization": "face"},
        {"case_id": "unlisted-site", "age": "40", "localization": "upper extremity"},
        {"case_id": "leak", "age": "40", "region": "ARM", "gender": "MALE"},
        {"case_id": "no-site", "age": "40"},
    ])
    assert "'localization'" in capsys.readouterr().err  # the mapping is announced once
    for case in ("ham-names", "site", "own-name-wins", "leak"):
        assert got[case]["error"] == "" and _probs(got[case]) == _probs(got["pad-names"]), case
    assert _probs(got["no-site"]) != _probs(got["pad-names"])
    nothing = "No clinical image given; the model predicted without it."
    assert got["pad-names"]["warnings"] == got["site"]["warnings"] == nothing  # an empty gender cell is not given
    assert "'sex' is not" in got["ham-names"]["warnings"]  # PAD's gender is a leak field, not an input
    assert "localization" not in got["ham-names"]["warnings"]
    assert "'localization' is not a metadata field" in got["own-name-wins"]["warnings"]
    assert "'upper extremity' is not one of the known values" in got["unlisted-site"]["warnings"]
    assert _probs(got["unlisted-site"]) == _probs(got["no-site"])
    assert "'gender' is not an input of this model because it leaks the label" in got["leak"]["warnings"]


def test_pad_metadata_names_map_onto_ham10000_fields(tmp_path, demo_weights):
    _write_images(tmp_path)
    got, _ = _run(tmp_path, demo_weights, "ham10000_jiadf", [
        {"case_id": "ham-names", "dermoscopic": "good.png", "age": "50", "sex": "female",
         "localization": "upper extremity"},
        {"case_id": "pad-names", "dermoscopic": "good.png", "age": "50", "gender": "FEMALE",
         "region": "upper extremity"},
        {"case_id": "pad-region", "dermoscopic": "good.png", "age": "50", "gender": "FEMALE", "region": "ARM"},
    ])
    assert _probs(got["pad-names"]) == _probs(got["ham-names"]) and got["pad-names"]["warnings"] == ""
    assert "'ARM' is not one of the known values" in got["pad-region"]["warnings"]


def test_concept_and_image_only_entries_say_what_they_ignore(tmp_path, demo_weights):
    _write_images(tmp_path)
    got, _ = _run(tmp_path, demo_weights, "milk_concepts", [
        {"case_id": "photo", "clinical": "good.png", "age": "55"},
        {"case_id": "meta", "clinical": "", "age": "55"},
    ])
    assert got["photo"]["error"] == "" and "concept scores" in got["photo"]["warnings"]
    assert _probs(got["photo"]) == _probs(got["meta"])  # 'age' reads as MILK10k's age_approx
    assert "'age'" not in got["meta"]["warnings"]
    got, _ = _run(tmp_path, demo_weights, "ham_image_only", [
        {"case_id": "with-meta", "dermoscopic": "good.png", "age": "55"},
        {"case_id": "image", "dermoscopic": "good.png", "age": ""},
    ])
    assert "metadata columns are not used by ham_image_only" in got["with-meta"]["warnings"]
    assert got["image"]["warnings"] == "" and _probs(got["with-meta"]) == _probs(got["image"])
