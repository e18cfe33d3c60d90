"""Reading a card's intervals and paired comparisons into words and a figure (app, RESULTS)."""
from __future__ import annotations

import plotly.graph_objects as go

from skinui import evidence, plots


def _diff(est: float, lo: float, hi: float) -> dict:
    block = {"estimate": est, "ci": [lo, hi], "excludes_zero": not lo <= 0 <= hi, "p_a_better": 0.5}
    return {"balanced_accuracy": block, "macro_auc": block}


def _card(name: str, val: float, test: float, ci: tuple[float, float], vs_best: dict | None = None,
          leaky: bool = False) -> dict:
    return {"name": name, "leaky": leaky, "metrics": {"balanced_accuracy": test, "macro": {"auc": 0.9}},
            "metrics_val": {"balanced_accuracy": val, "macro": {"auc": 0.9}},
            "intervals": {"test": {"balanced_accuracy": {"estimate": test, "ci": list(ci)},
                                   "macro_auc": {"estimate": 0.9, "ci": [0.85, 0.95]}}},
            "comparisons": {"vs_best": vs_best} if vs_best else {}}


CARDS = [
    _card("a", 0.70, 0.66, (0.60, 0.72)),
    _card("b", 0.65, 0.68, (0.62, 0.74), vs_best={"a": _diff(0.02, -0.03, 0.07)}),
    _card("c", 0.50, 0.45, (0.38, 0.52), vs_best={"a": _diff(-0.21, -0.30, -0.12)}),
    _card("leak", 0.99, 0.95, (0.90, 0.99), vs_best={"a": _diff(0.29, 0.20, 0.38)}, leaky=True),
]


def test_best_is_chosen_on_validation_not_test_and_never_leaky():
    assert evidence.best_on_validation(CARDS) == "a"  # b has the higher *test* score; leak the higher val
    assert evidence.best_on_validation([c for c in CARDS if c["leaky"]]) is None


def test_interval_text_and_paired_verdicts():
    assert evidence.with_interval(CARDS[0]) == "0.660 (0.600–0.720)"
    assert evidence.with_interval({"metrics": {"balanced_accuracy": 0.5}}) == "0.500"
    assert evidence.versus_text(CARDS[1], "a").endswith("indistinguishable")
    assert evidence.versus_text(CARDS[2], "a").endswith("worse")
    assert evidence.versus_text(CARDS[3], "a").endswith("better")
    assert evidence.versus_text(CARDS[0], "a") == "best on validation"


def test_sentence_names_the_entries_that_cannot_be_told_apart():
    text = evidence.indistinguishable_sentence(CARDS)
    assert "Best on validation: **a**" in text
    assert "1 entry is indistinguishable from it (b)" in text and "(c, leak)" in text


def test_interval_rows_feed_an_error_bar_figure():
    rows = evidence.interval_rows(CARDS)
    assert [r["label"] for r in rows] == ["leak (leaky)", "b", "a", "c"]  # by test estimate
    assert [r["highlight"] for r in rows] == [False, False, True, False]
    fig = plots.interval_figure(rows)
    assert isinstance(fig, go.Figure)
    err = fig.data[0].error_x
    assert list(err.array) == [r["hi"] - r["estimate"] for r in rows]
    assert list(err.arrayminus) == [r["estimate"] - r["lo"] for r in rows]


def _anchor_card(complete: tuple[float, float, float], all_cases: tuple[float, float, float]) -> dict:
    return {"name": "x", "anchor": {"fields": ["age", "region"],
                                    "test_complete": {**_diff(*complete), "n_cases": 39},
                                    "test": {**_diff(*all_cases), "n_cases": 71}}}


def test_anchor_line_says_plainly_when_the_entry_has_not_beaten_the_baseline():
    text = evidence.anchor_words(_anchor_card((0.03, -0.18, 0.16), (-0.01, -0.15, 0.10)))
    assert "logistic regression on age, region" in text and "39 held-out complete cases" in text
    assert "+0.030 [-0.180, +0.160] (indistinguishable)" in text
    assert text.endswith("It has not shown that it decides better than that baseline.")


def test_anchor_line_names_where_the_entry_beats_or_loses_to_the_baseline():
    text = evidence.anchor_words(_anchor_card((0.02, -0.01, 0.10), (0.05, 0.01, 0.10)))
    assert text.endswith("It decides better than that baseline on all 71 held-out cases.")
    worse = evidence.anchor_words(_anchor_card((-0.14, -0.30, -0.02), (-0.10, -0.25, 0.04)))
    assert "(worse)" in worse and "has not shown" in worse


def test_no_anchor_block_no_line():
    assert evidence.anchor_words({"name": "x"}) == ""


def test_anchor_cell_prefers_complete_cases_and_says_the_verdict():
    card = _anchor_card((0.03, -0.18, 0.16), (0.05, 0.01, 0.10))
    assert evidence.anchor_cell(card) == "+0.030 (-0.180 to +0.160): indistinguishable, 39 complete cases"
    del card["anchor"]["test_complete"]
    assert evidence.anchor_cell(card) == "+0.050 (+0.010 to +0.100): better, 71 test cases"
    assert evidence.anchor_cell({"name": "x"}) == ""
