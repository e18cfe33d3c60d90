"""Explanations you can check (issue 14): intervals on the measures, the app's measured-quality sentences,
the Compare ranking by explanation quality, and the reports' explanations section, on constructed data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from skinui.explain import quality
from skinui.explain.measures import centre_baseline, energy_in_mask, pointing_game, summarise
from skinui.stats import bootstrap_mean


def _disc(size: int = 32, cy: int = 12, cx: int = 18, r: int = 6) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return ((y - cy) ** 2 + (x - cx) ** 2) <= r * r


# -- intervals ---------------------------------------------------------------------------------------------

def test_bootstrap_mean_contains_its_estimate_and_shrinks_with_more_cases():
    rng = np.random.default_rng(0)
    small_v = rng.normal(0.3, 0.1, 40)
    large_v = rng.normal(0.3, 0.1, 1000)
    small = bootstrap_mean(small_v, list(range(40)))
    large = bootstrap_mean(large_v, list(range(1000)))
    for r, v in ((small, small_v), (large, large_v)):
        assert r["ci"][0] < r["estimate"] < r["ci"][1] and r["estimate"] == pytest.approx(v.mean())
    assert (large["ci"][1] - large["ci"][0]) < 0.4 * (small["ci"][1] - small["ci"][0])  # ~ 1/sqrt(25)
    assert small["n"] == 40 and small["n_groups"] == 40


def test_bootstrap_mean_resamples_groups_and_leaves_out_missing_values():
    values = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    by_case = bootstrap_mean(values, list(range(6)))
    by_group = bootstrap_mean(values, ["a", "a", "a", "b", "b", "b"])
    # two groups of three identical cases: the replicate mean is 0, 0.5 or 1, so the interval is wider
    assert by_group["ci"] == [0.0, 1.0] and by_group["n_groups"] == 2
    assert by_case["ci"][1] - by_case["ci"][0] < 1.0
    gaps = bootstrap_mean([0.5, None, float("nan"), 0.5], [1, 2, 3, 4])
    assert gaps["estimate"] == 0.5 and gaps["ci"] == [0.5, 0.5] and gaps["n"] == 2
    assert bootstrap_mean([None, None], [1, 2])["estimate"] is None


def test_a_heatmap_equal_to_the_mask_scores_one_with_a_collapsed_interval():
    rows = []
    for i, (cy, cx) in enumerate([(10, 10), (12, 20), (20, 14), (16, 16), (8, 22)]):
        mask = _disc(cy=cy, cx=cx)
        cam = mask.astype(float)
        cam[cy, cx] += 0.5  # a unique maximum, inside the lesion
        centre = centre_baseline(mask.shape)
        rows.append({"group": f"L{i // 2}", "energy": energy_in_mask(mask.astype(float), mask),
                     "pointing": pointing_game(cam, mask), "area": float(mask.mean()),
                     "centre_energy": energy_in_mask(centre, mask), "centre_pointing": pointing_game(centre, mask)})
    s = summarise(rows)
    assert s["energy_in_lesion"] == pytest.approx(1.0) and s["energy_in_lesion_ci"] == pytest.approx([1.0, 1.0])
    assert s["pointing_game"] == 1.0 and s["pointing_game_ci"] == [1.0, 1.0]
    assert s["n_groups"] == 3
    lo, hi = s["energy_minus_centre"]["ci"]
    assert 0 < lo <= s["energy_minus_centre"]["estimate"] <= hi < 1  # the perfect map beats the blob, clearly


def test_localisation_table_and_card_carry_the_intervals(tmp_path):
    from training.localisation import card_block, chosen, table, verdict

    rng = np.random.default_rng(1)

    def layer(energy: float, n: int = 30) -> dict:
        rows = [{"case_id": f"c{i}", "group": f"g{i // 2}", "energy": float(np.clip(energy + rng.normal(0, 0.05), 0, 1)),
                 "pointing": bool(rng.random() < 0.5), "area": 0.2, "centre_energy": 0.4, "centre_pointing": True}
                for i in range(n)]
        return {**summarise(rows), "cases": rows}

    (tmp_path / "e.val.json").write_text(json.dumps({"entry": "e", "layers": {"dermoscopic@bn2": layer(0.3)}}))
    (tmp_path / "e.test.json").write_text(json.dumps({"entry": "e", "layers": {"dermoscopic@bn2": layer(0.6)}}))
    md = table(tmp_path)
    row = next(line for line in md.splitlines() if line.startswith("| `e`"))
    assert row.endswith("| yes |") and " [" in row  # 0.6 against a 0.4 blob: clearly better
    block = card_block(chosen(tmp_path)["e"])["localisation"]["dermoscopic"]["test"]
    lo, hi = block["energy_in_lesion_ci"]
    assert lo < block["energy_in_lesion"] < hi and block["n_groups"] == 15
    assert verdict({"estimate": -0.1, "ci": [-0.2, -0.05]}) == "no" and verdict({"estimate": 0.0, "ci": [-0.1, 0.1]}) == "tie"
    assert verdict(None) == "n/a"


def test_faithfulness_margins_are_paired_per_case_and_grouped():
    from training.faithfulness import card_block, fmt_ci, margins

    rows = [{"case_id": f"c{i}", "group": f"g{i % 4}", "deletion_auc": 0.3, "random_deletion_auc": 0.4,
             "insertion_auc": 0.6, "random_insertion_auc": 0.6 + (0.01 if i % 2 else -0.01)} for i in range(8)]
    m = margins({"cases": rows})
    assert m["deletion_margin"]["estimate"] == pytest.approx(0.1) and m["deletion_margin"]["ci"] == pytest.approx([0.1, 0.1])
    lo, hi = m["insertion_margin"]["ci"]
    assert lo < 0 < hi and m["n_groups"] == 4  # as often worse as better: the interval straddles 0
    assert fmt_ci(m["deletion_margin"], signed=True) == "+0.100 [+0.100, +0.100]"
    summary = {"n": 8, "deletion_auc": 0.3, "random_deletion_auc": 0.4, "insertion_auc": 0.6, "random_insertion_auc": 0.6,
               "beats_random_deletion": 1.0, "beats_random_insertion": 0.5, "full_probability": 0.9,
               "baseline_probability": 0.2}
    block = card_block({"test": {"method": {"steps": 16}, "images": {"clinical": {"layer": "bn2", "summary": summary,
                                                                                  "cases": rows}}}})
    assert block["clinical"]["test"]["deletion_margin"]["estimate"] == pytest.approx(0.1)
    # the card keeps 6 decimals, so a re-tabulation in another summation order rewrites nothing
    shuffled = margins({"cases": rows[::-1]})
    assert shuffled == m and all(v == round(v, 6) for v in [*m["insertion_margin"]["ci"], m["insertion_margin"]["estimate"]])


# -- constructed cards ---------------------------------------------------------------------------------------

def _loc(energy: float, centre: float = 0.45, ci: float = 0.03) -> dict:
    d = energy - centre
    return {"val": {}, "test": {"n": 273, "energy_in_lesion": energy, "energy_in_lesion_ci": [energy - ci, energy + ci],
                                "pointing_game": 0.5, "pointing_game_ci": [0.44, 0.56], "lesion_area": 0.22,
                                "centre_energy_in_lesion": centre, "centre_pointing_game": 1.0,
                                "energy_minus_centre": {"estimate": d, "ci": [d - ci, d + ci]}}}


def card(name: str, dataset: str = "synthderm", modalities=("dermoscopic", "metadata"), loc=None, faith=None,
         rel=None, bacc: float = 0.5) -> dict:
    c = {"name": name, "dataset": dataset, "modalities": list(modalities), "model": {"image_encoder": {"name": "x"}},
         "metrics": {"balanced_accuracy": bacc}, "intervals": {"test": {"balanced_accuracy": {"ci": [bacc - 0.05, bacc + 0.05]}}}}
    if loc is not None:
        c["explain"] = {"gradcam_layer": {"dermoscopic": "blocks.4"}, "localisation": {"dermoscopic": _loc(loc)}}
    if faith is not None:
        c["explain_faithfulness"] = {"dermoscopic": {"layer": "blocks.4", "test": {
            "n": 273, "deletion_auc": 0.4, "random_deletion_auc": 0.4 + faith, "insertion_auc": 0.6,
            "random_insertion_auc": 0.6 - faith, "deletion_margin": {"estimate": faith, "ci": [faith - 0.01, faith + 0.01]},
            "insertion_margin": {"estimate": faith, "ci": [faith - 0.01, faith + 0.01]}}}}
    if rel is not None:
        def ci(v: float) -> dict:
            return {"true_class": {"estimate": v, "ci": [v - 0.04, v + 0.04]}, "log_odds": {"estimate": v, "ci": None}}
        c["explain_relevance"] = {"cases_scored": 180, "methods": {"integrated_gradients": ci(rel),
                                                                   "feature_ablation": ci(rel - 0.05)},
                                  "random": ci(0.0), "ceiling": ci(0.92)}
    return c


CARDS = [card("a_on_lesion", loc=0.50, faith=0.02, rel=0.55, bacc=0.70),
         card("b_off_lesion", loc=0.30, faith=0.08, rel=0.65, bacc=0.90),
         card("c_unmeasured", bacc=0.95),
         card("d_middling", loc=0.44, faith=0.04, bacc=0.60)]


@pytest.mark.parametrize("key,order", [
    ("test balanced accuracy", ["c_unmeasured", "b_off_lesion", "a_on_lesion", "d_middling"]),
    ("Grad-CAM on the lesion", ["a_on_lesion", "d_middling", "b_off_lesion", "c_unmeasured"]),
    ("Grad-CAM faithfulness", ["b_off_lesion", "d_middling", "a_on_lesion", "c_unmeasured"]),
    ("relevance bars against the truth", ["b_off_lesion", "a_on_lesion", "c_unmeasured", "d_middling"]),
])
def test_ranking_by_explanation_quality_orders_constructed_cards(key, order):
    rows = quality.rank(CARDS, key)
    assert [r["entry"] for r in rows] == order
    measured = [r for r in rows if r["rank"] is not None]
    assert [r["rank"] for r in measured] == list(range(1, len(measured) + 1))
    for r in rows[len(measured):]:
        assert r["value"] is None and r["text"].startswith("not measured")


def test_ranking_says_why_an_entry_is_not_measured_and_the_compare_tab_shows_it():
    from skinui.ui import compare_tab

    ham = card("ham_entry", dataset="ham10000", bacc=0.6)
    meta = card("meta_only", dataset="ham10000", modalities=("metadata",))
    rows = quality.rank([ham, meta], "Grad-CAM on the lesion")
    assert rows[0]["text"] == "not measured (no lesion masks)" and rows[1]["text"] == "not measured (the entry takes no image)"
    assert quality.rank([ham], "relevance bars against the truth")[0]["text"].startswith(
        "not measured (no known truth on HAM10000")

    class Cache:
        cards = [*CARDS, ham]

        def card(self, name):
            return next(c for c in self.cards if c["name"] == name)

    frame, sentence = compare_tab.ranking(Cache(), "synthderm", "Grad-CAM on the lesion")
    assert list(frame["entry"]) == ["a_on_lesion", "d_middling", "b_off_lesion", "c_unmeasured"]
    assert list(frame["rank"]) == [1, 2, 3, "–"] and frame["measure (95% CI)"].iloc[-1] == "not measured (not run for this entry yet)"
    assert frame["measure (95% CI)"].iloc[0] == "dermoscopic +5 points [+2, +8]"
    assert "3 of 4 entries measured" in sentence
    assert list(compare_tab.ranking(Cache(), "synthderm", "bogus")[0]["entry"])[0] == "c_unmeasured"  # falls back to accuracy


def test_gradcam_tab_shows_the_measured_numbers_or_says_plainly_there_are_none():
    from skinui.ui import gradcam_tab

    cam = {"dermoscopic": np.random.default_rng(0).random((8, 8)).astype(np.float32)}
    text = gradcam_tab.caption("b_off_lesion", "MEL", cam, CARDS[1])
    assert "| weight on the lesion (an even map · a blob in the middle) | 30% [27–33%] (22% · 45%) |" in text
    assert "| map − blob | -15 points [-18, -12] |" in text and "| maximum on the lesion (blob) | 50% [44–56%] (100%) |" in text
    assert "| better than random maps: deletion · insertion | +0.080 [+0.070, +0.090] · +0.080 [+0.070, +0.090] |" in text
    sentence = text.rsplit("\n", 1)[1]  # one sentence on what the numbers mean
    assert sentence.count(". ") == 0 and sentence.startswith("The dermoscopic maps (layer blocks.4")
    assert "less than a blob in the middle" in sentence and "do point at what the model uses" in sentence
    tie = gradcam_tab.localisation_sentence(card("t", loc=0.46), "dermoscopic")
    assert "about as much as a blob" in tie  # the interval of the difference contains 0
    ham = card("ham_entry", dataset="ham10000")
    plain = gradcam_tab.caption("ham_entry", "mel", cam, ham)
    assert "not measured for this entry: HAM10000 has no lesion masks" in plain and "|" not in plain
    unrun = gradcam_tab.localisation_sentence(card("u"), "dermoscopic")
    assert "not measured for this entry: that measurement has not been run" in unrun
    # faithfulness measured without localisation (HAM10000): one row says the lesion part is missing
    faith_only = gradcam_tab.caption("h", "mel", cam, card("h", dataset="ham10000", faith=0.03))
    assert "| on the lesion | not measured (no lesion masks) |" in faith_only and "+0.030 [+0.020, +0.040]" in faith_only
    assert "map − blob" not in faith_only and "find the lesion is not measured for this entry" in faith_only
    # two images with the same verdicts share the sentence
    both = card("two", loc=0.30, modalities=("dermoscopic", "clinical", "metadata"))
    both["explain"]["localisation"]["clinical"] = both["explain"]["localisation"]["dermoscopic"]
    both["explain"]["gradcam_layer"]["clinical"] = "blocks.4"
    assert gradcam_tab.meaning(both, ["dermoscopic", "clinical"]).startswith("The dermoscopic and clinical maps")


def test_relevance_tab_quotes_the_measured_quality_of_the_method_shown():
    from skinui.ui import relevance_tab

    ig = relevance_tab.shown_methods("Integrated Gradients")
    assert ig == ["integrated_gradients"]
    one = quality.relevance_sentence(CARDS[0], ig)
    assert "Integrated Gradients ρ 0.55 [0.51, 0.59]" in one and "Feature ablation" not in one
    assert "random bars 0.00" in one and "180 SynthDerm test cases" in one
    both = quality.relevance_sentence(CARDS[0], relevance_tab.shown_methods(relevance_tab.BOTH))
    assert "Feature ablation (grouped) ρ 0.50" in both
    ham = quality.relevance_sentence(card("h", dataset="pad-ufes-20"), ig)
    assert ham.startswith("How well these bars rank the fields cannot be measured on PAD-UFES-20")
    assert "not measured" in quality.relevance_sentence(card("s"), ig)
    assert quality.relevance_sentence(card("img", modalities=("dermoscopic",)), ig) == ""


# -- reports -------------------------------------------------------------------------------------------------

def test_report_section_states_what_is_measured_and_what_is_not(tmp_path):
    from training.explain_report import measured_blocks, refresh, section

    ham = section(card("ham_entry", dataset="ham10000"))
    assert ham["gradcam_localisation"] == "not measured (no lesion masks)"
    assert ham["gradcam_faithfulness"] == "not measured (not run for this entry yet)"
    assert ham["relevance_truth"].startswith("not measured (no known truth on HAM10000")
    assert "branch_weights_truth" not in ham and ham["commands"] == {}
    full = section(CARDS[0])
    assert full["gradcam_localisation"]["dermoscopic"]["energy_minus_centre"]["ci"] == pytest.approx([0.02, 0.08])
    assert full["relevance_truth"]["methods"]["integrated_gradients"]["true_class"]["estimate"] == 0.55
    assert set(full["commands"]) == {"gradcam_localisation", "gradcam_faithfulness", "relevance_truth"}
    # the measurement files win over the card: they hold the per-case values, hence the intervals
    rows = [{"case_id": f"c{i}", "group": f"g{i}", "energy": 0.1, "pointing": False, "area": 0.2,
             "centre_energy": 0.4, "centre_pointing": True} for i in range(5)]
    layer = {**summarise(rows), "cases": rows}
    for split in ("val", "test"):
        (tmp_path / f"a_on_lesion.{split}.json").write_text(json.dumps({"entry": "a_on_lesion", "layers": {
            "dermoscopic@bn2": layer}}))
    from_files = section(CARDS[0], measured_blocks(tmp_path).get("a_on_lesion"))
    loc = from_files["gradcam_localisation"]["dermoscopic"]
    assert loc["energy_in_lesion"] == pytest.approx(0.1) and loc["layer"] == "bn2"
    assert loc["energy_minus_centre"]["ci"] == pytest.approx([-0.3, -0.3])
    # refresh an earlier report: json gains the section, html gains it once (and replaces it next time)
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"entry": "ham_entry"}))
    (folder / "report.html").write_text("<html><body><h1>x</h1></body></html>")
    assert refresh(folder, ham) and refresh(folder, ham)
    assert json.loads((folder / "report.json").read_text())["explanations"] == ham
    page = (folder / "report.html").read_text()
    assert page.count("Explanations, measured") == 1 and "Grad-CAM on the lesion: not measured (no lesion masks)" in page
    assert not refresh(tmp_path / "none", ham)


def test_a_map_that_beats_random_on_one_curve_only_is_called_partly_faithful():
    half = card("h", dataset="ham10000", faith=0.03)
    half["explain_faithfulness"]["dermoscopic"]["test"]["deletion_margin"] = {"estimate": 0.012, "ci": [-0.002, 0.024]}
    clause = quality.faithfulness_clause(half, "dermoscopic")
    assert clause.startswith("restoring what they highlight") and "removing it is not clearly faster" in clause
    assert "point only partly" in clause
    worse = card("w", faith=-0.03)
    assert "worse than random" in quality.faithfulness_clause(worse, "dermoscopic")
    assert quality.faithfulness_clause(card("n"), "dermoscopic") == ""


def test_localisation_measure_keeps_one_row_per_case_with_its_lesion(tmp_path):
    from skinui.cases import Case
    from skinui.demo import make_demo_entry
    from skinui.zoo import load_entry
    from training.localisation import measure

    make_demo_entry(tmp_path, "tri", image_size=32)
    entry = load_entry("tri", tmp_path)
    rng = np.random.default_rng(0)
    mask = (_disc(size=40, cy=20, cx=20, r=10) * 255).astype(np.uint8)
    cases = [Case(f"c{i}", dermoscopic=rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), mask=mask,
                  lesion_id=f"L{i // 2}", metadata={"age": 50, "sex": "male", "site": "back"}) for i in range(4)]
    out = measure(entry, cases, ["blocks.4"])["dermoscopic@blocks.4"]
    assert [(r["case_id"], r["group"]) for r in out["cases"]] == [("c0", "L0"), ("c1", "L0"), ("c2", "L1"), ("c3", "L1")]
    assert out["n"] == 4 and out["n_groups"] == 2 and len(out["energy_in_lesion_ci"]) == 2 and out["flat_maps"] < 4
    assert out["energy_minus_centre"]["estimate"] == pytest.approx(
        np.mean([r["energy"] - r["centre_energy"] for r in out["cases"] if r["energy"] is not None]), abs=1e-3)
