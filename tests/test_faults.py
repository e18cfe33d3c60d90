"""Issue 12's faults: SIGKILL during training then `--resume`, corrupted checkpoints, an unreadable
image in an evaluation, and a weights folder with broken entries.

Batch prediction with one unreadable image among many rows is `tests/test_predict_cli.py`
(`test_predict_csv_bad_rows_get_errors`): the bad row gets its sentence, the others their
probabilities, and the run completes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from fixtures.official_layouts import make_ham10000
from safetensors.torch import load_file

from training import checkpoint
from training.checkpoint import CheckpointError

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
# A tiny run (32-px images, tinynet_e, 40 training cases in batches of 2: 20 steps of ~20 ms per
# epoch), so a kill can land inside an epoch and the whole test stays around 20 s on 2 cores.
CONFIG = f"""\
name: tiny_fault
dataset: ham10000
split: {{method: grouped, fractions: [0.5, 0.25, 0.25]}}
model:
  modalities: [dermoscopic, metadata]
  image_size: 32
  image_encoder: {{name: tinynet_e, pretrained: false, stem_blocks: 3}}
  meta_encoder: {{name: mlp, dims: [16]}}
  fusion: {{name: concat, dim: 16}}
  structure: {{name: jiadf}}
  modality_dropout: 0.2
  field_dropout: 0.1
train:
  mode: full
  epochs: {EPOCHS}
  batch_size: 2
  eval_batch_size: 16
  optimizer: {{name: adamw, lr: 0.003, weight_decay: 0.0001}}
  scheduler: {{name: plateau, patience: 0}}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("faults")
    ham = tmp / "ham"
    make_ham10000(ham, n=80)
    config = tmp / "tiny_fault.yaml"
    config.write_text(CONFIG)
    return {"tmp": tmp, "ham": ham, "config": config, "weights": tmp / "weights"}


def _fit_command(tiny: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training", "fit", "--config", str(tiny["config"]), "--data-root",
            str(tiny["ham"]), "--out", str(out), "--device", "cpu", "--weights-dir", str(tiny["weights"]), *extra]


def _env(tiny: dict[str, Path]) -> dict[str, str]:
    # one thread, as in CI; the encode cache of the export goes to the test's folder, not the repo's runs/
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
            "SKINUI_ENCODE_CACHE": str(tiny["tmp"] / "encode-cache")}


@pytest.fixture(scope="module")
def straight(tiny) -> Path:
    """The uninterrupted run (exported as the zoo entry `tiny_fault`, which the evaluation test reuses)."""
    out = tiny["tmp"] / "straight"
    proc = subprocess.run(_fit_command(tiny, out), cwd=REPO, env=_env(tiny), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _drop_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_ends_exactly_where_an_uninterrupted_run_ends(tiny, straight):
    """`python -m training fit` is killed with SIGKILL inside epoch 2 (after its first batch of that
    epoch was logged, before epoch 2's checkpoint), then re-run with `--resume`.

    Tolerance: none. Final weights, optimizer state, best weights and every logged metric must be
    bit-identical to the uninterrupted run's. Every epoch starts from a seed derived from (seed,
    epoch, rank), the checkpoint restores model, optimizer, schedule and grad-scaler state exactly
    (safetensors + JSON), and both processes run the same single-threaded CPU kernels, so the
    arithmetic is replayed in the same order. (On a GPU, non-deterministic kernels would call for a
    tolerance; this test runs on the CPU.) Only the wall-clock `seconds` of each epoch may differ.
    """
    out = tiny["tmp"] / "killed"
    proc = subprocess.Popen(_fit_command(tiny, out, "--no-export"), cwd=REPO, env=_env(tiny),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = bytearray()
    inside = threading.Event()

    def watch() -> None:  # tqdm draws "epoch 2: ... loss=..." after each training step of epoch 2
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            seen.extend(chunk)
            if re.search(rb"epoch 2:[^\r\n]*loss=", bytes(seen)):
                inside.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    assert inside.wait(timeout=120), f"epoch 2 never started: {bytes(seen)[-2000:]!r}"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    reader.join(timeout=10)
    killed_at = checkpoint.load_state(out / "last")["epoch"]
    assert killed_at == 1, f"the kill landed after epoch {killed_at}, not inside epoch 2"
    assert not (out / "summary.json").exists()  # the run did not finish

    resumed = subprocess.run(_fit_command(tiny, out, "--no-export", "--resume"), cwd=REPO, env=_env(tiny),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming tiny_fault after epoch 1" in resumed.stdout + resumed.stderr

    a, b = checkpoint.load_state(straight / "last"), checkpoint.load_state(out / "last")
    assert a["epoch"] == b["epoch"] == EPOCHS
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for pid, slot in a["optimizer"]["state"].items():
        for name, value in slot.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][pid][name])), name
    assert a["schedule"] == b["schedule"] and a["best"] == b["best"]
    assert _drop_seconds(a["history"]) == _drop_seconds(b["history"])
    best_a, best_b = load_file(str(straight / "best.safetensors")), load_file(str(out / "best.safetensors"))
    assert best_a.keys() == best_b.keys() and all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    rows = lambda run: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert _drop_seconds(rows(straight)) == _drop_seconds(rows(out))
    summary_a, summary_b = (json.loads((run / "summary.json").read_text()) for run in (straight, out))
    assert (summary_a["best_epoch"], summary_a["best_value"]) == (summary_b["best_epoch"], summary_b["best_value"])
    assert not list(out.glob("*.tmp"))  # the temp files of the killed write were swept


# -- corrupted checkpoints -------------------------------------------------------------------------
def _small_state() -> dict:
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "history": [{"epoch": 1}]}


def _tensor_file(prefix: Path) -> Path:
    return prefix.parent / json.loads(prefix.with_suffix(".json").read_text())["tensors"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:  # a tensor value: safetensors alone would load it without noticing
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def _edit_state(path: Path) -> None:  # valid JSON, a different epoch
    path.write_text(path.read_text().replace('"epoch": 3', '"epoch": 2'))


DAMAGE = {
    "truncated tensor file": (lambda p: _truncate(_tensor_file(p)), "truncated or corrupted"),
    "flipped byte in a tensor": (lambda p: _flip_last_byte(_tensor_file(p)), "truncated or corrupted"),
    "missing tensor file": (lambda p: _tensor_file(p).unlink(), "which is missing"),
    "truncated json": (lambda p: _truncate(p.with_suffix(".json")), "truncated or corrupted"),
    "edited json state": (lambda p: _edit_state(p.with_suffix(".json")), "modified or corrupted"),
    "empty json": (lambda p: p.with_suffix(".json").write_bytes(b""), "truncated or corrupted"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_corrupted_or_partial_checkpoint_is_reported_and_never_loaded(damage, tmp_path, monkeypatch):
    prefix = tmp_path / "last"
    checkpoint.save_state(prefix, _small_state())
    assert checkpoint.load_state(prefix)["epoch"] == 3  # sound before the damage
    harm, words = DAMAGE[damage]
    harm(prefix)
    parsed = []
    real_parse = checkpoint._parse_safetensors
    monkeypatch.setattr(checkpoint, "_parse_safetensors", lambda data: parsed.append(1) or real_parse(data))
    assert checkpoint.exists(prefix)  # a checkpoint is there: --resume must try it and report
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_state(prefix)
    message = str(err.value)
    assert words in message and "not loaded" in message and "without --resume" in message, message
    assert "Traceback" not in message and message.endswith(".")
    assert not parsed  # the tensors were never parsed, let alone used


def test_resume_from_a_corrupted_checkpoint_stops_with_a_sentence(tiny, straight, tmp_path, capsys):
    """`fit --resume` on a damaged run directory says what is wrong and what to do; it neither loads the
    checkpoint nor silently starts over (that would discard the user's epochs without asking)."""
    from training.__main__ import main

    run = tmp_path / "run"
    shutil.copytree(straight, run)
    _flip_last_byte(_tensor_file(run / "last"))
    before = (run / "metrics.jsonl").read_text()
    rc = main(["fit", "--config", str(tiny["config"]), "--data-root", str(tiny["ham"]), "--out", str(run),
               "--device", "cpu", "--no-export", "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: The checkpoint tensor file" in err and "truncated or corrupted" in err, err
    assert "Traceback" not in err and "resuming" not in err
    assert (run / "metrics.jsonl").read_text() == before  # nothing of the run was touched


def test_best_weights_are_written_atomically(tmp_path, monkeypatch):
    """A kill while `best.safetensors` is written leaves the previous file whole (export --run reads it)."""
    path = tmp_path / "best.safetensors"
    checkpoint.save_tensors(path, {"w": torch.ones(3)})

    def die(*_):
        raise KeyboardInterrupt  # the process dies between writing the temp file and the rename

    monkeypatch.setattr(checkpoint.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_tensors(path, {"w": torch.zeros(3)})
    assert torch.equal(load_file(str(path))["w"], torch.ones(3))


# -- evaluation with an unreadable image -----------------------------------------------------------
def test_evaluate_reports_an_unreadable_image_and_scores_the_rest(tiny, straight, tmp_path, capsys):
    from training.__main__ import main

    data = tmp_path / "ham"
    shutil.copytree(tiny["ham"], data)
    bad = next((data / "HAM10000_images_part_1").glob("*.jpg"))
    bad.write_bytes(b"\xff\xd8\xff\xe0 half a jpeg")
    out = tmp_path / "report"
    rc = main(["evaluate", "--weights", str(tiny["weights"] / "tiny_fault"), "--dataset", "ham10000",
               "--data-root", str(data), "--split", "all", "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_cases"] == 79  # 80 cases, the unreadable one left out of every metric
    assert rep["unreadable"] == [{"case_id": bad.stem, "modality": "dermoscopic", "file": str(bad.resolve()),
                                  "reason": rep["unreadable"][0]["reason"]}]
    assert "not a readable image" in rep["unreadable"][0]["reason"]
    assert 0 <= rep["balanced_accuracy"] <= 1 and "NaN" not in (out / "report.json").read_text()  # no NaN leaked
    assert f"case {bad.stem} left out" in err and (out / "report.html").is_file()

    # the same folder intact: nothing is listed and every case is scored
    clean = tmp_path / "clean"
    assert main(["evaluate", "--weights", str(tiny["weights"] / "tiny_fault"), "--data-root", str(tiny["ham"]),
                 "--split", "all", "--out", str(clean), "--device", "cpu"]) == 0
    rep_clean = json.loads((clean / "report.json").read_text())
    assert rep_clean["n_cases"] == 80 and rep_clean["unreadable"] == []


def test_subset_logits_without_a_list_names_the_unreadable_case(tiny, straight, tmp_path):
    """Callers that cannot leave a case out (export, comparisons) get a sentence, never a silent
    'all inputs missing' score for a case whose image is merely unreadable."""
    from skinui.cases import Case, ImageRef
    from skinui.zoo import load_entry
    from training.evaluate import EvaluationError, subset_logits

    entry = load_entry("tiny_fault", tiny["weights"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    good = next((tiny["ham"] / "HAM10000_images_part_1").glob("*.jpg"))
    cases = [Case("ok", ImageRef(good), None, {"age": 50}), Case("broken", ImageRef(bad), None, {"age": 50})]
    with pytest.raises(EvaluationError, match="Case broken: dermoscopic image .*bad.jpg cannot be read"):
        subset_logits(entry, cases)
    listed: dict = {}
    logits = subset_logits(entry, cases, unreadable=listed)
    assert list(listed) == [1] and listed[1]["case_id"] == "broken"
    full = logits[tuple(entry.model.modalities)]
    assert not torch.isnan(torch.as_tensor(full[0])).any() and torch.isnan(torch.as_tensor(full[1])).all()


# -- a weights folder with broken entries ----------------------------------------------------------
GOOD = ("ham10000_clinical_cnn", "pad_ufes20_metadata")  # the shipped metadata-only entries: small


def copy_entry(name: str, folder: Path, source: Path = REPO / "weights") -> dict:
    """Copy a shipped entry (card, weights and every file its card names) into `folder`; returns its card."""
    card = json.loads((source / f"{name}.json").read_text())
    parts = [*(card.get("shared") or []), *(card.get("ood") or {}).values()]
    for rel in [f"{name}.json", f"{name}.safetensors", *(p["file"] for p in parts)]:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / rel, folder / rel)
    return card


@pytest.fixture(scope="module")
def mixed_weights(tmp_path_factory) -> Path:
    """Two sound shipped entries and one broken entry of each kind."""
    folder = tmp_path_factory.mktemp("mixed-weights")
    card = [copy_entry(name, folder) for name in GOOD][-1]
    (folder / "bad_json.json").write_text('{"name": "bad_json", "dataset": ')  # cut short
    (folder / "sha_mismatch.json").write_text(json.dumps({**card, "name": "sha_mismatch"}))
    data = bytearray((REPO / "weights" / "pad_ufes20_metadata.safetensors").read_bytes())
    data[-1] ^= 0x01
    (folder / "sha_mismatch.safetensors").write_bytes(bytes(data))
    (folder / "no_weights.json").write_text(json.dumps({**card, "name": "no_weights"}))  # no .safetensors
    return folder


def test_broken_entries_are_named_with_why_and_the_others_served(mixed_weights):
    from skinui.ui import api, case_tab
    from skinui.ui.app import build_app
    from skinui.ui.entries import AppError, EntryCache

    cache = EntryCache(mixed_weights)
    assert sorted(cache.names()) == sorted(GOOD)  # only sound entries are offered
    assert set(cache.broken) == {"bad_json", "sha_mismatch", "no_weights"}
    assert "bad_json.json cannot be read" in cache.broken["bad_json"]
    assert "does not match the SHA-256" in cache.broken["sha_mismatch"]
    assert "no_weights.safetensors is missing" in cache.broken["no_weights"]
    table = case_tab.entries_markdown(cache)
    assert "Broken entries" in table and all(f"'{n}'" in table for n in cache.broken)
    assert all(f"| {n} |" in table for n in GOOD)
    with pytest.raises(AppError, match="is broken and cannot be used: its weight file .* does not match"):
        cache.card("sha_mismatch")

    demo, ctx = build_app(cache=cache)  # the app builds with its default among the sound entries
    assert ctx.default in GOOD
    shown = {b.elem_id: b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) in
             ("about-broken", "entries-table")}
    assert all("'sha_mismatch': its weight file" in shown[k] for k in ("about-broken", "entries-table")), shown
    for name in GOOD:
        out = api.predict(cache, ctx.default, name, None, None, json.dumps({"age": 55}))
        assert "error" not in out and abs(sum(out["probabilities"].values()) - 1) < 1e-4, out
    broken = api.predict(cache, ctx.default, "sha_mismatch", None, None, json.dumps({"age": 55}))
    assert broken["entry"] == "sha_mismatch" and "broken" in broken["error"] and "SHA-256" in broken["error"]
    unreadable = api.predict(cache, ctx.default, "bad_json", None, None, "{}")["error"]
    assert "broken" in unreadable and "cannot be read" in unreadable, unreadable
