"""`python -m training evaluate`: score a zoo entry the way the app runs it, plus every modality subset.

The test split is re-derived from the card's recorded split (dataset, method, seed, group key,
fractions) and checked against the recorded SHA-256 of its case ids, so an evaluation never
scores a case the entry trained or was selected on; a different dataset folder is refused for
`--split test` (use `--split all` on cases the entry never saw).

Headline metrics score the entry as the app runs it: calibrated probabilities (the card's
temperature and prevalence terms, fitted on the validation split at training time) for AUC/AP,
and the card's decision rule (prevalence-adjusted when the card has a prevalence) for the
thresholded metrics. `ece` is measured on the raw softmax, `ece_calibrated` after calibration.

A case whose image file cannot be read (truncated, not an image) is left out of every metric and
listed in the report's `unreadable` (case id, modality, file, reason); the rest are scored.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skinui.calibration import calibrated_logits, decide, ece, ece_floor, reliability_bins, softmax
from skinui.cases import Case, ImageError, ImageRef
from skinui.metrics import classification_report, quick_scores, roc_curves
from skinui.vocabulary import subset_name, subsets
from training.data import case_ids_sha256, load_cases, make_split, to_device


class EvaluationError(ValueError):
    """The evaluation cannot run as asked; the message says what to do."""


@torch.no_grad()
def subset_logits(entry: Any, cases: Sequence[Case], batch_size: int = 64,
                  device: torch.device | None = None, cache: EncodeCache | None = None,
                  unreadable: dict[int, dict[str, str]] | None = None,
                  views: Sequence[str] | None = None) -> dict[tuple[str, ...], np.ndarray]:
    """Uncalibrated logits [N, K] per modality subset; images are encoded once, the head runs per subset.

    `views` (names of `skinui.views.VIEWS`): logits [V, N, K] per subset, one row block per view of the
    photo. Without it, the entry as it predicts: for an entry that averages views
    (`Entry.averages_views`) the log of the views' mean probabilities, else the photo alone.

    A case carrying none of the entry's inputs (e.g. no metadata at all, for a metadata-only
    entry) is still scored: its prediction is the head on the learned missing embeddings, which
    is what the model can say about it.

    A case whose image cannot be read gets NaN rows and its index -> {case_id, modality, file,
    reason} in `unreadable`; without that dict, an `EvaluationError` naming the case is raised.
    """
    from skinui.views import VIEWS, average_logits

    model = entry.model.eval()
    if device is not None:
        model.to(device)
    names = tuple(views) if views else tuple(VIEWS) if entry.averages_views else ("original",)
    out: dict[tuple[str, ...], list[np.ndarray]] = {s: [] for s in subsets(model.modalities)}
    size = int(model.cfg.get("image_size", 224))
    keys = {m: EncodeCache.key(model.image_encoders[m], size, model.cfg.get("preprocess"))
            for m in model.image_modalities} if cache else {}
    for start in range(0, len(cases), batch_size):
        chunk = list(cases[start : start + batch_size])
        try:
            parts = [_chunk_logits(entry, chunk, list(out), cache, keys, names)]
        except ImageError:  # some image in the chunk cannot be read: case by case, the bad ones set aside
            parts = []
            for i, case in enumerate(chunk):
                try:
                    parts.append(_chunk_logits(entry, [case], list(out), cache, keys, names))
                except ImageError as err:
                    problem = _unreadable(entry, case, err)
                    if unreadable is None:
                        raise EvaluationError(f"Case {case.case_id}: {problem['modality']} image {problem['file']} "
                                              f"cannot be read ({problem['reason']}).") from None
                    unreadable[start + i] = problem
                    parts.append({s: np.full((len(names), 1, model.num_classes), np.nan, dtype=np.float32)
                                  for s in out})
        for part in parts:
            for subset, z in part.items():
                out[subset].append(z)
    if cache is not None:
        cache.save()
    per_view = {s: np.concatenate(v, axis=1) for s, v in out.items()}
    if views:
        return per_view
    return {s: (average_logits(z).astype(np.float32) if len(names) > 1 else z[0]) for s, z in per_view.items()}


def view_features(entry: Any, batch: dict[str, Any], chunk: list[Case], cache: EncodeCache | None,
                  keys: dict[str, str], view: str) -> dict[str, torch.Tensor]:
    """`_encode` of the batch with its photos seen as `view` (`skinui.views.VIEWS`), each view cached
    under its own keys (the photo's keys for the photo itself)."""
    from skinui.views import VIEWS

    axes = VIEWS[view]
    flipped = {m: torch.flip(batch[m], axes) for m in entry.pixel_modalities if axes and batch.get(m) is not None}
    return _encode(entry.model, {**batch, **flipped}, chunk, cache,
                   {m: k + (f"-{view}" if axes else "") for m, k in keys.items()})


class EncodeCache:
    """Image-encoder outputs per (encoder weights, image file), on disk under `runs/_cache/encode/`.

    Every stage-2 entry of a dataset shares one frozen encoder, so exporting or evaluating the
    dozen fusion entries would otherwise push the same validation and test images through the
    same backbone a dozen times. Keys are the SHA-256 of the encoder's weights plus the image
    size (and the entry's `model.preprocess`, when it has one); rows are image file paths, so a
    changed encoder, image size or preprocessing never hits a stale row.
    Only file-backed images are cached (uploads and in-memory arrays are always recomputed).
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder else Path(os.environ.get("SKINUI_ENCODE_CACHE", "runs/_cache/encode"))
        self.tables: dict[str, dict[str, np.ndarray]] = {}
        self.dirty: set[str] = set()

    @staticmethod
    def key(encoder: torch.nn.Module, image_size: int, preprocess: dict[str, Any] | None = None) -> str:
        import hashlib

        from training.fastpath import state_sha256

        extra = f"-{hashlib.sha256(json.dumps(preprocess, sort_keys=True).encode()).hexdigest()[:12]}" if preprocess else ""
        tag = getattr(encoder, "cache_tag", None)  # same weights, other outputs (stage_maps: which stages)
        extra += f"-{hashlib.sha256(tag.encode()).hexdigest()[:12]}" if tag else ""
        return f"{state_sha256([encoder])[:24]}-{image_size}{extra}"

    def table(self, key: str) -> dict[str, np.ndarray]:
        if key not in self.tables:
            path = self.folder / f"{key}.npz"
            self.tables[key] = dict(np.load(path)) if path.is_file() else {}
        return self.tables[key]

    def save(self) -> None:
        for key in self.dirty:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f"{key}.tmp.npz"
            np.savez(tmp, **self.tables[key])
            tmp.replace(self.folder / f"{key}.npz")
        self.dirty.clear()


def _unreadable(entry: Any, case: Case, err: ImageError) -> dict[str, str]:
    """Which of the case's images failed, and why (its sentence)."""
    for m in entry.model.image_modalities:
        ref = getattr(case, m, None)
        if isinstance(ref, ImageRef):
            try:
                ref.load()
            except ImageError as bad:
                return {"case_id": str(case.case_id), "modality": m, "file": str(ref.path), "reason": str(bad)}
    return {"case_id": str(case.case_id), "modality": "", "file": "", "reason": str(err)}


def _image_path(case: Case, modality: str) -> str | None:
    ref = getattr(case, modality, None)
    return str(Path(ref.path).resolve()) if isinstance(ref, ImageRef) else None


def _encode(model: Any, batch: dict[str, Any], chunk: list[Case], cache: EncodeCache | None,
            keys: dict[str, str]) -> dict[str, torch.Tensor]:
    """`model.encode(batch)`, reading and filling `cache` for file-backed images."""
    if cache is None:
        return model.encode(batch)
    feats = model.encode({k: v for k, v in batch.items() if k not in model.image_modalities})
    for m in model.image_modalities:
        x = batch.get(m)
        if x is None:
            continue
        table, paths = cache.table(keys[m]), [_image_path(c, m) for c in chunk]
        if all(p is not None and p in table for p in paths):
            feats[m] = torch.from_numpy(np.stack([table[p] for p in paths])).to(x.device)
            continue
        feats[m] = model.image_encoders[m](x)
        for p, f in zip(paths, feats[m].float().cpu().numpy()):
            if p is not None:
                table[p] = f
                cache.dirty.add(keys[m])
    return feats


def _chunk_logits(entry: Any, chunk: list[Case], wanted: list[tuple[str, ...]],
                  cache: EncodeCache | None = None, keys: dict[str, str] | None = None,
                  views: tuple[str, ...] = ("original",)) -> dict[tuple[str, ...], np.ndarray]:
    """{subset: logits [V, n, K]}, one row block per view of the chunk's photos."""
    model = entry.model
    dev = next(model.parameters()).device
    try:
        batch = to_device(entry.batch(chunk), dev)
    except ImageError:
        raise  # an unreadable file is not a missing input: the caller sets the case aside
    except ValueError:  # some case has none of the inputs: score the cases one by one
        if len(chunk) > 1:
            parts = [_chunk_logits(entry, [case], wanted, cache, keys, views) for case in chunk]
            return {s: np.concatenate([p[s] for p in parts], axis=1) for s in wanted}
        one = {s: _all_missing_logits(model, s[0], 1, dev).float().cpu().numpy() for s in wanted}
        return {s: np.stack([z] * len(views)) for s, z in one.items()}  # no input, so no view differs
    mask = batch.get("mask") or {}
    out: dict[tuple[str, ...], list[np.ndarray]] = {s: [] for s in wanted}
    for view in views:
        feats = view_features(entry, batch, chunk, cache, keys or {}, view)
        for subset in wanted:
            kept = {m: f for m, f in feats.items() if m in subset}
            if kept:
                logits = model.head(kept, {m: v for m, v in mask.items() if m in subset}).logits
            else:  # none of the subset's modalities in this batch: the head on missing embeddings only
                logits = _all_missing_logits(model, subset[0], len(chunk), dev)
            out[subset].append(logits.float().cpu().numpy())
    return {s: np.stack(z) for s, z in out.items()}


def _all_missing_logits(model: torch.nn.Module, modality: str, n: int, device: torch.device) -> torch.Tensor:
    feats = {modality: model.missing[modality].expand(n, -1)}
    return model.head(feats, {modality: torch.zeros(n, dtype=torch.bool, device=device)}).logits


def report(entry: Any, cases: Sequence[Case], labels: np.ndarray, calibration: dict[str, Any] | None = None,
           batch_size: int = 64, device: torch.device | None = None,
           logits: dict[tuple[str, ...], np.ndarray] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report.json dict, plus the curves and bins the HTML figures need (`logits`: precomputed subsets).

    `calibration`: a card's calibration block (default: the entry's own).
    """
    classes = list(entry.card["classes"])
    logits = logits if logits is not None else subset_logits(entry, cases, batch_size, device)
    full = tuple(entry.model.modalities)
    cal = calibration if calibration is not None else entry.calibration
    probs = softmax(logits[full])
    calibrated = softmax(calibrated_logits(logits[full], cal))
    rep = classification_report(labels, calibrated, classes, predicted=decide(logits[full], cal))
    rep["ece"] = ece(probs, labels)
    rep["ece_calibrated"] = ece(calibrated, labels)
    rep["ece_floor"] = ece_floor(calibrated)  # what perfect calibration would still measure on these cases
    rep["temperature"] = float(cal.get("temperature") or 1.0)
    rep["decision"] = cal.get("decision", "argmax")
    ablation, scored = {}, {}
    for subset, z in logits.items():
        scored[subset_name(subset)] = (softmax(calibrated_logits(z, cal)), decide(z, cal))
        probs_s, pred_s = scored[subset_name(subset)]
        q = quick_scores(labels, probs_s, len(classes), predicted=pred_s)
        ablation[subset_name(subset)] = {"balanced_accuracy": q["balanced_accuracy"], "macro_auc": q["macro_auc"]}
    rep["modality_ablation"] = ablation
    extras = {
        "roc": roc_curves(labels, calibrated, classes),
        "bins": reliability_bins(probs, labels),
        "bins_calibrated": reliability_bins(calibrated, labels),
        "logits": logits[full],
        "scored": scored,  # subset name -> (calibrated probabilities, decisions): for paired intervals
    }
    return rep, extras


CARD_METRIC_KEYS = ("balanced_accuracy", "accuracy", "macro_f1", "ece", "ece_calibrated", "ece_floor", "n_cases",
                    "macro", "per_class", "modality_ablation")


def card_metrics(rep: dict[str, Any], split: str) -> dict[str, Any]:
    """A model card's `metrics` block: the report's keys the card, the app and RESULTS.md read."""
    return {"split": split, **{k: rep[k] for k in CARD_METRIC_KEYS}}


def select_cases(card: dict[str, Any], dataset: str, root: Path, split: str) -> tuple[list[Case], np.ndarray, str]:
    """The cases to score and their labels; `test` re-derives the card's split and verifies it."""
    classes = list(card["classes"])
    cases, _, schema = load_cases(dataset, root)
    if list(schema.classes) != classes:
        raise EvaluationError(
            f"{card['name']} predicts {', '.join(classes)} but {dataset} has classes {', '.join(schema.classes)}; "
            f"evaluate it on a dataset with the same classes.")
    if split == "all":
        chosen, note = cases, f"all {len(cases)} labelled cases under {root}"
    elif split in ("test", "val"):
        record = (card.get("training") or {}).get("split")
        if not record:
            raise EvaluationError(f"{card['name']}'s model card records no split; use --split all on unseen cases.")
        if dataset != card["dataset"]:
            raise EvaluationError(f"{card['name']} was trained on {card['dataset']}, so it has no {split} split of "
                                  f"{dataset}; use --split all.")
        parts, _ = make_split(dataset, cases, {**record, "group_key": record.get("group_key")})
        if case_ids_sha256(cases, parts["test"]) != record.get("test_sha256"):
            raise EvaluationError(
                f"The {dataset} folder {root} is not the one {card['name']} was trained on (its re-derived test split "
                f"differs from the recorded one), so the test split could include training cases. Point --data-root "
                f"at the training data, or use --split all on cases the entry never saw.")
        chosen = [cases[i] for i in parts[split]]
        note = f"{split} split re-derived from the card ({record.get('description', '')})"
    else:
        raise EvaluationError("--split must be test, val or all.")
    if not chosen:
        raise EvaluationError("No cases to evaluate in that split.")
    labels = np.array([classes.index(c.label) for c in chosen], dtype=np.int64)
    return chosen, labels, note


def shipped_scores(entry: Any, dataset: str, root: str | Path, split: str, cache: EncodeCache | None = None
                   ) -> tuple[list[Case], np.ndarray, list[str], tuple[np.ndarray, np.ndarray]]:
    """The entry as the app runs it on `split`, for a paired comparison: (cases, labels, bootstrap groups,
    (calibrated probabilities [N, K], decisions [N])) with the card's calibration and decision rule.

    The cases are re-derived from the card's split (SHA-checked, `select_cases`); the groups are the
    card's split grouping (lesion or patient), what `skinui.stats.paired_difference` resamples.
    """
    cases, labels, _ = select_cases(entry.card, dataset, Path(root).expanduser().resolve(), split)
    from training.measure_cli import case_group

    z = subset_logits(entry, cases, cache=cache)[tuple(entry.model.modalities)]
    return cases, labels, [case_group(entry.card, c) for c in cases], \
        (softmax(calibrated_logits(z, entry.calibration)), decide(z, entry.calibration))


def view_logits(entry: Any, cases: Sequence[Case], cache: EncodeCache | None = None,
                batch_size: int = 64) -> np.ndarray:
    """[V, N, K] uncalibrated logits of the photo (view 0) and its flipped views (`skinui.views.VIEWS`)."""
    from skinui.views import VIEWS

    return subset_logits(entry, cases, batch_size, cache=cache, views=tuple(VIEWS))[tuple(entry.model.modalities)]


def averaged_views(entry: Any, cases: Sequence[Case], labels: np.ndarray, cache: EncodeCache | None = None,
                   batch_size: int = 64) -> dict[str, Any] | None:
    """The entry scored on the views' mean probabilities, calibrated (what `Entry.predict(average_views=True)`
    returns, and what an entry that averages views always predicts), beside the photo alone under the
    same calibration: the report's `average_views` block. None for entries that read no pixels."""
    from skinui.views import VIEWS, average_logits

    if not entry.pixel_modalities:
        return None
    z = view_logits(entry, cases, cache, batch_size)
    k, cal = len(entry.classes), entry.calibration
    single, averaged = (quick_scores(labels, softmax(calibrated_logits(v, cal)), k, predicted=decide(v, cal))
                        for v in (z[0], average_logits(z)))
    return {"views": list(VIEWS), "cost": f"{len(VIEWS)}x the image-encoder passes of a single view",
            "entry_averages": entry.averages_views,
            "single": {m: single[m] for m in ("balanced_accuracy", "macro_auc")},
            "averaged": {m: averaged[m] for m in ("balanced_accuracy", "macro_auc")},
            "prediction_sets": ("fitted on the averaged probabilities" if entry.averages_views
                                else "left out: their coverage was calibrated on single views")}


def evaluate_entry(entry: Any, dataset: str, data_root: str | Path, split: str, device: torch.device | None = None,
                   batch_size: int = 64, cache: EncodeCache | None = None,
                   average_views: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report.json dict, figure extras) of a loaded entry on `split` of the dataset under `data_root`;
    `average_views` adds the `average_views` block (4x the encoder passes)."""
    cases, labels, note = select_cases(entry.card, dataset, Path(data_root).expanduser().resolve(), split)
    unreadable: dict[int, dict[str, str]] = {}
    logits = subset_logits(entry, cases, batch_size, device, cache=cache, unreadable=unreadable)
    if unreadable:  # scored without them; listed in the report
        keep = [i for i in range(len(cases)) if i not in unreadable]
        if not keep:
            first = unreadable[min(unreadable)]
            raise EvaluationError(f"No case of that split has a readable image (e.g. {first['file']}: "
                                  f"{first['reason']}); check the files under {data_root}.")
        cases, labels = [cases[i] for i in keep], labels[keep]
        logits = {s: z[keep] for s, z in logits.items()}
    rep, extras = report(entry, cases, labels, logits=logits)
    if average_views:
        rep["average_views"] = averaged_views(entry, cases, labels, cache, batch_size)
    group_key = ((entry.card.get("training") or {}).get("split") or {}).get("group_key") or "lesion_id"
    extras.update(cases=cases, labels=labels, groups=[c.group(group_key) for c in cases])
    return {"entry": entry.name, "dataset": dataset, "split": split, "split_note": note, **rep,
            "unreadable": [unreadable[i] for i in sorted(unreadable)]}, extras


def run(weights: str, dataset: str | None, data_root: str, split: str, out: str, device: str = "auto",
        batch_size: int = 64, inline_js: bool = False, average_views: bool = False) -> dict[str, Any]:
    from skinui.zoo import load_entry
    from training.report_html import write_html
    from training.runtime import pick_device

    path = Path(weights)
    name = path.name.removesuffix(".json").removesuffix(".safetensors")
    entry = load_entry(name, path.parent if str(path.parent) not in ("", ".") else None)
    rep, extras = evaluate_entry(entry, dataset or entry.card["dataset"], data_root, split, pick_device(device), batch_size,
                                 average_views=average_views)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(rep, indent=1))
    for bad in rep["unreadable"]:
        print(f"note: case {bad['case_id']} left out, its {bad['modality']} image {bad['file']} cannot be read "
              f"({bad['reason']})", file=sys.stderr)
    write_html(out_dir / "report.html", rep, extras, entry.card, inline_js=inline_js)
    return rep
