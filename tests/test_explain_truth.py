"""Relevance and branch weights scored against SynthDerm's design: each measure on constructed known answers."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from skinui.explain.attribution import RELEVANCE_METHODS
from skinui.synth import truth
from training.explain_truth import (
    association,
    auroc_w,
    case_rhos,
    estimate,
    exact_shapley,
    point_biserial_w,
    rival_of,
    spearman,
)

# Hand-made design: profiles p and q differ only in bleeding (0.1 vs 0.7), r only in age (mean 40 vs 60).
BASE = (50.0, 10.0, 0.5, (1.0,) * 8, (1.0, 1.0, 1.0), 0.1, 0.2)
PROFILES = {"p": BASE, "q": BASE[:5] + (0.7, 0.2), "r": (70.0,) + BASE[1:]}
CODES = {"A": ("d1", "c1", "p"), "B": ("d1", "c2", "q"), "C": ("d2", "c1", "p"), "D": ("d1", "c1", "r")}
ONES = np.ones((1, 4))


# -- the truth ------------------------------------------------------------------------------------------

def test_informativeness_is_the_profiles_total_variation_per_field():
    info = truth.field_informativeness("A", "B", CODES, PROFILES)
    assert info["bleeding"] == pytest.approx(0.6) and all(v == 0 for f, v in info.items() if f != "bleeding")
    assert truth.field_cues("A", "B", CODES, PROFILES) == {f: int(f == "bleeding") for f in truth.FIELDS}
    assert not any(truth.field_informativeness("A", "C", CODES, PROFILES).values())  # same metadata code


def test_age_informativeness_is_that_of_two_gaussians():
    """N(50, 10) vs N(70, 10): TV = 2 Phi(1) - 1 = 0.683, rounding and clipping to 18-95 change it little."""
    age = truth.field_informativeness("A", "D", CODES, PROFILES)["age"]
    assert age == pytest.approx(math.erf(1 / math.sqrt(2)), abs=0.01)
    assert sum(truth.field_distribution("p", "age", PROFILES).values()) == pytest.approx(1.0)


def test_the_shipped_design_gives_the_documented_answers():
    assert not any(truth.field_informativeness("MEL", "NV").values())  # same patient profile
    info = truth.field_informativeness("AKIEC", "SCCKA")
    assert info["bleeding"] == pytest.approx(0.6) and info["growth"] == pytest.approx(0.8) and info["itch"] == 0
    assert all(truth.field_informativeness(a, b)[f] == 0 for a in ("MEL", "BCC", "DF") for b in ("SCCKA", "VASC")
               for f in ("fitzpatrick", "diameter_mm"))  # drawn independently of the class


def test_case_level_informativeness_is_the_log_likelihood_ratio_of_the_value_shown():
    case = truth.case_field_informativeness("A", "B", {"bleeding": "yes", "age": 33}, CODES, PROFILES)
    assert case["bleeding"] == pytest.approx(math.log(7)) and case["age"] == 0.0
    assert truth.case_field_informativeness("A", "B", {"bleeding": None}, CODES, PROFILES)["bleeding"] == 0.0
    assert truth.case_field_informativeness("A", "B", {"bleeding": False}, CODES, PROFILES)["bleeding"] == \
        pytest.approx(math.log(0.9 / 0.3))


def test_evidence_sides_follow_the_codes_and_the_entry_inputs():
    assert truth.evidence_modalities("A", "B", codes=CODES) == ("clinical", "metadata")
    assert truth.evidence_side("A", "B", codes=CODES) == "both"
    assert truth.evidence_side("A", "B", ("dermoscopic", "metadata"), CODES) == "metadata"
    assert truth.evidence_side("A", "C", codes=CODES) == "images"
    assert truth.evidence_side("A", "C", ("clinical", "metadata"), CODES) == "none"
    assert truth.evidence_side("MEL", "NV") == "images" and truth.evidence_side("AKIEC", "SCCKA") == "metadata"


# -- the scores -----------------------------------------------------------------------------------------

def test_spearman_scores_the_truth_one_its_reverse_minus_one_and_noise_near_zero():
    design = truth.field_informativeness("AKIEC", "SCCKA")
    fields = list(truth.FIELDS)
    assert case_rhos(design, fields, {"d": design})["d"] == pytest.approx(1.0)
    reverse = {f: 1 - v for f, v in design.items()}  # larger where the truth is smaller, same ties
    assert case_rhos(reverse, fields, {"d": design})["d"] == pytest.approx(-1.0)
    signed = {f: -v for f, v in design.items()}  # the sign says towards/against: the magnitude is scored
    assert case_rhos(signed, fields, {"d": design})["d"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = [case_rhos(dict(zip(fields, rng.random(8))), fields, {"d": design})["d"] for _ in range(2000)]
    assert abs(np.mean(noise)) < 0.03
    assert case_rhos(dict.fromkeys(fields, 0.0), fields, {"d": design})["d"] == 0.0  # all-zero bars rank nothing
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_auroc_and_point_biserial_on_constructed_data():
    y = np.array([0, 0, 1, 1])
    assert auroc_w(y, np.array([0.1, 0.2, 0.3, 0.4]), ONES)[0] == pytest.approx(1.0)
    assert auroc_w(y, np.array([0.4, 0.3, 0.2, 0.1]), ONES)[0] == pytest.approx(0.0)
    assert auroc_w(y, np.array([0.5, 0.5, 0.5, 0.5]), ONES)[0] == pytest.approx(0.5)  # ties count 1/2
    s = np.array([0.2, 0.9, 0.4, 0.7])
    assert point_biserial_w(y, s, ONES)[0] == pytest.approx(np.corrcoef(y, s)[0, 1])
    rng = np.random.default_rng(1)
    yy, noise = rng.integers(0, 2, 4000), rng.random(4000)
    assert auroc_w(yy, noise, np.ones((1, 4000)))[0] == pytest.approx(0.5, abs=0.03)


def test_reliance_association_finds_alpha_that_follows_the_evidence():
    def row(i: int, side: str, meta: float) -> dict:
        return {"lesion_id": f"L{i}", "evidence": side, "alpha": {"image": 1 - meta, "joint": 0.0, "metadata": meta}}

    follows = [row(i, "metadata", 0.6 + i / 100) for i in range(10)] + [row(i + 10, "images", 0.1) for i in range(10)]
    out = association(follows, {"metadata"}, {"images"})
    assert out["alpha_metadata"]["auroc"]["estimate"] == pytest.approx(1.0)
    assert out["metadata_share"]["point_biserial"]["estimate"] > 0.9
    ignores = [{**r, "alpha": {"image": 0.5, "joint": 0.0, "metadata": 0.5}} for r in follows]
    assert association(ignores, {"metadata"}, {"images"})["alpha_metadata"]["auroc"]["estimate"] == pytest.approx(0.5)
    assert association(follows, {"both"}, {"images"}) is None  # no case on one side: no number


def test_bootstrap_interval_contains_the_estimate():
    values = np.random.default_rng(2).normal(0.4, 0.2, 60)
    out = estimate(lambda w: (w @ values) / w.sum(1), [f"L{i // 2}" for i in range(60)], n_boot=500)
    assert out["estimate"] == pytest.approx(values.mean()) and out["ci"][0] < out["estimate"] < out["ci"][1]
    assert out["ci"][1] - out["ci"][0] < 0.2  # about 4 standard errors of a mean of 30 lesions


def test_rival_is_the_most_probable_other_class():
    assert rival_of(np.array([0.7, 0.2, 0.1]), 0) == 1 and rival_of(np.array([0.7, 0.2, 0.1]), 1) == 0


# -- the attribution methods on toy heads with a known answer ----------------------------------------------

GROUPS = [("a", [0]), ("b", [1, 2, 3]), ("c", [4]), ("d", [5, 6])]


def _toy(weights: list[float]):
    """A linear head over 7 columns and a fake `Encoded` whose encoder groups them into 4 fields."""
    w = torch.tensor(weights)
    encoder = SimpleNamespace(groups=GROUPS, transform=lambda rows: np.zeros((len(rows), 7), dtype=np.float32))

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x @ w, -(x @ w)], 1)

    return forward, SimpleNamespace(entry=SimpleNamespace(encoder=encoder))


def _per_field(attr: torch.Tensor) -> list[float]:
    return [float(attr[0, cols].sum()) for _, cols in GROUPS]


@pytest.mark.parametrize("method", ["shapley_value_sampling", "feature_ablation"])
def test_perturbation_methods_recover_a_linear_heads_field_contributions(method):
    """Linear head, zero baseline: each field's attribution is sum(w * x) over its columns, counted once
    (captum hands every column of a group the whole group value; relevance sums per field)."""
    forward, enc = _toy([0.5, 1.0, 1.0, 1.0, -4.0, 0.25, 0.0])
    x = torch.ones(1, 7)
    got = _per_field(RELEVANCE_METHODS.get(method)(forward, x, 0, enc))
    assert got == pytest.approx([0.5, 3.0, -4.0, 0.25], abs=1e-5)
    assert np.argsort(np.abs(got)).tolist() == [3, 0, 1, 2]  # the coefficients' ranking


def test_shapley_sampling_is_reproducible_and_leaves_the_global_generator_alone():
    forward, enc = _toy([0.5, 1.0, 1.0, 1.0, -4.0, 0.25, 0.0])
    method = RELEVANCE_METHODS.get("shapley_value_sampling")
    torch.manual_seed(123)
    first = method(forward, torch.rand(1, 7), 0, enc)
    after = torch.rand(1)
    torch.manual_seed(123)
    x = torch.rand(1, 7)
    assert torch.equal(method(forward, x, 0, enc), first) and torch.equal(torch.rand(1), after)


def test_exact_shapley_splits_an_interaction_evenly():
    """f = x_a * x_b + 2 x_c from zero: a and b share their product (0.5 each), c gets 2, d nothing."""
    x = torch.ones(1, 7)

    def value(m: torch.Tensor) -> torch.Tensor:
        return m[:, 0] * m[:, 1] + 2 * m[:, 4]

    got = exact_shapley(value, x, torch.zeros(1, 7), GROUPS)
    assert got == pytest.approx({"a": 0.5, "b": 0.5, "c": 2.0, "d": 0.0})


# -- the command's measurements end to end, on an untrained demo entry -----------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from skinui.cases import Case
    from skinui.demo import make_demo_entry
    from skinui.zoo import load_entry

    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri_jiadf", image_size=64)
    rng = np.random.default_rng(0)
    labels = ["AKIEC", "SCCKA", "MEL", "DF", "BCC", "BKL"]
    cases = [Case(f"c{i}", dermoscopic=rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                  clinical=rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), label=labels[i % 6], lesion_id=f"L{i}",
                  metadata={"age": int(rng.integers(20, 90)), "sex": "male", "site": "face", "growth": "weeks",
                            "bleeding": bool(i % 2), "itch": False})
             for i in range(12)]
    return load_entry("tri_jiadf", folder), cases


def test_measure_relevance_scores_every_method_and_the_references(demo):
    from skinui.explain.methods import METHOD_LABELS
    from training.explain_truth import REFERENCES, measure_relevance

    entry, cases = demo
    out = measure_relevance(entry, cases)
    assert out["cases_scored"] + out["cases_left_out"] == len(cases) and out["cases_scored"] > 0
    assert set(out["summary"]) == set(METHOD_LABELS) | set(REFERENCES)
    for method, s in out["summary"].items():
        for target in ("true_class", "log_odds"):
            assert -1 <= s[target]["design"]["estimate"] <= 1, method
    assert out["summary"]["bayes_llr"]["log_odds"]["case"]["estimate"] == pytest.approx(1.0)


def test_measure_reliance_reads_alpha_per_case_and_pair(demo):
    from training.explain_truth import measure_reliance

    entry, cases = demo
    out = measure_reliance(entry, cases)
    assert sum(s["n"] for s in out["sides"].values()) == len(cases) == len(out["rows"])
    for r in out["rows"]:
        assert sum(r["alpha"].values()) == pytest.approx(1.0, abs=1e-4) and r["rival"] != r["true"]
    assert sum(p["n"] for p in out["per_pair"].values()) == len(cases)


def test_relevance_card_block_quotes_the_summary_and_writes_only_its_own_key(demo, tmp_path):
    import json

    from skinui.explain.methods import METHOD_LABELS
    from skinui.zoo import list_entries, write_card
    from training.explain_truth import card_block, measure_relevance, update_cards

    entry, cases = demo
    body = measure_relevance(entry, cases)
    result = {"entry": "tri_jiadf", "split": "test", **{k: v for k, v in body.items() if k != "rows"}}
    block = card_block(result)
    assert set(block["methods"]) == set(METHOD_LABELS) and block["cases_scored"] == body["cases_scored"]
    ig = body["summary"]["integrated_gradients"]
    assert block["methods"]["integrated_gradients"] == {t: ig[t]["design"] for t in ("true_class", "log_odds")}
    assert block["random"]["true_class"] == body["summary"]["random"]["true_class"]["design"]
    weights = tmp_path / "weights"
    weights.mkdir()
    write_card(entry.card, weights)
    (tmp_path / "tri_jiadf.truth-relevance.test.json").write_text(json.dumps(result))
    assert update_cards(tmp_path, str(weights)) == ["tri_jiadf"]
    after = list_entries(weights)[0]
    assert after.pop("explain_relevance") == json.loads(json.dumps(block)) and after == entry.card
