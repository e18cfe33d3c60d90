"""`python -m training.results --dataset NAME`: the RESULTS.md tables of a dataset, from the model cards.

Reads the cards in `weights/` (written by `fit`'s export and refreshed by `python -m training.reports
--update-cards`, which adds the validation metrics, the group-bootstrap intervals and the paired
comparisons; `python -m training.seeds --update-cards` adds the seed spread), so every table can be
regenerated from what ships. The "best" entry is chosen on validation balanced accuracy and its
test number reported as it comes; a difference is called a difference only when its paired 95%
interval excludes 0.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from skinui import evidence
from skinui.stats import indistinguishable
from skinui.views import card_averages
from skinui.zoo import list_entries


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _describe(card: dict[str, Any]) -> str:
    model = card.get("model") or {}
    structure = (model.get("structure") or {}).get("name", "?")
    fusion = (model.get("fusion") or {}).get("name")
    mods = "+".join(m[0].upper() for m in card.get("modalities", []))
    views = " · 4 views" if card_averages(card) else ""
    return f"{mods} · {structure}" + (f" · {fusion}" if fusion and structure not in ("late",) else "") + views


def _name(card: dict[str, Any]) -> str:
    return f"`{card['name']}`" + (" (**leaky**)" if card.get("leaky") else "")


def _diff(d: dict[str, Any] | None, metric: str = "balanced_accuracy") -> str:
    """A paired difference with its interval, '≈' when the interval contains 0 (read from the interval itself)."""
    if not d:
        return ""
    return evidence.signed_interval(d[metric]) + (" ≈" if indistinguishable(d, metric) else "")


def _seeds(card: dict[str, Any]) -> str:
    s = card.get("seeds")
    if not s:
        return ""
    b = s["balanced_accuracy"]
    return f"{b['mean']:.3f} ± {b['sd']:.3f} ({len(s['seeds'])})"


def main_table(cards: list[dict[str, Any]]) -> str:
    best = evidence.best_on_validation(cards)
    head = ("| entry | inputs · structure · fusion | val bal. acc. | test bal. acc. (95% CI) | test macro AUC (95% CI) | "
            "macro F1 | ECE raw → calibrated (floor) | bal. acc. over seeds (n) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    key = lambda c: -(evidence.metric(c, "balanced_accuracy", "val") or 0)  # noqa: E731
    for c in sorted(cards, key=key):
        m = c["metrics"]
        star = " ★" if c["name"] == best else ""
        lines.append(f"| {_name(c)}{star} | {_describe(c)} | {_f(evidence.metric(c, 'balanced_accuracy', 'val'))} | "
                     f"{evidence.with_interval(c, 'balanced_accuracy')} | {evidence.with_interval(c, 'macro_auc')} | "
                     f"{_f(m.get('macro_f1'))} | {_f(m.get('ece'))} → {_f(m.get('ece_calibrated'))} "
                     f"({_f(m.get('ece_floor'))}) | {_seeds(c)} |")
    return "\n".join(lines)


def _per_baseline(diffs: dict[str, Any], metric: str) -> str:
    """One difference per image-only baseline, prefixed by its modality when there are several (SynthDerm)."""
    if len(diffs) == 1:
        return _diff(next(iter(diffs.values())), metric)
    return "; ".join(f"{n.split('_')[-2][0].upper()}: {_diff(d, metric)}" for n, d in diffs.items())


def comparison_table(cards: list[dict[str, Any]]) -> str:
    """Paired differences in test balanced accuracy (and macro AUC) to the reference entries."""
    rows = []
    for c in cards:
        comps = c.get("comparisons") or {}
        images = comps.get("vs_image_only") or {}
        meta = next(iter((comps.get("vs_metadata_only") or {}).items()), (None, None))
        best = next(iter((comps.get("vs_best") or {}).items()), (None, None))
        if not (images or meta[1] or best[1]):
            continue

        rows.append(f"| {_name(c)} | {_per_baseline(images, 'balanced_accuracy')} | {_per_baseline(images, 'macro_auc')} | "
                    f"{_diff(meta[1])} | "
                    f"{_diff(meta[1], 'macro_auc')} | {_diff(best[1])} |")
    if not rows:
        return ""
    refs: dict[str, set[str]] = {}
    for c in cards:
        for role in ("vs_image_only", "vs_metadata_only"):
            refs.setdefault(role, set()).update((c.get("comparisons") or {}).get(role) or {})
    named = {role: ", ".join(f"`{n}`" for n in sorted(found)) for role, found in refs.items()}
    head = (f"| entry | − image-only {named.get('vs_image_only', '')}: bal. acc. | macro AUC | − metadata-only "
            f"{named.get('vs_metadata_only', '')}: bal. acc. | macro AUC | − best on validation: bal. acc. |")
    return "\n".join([head, "|" + "---|" * (head.count("|") - 1), *rows])


def metadata_table(cards: list[dict[str, Any]]) -> str:
    """What metadata adds: each fusion entry against its own metadata-off ablation, and against the image-only entry."""
    rows = []
    for c in cards:
        adds = c.get("metadata_adds")
        if not adds:
            continue
        off = (c["metrics"].get("modality_ablation") or {}).get(adds["without_metadata"]) or {}
        images = (c.get("comparisons") or {}).get("vs_image_only") or {}
        rows.append(f"| {_name(c)} | {_f(off.get('balanced_accuracy'))} → {_f(c['metrics']['balanced_accuracy'])} | "
                    f"{_diff(adds)} | {_f(off.get('macro_auc'))} → {_f(c['metrics']['macro']['auc'])} | "
                    f"{_diff(adds, 'macro_auc')} | {_per_baseline(images, 'balanced_accuracy') if images else ''} |")
    if not rows:
        return ""
    head = ("| entry | bal. acc. metadata off → on | paired Δ (95% CI) | macro AUC off → on | paired Δ (95% CI) | "
            "Δ bal. acc. vs the separate image-only entry |")
    return "\n".join([head, "|" + "---|" * (head.count("|") - 1), *rows])


def collection_table(cards: list[dict[str, Any]]) -> str:
    """The blanking check and the complete-case metrics (datasets with a collection-confounded block)."""
    rows = []
    for c in cards:
        chk = c.get("collection_check")
        if not chk:
            continue
        cc = chk["complete_cases"]
        rows.append(f"| {_name(c)} | {chk['mean_shift_p_cancer']:+.3f} | {chk['max_abs_shift_p_cancer']:.3f} | "
                    f"{evidence.with_interval(c, 'balanced_accuracy')} | "
                    f"{cc['balanced_accuracy']['estimate']:.3f} ({cc['balanced_accuracy']['ci'][0]:.3f}–"
                    f"{cc['balanced_accuracy']['ci'][1]:.3f}) | {_f(cc['macro_auc']['estimate'])} | {chk['n_complete']} |")
    if not rows:
        return ""
    chk = next(c["collection_check"] for c in cards if c.get("collection_check"))
    head = (f"| entry | mean Δ P({'+'.join(chk['cancer_classes'])}) when the block is blanked | max abs Δ | "
            f"bal. acc. all test cases | bal. acc. complete cases only | macro AUC complete cases | complete cases |")
    return "\n".join([head, "|" + "---|" * (head.count("|") - 1), *rows])


def _anchor(dataset: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The dataset's anchor JSON (`python -m training.anchor`), or None when it has not been run."""
    path = (folder or Path(__file__).resolve().parents[1] / "docs" / "reports") / f"anchor-{dataset}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def anchor_line(dataset: str, folder: Path | None = None) -> str:
    """The dataset's logistic-regression anchor (`python -m training.anchor`), when it has been run."""
    a = _anchor(dataset, folder)
    if a is None:
        return ""

    def ci(block: dict[str, Any]) -> str:
        b = block["balanced_accuracy"]
        return f"{b['estimate']:.3f} ({b['ci'][0]:.3f}–{b['ci'][1]:.3f}), macro AUC {block['macro_auc']['estimate']:.3f}"

    text = (f"**Anchor** ({a['model']}, on {', '.join(a['fields'])}; trained on the same training split): "
            f"validation {a['val']['balanced_accuracy']['estimate']:.3f}, test {ci(a['test'])}")
    if "test_complete" in a:
        text += (f"; complete test cases ({a['test_complete']['n_cases']}) {ci(a['test_complete'])}, complete "
                 f"validation cases {a['val_complete']['balanced_accuracy']['estimate']:.3f}")
    return text + f". Command: `{a['command']}`."


def anchor_table(dataset: str, folder: Path | None = None) -> str:
    """Each entry that reads metadata minus the anchor, paired (the anchor JSON's `pairs`), when they were measured."""
    a = _anchor(dataset, folder)
    pairs = ((a or {}).get("pairs") or {}).get("entries") or {}
    if not pairs:
        return ""
    complete = any("test_complete" in p for p in pairs.values())
    n = {k: next((p[k]["n_cases"] for p in pairs.values() if k in p), None) for k in ("test", "test_complete")}
    cols = (["test_complete"] if complete else []) + ["test"]
    label = {"test_complete": f"complete test cases ({n['test_complete']})", "test": f"all test cases ({n['test']})"}
    val = "val_complete" if complete else "val"
    head = ("| entry | " + " | ".join(f"{label[k]}: Δ bal. acc. | Δ macro AUC" for k in cols)
            + f" | validation{' (complete cases)' if complete else ''}: Δ bal. acc. |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, p in sorted(pairs.items()):
        cells = [f"{_diff(p.get(k))} | {_diff(p.get(k), 'macro_auc')}" for k in cols]
        lines.append(f"| {_name({'name': name, 'leaky': p.get('leaky')})} | " + " | ".join(cells)
                     + f" | {_diff(p.get(val))} |")
    return "\n".join(lines)


def tables(dataset: str, weights_dir: str | None = None) -> str:
    cards = [c for c in list_entries(weights_dir) if c.get("dataset") == dataset and c.get("metrics")]
    if not cards:
        raise SystemExit(f"No entries with metrics for {dataset} in weights/; train them first (training/README.md).")
    n = cards[0]["metrics"].get("n_cases")
    n_val = (cards[0].get("metrics_val") or {}).get("n_cases")
    parts = [f"Test split: {n} cases, read once (never used for training, selection or calibration); validation: "
             f"{n_val} cases (selection, calibration and the decision rule; so validation scores are optimistic). "
             f"★ = best on validation. Brackets: 95% percentile bootstrap over groups (lesions or patients), 2,000 "
             f"replicates. ECE floor: what perfectly calibrated probabilities would still measure on {n} cases. "
             f"*4 views*: the entry predicts from the mean over the photo and its mirrored, flipped and turned views, "
             f"which its export chose on held-out halves of validation (the card's `views.check`).",
             "", main_table(cards)]
    comp = comparison_table(cards)
    if comp:
        parts += ["", "**Paired differences** (test balanced accuracy or macro AUC, this entry minus the reference; "
                  "same cases, same bootstrap replicates; ≈ = the 95% interval contains 0, i.e. indistinguishable on "
                  "this split):", "", comp]
    meta = metadata_table(cards)
    if meta:
        parts += ["", "**What metadata adds** (each entry with its metadata switched off at inference, its own "
                  "modality ablation, against the entry as shipped; last column: against the separately trained "
                  "image-only entry):", "", meta]
    coll = collection_table(cards)
    if coll:
        parts += ["", "**Collection-artefact check** (held-out test cases with the whole block filled; the block "
                  "blanked on each of them; every other input unchanged):", "", coll]
    anchor = anchor_line(dataset)
    if anchor:
        parts += ["", anchor]
    versus_anchor = anchor_table(dataset)
    if versus_anchor:
        parts += ["", "**Against the anchor** (each shipped entry that reads metadata minus the anchor, paired: same "
                  "cases, same bootstrap replicates; the entry with its card's calibration and decision rule, the "
                  "anchor by argmax; ≈ = the 95% interval contains 0; complete cases: the collection-confounded block "
                  "filled in):",
                  "", versus_anchor]
    parts += ["", "Commands (each entry's card records its own):", ""]
    parts += [f"- `{c['name']}`: `{(c.get('training') or {}).get('command', '')}`" for c in cards]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.results", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--weights-dir", default=None)
    ap.add_argument("--write", metavar="RESULTS_MD", default=None,
                    help="replace this dataset's generated block in RESULTS_MD (between its markers) instead of printing")
    args = ap.parse_args(argv)
    body = tables(args.dataset, args.weights_dir)
    if args.write:
        from pathlib import Path

        from training.markdown import write_section

        write_section(Path(args.write), f"results-{args.dataset}", body + "\n",
                      f"python -m training.results --dataset {args.dataset} --write {args.write}")
    else:
        print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
