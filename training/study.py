"""`python -m training.study`: tune, train and score a study's configs over grouped folds; write tables.

A *study* names its configs and how they form tables (a fusion ladder, an ablation, a modality
subset sweep). Every run is the ordinary `training.loop.fit` of one config on one fold of the
grouped k-fold split (`split.method: kfold`, fold k, training seed k) with the zoo export into
the run dir, so each run is a real entry scored exactly as `python -m training evaluate` scores
it (ISIC metrics on the held-out fold's lesions, prevalence-adjusted decision as in every card).

Nested selection. The training recipe (lr, batch, epochs, width, class weighting) is chosen
*inside each fold*: `tune` trains the study's full model (`tune_entry`) with every candidate of
the study's `grid` on fold k's training lesions and scores it on fold k's validation lesions only
(best validation macro AUC, `summary.json: best_value`); fold k's recipe is the cheapest candidate
within `TIE_TOLERANCE` of the best (cost = epochs x stored parameters; then higher score, then grid
order). `run` trains every entry of fold k with fold k's recipe and scores fold k's test lesions
once. The choices go to `<docs>/tuning.json`; per-fold test metrics to `<docs>/folds.csv` (plus
`alpha.csv`, `ablation.csv`, and `lr_anchor.csv` from `lr`); `table` computes every mean from
those committed files only, so anyone can check them without the runs.

    python -m training.study tune  --study milk10k-concepts [--folds 5] [--grid NAME ...]
    python -m training.study run   --study milk10k-concepts [--folds 5] [--only NAME ...]
    python -m training.study lr    --study milk10k-concepts [--folds 5]
    python -m training.study table --study milk10k-concepts [--results docs/RESULTS.md]
    python -m training.study ship  --study milk10k-concepts [--weights-dir weights]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinui.registry import Registry
from training import markdown

REPO = Path(__file__).resolve().parents[1]
METRIC_COLUMNS = (("auc", "AUC"), ("auc_sens_80", "AUC>80%sens"), ("ap", "AP"), ("accuracy", "Acc"),
                  ("sensitivity", "Sens"), ("specificity", "Spec"), ("dice", "Dice"), ("ppv", "PPV"), ("npv", "NPV"))
DECISION = "prevalence_adjusted"  # the shipped cards' rule: argmax p_k / pi_k^tau, tau fitted on validation
TIE_TOLERANCE = 0.005  # validation macro AUC: candidates this close to a fold's best count as tied
TIE_RULE = (f"the cheapest candidate whose validation macro AUC is within {TIE_TOLERANCE} of the fold's best "
            "(cost = epochs x stored parameters, the multiply-adds spent on the same training lesions); "
            "among equally cheap ones the higher validation macro AUC, then the earlier in the grid")


@dataclass(frozen=True)
class Recipe:
    """One candidate training recipe: config overrides applied on top of every entry's config."""

    name: str
    sets: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    """Configs (entry name -> YAML file) grouped into tables of (row label, entry name)."""

    dataset: str
    data_root: str  # relative to the repository root
    config_dir: str
    tables: dict[str, list[tuple[str, str]]]
    subsets: list[tuple[str, str]]  # (subset label, entry) for the logistic-regression anchor
    ship: list[str]  # entries copied to weights/ (fold 0, seed 0)
    grid: list[Recipe] = field(default_factory=list)  # candidate recipes, tuned inside each fold
    docs: str = ""  # committed per-fold results (relative to the repository root)
    name: str = ""  # the key it is registered under

    @property
    def entries(self) -> list[str]:
        return list(dict.fromkeys(e for rows in self.tables.values() for _, e in rows))

    @property
    def tune_entry(self) -> str:
        """The full model every candidate recipe is tuned on (the last subset: all modalities)."""
        return self.subsets[-1][1]

    def config_path(self, entry: str) -> Path:
        return REPO / self.config_dir / f"{entry}.yaml"


def _recipe(name: str, lr: str, batch: int, epochs: int, *extra: str) -> Recipe:
    return Recipe(name, (f"train.optimizer.lr={lr}", f"train.batch_size={batch}", f"train.epochs={epochs}", *extra))


_WIDTH_128 = ("model.image_encoder.hidden=128", "model.image_encoder.out_dim=128", "model.meta_encoder.dims=[128]",
              "model.fusion.dim=128")
# The candidates of the first (fold-0-only) tuning, now tuned inside every fold. Each names every
# hyper-parameter it sets, so the base YAML's values never change what a name means.
MILK10K_GRID = [
    _recipe("lr1e-2_b64_e15", "1e-2", 64, 15),
    _recipe("lr3e-3_b64_e30", "3e-3", 64, 30),
    _recipe("lr1e-3_b64_e30", "1e-3", 64, 30),
    _recipe("lr3e-3_b64_e30_cw", "3e-3", 64, 30, "train.loss.class_weighted=true"),
    _recipe("lr3e-3_b128_e20", "3e-3", 128, 20),
    _recipe("lr3e-3_b128_e20_w128", "3e-3", 128, 20, *_WIDTH_128),
    _recipe("lr1e-2_b128_e20", "1e-2", 128, 20),
    _recipe("lr1e-2_b128_e20_w128", "1e-2", 128, 20, *_WIDTH_128),
]

STUDIES: Registry[Study] = Registry("study")
_P = "milk10k-concepts"
_SUBSETS = [(s, f"{_P}-jiadf-{s.lower().replace('+', '')}") for s in ("C", "D", "M", "C+D", "C+M", "D+M")]
_SUBSETS.append(("C+D+M", f"{_P}-jiadf"))
STUDIES.register(_P)(Study(
    dataset="milk10k",
    data_root="../shared/data/milk10k",
    config_dir="training/configs",
    tables={
        "Fusion ladder (JI-ADF paper Table 1 analogue)": [
            ("late concat", f"{_P}-late"), ("JF-concat", f"{_P}-jf-concat"), ("JF-MMFA", f"{_P}-jf-mmfa"),
            ("JI-MMFA (fixed average)", f"{_P}-ji-mmfa"), ("JI-ADF without auxiliary losses", f"{_P}-jiadf-noaux"),
            ("JI-ADF", f"{_P}-jiadf")],
        "MMFA ablation inside JI-ADF (Table 2 analogue)": [
            ("attention only", f"{_P}-jiadf-attn-only"), ("skip only", f"{_P}-jiadf-skip-only"),
            ("attention + skip", f"{_P}-jiadf")],
        "JI-ADF per modality subset (Table 3 analogue)": _SUBSETS,
    },
    subsets=_SUBSETS,
    ship=[f"{_P}-{s}" for s in ("late", "jf-concat", "jf-mmfa", "ji-mmfa", "jiadf-noaux", "jiadf")]
    + [e for _, e in _SUBSETS[:-1]],
    grid=MILK10K_GRID,
    docs="docs/milk10k",
    name=_P,
))


# -- running ---------------------------------------------------------------------------------------
def _cache_cases() -> None:
    """Parse the dataset once per process: every run of a study reads the same files."""
    from training.data import keep_cases_in_memory

    keep_cases_in_memory()


def fit_command(study: Study, entry: str, fold: int, sets: Sequence[str] = ()) -> str:
    """The plain `fit` command that trains exactly this run (the study only loops over it)."""
    cfg = study.config_path(entry).relative_to(REPO).as_posix()
    extra = "".join(f" --set {shlex.quote(s)}" for s in [f"split.fold={fold}", f"train.seed={fold}", *sets])
    return f"OMP_NUM_THREADS=1 python -m training fit --config {cfg} --device cpu{extra}"


def ids_sha256(ids: Sequence[str]) -> str:
    """SHA-256 of the sorted case ids: the cards' `test_sha256` of the same lesions."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def fold_parts(study: Study, fold: int, data_root: str | None = None, sets: Sequence[str] = ()) -> dict[str, list[str]]:
    """Fold k's case ids per part (train / val / test), as every run of fold k derives them."""
    import training.data as td
    from training.config import load_config

    cfg = load_config(study.config_path(study.tune_entry), ["split.method=kfold", f"split.fold={fold}", *sets])
    cases, _, _ = td.load_cases(cfg["dataset"], td.resolve_root(cfg["data_root"], data_root))
    split, _ = td.make_split(cfg["dataset"], cases, cfg["split"])
    return {part: [cases[i].case_id for i in idx] for part, idx in split.items()}


# -- nested tuning ---------------------------------------------------------------------------------
def tune_one(study: Study, recipe: Recipe, fold: int, out: Path, data_root: str | None = None,
             sets: Sequence[str] = ()) -> dict[str, Any]:
    """Train the full model with one candidate on fold k's training lesions; its fold-k validation score."""
    from safetensors.torch import load_file

    from training.config import load_config
    from training.loop import fit

    run_dir = out / "tune" / recipe.name / f"fold{fold}"
    done, extra = run_dir / "tune.json", [*recipe.sets, *sets]
    if done.is_file() and json.loads(done.read_text()).get("sets") == extra:
        return json.loads(done.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = load_config(study.config_path(study.tune_entry),
                      ["split.method=kfold", f"split.fold={fold}", f"train.seed={fold}", *extra, "export.enabled=false"])
    command = fit_command(study, study.tune_entry, fold, extra) + " --no-export"
    t0 = time.time()
    fit(cfg, data_root, str(run_dir), "cpu", command=command)
    summary = json.loads((run_dir / "summary.json").read_text())
    best = run_dir / "best.safetensors"
    params = sum(int(t.numel()) for t in load_file(str(best)).values()) if best.is_file() else None
    epochs = int(cfg["train"]["epochs"])
    result = {"recipe": recipe.name, "fold": fold, "seed": fold, "sets": extra,
              "val_macro_auc": summary["best_value"], "best_epoch": summary["best_epoch"], "epochs": epochs,
              "params": params, "cost": epochs * params if params else None,
              "seconds": round(time.time() - t0, 1), "command": command}
    done.write_text(json.dumps(result, indent=1))
    return result


def choose(candidates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fold k's recipe by `TIE_RULE` from its candidates' validation scores (grid order = list order)."""
    scored = [(i, c) for i, c in enumerate(candidates)
              if c.get("val_macro_auc") is not None and np.isfinite(c["val_macro_auc"]) and c.get("cost")]
    if not scored:
        raise RuntimeError("No candidate recipe has a validation score; nothing to choose from.")
    best = max(c["val_macro_auc"] for _, c in scored)
    near = [(i, c) for i, c in scored if c["val_macro_auc"] >= best - TIE_TOLERANCE - 1e-12]
    return min(near, key=lambda ic: (ic[1]["cost"], -ic[1]["val_macro_auc"], ic[0]))[1]


def tune(study: Study, folds: int, out: Path, docs: Path, data_root: str | None = None, sets: Sequence[str] = (),
         names: Sequence[str] = ()) -> dict[str, Any]:
    """Choose each fold's recipe on that fold's validation lesions only; writes `<docs>/tuning.json`."""
    unknown = sorted(set(names) - {r.name for r in study.grid})
    if unknown:
        raise ValueError(f"Unknown recipe(s) {', '.join(unknown)}; the grid is {', '.join(r.name for r in study.grid)}.")
    grid = [r for r in study.grid if not names or r.name in names]
    if not grid:
        raise ValueError("This study has no candidate recipes to tune.")
    record: dict[str, Any] = {
        "study": study.name,
        "entry": study.tune_entry,
        "protocol": "nested: every candidate trains on fold k's training lesions with seed k and is scored on "
                    "fold k's validation lesions only (never fold k's test lesions); fold k's entries then all "
                    "train with fold k's choice",
        "metric": "best validation macro AUC over the epochs (summary.json: best_value)",
        "rule": TIE_RULE, "tolerance": TIE_TOLERANCE, "sets": list(sets),
        "grid": {r.name: list(r.sets) for r in grid}, "folds": []}
    for fold in range(folds):
        parts = fold_parts(study, fold, data_root, sets)
        if set(parts["val"]) & set(parts["test"]) or set(parts["train"]) & set(parts["test"]):
            raise RuntimeError(f"fold {fold}: the tuning lesions overlap the test lesions")
        candidates = [tune_one(study, recipe, fold, out, data_root, sets) for recipe in grid]
        chosen = choose(candidates)
        record["folds"].append({
            "fold": fold, "seed": fold, "lesions": {p: len(v) for p, v in parts.items()},
            "scored_on": "val", "val_sha256": ids_sha256(parts["val"]), "test_sha256": ids_sha256(parts["test"]),
            "chosen": chosen["recipe"], "sets": list(next(r.sets for r in grid if r.name == chosen["recipe"])),
            "candidates": [{k: c[k] for k in ("recipe", "val_macro_auc", "best_epoch", "epochs", "params", "cost")}
                           for c in candidates]})
        print(f"fold {fold}: " + ", ".join(f"{c['recipe']} {c['val_macro_auc']:.4f}" for c in candidates)
              + f" -> {chosen['recipe']}", flush=True)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "tuning.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def fold_recipes(docs: Path, folds: int, sets: Sequence[str] = ()) -> dict[int, tuple[str, list[str]]]:
    """fold -> (recipe name, its overrides) as `tune` chose them (`<docs>/tuning.json`)."""
    path = docs / "tuning.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `python -m training.study tune` first (each fold's recipe "
                                f"is chosen on that fold's validation lesions).")
    tuning = json.loads(path.read_text())
    if tuning["sets"] != list(sets):
        raise ValueError(f"{path} was tuned with --set {tuning['sets']}, not {list(sets)}; tune again with these.")
    chosen = {f["fold"]: (f["chosen"], list(f["sets"])) for f in tuning["folds"]}
    missing = [k for k in range(folds) if k not in chosen]
    if missing:
        raise ValueError(f"{path} has no choice for fold(s) {missing}; tune with --folds {folds}.")
    return chosen


def run_one(study: Study, entry: str, fold: int, out: Path, data_root: str | None = None,
            sets: Sequence[str] = (), recipe: tuple[str, Sequence[str]] = ("config", ())) -> dict[str, Any]:
    """Train + export one (entry, fold) with the fold's recipe into out/entry/fold<k>; returns its result."""
    from training.config import load_config
    from training.loop import fit

    run_dir = out / entry / f"fold{fold}"
    done, extra = run_dir / "result.json", [*recipe[1], *sets]
    if done.is_file() and json.loads(done.read_text()).get("sets") == extra:
        return json.loads(done.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)
    wdir = run_dir / "weights"
    cfg = load_config(study.config_path(entry), ["split.method=kfold", f"split.fold={fold}", f"train.seed={fold}", *extra])
    t0 = time.time()
    fit(cfg, data_root, str(run_dir), "cpu", command=fit_command(study, entry, fold, extra), weights_dir=str(wdir))
    report = json.loads((run_dir / "report_test.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    card = json.loads((wdir / f"{cfg['name']}.json").read_text())
    result = {
        "entry": entry, "fold": fold, "seed": fold, "recipe": recipe[0], "sets": extra,
        "seconds": round(time.time() - t0, 1),
        "val": {k: summary[k] for k in ("select_metric", "best_value", "best_epoch", "epochs_run")},
        "balanced_accuracy": report["balanced_accuracy"], "macro_f1": report["macro_f1"], "macro": report["macro"],
        "ece": report["ece"], "ece_calibrated": report["ece_calibrated"],
        "temperature": card["calibration"]["temperature"], "decision": report["decision"],
        "tau": card["calibration"].get("decision_prior_weight"), "modality_ablation": report["modality_ablation"],
        "alpha_by_class": alpha_by_class_of(wdir, cfg["name"], data_root or cfg["data_root"]),
        "n_test": report["n_cases"], "test_sha256": card["training"]["split"]["test_sha256"],
    }
    done.write_text(json.dumps(result, indent=1))
    return result


def alpha_by_class(alpha: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean per-sample branch weights (image, joint, metadata) per true class; each row sums to 1."""
    from skinui.vocabulary import BRANCHES

    out = {}
    for k, name in enumerate(classes):
        rows = alpha[labels == k]
        if len(rows):
            out[name] = {**{b: float(v) for b, v in zip(BRANCHES, rows.mean(0))}, "n": int(len(rows))}
    return out


def alpha_by_class_of(weights_dir: Path, name: str, data_root: str) -> dict[str, dict[str, float]] | None:
    """alpha per class on the entry's own test split (re-derived and verified from its card)."""
    import torch

    from skinui.zoo import load_entry
    from training.evaluate import select_cases

    entry = load_entry(name, weights_dir)
    cases, labels, _ = select_cases(entry.card, entry.card["dataset"], Path(data_root), "test")
    with torch.no_grad():
        alpha = entry.model.eval()(entry.batch(cases)).alpha
    return None if alpha is None else alpha_by_class(alpha.numpy(), labels, entry.classes)


# -- logistic-regression anchor -------------------------------------------------------------------
LR_C = 1.0  # scikit-learn's default, fixed before any data was seen: the anchor has no tuned hyper-parameter


def lr_anchor(study: Study, folds: int, out: Path, data_root: str | None = None,
              sets: Sequence[str] = (), docs: Path | None = None) -> list[dict[str, Any]]:
    """Standardised inputs + multinomial logistic regression (C=1), trained on each fold's train part.

    Same cases, same grouped folds and the same training-fitted metadata encoder as the networks;
    scored with the same ISIC report on the same held-out lesions, and with the same decision rule:
    argmax p_k / pi_k^tau, pi the training prevalence and tau fitted on the fold's validation part
    (the anchor's only data-chosen value, chosen inside each fold like the networks' recipe).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skinui.calibration import decide_from_log_probs, fit_decision_weight, log_prevalence
    from skinui.metrics import classification_report
    from training.config import load_config
    from training.data import prepare, resolve_root

    results = []
    for fold in range(folds):
        cfg = load_config(study.config_path(study.tune_entry), ["split.method=kfold", f"split.fold={fold}", *sets])
        prep = prepare(cfg, resolve_root(cfg["data_root"], data_root))
        blocks = {m: _image_matrix(prep, m) for m in ("clinical", "dermoscopic")}
        blocks["metadata"] = prep.meta
        train, val, test = prep.split["train"], prep.split["val"], prep.split["test"]
        log_prior = log_prevalence(prep.labels[train], len(prep.classes))  # as the networks' export
        for label, _ in study.subsets:
            mods = [{"C": "clinical", "D": "dermoscopic", "M": "metadata"}[s] for s in label.split("+")]
            x = np.hstack([blocks[m] for m in mods])
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=LR_C, max_iter=3000))
            clf.fit(x[train], prep.labels[train])
            probs = {}
            for part, idx in (("val", val), ("test", test)):
                probs[part] = np.full((len(idx), len(prep.classes)), 1e-12)
                probs[part][:, clf.classes_] = clf.predict_proba(x[idx])
            tau = fit_decision_weight(np.log(probs["val"]), prep.labels[val], log_prior)
            predicted = decide_from_log_probs(np.log(probs["test"]), {"log_prior": log_prior, "decision_prior_weight": tau})
            rep = classification_report(prep.labels[test], probs["test"], prep.classes, predicted=predicted)
            results.append({"subset": label, "fold": fold, "n_test": len(test), "C": LR_C, "tau": tau,
                            "decision": DECISION, "balanced_accuracy": rep["balanced_accuracy"],
                            "macro_f1": rep["macro_f1"], "macro": rep["macro"]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_anchor.json").write_text(json.dumps(results, indent=1))
    if docs is not None:
        _write_csv(docs / "lr_anchor.csv", LR_COLUMNS, [
            {**{k: r[k] for k in LR_COLUMNS if k in r}, "macro_auc": r["macro"]["auc"]} for r in results])
    return results


def _image_matrix(prep: Any, modality: str) -> np.ndarray:
    """Concept vectors [N, 7] (an absent image: zeros, the scaler's problem, as for the network)."""
    rows = [c.image(modality) for c in prep.cases]
    width = next(len(r.values) for r in rows if r is not None)
    return np.stack([np.asarray(r.values, np.float32) if r is not None else np.zeros(width, np.float32) for r in rows])


# -- committed per-fold results --------------------------------------------------------------------
FOLD_COLUMNS = ["entry", "fold", "seed", "recipe", "n_test", "balanced_accuracy", "macro_f1",
                *[f"macro_{k}" for k, _ in METRIC_COLUMNS], "ece", "ece_calibrated", "temperature", "decision", "tau",
                "val_macro_auc", "best_epoch", "test_sha256"]
LR_COLUMNS = ["subset", "fold", "n_test", "balanced_accuracy", "macro_auc", "macro_f1", "C", "tau", "decision"]
ALPHA_COLUMNS = ["fold", "class", "image", "joint", "metadata", "n"]
ABLATION_COLUMNS = ["fold", "inputs", "macro_auc", "balanced_accuracy"]


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    def cell(v: Any) -> Any:
        return "" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: cell(r.get(c)) for c in columns} for r in rows)


TEXT_COLUMNS = {"entry", "recipe", "decision", "test_sha256", "subset", "class", "inputs"}


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a committed CSV: text columns as text, numbers as float (int without a point), empty as None."""
    def value(key: str, v: str) -> Any:
        if v == "" or key in TEXT_COLUMNS:
            return v or None
        return int(v) if v.lstrip("-").isdigit() else float(v)

    with path.open(newline="") as fh:
        return [{k: value(k, v) for k, v in row.items()} for row in csv.DictReader(fh)]


def load_results(out: Path, entry: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / entry).glob("fold*/result.json"))]


def write_fold_files(study: Study, out: Path, docs: Path) -> None:
    """`<docs>/folds.csv` (every entry x fold: test metrics, recipe), `alpha.csv` and `ablation.csv` (full model)."""
    rows = []
    for entry in study.entries:
        for r in load_results(out, entry):
            rows.append({**{k: r.get(k) for k in FOLD_COLUMNS}, **{f"macro_{k}": r["macro"].get(k) for k, _ in METRIC_COLUMNS},
                         "val_macro_auc": r["val"]["best_value"], "best_epoch": r["val"]["best_epoch"]})
    _write_csv(docs / "folds.csv", FOLD_COLUMNS, rows)
    full = load_results(out, study.tune_entry)
    _write_csv(docs / "alpha.csv", ALPHA_COLUMNS, [{"fold": r["fold"], "class": cls, **a} for r in full
                                                   for cls, a in (r["alpha_by_class"] or {}).items()])
    _write_csv(docs / "ablation.csv", ABLATION_COLUMNS, [{"fold": r["fold"], "inputs": s, **v} for r in full
                                                         for s, v in r["modality_ablation"].items()])


# -- tables (from the committed files only) --------------------------------------------------------
def mean_std(values: Sequence[float | None]) -> str:
    """'mean ± sample std' of the values given (Nones skipped), one value as itself, none as '-'."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return "-"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def _metric_row(label: str, runs: list[dict[str, Any]]) -> str:
    cells = [mean_std([r[f"macro_{k}"] for r in runs]) for k, _ in METRIC_COLUMNS]
    return f"| {label} | " + " | ".join(cells + [mean_std([r["balanced_accuracy"] for r in runs]), str(len(runs))]) + " |"


def study_command(study: Study, folds: int = 5) -> str:
    s = f"--study {study.name} --folds {folds}"
    return " && ".join(f"python -m training.study {c} {s}" for c in ("tune", "run", "lr")) + \
        f" && python -m training.study table --study {study.name} --results docs/RESULTS.md"


def tables(study: Study, docs: Path, command: str | None = None) -> str:
    """Markdown from `<docs>/` alone: per-fold recipes, metric tables, the LR anchor, alpha, inference ablation."""
    if not (docs / "folds.csv").is_file():
        raise FileNotFoundError(f"{docs / 'folds.csv'} is missing; run `python -m training.study run` first.")
    rows = read_csv(docs / "folds.csv")
    by_entry = {e: sorted([r for r in rows if r["entry"] == e], key=lambda r: r["fold"]) for e in study.entries}
    wrong = sorted({r["decision"] for r in rows} - {DECISION})
    if wrong:
        raise ValueError(f"folds.csv has decisions {wrong}; every number must use the cards' {DECISION} rule.")
    tuning = json.loads((docs / "tuning.json").read_text()) if (docs / "tuning.json").is_file() else None
    chosen = {f["fold"]: f["chosen"] for f in tuning["folds"]} if tuning else {}
    for r in rows:
        if tuning and r["recipe"] != chosen.get(r["fold"]):
            raise ValueError(f"folds.csv: {r['entry']} fold {r['fold']} trained with {r['recipe']}, but tuning.json "
                             f"chose {chosen.get(r['fold'])} for that fold; run it again.")
    folds = sorted({r["fold"] for r in rows})
    md = [f"Reproduce: `{command or study_command(study, len(folds))}`. Every number below is computed by `table` "
          f"from the committed per-fold files in `{study.docs}/` (`folds.csv`, `lr_anchor.csv`, `tuning.json`, "
          "`alpha.csv`, `ablation.csv`): macro over the 11 classes, mean ± sample std over the grouped folds, "
          "prevalence-adjusted decisions; each fold's test lesions are never trained, tuned or selected on."]
    if tuning:
        grid = list(tuning["grid"])
        md += [f"\n#### Recipe chosen inside each fold (validation macro AUC of the full {tuning['entry']}; "
               f"chosen in bold)\n",
               "| recipe | cost (M param-epochs) | " + " | ".join(f"fold {f['fold']}" for f in tuning["folds"]) + " |",
               "|---|---|" + "---|" * len(tuning["folds"])]
        for name in grid:
            cells, costs = [], []
            for f in tuning["folds"]:
                c = next(c for c in f["candidates"] if c["recipe"] == name)
                costs.append(c["cost"] or 0)
                cell = f"{c['val_macro_auc']:.3f}" if c["val_macro_auc"] is not None else "-"
                cells.append(f"**{cell}**" if f["chosen"] == name else cell)
            md.append(f"| {name} | {np.mean(costs) / 1e6:.1f} | " + " | ".join(cells) + " |")
    full, lr = by_entry.get(study.tune_entry, []), []
    if (docs / "lr_anchor.csv").is_file():
        lr = read_csv(docs / "lr_anchor.csv")
        wrong = sorted({r["decision"] for r in lr} - {DECISION})
        if wrong:
            raise ValueError(f"lr_anchor.csv has decisions {wrong}; the anchor must use the {DECISION} rule.")
    if full:
        anchor = {r["fold"]: r for r in lr if r["subset"] == study.subsets[-1][0]}
        md += ["\n#### Per fold: full JI-ADF and the logistic-regression anchor (C+D+M) on the fold's test lesions\n",
               "| fold | recipe | test lesions | JI-ADF macro AUC | JI-ADF bal. acc. | LR macro AUC | LR bal. acc. |",
               "|---|---|---|---|---|---|---|"]
        for r in full:
            a = anchor.get(r["fold"])
            md.append(f"| {r['fold']} | {r['recipe']} | {r['n_test']} | {r['macro_auc']:.3f} | {r['balanced_accuracy']:.3f} | "
                      + (f"{a['macro_auc']:.3f} | {a['balanced_accuracy']:.3f} |" if a else "- | - |"))
    head = "| | " + " | ".join(t for _, t in METRIC_COLUMNS) + " | Bal. acc. | runs |\n|" + "---|" * 12
    for title, table_rows in study.tables.items():
        md += [f"\n#### {title}\n", head]
        md += [_metric_row(label, by_entry[e]) for label, e in table_rows if by_entry.get(e)]
    if lr:
        md += ["\n#### Logistic-regression anchor vs JI-ADF, per modality subset (macro AUC / balanced accuracy)\n",
               "| subset | LR macro AUC | JI-ADF macro AUC | LR bal. acc. | JI-ADF bal. acc. |\n|---|---|---|---|---|"]
        for label, e in study.subsets:
            runs, anchor_rows = by_entry.get(e, []), [r for r in lr if r["subset"] == label]
            md.append(f"| {label} | {mean_std([r['macro_auc'] for r in anchor_rows])} | "
                      f"{mean_std([r['macro_auc'] for r in runs])} | {mean_std([r['balanced_accuracy'] for r in anchor_rows])} "
                      f"| {mean_std([r['balanced_accuracy'] for r in runs])} |")
    alpha = read_csv(docs / "alpha.csv") if (docs / "alpha.csv").is_file() else []
    if alpha:
        md += ["\n#### JI-ADF branch weights alpha per true class (test folds, mean over folds)\n",
               "| class | image (C+D) | joint | metadata | lesions |\n|---|---|---|---|---|"]
        for cls in dict.fromkeys(a["class"] for a in alpha):
            cls_rows = [a for a in alpha if a["class"] == cls]
            md.append(f"| {cls} | " + " | ".join(f"{np.mean([a[b] for a in cls_rows]):.3f}" for b in ("image", "joint", "metadata"))
                      + f" | {int(sum(a['n'] for a in cls_rows))} |")
    ablation = read_csv(docs / "ablation.csv") if (docs / "ablation.csv").is_file() else []
    if ablation:
        md += ["\n#### Trimodal JI-ADF with modalities switched off at inference (no retraining)\n",
               "| inputs given | macro AUC | bal. acc. |\n|---|---|---|"]
        for s in dict.fromkeys(a["inputs"] for a in ablation):
            sub = [a for a in ablation if a["inputs"] == s]
            md.append(f"| {s} | {mean_std([a['macro_auc'] for a in sub])} | {mean_std([a['balanced_accuracy'] for a in sub])} |")
    return "\n".join(md) + "\n"


GENERATOR = "python -m training.study table"


def write_section(results_md: Path, key: str, body: str) -> None:
    """Replace the text between this study's markers (the hand-written text around them stays)."""
    markdown.write_section(results_md, key, body, GENERATOR)


def read_section(results_md: Path, key: str) -> str | None:
    """The generated text between this study's markers (None when they are absent)."""
    return markdown.read_section(results_md, key)


# -- shipping --------------------------------------------------------------------------------------
def ship(study: Study, out: Path, weights_dir: Path, only: Sequence[str] = ()) -> list[Path]:
    """Copy each fold-0 entry (seed 0, fold 0's recipe) into weights/, its card extended with alpha_by_class."""
    from skinui.zoo import load_entry, save_entry, shared_specs_of

    paths = []
    for entry in [e for e in study.ship if not only or e in only]:
        result_path = out / entry / "fold0" / "result.json"
        if not result_path.is_file():
            raise FileNotFoundError(f"{entry} has no fold-0 run in {out}; run `python -m training.study run` first.")
        result = json.loads(result_path.read_text())
        loaded = load_entry(entry, out / entry / "fold0" / "weights")
        card = dict(loaded.card)
        card["alpha_by_class"] = result["alpha_by_class"]
        card["training"] = {**card["training"], "recipe": {
            "name": result.get("recipe"), "sets": result.get("sets"),
            "chosen_on": f"fold 0's validation lesions ({study.docs}/tuning.json), never its test lesions"}}
        card["licence"] = f"{card.get('licence')}; weights trained on MILK10k are for non-commercial use only"
        # stored as the run stored it (dtype, shared files): the card's metrics were measured on that
        paths.append(save_entry(loaded.model, card, weights_dir, shared=shared_specs_of(card),
                                fp16=card.get("dtype") == "float16"))
    return paths


# -- CLI -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.study", description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["tune", "run", "lr", "table", "ship"])
    ap.add_argument("--study", default=_P, help=f"one of {', '.join(STUDIES.names())}")
    ap.add_argument("--folds", type=int, default=5, help="grouped folds to run (fold k trains with seed k)")
    ap.add_argument("--only", nargs="*", default=[], help="entries to run or ship (default: all of the study)")
    ap.add_argument("--grid", nargs="*", default=[], help="candidate recipes to tune (default: the study's whole grid)")
    ap.add_argument("--data-root", help="dataset folder (default: the study's)")
    ap.add_argument("--out", default=None, help="study folder (default runs/study-<study>)")
    ap.add_argument("--docs", default=None, help="committed per-fold results (default: the study's, docs/milk10k)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run, applied after the fold's recipe")
    ap.add_argument("--results", help="markdown file whose generated section `table` replaces")
    ap.add_argument("--weights-dir", default=str(REPO / "weights"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # tiny models on a shared 2-core machine
    study = STUDIES.get(args.study)
    out = Path(args.out) if args.out else REPO / "runs" / f"study-{args.study}"
    docs = Path(args.docs) if args.docs else REPO / study.docs
    root = args.data_root
    try:
        if args.cmd == "tune":
            _cache_cases()
            tune(study, args.folds, out, docs, root, args.set, args.grid)
        elif args.cmd == "run":
            _cache_cases()
            recipes = fold_recipes(docs, args.folds, args.set)
            for entry in [e for e in study.entries if not args.only or e in args.only]:
                for fold in range(args.folds):
                    r = run_one(study, entry, fold, out, root, args.set, recipes[fold])
                    print(f"{entry} fold {fold} ({r['recipe']}): macro AUC {r['macro']['auc']:.3f}, "
                          f"balanced accuracy {r['balanced_accuracy']:.3f} ({r['seconds']} s)", flush=True)
            write_fold_files(study, out, docs)
        elif args.cmd == "lr":
            _cache_cases()
            lr_anchor(study, args.folds, out, root, args.set, docs)
        elif args.cmd == "table":
            body = tables(study, docs)
            if args.results:
                write_section(Path(args.results), args.study, body)
            print(body)
        else:
            for path in ship(study, out, Path(args.weights_dir), args.only):
                print(f"shipped {path}")
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
