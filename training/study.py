"""`python -m training.study`: train a study's configs over grouped folds, score them, write tables.

A *study* names its configs and how they form tables (a fusion ladder, an ablation, a modality
subset sweep). Every run is the ordinary `training.loop.fit` of one config on one fold of the
grouped k-fold split (`split.method: kfold`, fold k, training seed k) with the zoo export into
the run dir, so each run is a real entry scored exactly as `python -m training evaluate` scores
it (ISIC metrics on the held-out fold's lesions). The study adds two things fit does not do:
a logistic-regression anchor on the same inputs and folds, and JI-ADF's branch weights alpha
averaged per true class. `ship` copies the fold-0 entries into `weights/` with alpha in the card.

    python -m training.study run   --study milk10k-concepts [--folds 5] [--only NAME ...]
    python -m training.study lr    --study milk10k-concepts [--folds 5]
    python -m training.study table --study milk10k-concepts [--results docs/RESULTS.md]
    python -m training.study ship  --study milk10k-concepts [--weights-dir weights]
"""
from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinui.registry import Registry

REPO = Path(__file__).resolve().parents[1]
METRIC_COLUMNS = (("auc", "AUC"), ("auc_sens_80", "AUC>80%sens"), ("ap", "AP"), ("accuracy", "Acc"),
                  ("sensitivity", "Sens"), ("specificity", "Spec"), ("dice", "Dice"), ("ppv", "PPV"), ("npv", "NPV"))


@dataclass(frozen=True)
class Study:
    """Configs (entry name -> YAML file) grouped into tables of (row label, entry name)."""

    dataset: str
    data_root: str  # relative to the repository root
    config_dir: str
    tables: dict[str, list[tuple[str, str]]]
    subsets: list[tuple[str, str]]  # (subset label, entry) for the logistic-regression anchor
    ship: list[str]  # entries copied to weights/ (fold 0, seed 0)

    @property
    def entries(self) -> list[str]:
        return list(dict.fromkeys(e for rows in self.tables.values() for _, e in rows))

    def config_path(self, entry: str) -> Path:
        return REPO / self.config_dir / f"{entry}.yaml"


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
))


# -- running ---------------------------------------------------------------------------------------
def _cache_cases() -> None:
    """Parse the dataset once per process: every run of a study reads the same files."""
    import training.data as td

    if not hasattr(td.load_cases, "cache_info"):
        td.load_cases = functools.lru_cache(maxsize=4)(td.load_cases)


def fit_command(study: Study, entry: str, fold: int, sets: Sequence[str] = ()) -> str:
    """The plain `fit` command that trains exactly this run (the study only loops over it)."""
    cfg = study.config_path(entry).relative_to(REPO).as_posix()
    extra = "".join(f" --set {shlex.quote(s)}" for s in [f"split.fold={fold}", f"train.seed={fold}", *sets])
    return f"OMP_NUM_THREADS=1 python -m training fit --config {cfg} --device cpu{extra}"


def run_one(study: Study, entry: str, fold: int, out: Path, data_root: str | None = None,
            sets: Sequence[str] = ()) -> dict[str, Any]:
    """Train + export one (entry, fold) into out/entry/fold<k>; returns (and stores) its result."""
    from training.config import load_config
    from training.loop import fit

    run_dir = out / entry / f"fold{fold}"
    done = run_dir / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    wdir = run_dir / "weights"
    overrides = ["split.method=kfold", f"split.fold={fold}", f"train.seed={fold}", *sets]
    cfg = load_config(study.config_path(entry), overrides)
    t0 = time.time()
    fit(cfg, data_root, str(run_dir), "cpu", command=fit_command(study, entry, fold, sets), weights_dir=str(wdir))
    report = json.loads((run_dir / "report_test.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    card = json.loads((wdir / f"{cfg['name']}.json").read_text())
    result = {
        "entry": entry, "fold": fold, "seed": fold, "seconds": round(time.time() - t0, 1),
        "val": {k: summary[k] for k in ("select_metric", "best_value", "best_epoch", "epochs_run")},
        "balanced_accuracy": report["balanced_accuracy"], "macro_f1": report["macro_f1"], "macro": report["macro"],
        "ece": report["ece"], "ece_calibrated": report["ece_calibrated"],
        "temperature": card["calibration"]["temperature"], "modality_ablation": report["modality_ablation"],
        "alpha_by_class": alpha_by_class_of(wdir, cfg["name"], data_root or cfg["data_root"]),
        "n_test": report["n_cases"],
    }
    done.write_text(json.dumps(result, indent=1))
    return result


def alpha_by_class(alpha: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean per-sample branch weights (image, joint, metadata) per true class; each row sums to 1."""
    from skinui.models.structures import BRANCHES

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
def lr_anchor(study: Study, folds: int, out: Path, data_root: str | None = None,
              sets: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Standardised inputs + multinomial logistic regression (C=1), trained on each fold's train part.

    Same cases, same grouped folds and the same training-fitted metadata encoder as the networks;
    scored with the same ISIC report on the same held-out lesions, and with the same decision rule:
    argmax p_k / pi_k^tau, pi the training prevalence and tau fitted on the fold's validation part.
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
        cfg = load_config(study.config_path(study.subsets[-1][1]), ["split.method=kfold", f"split.fold={fold}", *sets])
        prep = prepare(cfg, resolve_root(cfg["data_root"], data_root))
        blocks = {m: _image_matrix(prep, m) for m in ("clinical", "dermoscopic")}
        blocks["metadata"] = prep.meta
        train, val, test = prep.split["train"], prep.split["val"], prep.split["test"]
        log_prior = log_prevalence(prep.labels[train], len(prep.classes))  # as the networks' export
        for label, _ in study.subsets:
            mods = [{"C": "clinical", "D": "dermoscopic", "M": "metadata"}[s] for s in label.split("+")]
            x = np.hstack([blocks[m] for m in mods])
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
            clf.fit(x[train], prep.labels[train])
            probs = {}
            for part, idx in (("val", val), ("test", test)):
                probs[part] = np.full((len(idx), len(prep.classes)), 1e-12)
                probs[part][:, clf.classes_] = clf.predict_proba(x[idx])
            tau = fit_decision_weight(np.log(probs["val"]), prep.labels[val], log_prior)
            predicted = decide_from_log_probs(np.log(probs["test"]), {"log_prior": log_prior, "decision_prior_weight": tau})
            rep = classification_report(prep.labels[test], probs["test"], prep.classes, predicted=predicted)
            results.append({"subset": label, "fold": fold, "balanced_accuracy": rep["balanced_accuracy"],
                            "macro_f1": rep["macro_f1"], "macro": rep["macro"]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_anchor.json").write_text(json.dumps(results, indent=1))
    return results


def _image_matrix(prep: Any, modality: str) -> np.ndarray:
    """Concept vectors [N, 7] (an absent image: zeros, the scaler's problem, as for the network)."""
    rows = [c.image(modality) for c in prep.cases]
    width = next(len(r.values) for r in rows if r is not None)
    return np.stack([np.asarray(r.values, np.float32) if r is not None else np.zeros(width, np.float32) for r in rows])


# -- tables ----------------------------------------------------------------------------------------
def mean_std(values: Sequence[float | None]) -> str:
    """'mean ± sample std' of the values given (Nones skipped), one value as itself, none as '-'."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return "-"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def _metric_row(label: str, runs: list[dict[str, Any]]) -> str:
    cells = [mean_std([r["macro"][k] for r in runs]) for k, _ in METRIC_COLUMNS]
    return f"| {label} | " + " | ".join(cells + [mean_std([r["balanced_accuracy"] for r in runs]), str(len(runs))]) + " |"


def load_results(out: Path, entry: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / entry).glob("fold*/result.json"))]


def tables(study: Study, out: Path, command: str) -> str:
    """Markdown: one metric table per study table, the LR anchor, alpha per class, inference ablation."""
    head = "| | " + " | ".join(t for _, t in METRIC_COLUMNS) + " | Bal. acc. | runs |\n|" + "---|" * 12
    md = [f"Reproduce: `{command}` (macro over the 11 classes; mean ± sample std over the grouped folds; "
          "each fold's held-out lesions are never trained or selected on)."]
    for title, rows in study.tables.items():
        md += [f"\n#### {title}\n", head]
        md += [_metric_row(label, load_results(out, e)) for label, e in rows if load_results(out, e)]
    lr_path = out / "lr_anchor.json"
    if lr_path.is_file():
        lr = json.loads(lr_path.read_text())
        md += ["\n#### Logistic-regression anchor vs JI-ADF, per modality subset (macro AUC / balanced accuracy)\n",
               "| subset | LR macro AUC | JI-ADF macro AUC | LR bal. acc. | JI-ADF bal. acc. |\n|---|---|---|---|---|"]
        for label, e in study.subsets:
            runs, anchor = load_results(out, e), [r for r in lr if r["subset"] == label]
            md.append(f"| {label} | {mean_std([r['macro']['auc'] for r in anchor])} | {mean_std([r['macro']['auc'] for r in runs])} "
                      f"| {mean_std([r['balanced_accuracy'] for r in anchor])} | {mean_std([r['balanced_accuracy'] for r in runs])} |")
    full = load_results(out, study.subsets[-1][1])
    if full and full[0].get("alpha_by_class"):
        md += ["\n#### JI-ADF branch weights alpha per true class (test folds, mean over folds)\n",
               "| class | image (C+D) | joint | metadata | lesions |\n|---|---|---|---|---|"]
        for cls in full[0]["alpha_by_class"]:
            rows = [r["alpha_by_class"][cls] for r in full if cls in r["alpha_by_class"]]
            md.append(f"| {cls} | " + " | ".join(f"{np.mean([a[b] for a in rows]):.3f}" for b in ("image", "joint", "metadata"))
                      + f" | {sum(a['n'] for a in rows)} |")
        subsets = list(full[0]["modality_ablation"])
        md += ["\n#### Trimodal JI-ADF with modalities switched off at inference (no retraining)\n",
               "| inputs given | macro AUC | bal. acc. |\n|---|---|---|"]
        md += [f"| {s} | {mean_std([r['modality_ablation'][s]['macro_auc'] for r in full])} | "
               f"{mean_std([r['modality_ablation'][s]['balanced_accuracy'] for r in full])} |" for s in subsets]
    return "\n".join(md) + "\n"


BEGIN, END = "<!-- {}:begin (generated by python -m training.study table) -->", "<!-- {}:end -->"


def write_section(results_md: Path, key: str, body: str) -> None:
    """Replace the text between this study's markers (the hand-written text around them stays)."""
    begin, end = BEGIN.format(key), END.format(key)
    text = results_md.read_text() if results_md.is_file() else "# Results\n"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + begin + "\n" + body + end + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{begin}\n{body}{end}\n"
    results_md.write_text(text)


# -- shipping --------------------------------------------------------------------------------------
def ship(study: Study, out: Path, weights_dir: Path, only: Sequence[str] = ()) -> list[Path]:
    """Copy each fold-0 entry (seed 0) into weights/, its card extended with alpha_by_class."""
    from skinui.zoo import load_entry, save_entry, shared_specs_of

    paths = []
    for entry in [e for e in study.ship if not only or e in only]:
        result_path = out / entry / "fold0" / "result.json"
        if not result_path.is_file():
            raise FileNotFoundError(f"{entry} has no fold-0 run in {out}; run `python -m training.study run` first.")
        loaded = load_entry(entry, out / entry / "fold0" / "weights")
        card = dict(loaded.card)
        card["alpha_by_class"] = json.loads(result_path.read_text())["alpha_by_class"]
        card["licence"] = f"{card.get('licence')}; weights trained on MILK10k are for non-commercial use only"
        # stored as the run stored it (dtype, shared files): the card's metrics were measured on that
        paths.append(save_entry(loaded.model, card, weights_dir, shared=shared_specs_of(card),
                                fp16=card.get("dtype") == "float16"))
    return paths


# -- CLI -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.study", description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["run", "lr", "table", "ship"])
    ap.add_argument("--study", default=_P, help=f"one of {', '.join(STUDIES.names())}")
    ap.add_argument("--folds", type=int, default=5, help="grouped folds to run (fold k trains with seed k)")
    ap.add_argument("--only", nargs="*", default=[], help="entries to run or ship (default: all of the study)")
    ap.add_argument("--data-root", help="dataset folder (default: the study's)")
    ap.add_argument("--out", default=None, help="study folder (default runs/study-<study>)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    ap.add_argument("--results", help="markdown file whose generated section `table` replaces")
    ap.add_argument("--weights-dir", default=str(REPO / "weights"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # tiny models on a shared 2-core machine
    study = STUDIES.get(args.study)
    out = Path(args.out) if args.out else REPO / "runs" / f"study-{args.study}"
    root = args.data_root
    try:
        if args.cmd == "run":
            _cache_cases()
            for entry in [e for e in study.entries if not args.only or e in args.only]:
                for fold in range(args.folds):
                    r = run_one(study, entry, fold, out, root, args.set)
                    print(f"{entry} fold {fold}: macro AUC {r['macro']['auc']:.3f}, "
                          f"balanced accuracy {r['balanced_accuracy']:.3f} ({r['seconds']} s)", flush=True)
        elif args.cmd == "lr":
            _cache_cases()
            lr_anchor(study, args.folds, out, root, args.set)
        elif args.cmd == "table":
            cmd = (f"python -m training.study run --study {args.study} --folds {args.folds} && python -m training.study "
                   f"lr --study {args.study} --folds {args.folds} && python -m training.study table --study {args.study}")
            body = tables(study, out, cmd)
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
