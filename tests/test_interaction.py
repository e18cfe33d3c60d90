"""The interaction-ladder experiment's scoring (training.interaction) on constructed predictions."""
from __future__ import annotations

import numpy as np
import pytest

from skinui.synth.design import CLASSES
from training import interaction as ix


def _probs(pred: np.ndarray) -> np.ndarray:
    p = np.full((pred.size, len(CLASSES)), 0.01)
    p[np.arange(pred.size), pred] = 0.93
    return p


def _cases(per_class: int = 40) -> tuple[np.ndarray, list[str]]:
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    return labels, [f"L{i // 2}" for i in range(labels.size)]  # two cases per lesion


def test_pair_accuracy_reads_only_the_pair_and_its_two_probabilities():
    labels = np.array([0, 0, 1, 1, 2])
    probs = np.array([[.6, .3, .1], [.2, .5, .3], [.1, .8, .1], [.7, .2, .1], [.9, .05, .05]])
    # MEL cases: right, wrong; NV cases: right, wrong; the class-2 case does not count
    assert ix.pair_balanced_accuracy(labels, probs, 0, 1, np.ones(5))[0] == pytest.approx(0.5)
    probs[1] = [.5, .2, .3]  # now both MEL cases pick MEL over NV, though class 2 is not the top class
    assert ix.pair_balanced_accuracy(labels, probs, 0, 1, np.ones(5))[0] == pytest.approx(0.75)


def test_summary_orders_rungs_and_checks_the_design():
    labels, groups = _cases()
    mel, nv, bkl, akiec = (CLASSES.index(c) for c in ("MEL", "NV", "BKL", "AKIEC"))

    def predictions(xor_hit: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        r = np.random.default_rng(seed)
        pred = labels.copy()
        for a, b in ((mel, nv), (bkl, akiec)):  # within an xor pair, right with probability xor_hit
            on = np.isin(labels, (a, b))
            flip = on & (r.random(labels.size) > xor_hit)
            pred[flip] = np.where(labels[flip] == a, b, a)
        return _probs(pred), pred

    scored = {"late": [predictions(0.6, s) for s in range(3)], "jiadf": [predictions(1.0, s) for s in range(3)]}
    out = ix.summarise(scored, labels, groups, list(CLASSES), n_boot=300)
    assert out["rungs"]["jiadf"]["MEL vs NV"]["mean"] == pytest.approx(1.0)
    assert 0.5 < out["rungs"]["late"]["MEL vs NV"]["mean"] < 0.7
    assert len(out["rungs"]["late"]["balanced_accuracy"]["per_seed"]) == 3
    d = out["differences"]["jiadf - late"]["balanced_accuracy"]
    assert d["estimate"] > 0 and d["ci"][0] > 0
    verdict = ix.follows_design(out)
    assert all(verdict.values()), verdict
    # an additive rung that solves the xor pairs contradicts the design, and the verdict says so
    scored["late"] = [predictions(1.0, s) for s in range(3)]
    verdict = ix.follows_design(ix.summarise(scored, labels, groups, list(CLASSES), n_boot=300))
    assert not verdict["every interacting rung beats every additive rung (interval above 0)"]
    assert not verdict["additive rungs stay at or below the best additive rule on each exclusive-or pair (0.75, interval)"]


def test_rung_configs_differ_only_where_the_rung_says():
    late = ix.rung_config("late", "somewhere")
    had = ix.rung_config("jf_hadamard", "somewhere")
    assert late["name"] == "interaction_late" and late["data_root"] == "somewhere"
    assert had["model"]["fusion"]["name"] == "hadamard" and had["model"]["structure"]["name"] == "jf"
    assert ix.rung_config("jf_concat", "x")["model"]["fusion"]["name"] == "concat"
    assert {ix.RUNGS[r][2] for r in ix.RUNGS} == {"single side", "additive", "interacting"}


def test_refuses_a_folder_without_the_interaction_variant(tmp_path):
    (tmp_path / "manifest.json").write_text('{"n": 1, "seed": 0, "size": 32}')
    with pytest.raises(SystemExit, match="without --variant interaction"):
        ix.main(["--data-root", str(tmp_path), "--rungs", "late", "--seeds", "0"])
    with pytest.raises(SystemExit, match="not a SynthDerm folder"):
        ix.main(["--data-root", str(tmp_path / "missing")])
