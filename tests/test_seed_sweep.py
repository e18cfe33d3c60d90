"""bench/seed_sweep.py reads the epoch each run selected and tabulates mean ± sd over seeds."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import seed_sweep  # noqa: E402


def _run(out: Path, value: str, seed: int, epochs: list[tuple[float, bool]]) -> None:
    run = seed_sweep.run_dir(out, "pad_ufes20_jf_concat", value, seed)
    run.mkdir(parents=True)
    rows = [{"epoch": i + 1, "val_balanced_accuracy": b, "val_macro_auc": 0.9, "val_macro_f1": b, "best": best}
            for i, (b, best) in enumerate(epochs)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_reads_the_last_selected_epoch_not_the_highest(tmp_path):
    # epoch 2 scores highest on balanced accuracy, but the run selected epoch 3 (its select_metric)
    _run(tmp_path, "0.1", 0, [(0.5, True), (0.9, False), (0.6, True), (0.7, False)])
    assert seed_sweep.best_epoch(seed_sweep.run_dir(tmp_path, "pad_ufes20_jf_concat", "0.1", 0))["epoch"] == 3


def test_table_gives_mean_and_sample_sd_per_value(tmp_path):
    for s, b in enumerate([0.6, 0.7]):
        _run(tmp_path, "0.1", s, [(b, True)])
        _run(tmp_path, "0.5", s, [(b + 0.1, True)])
    lines = seed_sweep.table(["pad_ufes20_jf_concat"], "model.modality_dropout", ["0.1", "0.5"], 2, tmp_path).splitlines()
    assert lines[2].startswith("| `pad_ufes20_jf_concat` | 0.1 | 0.650 ± 0.071 |")
    assert lines[3].startswith("| `pad_ufes20_jf_concat` | 0.5 | 0.750 ± 0.071 |")


def test_a_missing_seed_is_an_error_not_a_smaller_mean(tmp_path):
    _run(tmp_path, "0.1", 0, [(0.6, True)])
    with pytest.raises(FileNotFoundError):
        seed_sweep.table(["pad_ufes20_jf_concat"], "model.modality_dropout", ["0.1"], 2, tmp_path)
