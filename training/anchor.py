"""A plain anchor for a dataset's metadata: class-balanced logistic regression on the clinical fields.

    python -m training.anchor --dataset pad-ufes-20 --data-root ../shared/data/pad-ufes-20 \
        --out docs/reports/anchor-pad-ufes-20.json

Fitted on the training split that every shipped entry of the dataset uses (grouped, seed 0), on the
same encoded fields they read (for PAD-UFES-20: age, region and the six lesion questions; never the
lifestyle block, whose missingness encodes the label). Scored on validation and test, all cases and,
where the schema declares a collection-confounded block, on complete cases only, with the same
group-bootstrap intervals as the entries. `training.results` puts it beside the entries: a network
that reads metadata and cannot beat it has not earned its complexity.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from skinui.encoding import MetadataEncoder
from skinui.stats import bootstrap_scores
from training.comparisons import complete_mask
from training.data import load_cases, make_split

SPLIT = {"method": "grouped", "seed": 0, "fractions": [0.7, 0.15, 0.15], "k": 5, "fold": 0, "group_key": None}


def anchor(dataset: str, root: Path, split: dict[str, Any] | None = None, C: float = 1.0) -> dict[str, Any]:
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
    out: dict[str, Any] = {"dataset": dataset, "model": "logistic regression, class_weight=balanced, C=1, "
                           "standardised one-hot/numeric fields", "fields": list(encoder.field_names),
                           "classes": classes, "split": {**(split or SPLIT), "group_key": group_key,
                                                          "sizes": {p: len(v) for p, v in parts.items()}}}
    for part in ("val", "test"):
        idx = np.array(parts[part])
        groups = [cases[i].group(group_key) for i in idx]
        out[part] = bootstrap_scores(labels[idx], probs[idx], None, groups)
        if block:
            keep = complete_mask([cases[i] for i in idx], block)
            out[f"{part}_complete"] = {**bootstrap_scores(labels[idx][keep], probs[idx][keep], None,
                                                          [g for g, k in zip(groups, keep) if k]),
                                       "n_cases": int(keep.sum())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.anchor", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--out", required=True, help="JSON file (docs/reports/anchor-<dataset>.json)")
    args = ap.parse_args(argv)
    result = anchor(args.dataset, Path(args.data_root))
    result["command"] = (f"python -m training.anchor --dataset {args.dataset} --data-root {args.data_root} "
                         f"--out {args.out}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for part in ("val", "test", "val_complete", "test_complete"):
        if part in result:
            r = result[part]
            print(f"{part:14s} balanced accuracy {r['balanced_accuracy']['estimate']:.3f} "
                  f"{r['balanced_accuracy']['ci']}  macro AUC {r['macro_auc']['estimate']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
