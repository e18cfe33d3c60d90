"""`python -m training.trust_tables --write docs/TRUST.md`: the trust measurements, read from the cards.

Three generated blocks (prose around them is hand-written): `trust-sets` (conformal coverage and
set size on test), `trust-ood` (detector AUROC per non-lesion set, one row per detector) and
`trust-uncertainty` (AUROC for detecting wrong decisions). The numbers are those
`python -m training.trust ... --update-cards` measured and stored in each card.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from skinui.views import decision
from training.markdown import write_section

COMMAND = "python -m training.trust_tables --write docs/TRUST.md"
OOD_SETS = ("natural", "faces", "documents", "synthetic-skin", "other-modality", "other-dataset", "real-lesions")


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _worst(per_class: dict[str, Any], among: list[str]) -> str:
    found = [(k, per_class[k]) for k in among if per_class[k]["coverage"] is not None]
    if not found:
        return "n/a"
    k, v = min(found, key=lambda kv: kv[1]["coverage"])
    return f"{k} {v['coverage']:.2f} (n={v['n']})"


def sets_table(cards: list[dict[str, Any]]) -> str:
    rows = ["| entry | sets | n val | test coverage (target band) | mean size | singletons | lowest class coverage | "
            "lowest among classes with their own bound | rare classes on the marginal bound |",
            "|---|---|---|---|---|---|---|---|---|"]
    for c in cards:
        b = c.get("conformal")
        if not b:
            continue
        t = b["test"]
        lo, hi = t["band"]
        ok = "" if lo <= t["coverage"] else " ⚠️"
        fallback = b.get("fallback") or []
        own = [k for k in t["per_class"] if b["mode"] != "marginal" and k not in fallback]
        rows.append(f"| {c['name']} | {b['score']}/{b['mode']} | {b['n_calibration']} | {t['coverage']:.3f}{ok} "
                    f"({lo:.2f}–{hi:.2f}, n={t['n']}) | {t['mean_size']:.2f} | {t['singletons']:.0%} | "
                    f"{_worst(t['per_class'], list(t['per_class']))} | {_worst(t['per_class'], own) if own else '—'} | "
                    f"{', '.join(fallback) or '—'} |")
    return "\n".join(rows) + "\n"


def ood_table(cards: list[dict[str, Any]]) -> str:
    """One row per detector (entries sharing an encoder share it and its numbers)."""
    seen: dict[str, list[str]] = {}
    first: dict[str, tuple[str, dict[str, Any]]] = {}
    for c in cards:
        for m, b in (c.get("ood") or {}).items():
            seen.setdefault(b["sha256"], []).append(c["name"])
            first.setdefault(b["sha256"], (m, b))
    present = [s for s in OOD_SETS if any(s in b["auroc_vs_test"] for _, b in first.values())]
    rows = ["| detector (entries) | image | val retention | test retention | " + " | ".join(present) + " |",
            "|---|---|---|---|" + "---|" * len(present)]
    for sha, (m, b) in first.items():
        names = seen[sha]
        who = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more sharing its encoder"
        cells = [f"{b['auroc_vs_test'][s]['auroc']:.3f} ({b['auroc_vs_test'][s]['flagged']:.0%})"
                 if s in b["auroc_vs_test"] else "—" for s in present]
        rows.append(f"| {who} | {m} | {b['retention_val']:.0%} | {b['test_retention']:.0%} (n={b['n_test']}) | "
                    + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


VIEWS_WORDS = {"averaged": "**4 views averaged**", "single": "the photo"}  # the card's `views` decision


def uncertainty_table(cards: list[dict[str, Any]]) -> str:
    measures = ("1 - max probability", "test-time-augmentation spread", "branch disagreement")
    rows = ["| entry | test errors / cases | " + " | ".join(measures) + " | balanced acc., 4 views averaged | "
            "predicts from |", "|---|---|" + "---|" * len(measures) + "---|---|"]
    for c in cards:
        u = c.get("uncertainty")
        if not u:
            continue
        val = u.get("error_auroc_val") or {}
        cells = [f"{_f(u['error_auroc'].get(m))} (val {_f(val.get(m), 2)})" if m in u["error_auroc"] else "—"
                 for m in measures]
        t = u.get("tta") or {}
        tta = t.get("test_balanced_accuracy_averaged_views")
        plain = t.get("test_balanced_accuracy_single_view", (c.get("metrics") or {}).get("balanced_accuracy"))
        on_val = ""
        if t.get("val_balanced_accuracy_averaged_views") is not None:  # the decision is read here
            on_val = (f"; val {_f(t['val_balanced_accuracy_averaged_views'])} "
                      f"(single {_f(t['val_balanced_accuracy_single_view'])})")
        rows.append(f"| {c['name']} | {u['test_errors']} / {u['n_test']} | " + " | ".join(cells)
                    + f" | {_f(tta)} (single view {_f(plain)}){on_val} | {VIEWS_WORDS[decision(c)] if t else '—'} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    from skinui.zoo import list_entries

    ap = argparse.ArgumentParser(prog="python -m training.trust_tables", description=__doc__)
    ap.add_argument("--weights-dir", default="weights")
    ap.add_argument("--write", default="docs/TRUST.md")
    args = ap.parse_args(argv)
    cards = list_entries(args.weights_dir)
    out = Path(args.write)
    for key, body in (("trust-sets", sets_table(cards)), ("trust-ood", ood_table(cards)),
                      ("trust-uncertainty", uncertainty_table(cards))):
        write_section(out, key, body, COMMAND)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
