"""What a model card says about how far its numbers can be trusted, in words and one figure.

Reads the cards' `metrics`, `metrics_val`, `intervals` and `comparisons` blocks (written by
`python -m training.reports --update-cards`); computes nothing new, so the app, the reports and
RESULTS.md show the same intervals.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def interval(card: dict[str, Any], metric: str = "balanced_accuracy", split: str = "test") -> tuple[float, float] | None:
    block = ((card.get("intervals") or {}).get(split) or {}).get(metric) or {}
    ci = block.get("ci")
    return (float(ci[0]), float(ci[1])) if ci and len(ci) == 2 and None not in ci else None


def metric(card: dict[str, Any], name: str = "balanced_accuracy", split: str = "test") -> float | None:
    block = card.get("metrics" if split == "test" else "metrics_val") or {}
    value = block.get(name) if name != "macro_auc" else (block.get("macro") or {}).get("auc")
    return float(value) if isinstance(value, (int, float)) else None


def with_interval(card: dict[str, Any], name: str = "balanced_accuracy", split: str = "test") -> str:
    """'0.697 (0.641–0.752)', or the bare number when the card has no interval."""
    value = metric(card, name, split)
    if value is None:
        return "n/a"
    ci = interval(card, name, split)
    return f"{value:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")


def best_on_validation(cards: Sequence[dict[str, Any]]) -> str | None:
    """The non-leaky entry with the highest validation balanced accuracy (macro AUC breaks ties)."""
    ranked = [c for c in cards if not c.get("leaky") and metric(c, "balanced_accuracy", "val") is not None]
    if not ranked:
        return None
    return max(ranked, key=lambda c: (metric(c, "balanced_accuracy", "val"), metric(c, "macro_auc", "val") or 0.0))["name"]


def signed_interval(d: dict[str, Any]) -> str:
    """'+0.030 [-0.027, +0.091]': a paired difference with its 95% interval (RESULTS, reports)."""
    return f"{d['estimate']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def versus(card: dict[str, Any], other: str) -> dict[str, Any] | None:
    """The card's paired difference to `other` (this minus other), from any comparison role."""
    for diffs in (card.get("comparisons") or {}).values():
        if other in diffs:
            return diffs[other]
    return None


def versus_text(card: dict[str, Any], other: str, name: str = "balanced_accuracy") -> str:
    """'-0.031 (-0.08 to +0.02): indistinguishable' for a table cell; '' when not compared."""
    if card.get("name") == other:
        return "best on validation"
    diff = versus(card, other)
    if not diff:
        return ""
    d = diff[name]
    return f"{d['estimate']:+.3f} ({d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}): {_verdict(d)}"


def _verdict(d: dict[str, Any]) -> str:
    return "indistinguishable" if not d["excludes_zero"] else "better" if d["estimate"] > 0 else "worse"


def anchor_words(card: dict[str, Any]) -> str:
    """The card's `anchor` block (`python -m training.anchor --pair-entries --update-cards`) as one About line:
    does this network beat a plain logistic regression on the same always-filled fields? '' when not paired."""
    block = card.get("anchor") or {}
    parts, beats = [], []
    for split, what in (("test_complete", "on the {n} held-out complete cases (every optional history field filled in)"),
                        ("test", "on all {n} held-out cases")):
        if split in block:
            b, a = block[split]["balanced_accuracy"], block[split]["macro_auc"]
            where = what.format(n=block[split]["n_cases"])
            parts.append(f"{where}, balanced accuracy {signed_interval(b)} ({_verdict(b)}), "
                         f"macro AUC {signed_interval(a)} ({_verdict(a)})")
            if _verdict(b) == "better":
                beats.append(where)
    if not parts:
        return ""
    return (f"- **Against a simple baseline** (class-balanced logistic regression on {', '.join(block['fields'])}; "
            f"this entry minus it, paired, 95% intervals): {'; '.join(parts)}. "
            + (f"It decides better than that baseline {' and '.join(beats)}." if beats else
               "It has not shown that it decides better than that baseline."))


def anchor_cell(card: dict[str, Any]) -> str:
    """A table cell: entry minus the anchor in balanced accuracy on complete test cases where the dataset has
    them (else all test cases), e.g. '+0.028 (-0.185 to +0.163): indistinguishable, 39 complete cases'."""
    block = card.get("anchor") or {}
    split = next((s for s in ("test_complete", "test") if s in block), None)
    if split is None:
        return ""
    d = block[split]["balanced_accuracy"]
    return (f"{d['estimate']:+.3f} ({d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}): {_verdict(d)}, "
            f"{block[split]['n_cases']} {'complete' if split == 'test_complete' else 'test'} cases")


def indistinguishable_sentence(cards: Sequence[dict[str, Any]]) -> str:
    """Which entries cannot be told apart from the best (chosen on validation) on this test split."""
    best = best_on_validation(cards)
    if best is None:
        return ""
    ties = [c["name"] for c in cards if c["name"] != best and (d := versus(c, best))
            and not d["balanced_accuracy"]["excludes_zero"]]
    worse = [c["name"] for c in cards if c["name"] != best and (d := versus(c, best))
             and d["balanced_accuracy"]["excludes_zero"]]
    text = (f"Best on validation: **{best}**. On the test split, by the paired 95% interval of the "
            f"difference in balanced accuracy, ")
    if ties:
        text += f"{len(ties)} entr{'y is' if len(ties) == 1 else 'ies are'} indistinguishable from it ({', '.join(ties)})"
    else:
        text += "no entry is indistinguishable from it"
    if worse:
        text += f"; {len(worse)} differ{'s' if len(worse) == 1 else ''} from it ({', '.join(worse)})"
    return text + ". Overlapping bars below are not a test; the paired interval is."


def interval_rows(cards: Sequence[dict[str, Any]], name: str = "balanced_accuracy") -> list[dict[str, Any]]:
    """Rows for `skinui.plots.interval_figure`: one per card with a test interval, best on validation highlighted."""
    best = best_on_validation(cards)
    rows = []
    for c in cards:
        ci, value = interval(c, name), metric(c, name)
        if ci and value is not None:
            label = c["name"] + (" (leaky)" if c.get("leaky") else "")
            rows.append({"label": label, "estimate": value, "lo": ci[0], "hi": ci[1], "highlight": c["name"] == best})
    return sorted(rows, key=lambda r: -r["estimate"])
