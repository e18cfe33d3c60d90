"""The logistic-regression anchor paired against the entries (training.anchor) and its RESULTS table."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from skinui.stats import paired_difference
from training import anchor as anc
from training.results import anchor_table


def _part(n: int = 60, k: int = 3, seed: int = 0, complete_every: int | None = 2) -> anc.AnchorPart:
    """An anchor on n cases (two per group) that is right about half the time; every other case complete."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    complete = None if complete_every is None else np.arange(n) % complete_every == 0
    return anc.AnchorPart([f"c{i}" for i in range(n)], [f"g{i // 2}" for i in range(n)], labels, probs, complete)


def test_pairing_refuses_a_case_list_that_is_not_the_anchors():
    a = _part()
    scores = (a.probs, None)
    other = [*a.case_ids[:-1], "elsewhere"]
    with pytest.raises(anc.AnchorError, match="cannot be paired") as err:
        anc.paired_with_anchor("e", "test", other, a.labels, a.groups, scores, a)
    assert "elsewhere is only the entry's" in str(err.value) and "c59 is only the anchor's" in str(err.value)
    with pytest.raises(anc.AnchorError, match="another order"):  # same cases, shuffled: replicates not shared
        anc.paired_with_anchor("e", "test", a.case_ids[::-1], a.labels, a.groups, scores, a)
    with pytest.raises(anc.AnchorError, match="labels or groups differ"):
        anc.paired_with_anchor("e", "test", a.case_ids, (a.labels + 1) % 3, a.groups, scores, a)
    with pytest.raises(anc.AnchorError, match="cannot be paired"):  # one case fewer
        anc.paired_with_anchor("e", "val", a.case_ids[:-1], a.labels[:-1], a.groups[:-1], scores, a)


def test_an_entry_identical_to_the_anchor_differs_by_zero_and_a_better_one_by_its_margin():
    a = _part()
    same = anc.paired_with_anchor("same", "test", a.case_ids, a.labels, a.groups, (a.probs, a.probs.argmax(1)), a,
                                  n_boot=300)
    assert set(same) == {"test", "test_complete"}
    assert same["test_complete"]["n_cases"] == int(a.complete.sum()) == 30
    for key in same:
        for metric in ("balanced_accuracy", "macro_auc"):
            d = same[key][metric]
            assert d["estimate"] == 0.0 and d["ci"][0] <= 0.0 <= d["ci"][1] and not d["excludes_zero"]
    perfect = np.eye(3)[a.labels] * 0.9 + 0.1 / 3  # right on every case
    better = anc.paired_with_anchor("better", "test", a.case_ids, a.labels, a.groups, (perfect, None), a, n_boot=300)
    own = paired_difference(a.labels, a.groups, (perfect, None), (a.probs, None), n_boot=1)  # anchor's shortfall
    b = better["test"]["balanced_accuracy"]
    assert b["estimate"] == pytest.approx(own["balanced_accuracy"]["estimate"]) and b["estimate"] > 0.3
    assert b["excludes_zero"] and b["ci"][0] > 0
    keep = a.complete
    sub = paired_difference(a.labels[keep], [g for g, k in zip(a.groups, keep) if k], (perfect[keep], None),
                            (a.probs[keep], None), n_boot=1)
    assert better["test_complete"]["balanced_accuracy"]["estimate"] == pytest.approx(sub["balanced_accuracy"]["estimate"])
    worse = anc.paired_with_anchor("worse", "test", a.case_ids, a.labels, a.groups,
                                   (np.roll(perfect, 1, axis=1), None), a, n_boot=300)  # wrong on every case
    assert worse["test"]["balanced_accuracy"]["estimate"] < -0.2 and worse["test"]["balanced_accuracy"]["ci"][1] < 0
    no_block = _part(complete_every=None)
    assert set(anc.paired_with_anchor("e", "val", no_block.case_ids, no_block.labels, no_block.groups,
                                      (no_block.probs, None), no_block, n_boot=50)) == {"val"}


def test_rows_round_trip():
    a = _part(n=8)
    b = anc.AnchorPart.from_rows(json.loads(json.dumps(a.rows())))
    assert b.case_ids == a.case_ids and b.groups == a.groups and np.array_equal(b.labels, a.labels)
    assert np.array_equal(b.probs, a.probs) and np.array_equal(b.complete, a.complete)


@pytest.fixture
def tiny_ham(tmp_path):
    """A tiny HAM10000 folder on which the site decides the diagnosis (as in test_comparisons)."""
    from fixtures.official_layouts import make_ham10000, write_csv

    rows = make_ham10000(tmp_path, n=120)
    for i, r in enumerate(rows):
        r["localization"] = ("back", "face")[(i // 2) % 2]
        r["dx"] = {"back": "nv", "face": "mel"}[r["localization"]]
    write_csv(tmp_path / "HAM10000_metadata.csv", list(rows[0]), [list(r.values()) for r in rows])
    return tmp_path


def _fake_zoo(monkeypatch, parts, shift: dict[str, int]):
    """Three 'shipped' entries: two read metadata and score exactly as the anchor does; `shift` rotates one's split."""
    cards = [{"name": "meta", "dataset": "ham10000", "modalities": ["metadata"]},
             {"name": "fused", "dataset": "ham10000", "modalities": ["dermoscopic", "metadata"], "leaky": False},
             {"name": "image", "dataset": "ham10000", "modalities": ["dermoscopic"]},
             {"name": "elsewhere", "dataset": "pad-ufes-20", "modalities": ["metadata"]}]
    scored: list[str] = []

    def shipped_scores(entry, dataset, root, split, cache=None):
        scored.append(entry.name)
        p = parts[split]
        r = shift.get(entry.name, 0)
        cases = [SimpleNamespace(case_id=c) for c in np.roll(p.case_ids, r)]
        return cases, np.roll(p.labels, r), list(np.roll(p.groups, r)), (np.roll(p.probs, r, axis=0), None)

    monkeypatch.setattr("skinui.zoo.list_entries", lambda folder=None: cards)
    monkeypatch.setattr("skinui.zoo.load_entry", lambda name, folder=None: SimpleNamespace(name=name))
    monkeypatch.setattr("training.evaluate.shipped_scores", shipped_scores)
    return scored


def test_pair_entries_pairs_only_the_datasets_entries_that_read_metadata(tiny_ham, monkeypatch):
    _, parts = anc.fit_anchor("ham10000", tiny_ham)
    scored = _fake_zoo(monkeypatch, parts, {})
    pairs = anc.pair_entries("ham10000", tiny_ham, parts, n_boot=100)
    assert sorted(pairs) == ["fused", "meta"] and set(scored) == {"fused", "meta"}
    for p in pairs.values():
        assert set(p) == {"modalities", "leaky", "val", "test"}  # HAM10000 declares no block: no complete cases
        assert p["test"]["balanced_accuracy"]["estimate"] == 0.0 and p["test"]["n_cases"] == len(parts["test"].case_ids)


def test_the_command_refuses_an_entry_on_another_split_with_a_sentence(tiny_ham, monkeypatch, capsys, tmp_path):
    _, parts = anc.fit_anchor("ham10000", tiny_ham)
    _fake_zoo(monkeypatch, parts, {"fused": 1})
    out = tmp_path / "anchor.json"
    rc = anc.main(["--dataset", "ham10000", "--data-root", str(tiny_ham), "--out", str(out), "--pair-entries"])
    assert rc == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "fused's val split is not the anchor's" in err and "Traceback" not in err
    _fake_zoo(monkeypatch, parts, {})
    assert anc.main(["--dataset", "ham10000", "--data-root", str(tiny_ham), "--out", str(out), "--pair-entries"]) == 0
    written = json.loads(out.read_text())
    assert sorted(written["pairs"]["entries"]) == ["fused", "meta"] and written["command"].endswith("--pair-entries")
    assert [r["case_id"] for r in written["per_case"]["test"]] == parts["test"].case_ids


def test_update_cards_writes_the_test_pairs_into_the_paired_entries_cards_only(tiny_ham, monkeypatch, tmp_path):
    _, parts = anc.fit_anchor("ham10000", tiny_ham)
    _fake_zoo(monkeypatch, parts, {})
    zoo = tmp_path / "w"
    zoo.mkdir()
    # a stale block on an entry the anchor no longer pairs (image-only) must go
    monkeypatch.setattr("skinui.zoo.list_entries", lambda folder=None: [
        {"name": "meta", "dataset": "ham10000", "modalities": ["metadata"]},
        {"name": "fused", "dataset": "ham10000", "modalities": ["dermoscopic", "metadata"]},
        {"name": "image", "dataset": "ham10000", "modalities": ["dermoscopic"], "anchor": {"stale": True}}])
    out = tmp_path / "anchor.json"
    assert anc.main(["--dataset", "ham10000", "--data-root", str(tiny_ham), "--out", str(out), "--pair-entries",
                     "--weights-dir", str(zoo), "--update-cards"]) == 0
    written = json.loads(out.read_text())
    for name in ("meta", "fused"):
        block = json.loads((zoo / f"{name}.json").read_text())["anchor"]
        assert block["test"]["balanced_accuracy"] == written["pairs"]["entries"][name]["test"]["balanced_accuracy"]
        assert "val" not in block and "test_complete" not in block  # HAM10000 has no collection block
        assert block["fields"] == written["fields"] and block["command"].endswith("--update-cards")
    assert "anchor" not in json.loads((zoo / "image.json").read_text())


def test_update_cards_needs_the_pairs(tiny_ham, tmp_path):
    with pytest.raises(SystemExit):
        anc.main(["--dataset", "ham10000", "--data-root", str(tiny_ham), "--out", str(tmp_path / "a.json"),
                  "--update-cards"])


def _d(estimate: float, lo: float, hi: float) -> dict:
    return {"estimate": estimate, "ci": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0)}


def _pair(*cells: tuple[float, float, float]) -> dict:
    return {"balanced_accuracy": _d(*cells[0]), "macro_auc": _d(*cells[1]), "n_cases": 39}


def test_results_table_marks_only_intervals_that_contain_zero(tmp_path):
    above, across, below, edge = (0.1, 0.01, 0.2), (0.05, -0.1, 0.2), (-0.1, -0.2, -0.01), (0.04, 0.0, 0.1)
    entries = {"a_above": {"leaky": False, "test_complete": _pair(above, edge), "test": _pair(below, across),
                           "val_complete": _pair(across, above)},
               "b_leaky": {"leaky": True, "test_complete": _pair(across, below), "test": _pair(above, above),
                           "val_complete": _pair(below, below)}}
    (tmp_path / "anchor-pad-ufes-20.json").write_text(json.dumps({"pairs": {"entries": entries}}))
    rows = anchor_table("pad-ufes-20", tmp_path).splitlines()
    assert rows[0].startswith("| entry | complete test cases (39): Δ bal. acc. | Δ macro AUC | all test cases (39)")
    cells = {r.split(" | ")[0]: [c.strip() for c in r.strip("| ").split(" | ")[1:]] for r in rows[2:]}
    assert cells["| `a_above`"] == ["+0.100 [+0.010, +0.200]", "+0.040 [+0.000, +0.100] ≈",
                                    "-0.100 [-0.200, -0.010]", "+0.050 [-0.100, +0.200] ≈", "+0.050 [-0.100, +0.200] ≈"]
    assert cells["| `b_leaky` (**leaky**)"] == ["+0.050 [-0.100, +0.200] ≈", "-0.100 [-0.200, -0.010]",
                                                "+0.100 [+0.010, +0.200]", "+0.100 [+0.010, +0.200]",
                                                "-0.100 [-0.200, -0.010]"]
    assert anchor_table("ham10000", tmp_path) == ""  # no anchor file: no table
    (tmp_path / "anchor-ham10000.json").write_text(json.dumps({"model": "lr"}))
    assert anchor_table("ham10000", tmp_path) == ""  # an anchor without pairs: no table


def test_shipped_cards_carry_the_anchor_pairs_of_the_shipped_report():
    """The app's About line, RESULTS and the report read the same numbers: each shipped entry the report pairs
    carries exactly its block, and no other card carries one."""
    from skinui.zoo import REPO, list_entries

    reports = sorted((REPO / "docs" / "reports").glob("anchor-*.json"))
    assert reports, "the PAD-UFES-20 anchor report ships in docs/reports"
    blocks = {}
    for path in reports:
        blocks.update(anc.card_blocks(json.loads(path.read_text())))
    cards = {c["name"]: c for c in list_entries()}
    assert set(blocks) <= set(cards)
    for name, card in cards.items():
        assert card.get("anchor") == blocks.get(name), name
