"""DDP on CPU: `torchrun --nproc_per_node 2 -m training fit` (gloo) ends with identical weights on both ranks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fixtures.official_layouts import make_ham10000
from test_training import tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_ranks_end_with_identical_weights(tmp_path):
    ham = tmp_path / "ham"
    make_ham10000(ham, n=40)
    cfg = tiny_config("tiny_ddp", "full")
    cfg["export"] = {"enabled": False}
    (tmp_path / "tiny_ddp.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "training",
           "fit", "--config", str(tmp_path / "tiny_ddp.yaml"), "--data-root", str(ham), "--out", str(run),
           "--device", "cpu", "--hash-weights"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hashes = [(run / f"weights_rank{r}.sha256").read_text().strip() for r in (0, 1)]
    assert len(hashes[0]) == 64 and hashes[0] == hashes[1]
    # rank 0 alone wrote the run files, one metrics row per epoch
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert (run / "command.txt").read_text().startswith("torchrun --nproc_per_node 2 -m training fit --config")
