"""`python -m skinui.data summary` on a fixture, run as a user would (a subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys

from fixtures.official_layouts import make_derm7pt, make_milk10k


def _run(*args: str):
    return subprocess.run([sys.executable, "-m", "skinui.data", *args], capture_output=True, text=True, timeout=60)


def test_summary_prints_one_json_object(tmp_path):
    make_derm7pt(tmp_path, n=10, missing=("Fcl/D001.jpg",), odd_diagnosis=(2,))
    proc = _run("summary", "--dataset", "derm7pt", "--root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert out["dataset"] == "derm7pt" and out["cases"] == 9
    assert sum(out["classes"].values()) == 9
    assert out["modalities"] == ["dermoscopic", "clinical", "metadata"]
    assert out["metadata_fields"] == ["elevation", "location", "sex"]
    assert out["skipped"] == 1 and out["skipped_reasons"] == {"unknown_label": 1}
    assert out["repaired"] == {"missing_image": 1}


def test_summary_reports_concept_vectors(tmp_path):
    make_milk10k(tmp_path, n=6, images=False)
    out = json.loads(_run("summary", "--dataset", "milk10k", "--root", str(tmp_path)).stdout)
    assert out["cases"] == 6 and out["representations"]["dermoscopic"] == "concept_vector"


def test_bad_root_and_unknown_dataset_exit_2_with_a_sentence(tmp_path):
    for args in (("--dataset", "ham10000", "--root", str(tmp_path / "absent")),
                 ("--dataset", "ham10000", "--root", str(tmp_path)),
                 ("--dataset", "nope", "--root", str(tmp_path))):
        proc = _run("summary", *args)
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert "Traceback" not in proc.stderr and proc.stderr.strip().endswith(".")
        assert len(proc.stderr.strip().splitlines()) == 1
