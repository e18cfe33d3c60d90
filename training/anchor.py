"""A plain anchor for a dataset's metadata: class-balanced logistic regression on the clinical fields.

    python -m training.anchor --dataset pad-ufes-20 --data-root ../shared/data/pad-ufes-20 \
        --out docs/reports/anchor-pad-ufes-20.json --pair-entries

Fitted on the training split that every shipped entry of the dataset uses (grouped, seed 0), on the
same encoded fields they read (for PAD-UFES-20: age, region and the six lesion questions; never the
lifestyle block, whose missingness encodes the label). Scored on validation and test, all cases and,
where the schema declares a collection-confounded block, on complete cases only, with the same
group-bootstrap intervals as the entries. Its per-case probabilities (with case ids and groups) are
kept in the JSON (`per_case`).

`--pair-entries` then scores every shipped entry of the dataset that reads metadata the way the app
runs it (its card's calibration and decision rule, `training.evaluate.shipped_scores`) on the same
validation and test cases, and writes the paired difference *entry minus anchor* (balanced accuracy
and macro AUC, `skinui.stats.paired_difference`, the same group-bootstrap replicates for both) on
all cases and on complete cases (`pairs`). The entries re-derive their split from their cards; an
entry whose cases are not exactly the anchor's (same ids, same order) is refused with a sentence.
`training.results` puts the anchor and its pairs beside the entries: a network that reads metadata
and cannot beat it has not earned its complexity. `--update-cards` (with `--pair-entries`) also writes
each paired entry's test-split pairs into its card's `anchor` block, which the app's About tab states
beside the entry, and drops the block from every other card.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinui.encoding import MetadataEncoder
from skinui.stats import bootstrap_scores, paired_difference
from training.comparisons import N_BOOT, SEED, complete_mask
from training.data import load_cases, make_split

SPLIT = {"method": "grouped", "seed": 0, "fractions": [0.7, 0.15, 0.15], "k": 5, "fold": 0, "group_key": None}
PARTS = ("val", "test")
KEYS = ("val", "val_complete", "test", "test_complete")  # the anchor's scores and its pairs, per split


class AnchorError(ValueError):
    """The anchor cannot be paired as asked; the message says why and what to do."""


@dataclass
class AnchorPart:
    """The anchor on one split: what a paired difference needs, case by case, in the split's order."""

    case_ids: list[str]
    groups: list[str]
    labels: np.ndarray  # [N] class indices
    probs: np.ndarray  # [N, K]; decisions are their argmax
    complete: np.ndarray | None  # [N] bool: the schema's missingness block filled in (None: no block)

    def rows(self) -> list[dict[str, Any]]:
        """One JSON row per case: id, group, label, complete (where the schema has a block), probabilities."""
        rows = [{"case_id": c, "group": g, "label": int(y)} for c, g, y in zip(self.case_ids, self.groups, self.labels)]
        for i, row in enumerate(rows):
            if self.complete is not None:
                row["complete"] = bool(self.complete[i])
            row["probs"] = [float(p) for p in self.probs[i]]
        return rows

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]]) -> AnchorPart:
        complete = np.array([r["complete"] for r in rows], dtype=bool) if rows and "complete" in rows[0] else None
        return cls([r["case_id"] for r in rows], [r["group"] for r in rows], np.array([r["label"] for r in rows]),
                   np.array([r["probs"] for r in rows], dtype=np.float64), complete)


def fit_anchor(dataset: str, root: Path, split: dict[str, Any] | None = None, C: float = 1.0
               ) -> tuple[dict[str, Any], dict[str, AnchorPart]]:
    """(the anchor's description and split, {"val"/"test": its per-case scores}), fitted on the training split."""
    from sklearn.linear_model import LogisticRegression

    cases, _, schema = load_cases(dataset, root)
    classes = list(schema.classes)
    labels = np.array([classes.index(c.label) for c in cases])
    parts, group_key = make_split(dataset, cases, split or SPLIT)
    encoder = MetadataEncoder(schema)
    encoder.fit([cases[i] for i in parts["train"]])
    x = encoder.transform(cases)
    mean, sd = x[parts["train"]].mean(0), x[parts["train"]].std(0) + 1e-6  # scaled on training rows only
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=5000)
    model.fit((x[parts["train"]] - mean) / sd, labels[parts["train"]])
    probs = np.zeros((len(cases), len(classes)))
    probs[:, model.classes_] = model.predict_proba((x - mean) / sd)  # classes absent from training stay at 0
    block = list(schema.missingness_block or ())
    info: dict[str, Any] = {"dataset": dataset, "model": "logistic regression, class_weight=balanced, C=1, "
                            "standardised one-hot/numeric fields", "fields": list(encoder.field_names),
                            "classes": classes, "missingness_block": block,
                            "split": {**(split or SPLIT), "group_key": group_key,
                                      "sizes": {p: len(v) for p, v in parts.items()}}}
    scored = {}
    for part in PARTS:
        idx = np.array(parts[part], dtype=np.int64)
        chosen = [cases[i] for i in idx]
        scored[part] = AnchorPart([c.case_id for c in chosen], [c.group(group_key) for c in chosen], labels[idx],
                                  probs[idx], complete_mask(chosen, block) if block else None)
    return info, scored


def anchor(dataset: str, root: Path, split: dict[str, Any] | None = None, C: float = 1.0) -> dict[str, Any]:
    """The anchor's JSON: its scores with intervals on validation and test (all and complete cases), per-case rows."""
    out, parts = fit_anchor(dataset, root, split, C)
    for name, p in parts.items():
        out[name] = bootstrap_scores(p.labels, p.probs, None, p.groups)
        if p.complete is not None:
            keep = p.complete
            out[f"{name}_complete"] = {**bootstrap_scores(p.labels[keep], p.probs[keep], None,
                                                          [g for g, k in zip(p.groups, keep) if k]),
                                       "n_cases": int(keep.sum())}
    out["per_case"] = {name: p.rows() for name, p in parts.items()}
    return out


def paired_with_anchor(entry: str, split: str, case_ids: Sequence[str], labels: Sequence[int] | np.ndarray,
                       groups: Sequence[Hashable], scores: tuple[np.ndarray, np.ndarray | None], anchor: AnchorPart,
                       n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, Any]:
    """{split: entry minus anchor on all cases, f"{split}_complete": on complete cases} (paired, same replicates).

    Refuses (AnchorError) unless the entry was scored on exactly the anchor's cases, in the same order,
    with the same labels and groups: otherwise the replicates would not be shared and nothing is paired.
    """
    ids = [str(c) for c in case_ids]
    if ids != anchor.case_ids:
        only_entry = sorted(set(ids) - set(anchor.case_ids))
        only_anchor = sorted(set(anchor.case_ids) - set(ids))
        why = (f"the entry has {len(ids)} cases and the anchor {len(anchor.case_ids)}"
               + (f"; e.g. {only_entry[0]} is only the entry's" if only_entry else "")
               + (f"; e.g. {only_anchor[0]} is only the anchor's" if only_anchor else "")
               + ("" if only_entry or only_anchor else "; the same cases in another order"))
        raise AnchorError(f"{entry}'s {split} split is not the anchor's ({why}), so the two cannot be paired: the "
                          f"anchor uses the split in training.anchor.SPLIT (grouped, seed 0, 70/15/15) and {entry}'s "
                          f"card records another; retrain {entry} on that split or leave it out of the weights folder.")
    labels = np.asarray(labels, dtype=np.int64)
    if not np.array_equal(labels, anchor.labels) or [str(g) for g in groups] != [str(g) for g in anchor.groups]:
        raise AnchorError(f"{entry}'s {split} cases are the anchor's but their labels or groups differ (another "
                          f"class order or grouping key), so the two cannot be paired; check the entry's card.")
    probs, decisions = scores
    decisions = np.asarray(probs).argmax(1) if decisions is None else np.asarray(decisions)
    out = {split: paired_difference(labels, list(groups), (probs, decisions), (anchor.probs, None),
                                    n_boot=n_boot, seed=seed)}
    if anchor.complete is not None and anchor.complete.any():
        keep = anchor.complete
        out[f"{split}_complete"] = paired_difference(labels[keep], [g for g, k in zip(groups, keep) if k],
                                                     (probs[keep], decisions[keep]), (anchor.probs[keep], None),
                                                     n_boot=n_boot, seed=seed)
    return out


def pair_entries(dataset: str, root: Path, parts: dict[str, AnchorPart], weights_dir: str | Path | None = None,
                 n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, Any]:
    """Entry name -> {val, val_complete, test, test_complete: entry minus anchor}, for every shipped entry of
    `dataset` whose card reads metadata, each scored with its card's calibration and decision rule."""
    from skinui.zoo import list_entries, load_entry
    from training.evaluate import EncodeCache, shipped_scores

    cache = EncodeCache()
    out: dict[str, Any] = {}
    for card in list_entries(weights_dir):
        if card.get("dataset") != dataset or "metadata" not in (card.get("modalities") or []):
            continue
        entry = load_entry(card["name"], weights_dir)
        found: dict[str, Any] = {"modalities": list(card["modalities"]), "leaky": bool(card.get("leaky"))}
        for split in PARTS:
            cases, labels, groups, scores = shipped_scores(entry, dataset, root, split, cache)
            found.update(paired_with_anchor(card["name"], split, [c.case_id for c in cases], labels, groups, scores,
                                            parts[split], n_boot, seed))
        out[card["name"]] = found
        print(f"{card['name']:32s} " + "  ".join(
            f"{k} Δbal.acc. {found[k]['balanced_accuracy']['estimate']:+.3f}" for k in found if k in KEYS),
            flush=True)
    cache.save()
    return out


CARD_SPLITS = ("test", "test_complete")  # what a user reads: held-out cases, all and complete


def card_blocks(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Entry name -> its card's `anchor` block: the anchor named, and entry minus anchor on test (all cases and,
    where the schema has a collection-confounded block, complete cases), both metrics with their intervals."""
    out = {}
    for name, found in ((result.get("pairs") or {}).get("entries") or {}).items():
        block: dict[str, Any] = {"model": result["model"], "fields": list(result["fields"])}
        for split in CARD_SPLITS:
            if split in found:
                block[split] = {**{m: found[split][m] for m in ("balanced_accuracy", "macro_auc")},
                                "n_cases": found[split]["n_cases"]}
        block["command"] = result["command"]
        out[name] = block
    return out


def main(argv: list[str] | None = None) -> int:
    from skinui.datasets import DatasetError
    from skinui.zoo import ZooError
    from training.evaluate import EvaluationError
    from training.measure_cli import to_json

    ap = argparse.ArgumentParser(prog="python -m training.anchor", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--out", required=True, help="JSON file (docs/reports/anchor-<dataset>.json)")
    ap.add_argument("--pair-entries", action="store_true",
                    help="also pair every shipped entry of the dataset that reads metadata against the anchor")
    ap.add_argument("--weights-dir", default=None, help="where the shipped entries are (default: weights/)")
    ap.add_argument("--update-cards", action="store_true",
                    help="with --pair-entries: write each paired entry's test pairs into its card's `anchor` block")
    args = ap.parse_args(argv)
    if args.update_cards and not args.pair_entries:
        ap.error("--update-cards writes the entries' pairs, so it needs --pair-entries as well")
    root = Path(args.data_root)
    result = anchor(args.dataset, root)
    per_case = result.pop("per_case")
    command = f"python -m training.anchor --dataset {args.dataset} --data-root {args.data_root} --out {args.out}"
    if args.pair_entries:
        parts = {name: AnchorPart.from_rows(rows) for name, rows in per_case.items()}
        try:
            pairs = pair_entries(args.dataset, root, parts, args.weights_dir)
        except (AnchorError, EvaluationError, DatasetError, ZooError) as err:  # a sentence, never a traceback
            print(str(err), file=sys.stderr)
            return 1
        result["pairs"] = {"what": "entry minus anchor, on the same cases with the same group-bootstrap replicates; "
                           "each entry scored with its card's calibration and decision rule, the anchor by argmax",
                           "entries": pairs}
        command += (" --pair-entries" + (f" --weights-dir {args.weights_dir}" if args.weights_dir else "")
                    + (" --update-cards" if args.update_cards else ""))
    result["command"] = command
    result["per_case"] = per_case
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(to_json(result) + "\n")
    if args.update_cards:
        from skinui.zoo import default_weights_dir
        from training.measure_cli import write_blocks

        written = write_blocks(args.weights_dir or default_weights_dir(), "anchor", card_blocks(result))
        print(f"anchor block written into {len(written)} cards", flush=True)
    for part in KEYS:
        if part in result:
            r = result[part]
            print(f"{part:14s} balanced accuracy {r['balanced_accuracy']['estimate']:.3f} "
                  f"{r['balanced_accuracy']['ci']}  macro AUC {r['macro_auc']['estimate']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
