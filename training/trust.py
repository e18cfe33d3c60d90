"""`python -m training.trust`: fit and measure every entry's trust features, in one command.

    python -m training.trust --data ham10000=../shared/data/ham10000 --data pad-ufes-20=../shared/data/pad-ufes-20 \\
        --data milk10k=../shared/data/milk10k --data synthderm=runs/data/synthderm --update-cards --write docs/TRUST.md

Per entry, on its own re-derived (SHA-checked) split:
- conformal prediction sets (skinui.trust.conformal): score and mode chosen on validation by
  repeated half-splits, thresholds fitted on all of validation, coverage and set size read on test;
- out-of-distribution detector per image modality (skinui.trust.ood): fitted on the training
  split's encoder features, threshold at 95% retention of validation, AUROC against held-out test
  lesions for each non-lesion set of `training.ood_sets`; parameters in a content-addressed
  `weights/shared/ood-*.safetensors`, shared by the entries that share an encoder (a later run reuses
  the file a card already ships for that encoder; `--update-cards` deletes files no card names);
- uncertainty (skinui.trust.uncertainty): test-time-augmentation spread and, for entries with
  several heads, branch disagreement; AUROC for detecting wrong decisions on test, beside the
  1 - max-probability baseline; validation quantiles stored so the app can rank a new case.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skinui.calibration import calibrated_logits, decide, softmax
from skinui.cases import Case
from skinui.trust import conformal, ood, uncertainty
from skinui.views import average_logits
from training.data import keep_cases_in_memory, load_cases, make_split, to_device
from training.evaluate import EncodeCache, select_cases, view_features

TRUST_CARD_KEYS = ("conformal", "ood", "uncertainty")


@dataclass
class SplitOut:
    """An entry's outputs on some cases: per view, logits; image features of the original view."""

    logits: np.ndarray  # [V, N, K] per view (V = 1 without test-time augmentation)
    branch_logits: dict[str, np.ndarray] = field(default_factory=dict)  # head -> [N, K], as the entry predicts
    feats: dict[str, np.ndarray] = field(default_factory=dict)  # image modality -> [N, D]
    present: dict[str, np.ndarray] = field(default_factory=dict)  # image modality -> [N] bool
    styles: dict[str, np.ndarray] = field(default_factory=dict)  # image modality -> [N, 2C] stem statistics
    averaged: bool = False  # the entry averages the views (`Entry.averages_views`)

    @property
    def decided(self) -> np.ndarray:
        """[N, K] the logits the entry predicts from: the views' average where it averages, else the photo's."""
        if self.averaged and self.logits.shape[0] != len(uncertainty.VIEWS):
            raise ValueError("this entry predicts from the mean over every view; run it on all of them")
        return average_logits(self.logits) if self.averaged else self.logits[0]


@torch.no_grad()
def run_cases(entry: Any, cases: list[Case], cache: EncodeCache | None, views: tuple[str, ...] = ("original",),
              batch_size: int = 64) -> SplitOut:
    """The entry's outputs on `cases` per view of `views` (an entry that averages views needs all of them
    wherever its predictions are read: `SplitOut.decided`)."""
    model = entry.model.eval()
    dev = next(model.parameters()).device
    size = int(model.cfg.get("image_size", 224))
    keys = {m: EncodeCache.key(model.image_encoders[m], size, model.cfg.get("preprocess"))
            for m in model.image_modalities} if cache else {}
    pix = entry.pixel_modalities
    logits: list[list[np.ndarray]] = [[] for _ in views]
    branch: dict[str, list[list[np.ndarray]]] = {}
    feats: dict[str, list[np.ndarray]] = {m: [] for m in model.image_modalities}
    present: dict[str, list[np.ndarray]] = {m: [] for m in model.image_modalities}
    styles: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(cases), batch_size):
        chunk = cases[start:start + batch_size]
        batch = to_device(entry.batch(chunk), dev)
        mask = batch.get("mask") or {}
        for v, name in enumerate(views):
            f = view_features(entry, batch, chunk, cache, keys, name)
            out = model.head(f, mask)
            logits[v].append(out.logits.float().cpu().numpy())
            for b, z in (out.branch_logits or {}).items():
                branch.setdefault(b, [[] for _ in views])[v].append(z.float().cpu().numpy())
            if v == 0:
                for m, st in _styles(model, batch, chunk, cache, keys, pix).items():
                    styles.setdefault(m, []).append(st)
                for m in model.image_modalities:
                    n = len(chunk)
                    feats[m].append(f[m].float().cpu().numpy() if m in f else np.zeros((n, 1), np.float32))
                    present[m].append(mask[m].cpu().numpy() if m in mask else np.full(n, m in f))
    if cache is not None:
        cache.save()
    # the heads' outputs as the entry shows them: averaged over the views where it averages
    averaged = entry.averages_views and len(views) > 1
    branches = {b: np.stack([np.concatenate(z) for z in per]) for b, per in branch.items()}
    branches = {b: average_logits(z) if averaged else z[0] for b, z in branches.items()}
    return SplitOut(np.stack([np.concatenate(z) for z in logits]), branches,
                    {m: np.concatenate(v) for m, v in feats.items() if v},
                    {m: np.concatenate(v).astype(bool) for m, v in present.items() if v},
                    {m: np.concatenate(v) for m, v in styles.items()}, entry.averages_views)


def _styles(model: Any, batch: dict[str, Any], chunk: list[Case], cache: EncodeCache | None,
            keys: dict[str, str], modalities: list[str]) -> dict[str, np.ndarray]:
    """Stem statistics [N, 2C] per image modality (zeros where a case has no such image), cached by file."""
    from skinui.models.model import encoder_style
    from training.evaluate import _image_path

    out = {}
    for m in modalities:
        x = batch.get(m)
        if x is None:
            out[m] = np.zeros((len(chunk), 1), np.float32)
            continue
        paths = [_image_path(c, m) for c in chunk]
        table = cache.table(keys[m] + "-style") if cache else {}
        if not all(p is not None and p in table for p in paths):
            found = encoder_style(model.image_encoders[m], x).float().cpu().numpy()
            for p, f in zip(paths, found):
                if p is not None and cache is not None:
                    table[p] = f
                    cache.dirty.add(keys[m] + "-style")
            out[m] = found
        else:
            out[m] = np.stack([table[p] for p in paths])
    return out


def split_cases(card: dict[str, Any], root: Path) -> dict[str, tuple[list[Case], np.ndarray]]:
    """train/val/test cases and labels of the card's recorded split (test verified by its SHA-256)."""
    classes = list(card["classes"])
    select_cases(card, card["dataset"], root, "test")  # raises when the folder is not the training data
    cases, _, _ = load_cases(card["dataset"], root)
    parts, _ = make_split(card["dataset"], cases, card["training"]["split"])
    return {p: ([cases[i] for i in parts[p]], np.array([classes.index(cases[i].label) for i in parts[p]]))
            for p in ("train", "val", "test")}


@torch.no_grad()
def image_styles(entry: Any, modality: str, images: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Stem statistics [N, 2C] of in-memory images, preprocessed exactly as a prediction would."""
    from skinui.models.model import encoder_style
    from skinui.models.preprocess import to_tensor

    size = int(entry.model.cfg.get("image_size", 224))
    enc = entry.model.image_encoders[modality].eval()
    pre = entry.model.cfg.get("preprocess")  # the entry's own preprocessing, as a prediction applies it
    out = [encoder_style(enc, torch.stack([to_tensor(im, size, pre) for im in images[i:i + batch_size]]))
           .float().numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


# ---------------------------------------------------------------------------------------------
def conformal_block(card: dict[str, Any], val: SplitOut, yv: np.ndarray, test: SplitOut, yt: np.ndarray,
                    alpha: float = 0.1) -> dict[str, Any]:
    classes, cal = list(card["classes"]), card.get("calibration") or {}
    pv, pt = softmax(calibrated_logits(val.decided, cal)), softmax(calibrated_logits(test.decided, cal))
    score, mode, tried = conformal.choose(pv, yv, classes, alpha)
    block = conformal.fit(pv, yv, classes, score, mode, alpha)
    block["chosen_on"] = "validation (50 random half-splits: calibrate on one half, measure on the other)"
    block["validation_trials"] = tried
    block["test"] = conformal.evaluate(pt, yt, block, classes, decide(test.decided, cal))
    block["test_all_variants"] = {
        f"{s}/{m}": {k: v for k, v in conformal.evaluate(pt, yt, conformal.fit(pv, yv, classes, s, m, alpha), classes,
                                                         decide(test.decided, cal)).items() if k != "per_class"}
        for s, m in conformal.VARIANTS}
    return block


def uncertainty_block(card: dict[str, Any], val: SplitOut, yv: np.ndarray, test: SplitOut,
                      yt: np.ndarray) -> dict[str, Any]:
    """Each measure's validation quantiles (to rank a new case), and its AUROC for detecting wrong
    decisions on validation (what the app's wording reads: a choice) and on test (what is reported)."""
    cal = card.get("calibration") or {}
    wrong_v, wrong = decide(val.decided, cal) != yv, decide(test.decided, cal) != yt
    pv, pt = softmax(calibrated_logits(val.decided, cal)), softmax(calibrated_logits(test.decided, cal))
    block: dict[str, Any] = {"n_test": int(len(yt)), "test_errors": int(wrong.sum()),
                             "error_auroc": {"1 - max probability": _err_auroc(1 - pt.max(1), wrong)},
                             "error_auroc_val": {"1 - max probability": _err_auroc(1 - pv.max(1), wrong_v)}}
    measures = {}
    if val.logits.shape[0] > 1:
        views_v = np.stack([softmax(calibrated_logits(z, cal)) for z in val.logits])
        views_t = np.stack([softmax(calibrated_logits(z, cal)) for z in test.logits])
        measures["tta", "test-time-augmentation spread"] = (uncertainty.tta_spread(views_v),
                                                            uncertainty.tta_spread(views_t))
    if len(test.branch_logits) > 1:
        measures["branches", "branch disagreement"] = tuple(
            uncertainty.branch_disagreement(np.stack([softmax(z) for z in split.branch_logits.values()]))
            for split in (val, test))
    for (key, name), (on_val, on_test) in measures.items():
        block[key] = {"validation_quantiles": uncertainty.reference(on_val)}
        block["error_auroc"][name] = _err_auroc(on_test, wrong)
        block["error_auroc_val"][name] = _err_auroc(on_val, wrong_v)
    if "tta" in block:
        # both arms under the card's calibration (the switch itself is the card's `views` check)
        block["tta"]["views"] = list(uncertainty.VIEWS)
        block["tta"]["test_balanced_accuracy_averaged_views"] = _balanced(
            softmax(calibrated_logits(average_logits(test.logits), cal)), yt, cal)
        block["tta"]["test_balanced_accuracy_single_view"] = _balanced(
            softmax(calibrated_logits(test.logits[0], cal)), yt, cal)
        block["tta"]["val_balanced_accuracy_averaged_views"] = _balanced(
            softmax(calibrated_logits(average_logits(val.logits), cal)), yv, cal)
        block["tta"]["val_balanced_accuracy_single_view"] = _balanced(
            softmax(calibrated_logits(val.logits[0], cal)), yv, cal)
    if "branches" in block:
        block["branches"]["heads"] = list(test.branch_logits)
    return block


def _err_auroc(score: np.ndarray, wrong: np.ndarray) -> float | None:
    return None if wrong.all() or not wrong.any() else round(ood.auroc(score[~wrong], score[wrong]), 4)


def _balanced(probs: np.ndarray, y: np.ndarray, cal: dict[str, Any]) -> float:
    from skinui.calibration import decide_from_log_probs
    from skinui.metrics import quick_scores

    pred = decide_from_log_probs(np.log(np.clip(probs, 1e-12, None)), cal)
    return round(float(quick_scores(y, probs, probs.shape[1], predicted=pred)["balanced_accuracy"]), 4)


# ---------------------------------------------------------------------------------------------
@dataclass
class Fitted:
    detector: ood.Detector
    file: str
    sha256: str
    data: bytes
    measured: dict[str, np.ndarray] = field(default_factory=dict)  # OOD set -> scores


def fit_detector(feats: np.ndarray, labels: np.ndarray) -> Fitted:
    from safetensors.numpy import save

    det = ood.fit(feats, labels)
    data = save(det.tensors(), metadata={"method": ood.METHOD, "k": str(det.basis.shape[1])})
    sha = hashlib.sha256(data).hexdigest()
    return Fitted(det, f"shared/ood-{sha[:16]}.safetensors", sha, data)


def shipped_detectors(weights_dir: Path) -> dict[str, Fitted]:
    """encoder key -> the detector a card in `weights_dir` already ships for that encoder and modality.

    Entries that share an encoder share one detector file, also when they are measured in different
    runs: a refit is not bit-identical across thread counts (SVD), so refitting would fork the file and
    measure a detector the app does not use. A retrained encoder has a new key and is fitted afresh."""
    from safetensors.numpy import load

    found: dict[str, Fitted] = {}
    for path in sorted(weights_dir.glob("*.json")):
        try:
            blocks = (json.loads(path.read_text()).get("ood") or {}).values()
        except (OSError, ValueError):
            continue
        for b in blocks:
            key, file = b.get("encoder_key"), weights_dir / str(b.get("file"))
            if not key or key in found or b.get("method") != ood.METHOD or not file.is_file():
                continue
            data = file.read_bytes()
            if hashlib.sha256(data).hexdigest() == b.get("sha256"):
                found[key] = Fitted(ood.Detector.from_tensors(load(data)), b["file"], b["sha256"], data)
    return found


def ood_sets_for(card: dict[str, Any], modality: str, roots: dict[str, str], generic: dict[str, list[np.ndarray]],
                 n: int = 120, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """The non-lesion sets plus the lesions of another world, for an entry's `modality`."""
    from training.ood_sets import synthetic_skin

    sets = dict(generic)
    sets["synthetic-skin"] = synthetic_skin(modality, n=60)
    rng = np.random.default_rng(seed)
    other = {"dermoscopic": ("pad-ufes-20", "clinical"), "clinical": ("ham10000", "dermoscopic")}[modality]
    real = card["dataset"] != "synthderm"
    sources = [(*other, "other-modality")] if real else []
    sources.append(("synthderm", modality, "other-dataset") if real else ("ham10000" if modality == "dermoscopic"
                                                                          else "pad-ufes-20", modality,
                                                                          "real-lesions"))
    for dataset, mod, name in sources:
        if dataset not in roots:
            continue
        cases, _, _ = load_cases(dataset, Path(roots[dataset]).resolve())
        with_image = [c for c in cases if getattr(c, mod) is not None]
        picked = rng.choice(len(with_image), size=min(n, len(with_image)), replace=False)
        sets[name] = [with_image[i].image(mod) for i in picked]
    return sets


def ood_block(entry: Any, train: SplitOut, yr: np.ndarray, val: SplitOut, test: SplitOut, roots: dict[str, str],
              generic: dict[str, list[np.ndarray]], fitted: dict[str, Fitted]) -> dict[str, Any]:
    """Per image modality: the detector (fitted once per encoder), its threshold and its measured AUROCs."""
    block: dict[str, Any] = {}
    size = int(entry.model.cfg.get("image_size", 224))
    for m in entry.pixel_modalities:
        key = f"{EncodeCache.key(entry.model.image_encoders[m], size, entry.model.cfg.get('preprocess'))}:{m}"
        have = train.present[m]
        if key not in fitted:
            fitted[key] = fit_detector(train.styles[m][have], yr[have])
        fit = fitted[key]
        if not fit.measured:  # fitted just now, or read from the file another card ships for this encoder
            fit.measured = {name: fit.detector.score(image_styles(entry, m, images))
                            for name, images in ood_sets_for(entry.card, m, roots, generic).items()}
        s_val = fit.detector.score(val.styles[m][val.present[m]])
        s_test = fit.detector.score(test.styles[m][test.present[m]])
        cut = ood.threshold(s_val)
        block[m] = {"file": fit.file, "sha256": fit.sha256, "method": ood.METHOD, "encoder_key": key,
                    "k": int(fit.detector.basis.shape[1]), "threshold": cut, "retention_val": ood.RETENTION,
                    "n_train": int(have.sum()), "n_test": int(len(s_test)),
                    "test_retention": round(float((s_test <= cut).mean()), 4),
                    "auroc_vs_test": {name: {"n": len(s_out), "auroc": round(ood.auroc(s_test, s_out), 4),
                                             "flagged": round(float((s_out > cut).mean()), 4)}
                                      for name, s_out in fit.measured.items()}}
    return block


# ---------------------------------------------------------------------------------------------
def _answerable(entry: Any, cases: list[Case], labels: np.ndarray) -> tuple[list[Case], np.ndarray]:
    """The cases the app would answer: one carrying none of the entry's inputs is refused with a
    sentence there, so it gets no prediction set or warning to measure either."""
    try:
        entry.prepare(cases)
        return cases, labels
    except ValueError:
        keep = []
        for i, case in enumerate(cases):
            try:
                entry.prepare([case])
                keep.append(i)
            except ValueError:
                continue
        return [cases[i] for i in keep], labels[keep]


def measure_entry(entry: Any, root: Path, roots: dict[str, str], cache: EncodeCache,
                  generic: dict[str, list[np.ndarray]], fitted: dict[str, Fitted],
                  blocks: tuple[str, ...] = TRUST_CARD_KEYS) -> dict[str, Any]:
    parts = {p: _answerable(entry, *v) for p, v in split_cases(entry.card, root).items()
             if p != "train" or "ood" in blocks}
    every = entry.pixel_modalities and ("uncertainty" in blocks or entry.averages_views)
    views = tuple(uncertainty.VIEWS) if every else ("original",)
    val = run_cases(entry, parts["val"][0], cache, views)
    test = run_cases(entry, parts["test"][0], cache, views)
    out = {}
    if "conformal" in blocks:
        out["conformal"] = conformal_block(entry.card, val, parts["val"][1], test, parts["test"][1])
    if "uncertainty" in blocks:
        out["uncertainty"] = uncertainty_block(entry.card, val, parts["val"][1], test, parts["test"][1])
    if entry.pixel_modalities and "ood" in blocks:
        train = run_cases(entry, parts["train"][0], cache)
        out["ood"] = ood_block(entry, train, parts["train"][1], val, test, roots, generic, fitted)
    return out


def summary_line(blocks: dict[str, Any]) -> str:
    parts = []
    if "conformal" in blocks:
        c = blocks["conformal"]
        parts.append(f"sets {c['score']}/{c['mode']} coverage {c['test']['coverage']:.3f} "
                     f"size {c['test']['mean_size']:.2f}")
    if "uncertainty" in blocks:
        parts.append(f"errors AUROC {blocks['uncertainty']['error_auroc']}")
    parts += [f"OOD {m} " + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in b["auroc_vs_test"].items())
              for m, b in blocks.get("ood", {}).items()]
    return "; ".join(parts)


def refresh_report(folder: Path, blocks: dict[str, Any]) -> None:
    """Put the trust blocks into an entry's evaluation report (JSON and HTML), when it has one."""
    from training.report_html import refresh_trust

    if (folder / "report.json").is_file():
        rep = json.loads((folder / "report.json").read_text())
        (folder / "report.json").write_text(json.dumps({**rep, **blocks}, indent=1) + "\n")
    if (folder / "report.html").is_file():
        refresh_trust(folder / "report.html", blocks)


def main(argv: list[str] | None = None) -> int:
    from skinui.zoo import list_entries, load_entry, write_card
    from training.ood_sets import generic as generic_sets

    ap = argparse.ArgumentParser(prog="python -m training.trust", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="entries (default: all whose dataset has --data)")
    ap.add_argument("--weights-dir", default="weights")
    ap.add_argument("--data", action="append", default=[], metavar="DATASET=DIR", help="a dataset's folder (repeat)")
    ap.add_argument("--update-cards", action="store_true", help="write the blocks into the cards (and ood files)")
    ap.add_argument("--json", default="runs/trust.json", help="where to keep every measured block")
    ap.add_argument("--reports", default="docs/reports",
                    help="evaluation reports to refresh (report.json gains the blocks, report.html its section)")
    ap.add_argument("--only", default=",".join(TRUST_CARD_KEYS),
                    help="blocks to measure (comma-separated; the others keep the card's values)")
    args = ap.parse_args(argv)
    roots = dict(item.split("=", 1) for item in args.data)
    keep_cases_in_memory()
    torch.set_grad_enabled(False)
    cache, fitted = EncodeCache(), shipped_detectors(Path(args.weights_dir))
    generic = generic_sets(np.random.default_rng(0))
    found = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    for card in list_entries(args.weights_dir):
        if (args.names and card["name"] not in args.names) or card["dataset"] not in roots:
            continue
        entry = load_entry(card["name"], args.weights_dir)
        only = tuple(b for b in args.only.split(",") if b)
        blocks = measure_entry(entry, Path(roots[card["dataset"]]).resolve(), roots, cache, generic, fitted, only)
        found[card["name"]] = {**found.get(card["name"], {}), **blocks}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(found, indent=1))
        print(f"{card['name']}: {summary_line(blocks)}", file=sys.stderr, flush=True)
        if args.update_cards:
            for fit in fitted.values():
                target = Path(args.weights_dir) / fit.file
                if not target.is_file():
                    target.write_bytes(fit.data)
            write_card({**{k: v for k, v in entry.card.items() if k not in blocks}, **blocks}, args.weights_dir)
            refresh_report(Path(args.reports) / card["name"], found[card["name"]])
    if args.update_cards:
        removed = prune_detectors(Path(args.weights_dir))
        if removed:
            print(f"removed detector files no card refers to any more: {', '.join(removed)}", file=sys.stderr)
    return 0


def prune_detectors(weights_dir: Path) -> list[str]:
    """Delete `shared/ood-*.safetensors` files that no card in `weights_dir` names: a refit detector gets
    a new content-addressed file, and the one it replaced would otherwise stay in the 150 MB budget."""
    named = set()
    for path in weights_dir.glob("*.json"):  # raw JSON, not list_entries: a card it skips still owns its files
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            return []  # an unreadable card might name any of them: delete nothing
        named |= {b.get("file") for b in (card.get("ood") or {}).values() if isinstance(b, dict)}
    removed = []
    for path in sorted((weights_dir / "shared").glob("ood-*.safetensors")):
        if f"shared/{path.name}" not in named:
            path.unlink()
            removed.append(path.name)
    return removed


if __name__ == "__main__":
    sys.exit(main())
