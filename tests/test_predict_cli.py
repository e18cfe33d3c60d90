"""`python -m skinui zoo` and `python -m skinui predict`: bad rows get an error, the batch goes on."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / "good.png")
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
