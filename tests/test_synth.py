"""SynthDerm: determinism, layout, the designed evidence split, shortcuts, the adapter and the CLI.

Everything runs on tiny images (64 px) so the file stays well under a minute on two cores.
"""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from skinui.datasets import get_adapter, load_dataset, schema_for
from skinui.synth import Shortcut, design, generate
from skinui.synth.generate import Planned, render
from skinui.synth.metadata import FITZPATRICK, GROWTH, SEXES, SITES
from skinui.synth.writer import CSV_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """320 cases: enough held-out cases for the modality-ordering check."""
    return generate(320, 0, tmp_path_factory.mktemp("synth") / "bench", size=SIZE)


# -- determinism and layout ------------------------------------------------------------------------

def test_same_seed_same_bytes_any_workers_and_prefix(tmp_path, bench):
    a = digest(generate(24, 7, tmp_path / "a", size=SIZE))
    b = digest(generate(24, 7, tmp_path / "b", size=SIZE, workers=2))
    assert a == b
    c = digest(generate(24, 8, tmp_path / "c", size=SIZE))
    assert c["dermoscopic/SD000000.png"] != a["dermoscopic/SD000000.png"]
    # --n 12 is the first 12 cases of --n 24
    d = digest(generate(12, 7, tmp_path / "d", size=SIZE))
    assert all(a[k] == v for k, v in d.items() if k.endswith(".png"))


def test_layout_and_files(bench):
    for folder in ("dermoscopic", "clinical", "masks", "masks_clinical"):
        assert len(list((bench / folder).glob("*.png"))) == 320
    with open(bench / "metadata.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS and len(rows) == 320
    assert {r["label"] for r in rows} == set(design.CLASSES)
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for r in rows[:40]:
        assert r["sex"] in (*SEXES, "") and r["site"] in (*SITES, "") and r["growth"] in (*GROWTH, "")
        assert r["fitzpatrick"] in (*FITZPATRICK, "") and r["bleeding"] in ("yes", "no", "")
    truth = [json.loads(line) for line in (bench / "ground_truth.jsonl").read_text().splitlines()]
    assert [t["case_id"] for t in truth] == [r["case_id"] for r in rows]
    t = truth[0]
    assert set(t["codes"]) == set(design.MODALITIES) and (bench / t["mask"]).is_file()
    assert t["codes"]["dermoscopic"] == design.CODES[t["label"]][0]
    mask = cv2.imread(str(bench / t["mask"]), cv2.IMREAD_UNCHANGED)
    img = cv2.imread(str(bench / "dermoscopic" / f"{t['case_id']}.png"))
    assert mask.shape == img.shape[:2] == (SIZE, SIZE) and set(np.unique(mask)) <= {0, 255}
    assert 0.05 < (mask > 0).mean() < 0.95
    # the visits of a lesion share label and split
    by_lesion: dict[str, set] = {}
    for r in rows:
        by_lesion.setdefault(r["lesion_id"], set()).add((r["label"], r["split"]))
    assert all(len(v) == 1 for v in by_lesion.values()) and len(by_lesion) < 320
    assert "metadata.csv" in (bench / "README.txt").read_text()
    assert json.loads((bench / "manifest.json").read_text())["seed"] == 0


# -- the evidence split is built in, not hoped for ---------------------------------------------------

def test_ideal_ordering_and_single_modality_pairs():
    acc = {s: design.ideal_accuracy(s) for s in design.modality_subsets()}
    full = acc[design.MODALITIES]
    for s, a in acc.items():
        if len(s) == 2:
            assert full > a > max(acc[(m,)] for m in s)
    only = {design.separating_modalities(a, b) for a in design.CLASSES for b in design.CLASSES if a < b}
    assert {("dermoscopic",), ("clinical",), ("metadata",)} <= only
    assert design.separating_modalities("MEL", "NV") == ("dermoscopic",)
    assert design.separating_modalities("AKIEC", "SCCKA") == ("metadata",)


def test_bayes_ceilings_keep_the_ordering_with_overlapping_metadata_profiles():
    """Metadata read through its overlapping profiles lowers every subset that needs it, yet the
    Bayes classifier still orders trimodal > each bimodal > each single modality."""
    from skinui.synth.ceilings import bayes_accuracy

    bayes = bayes_accuracy(n=2400)["joint"]
    for s, v in bayes.items():
        ideal = design.ideal_accuracy(s)
        assert (v == pytest.approx(ideal)) if "metadata" not in s else (v < ideal - 0.01), (s, v)
    singles = [v for s, v in bayes.items() if len(s) == 1]
    pairs = [v for s, v in bayes.items() if len(s) == 2]
    assert bayes[design.MODALITIES] > max(pairs) and min(pairs) > max(singles), bayes


@pytest.mark.parametrize("a,b,same", [
    ("MEL", "NV", ("clinical", "metadata")),
    ("AKIEC", "BKL", ("dermoscopic", "metadata")),
    ("AKIEC", "SCCKA", ("dermoscopic", "clinical")),
])
def test_classes_sharing_a_code_render_identically(a, b, same):
    """Same lesion, two labels: modalities whose code is shared are byte-identical, the other differs."""
    ra, rb = (render(Planned(0, 5, 1, label, "val"), 3, SIZE) for label in (a, b))
    outputs = {"dermoscopic": lambda r: r.images["dermoscopic"].tobytes(),
               "clinical": lambda r: r.images["clinical"].tobytes(), "metadata": lambda r: r.metadata}
    for m, get in outputs.items():
        assert (get(ra) == get(rb)) == (m in same), m


def test_docs_table_matches_the_design():
    doc = (REPO / "docs" / "SYNTHDERM.md").read_text()
    assert design.pair_table() in doc and design.accuracy_table() in doc
    assert design.pair_table("interaction") in doc and design.accuracy_table("interaction") in doc


# -- the interaction variant: evidence that lives in a combination of modalities ------------------------

def test_interaction_pairs_are_separable_only_jointly():
    for a, b in [(a, b) for a in design.CLASSES for b in design.CLASSES if a < b]:
        assert design.joint_only(a, b) is None  # the independent design has no such pair
    assert design.joint_only("MEL", "NV", "interaction") == ("dermoscopic", "metadata")
    assert design.joint_only("AKIEC", "BKL", "interaction") == ("clinical", "metadata")
    v = design.VARIANTS.get("interaction")
    for m in design.MODALITIES:  # each modality alone: the two classes show the same code distribution
        for code in {t[design.MODALITIES.index(m)] for t in v.components["MEL"] + v.components["NV"]}:
            assert v.p_codes("MEL", (m,), (code,)) == v.p_codes("NV", (m,), (code,))
    # and no code triple is shared between classes: together the codes identify the class
    triples = [t for comps in v.components.values() for t in comps]
    assert len(triples) == len(set(triples))
    assert design.case_evidence("MEL", v.components["MEL"][0], "interaction") == {
        "dermoscopic": [], "clinical": [], "metadata": [], "joint": ["NV"]}


def test_fusion_ceilings_separate_additive_from_interacting_fusion():
    """Known answers: on an exclusive-or pair, a product of per-modality posteriors is at chance (1/2),
    the best additive rule gets three of the four cells (3/4) and an interacting rule all of them."""
    from skinui.synth.ceilings import additive_accuracy, bayes_accuracy

    full = design.MODALITIES
    for s in design.modality_subsets():  # independent design: the three ceilings coincide
        assert design.late_accuracy(s) == design.ideal_accuracy(s) == pytest.approx(additive_accuracy(s))
    assert design.late_accuracy(full, "interaction") == pytest.approx(1 - 2 * 2 * 0.5 / 8)
    assert additive_accuracy(full, "interaction") == pytest.approx(1 - 2 * 2 * 0.25 / 8)
    assert design.ideal_accuracy(full, "interaction") == 1.0
    bayes = bayes_accuracy(n=2400, variant="interaction")
    for s in design.modality_subsets():
        gap = bayes["joint"][s] - bayes["late"][s]
        # an interaction needs metadata together with the image that carries the other half
        assert (gap > 0.05) if ("metadata" in s and len(s) > 1) else gap == pytest.approx(0.0, abs=1e-9), (s, gap)


def test_interaction_lesion_shares_images_with_its_xor_partner(tmp_path):
    """Same lesion as MEL and as NV: both images byte-identical (same component index), metadata not."""
    ra, rb = (render(Planned(0, 5, 1, label, "val"), 3, SIZE, variant="interaction") for label in ("MEL", "NV"))
    assert ra.images["dermoscopic"].tobytes() == rb.images["dermoscopic"].tobytes()
    assert ra.images["clinical"].tobytes() == rb.images["clinical"].tobytes()
    assert ra.truth["codes"]["metadata"] != rb.truth["codes"]["metadata"]
    assert ra.truth["variant"] == "interaction" and "variant" not in render(Planned(0, 5, 1, "MEL", "val"), 3, SIZE).truth
    out = generate(96, 0, tmp_path / "x", size=32, variant="interaction")
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    seen = {(t["label"], tuple(t["codes"][m] for m in design.MODALITIES)) for t in truth}
    v = design.VARIANTS.get("interaction")
    assert all(codes in v.components[label] for label, codes in seen)
    assert {codes for label, codes in seen if label == "MEL"} == set(v.components["MEL"])  # both drawn
    assert json.loads((out / "manifest.json").read_text())["variant"] == "interaction"
    assert any("Design variant" in n for n in load_dataset("synthderm", out).notes)


# -- a per-modality classifier on cheap features shows the designed ordering -------------------------

def _image_features(img: np.ndarray) -> np.ndarray:
    """Coarse joint colour histogram, gradient-magnitude histogram, Laplacian energy, centre colour."""
    img = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
    q = (img // 64).astype(np.int64)
    hist = np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64) / q[..., 0].size
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    grad = np.histogram(mag, bins=8, range=(0, 400))[0] / mag.size
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    centre = img[16:48, 16:48].reshape(-1, 3).astype(np.float32) / 255
    return np.concatenate([np.sqrt(hist), grad, [np.abs(lap).mean() / 50, lap.var() / 1e4],
                           centre.mean(0), centre.std(0)])


def _metadata_features(m: dict) -> np.ndarray:
    f = [(m["age"] or 55) / 100.0, m["age"] is None, (m["diameter_mm"] or 6) / 10]
    for name, levels in (("sex", SEXES), ("site", SITES), ("growth", GROWTH), ("fitzpatrick", FITZPATRICK)):
        f += [m[name] == level for level in levels]
    f += [m["bleeding"] is True, m["bleeding"] is None, m["itch"] is True]
    return np.asarray(f, dtype=np.float64)


def test_feature_classifier_shows_designed_modality_ordering(bench):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cases = load_dataset("synthderm", bench).cases
    X = {"dermoscopic": np.array([_image_features(c.image("dermoscopic")) for c in cases]),
         "clinical": np.array([_image_features(c.image("clinical")) for c in cases]),
         "metadata": np.array([_metadata_features(c.metadata) for c in cases])}
    y = np.array([c.label for c in cases])
    groups = [c.lesion_id for c in cases]  # held-out lesions: no visit of a test lesion is trained on
    score = {}
    for subset in design.modality_subsets():
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500, tol=1e-3))
        pred = cross_val_predict(clf, np.hstack([X[m] for m in subset]), y, groups=groups, cv=GroupKFold(5))
        score[subset] = balanced_accuracy_score(y, pred)
    full = score[design.MODALITIES]
    singles = {s: v for s, v in score.items() if len(s) == 1}
    assert all(full > v + 0.1 for v in singles.values()), score
    for s, v in score.items():
        if len(s) == 2:
            assert full > v and v > max(score[(m,)] for m in s) + 0.03, score


# -- shortcuts -------------------------------------------------------------------------------------

def test_shortcut_ties_artefact_to_class_in_training_split_only(tmp_path, bench):
    out = generate(80, 0, tmp_path / "sc", size=SIZE, shortcuts=(Shortcut.parse("pen:MEL", design.CLASSES),))
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    plain, shortcut = digest(bench), digest(out)
    for t in truth:
        has_pen = "pen" in t["artefacts"]["dermoscopic"]
        if t["split"] == "train":
            assert has_pen == (t["label"] == "MEL")
            assert t["shortcut"] == (["dermoscopic:pen"] if has_pen else [])
        else:  # val/test cases are exactly those of the run without a shortcut
            assert not t["shortcut"]
            name = f"dermoscopic/{t['case_id']}.png"
            assert shortcut[name] == plain[name]
    assert any(t["split"] == "train" and t["label"] == "MEL" for t in truth)
    notes = load_dataset("synthderm", out).notes
    assert any("pen:MEL:dermoscopic" in n for n in notes)


@pytest.mark.parametrize("text", ["pen", "glitter:MEL", "pen:XYZ", "bubbles:MEL:clinical"])
def test_bad_shortcut_is_a_sentence(text):
    with pytest.raises(ValueError, match=r"\.$"):
        Shortcut.parse(text, design.CLASSES)


# -- adapter ---------------------------------------------------------------------------------------

def test_adapter_reads_cases_and_counts_bad_rows(tmp_path, bench):
    root = tmp_path / "copy"
    shutil.copytree(bench, root)
    with open(root / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    (root / "dermoscopic" / f"{rows[0]['case_id']}.png").unlink()  # one image missing: case kept
    for m in ("dermoscopic", "clinical"):  # both images missing: case dropped
        (root / m / f"{rows[1]['case_id']}.png").unlink()
    (root / "clinical" / f"{rows[3]['case_id']}.png").write_bytes(b"not a png")
    rows[2]["label"] = "XYZ"
    rows[4]["age"] = "150"
    with open(root / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    result = load_dataset("synthderm", root, verify_images=True)
    assert len(result.cases) == 320 - 2
    assert result.dropped == {"no_image_modality": 1, "unknown_label": 1}
    assert result.repaired["missing_image"] == 1 and result.repaired["unreadable_image"] == 1
    assert result.repaired["repaired_age_out_of_range"] == 1
    by_id = {c.case_id: c for c in result.cases}
    first = by_id[rows[0]["case_id"]]
    assert first.dermoscopic is None and first.modalities() == ["clinical", "metadata"]
    assert by_id[rows[4]["case_id"]].metadata["age"] is None
    case = result.cases[5]
    assert case.image("clinical").shape == (SIZE, SIZE, 3) and case.mask is not None
    assert case.extra["truth"]["codes"]["clinical"] == design.CODES[case.label][1]
    assert set(case.metadata) == {f.name for f in schema_for("synthderm").fields}
    split = get_adapter("synthderm", root).official_split(result.cases)
    assert set(split) == {"train", "val", "test"}
    assert sum(len(v) for v in split.values()) == len(result.cases)
    lesions = {k: {result.cases[i].lesion_id for i in v} for k, v in split.items()}
    assert not (lesions["train"] & lesions["test"]) and not (lesions["train"] & lesions["val"])


# -- the command line ------------------------------------------------------------------------------

def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_then_summary(tmp_path):
    out = tmp_path / "cli"
    done = _run("-m", "skinui.synth", "--n", "200", "--seed", "0", "--size", str(SIZE), "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = _run("-m", "skinui.data", "summary", "--dataset", "synthderm", "--root", str(out))
    assert summary.returncode == 0, summary.stderr
    info = json.loads(summary.stdout)
    assert info["cases"] == 200 and info["skipped"] == 0
    assert info["modalities"] == ["dermoscopic", "clinical", "metadata"]
    assert set(info["classes"]) == set(design.CLASSES)
    bad = _run("-m", "skinui.synth", "--n", "5", "--out", str(tmp_path / "x"), "--shortcut", "pen:XYZ")
    assert bad.returncode == 2 and "Unknown class" in bad.stderr and "Traceback" not in bad.stderr


def test_pair_ceilings_with_metadata_profiles():
    from skinui.synth.ceilings import pair_accuracy

    assert pair_accuracy("MEL", "NV", n=400) == {"joint": 1.0, "late": 1.0}  # dermoscopy reads it outright
    xor = pair_accuracy("MEL", "NV", "interaction", n=1200)
    assert xor["late"] == pytest.approx(0.5) and 0.85 < xor["joint"] < 1.0  # profiles overlap: below 1
