"""Mixup (`train.mixup.alpha`, training.optim.mixup / mixed_loss): the mix, its loss, the config key, off by default."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.config import ConfigError, load_config
from training.optim import Mixed, compute_loss, mixed_loss, mixup

BASE = {"name": "tiny", "dataset": "ham10000", "model": {"modalities": ["dermoscopic"]}}


@pytest.fixture(scope="module")
def model():
    from skinui.models import build_model

    torch.manual_seed(0)
    return build_model({"modalities": ["metadata"], "num_classes": 3, "meta_dim": 4, "structure": {"name": "late"}})


def batch_of(n: int = 8) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    stem = torch.randn(n, 5, 3, 3, generator=g)  # a cached stem: [N, C, H, W]
    meta = torch.randn(n, 4, generator=g)
    present = torch.tensor([True, False] * (n // 2))
    return {"dermoscopic": stem, "metadata": meta, "mask": {"metadata": present}}, torch.arange(n) % 3


def test_the_batch_is_a_convex_mix_with_one_seeded_partner_per_row():
    batch, target = batch_of()
    originals = {k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
    mixed = mixup(batch, target, 0.4, np.random.default_rng(7))

    rng = np.random.default_rng(7)  # the same draws, in the same order: lam, then the permutation
    lam, perm = float(rng.beta(0.4, 0.4)), torch.from_numpy(rng.permutation(8))
    assert mixed.lam == lam and 0.0 < lam < 1.0
    assert not torch.equal(perm, torch.arange(8))
    for key in ("dermoscopic", "metadata"):
        torch.testing.assert_close(mixed.batch[key], lam * originals[key] + (1 - lam) * originals[key][perm])
        assert torch.equal(batch[key], originals[key])  # the task's tensors are not mixed in place
    assert torch.equal(mixed.target, target) and torch.equal(mixed.target_b, target[perm])
    # a row counts as present only where both of its sources are
    assert torch.equal(mixed.batch["mask"]["metadata"], batch["mask"]["metadata"] & batch["mask"]["metadata"][perm])
    # same seed, same mix; another seed, another one
    again = mixup(batch, target, 0.4, np.random.default_rng(7))
    assert again.lam == mixed.lam and torch.equal(again.batch["dermoscopic"], mixed.batch["dermoscopic"])
    assert mixup(batch, target, 0.4, np.random.default_rng(8)).lam != mixed.lam


def test_mixup_leaves_torch_random_stream_alone():
    batch, target = batch_of()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    mixup(batch, target, 0.2, np.random.default_rng(0))
    assert torch.equal(torch.get_rng_state(), before)  # dropout draws the same with and without mixup


def test_mixed_loss_is_the_lam_weighted_sum_of_both_cross_entropies(model):
    batch, target = batch_of()
    mixed = mixup(batch, target, 1.0, np.random.default_rng(5))
    out = model({"metadata": mixed.batch["metadata"]})
    expected = (mixed.lam * F.cross_entropy(out.logits, mixed.target)
                + (1 - mixed.lam) * F.cross_entropy(out.logits, mixed.target_b))
    torch.testing.assert_close(mixed_loss(model, out, mixed, None), expected)
    # with label smoothing and class weights each term is compute_loss's own
    w = torch.tensor([0.5, 1.0, 2.0])
    expected = (mixed.lam * F.cross_entropy(out.logits, mixed.target, weight=w, label_smoothing=0.1)
                + (1 - mixed.lam) * F.cross_entropy(out.logits, mixed.target_b, weight=w, label_smoothing=0.1))
    torch.testing.assert_close(mixed_loss(model, out, mixed, w, 0.1), expected)


def test_lam_one_is_exactly_the_unmixed_batch_and_loss(model):
    batch, target = batch_of()
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(2))
    from training.optim import _mix

    same = Mixed(_mix(batch, 1.0, perm), target, target[perm], 1.0)
    assert torch.equal(same.batch["metadata"], batch["metadata"])
    out = model({"metadata": batch["metadata"]})
    assert torch.equal(mixed_loss(model, out, same, None), compute_loss(model, out, target, None))


def test_config_key_defaults_off_and_is_validated():
    assert load_config(None, base=BASE)["train"]["mixup"] == {"alpha": 0.0}
    assert load_config(None, ["train.mixup.alpha=0.2"], base=BASE)["train"]["mixup"]["alpha"] == 0.2
    for bad in ("-0.1", "nan", "yes", "[0.2]"):
        with pytest.raises(ConfigError, match=r"train\.mixup\.alpha must be a number >= 0"):
            load_config(None, [f"train.mixup.alpha={bad}"], base=BASE)
    with pytest.raises(ConfigError, match="alpah"):
        load_config(None, ["train.mixup.alpah=0.2"], base=BASE)


def test_fit_with_mixup_off_never_mixes_and_on_mixes_every_step(monkeypatch, tmp_path):
    """Default off: the loop never calls mixup (so existing runs are unchanged); on: once per training step."""
    from fixtures.official_layouts import make_ham10000

    import training.loop as loop

    make_ham10000(tmp_path / "ham", n=24)
    calls = []
    real = loop.mixup
    monkeypatch.setattr(loop, "mixup", lambda *a: calls.append(a[2]) or real(*a))
    cfg = {"name": "tiny_mix", "dataset": "ham10000", "split": {"method": "grouped", "fractions": [0.5, 0.25, 0.25]},
           "model": {"modalities": ["metadata"], "meta_encoder": {"name": "mlp", "dims": [8]},
                     "structure": {"name": "late"}},
           "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 16}, "export": {"enabled": False}}
    for alpha in (0.0, 0.3):
        calls.clear()
        run = loop.fit(load_config(None, base={**cfg, "train": {**cfg["train"], "mixup": {"alpha": alpha}}}),
                       str(tmp_path / "ham"), str(tmp_path / f"run{alpha}"), "cpu", command="pytest",
                       weights_dir=str(tmp_path / "weights"))
        assert (run / "summary.json").is_file()
        assert calls == ([] if alpha == 0 else [0.3] * len(calls)) and (alpha == 0 or len(calls) >= 2)
