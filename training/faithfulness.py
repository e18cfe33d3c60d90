"""`python -m training.faithfulness`: does an entry's Grad-CAM point at what the model uses? Deletion and insertion.

    python -m training.faithfulness --weights weights/NAME --data-root DIR [--split val|test]
        [--max-cases N] [--steps 16] [--baseline blur|mean] [--random map|pixel] [--seeds 3] [--out FILE.json]
    python -m training.faithfulness --table docs/explanations [--write docs/EXPLANATIONS.md] [--update-cards]

For every case of the split and every image it carries, Grad-CAM of the predicted class (the card's
layer, as the app draws it) orders the pixels; `skinui.explain.faithfulness` deletes the most
salient first (and inserts them into the blurred image), tracks the calibrated probability of that
class, and does the same for random maps of the same coarseness. `--max-cases N` takes a seeded
random sample of the split (not its first N: some datasets list their cases by class).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from skinui.views import decision
from training.measure_cli import case_group, entry_and_cases, entry_measure_parser, to_json, write_blocks

CARD_KEYS = ("n", "deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc",
             "beats_random_deletion", "beats_random_insertion", "full_probability", "baseline_probability")
MARGINS = ("deletion_margin", "insertion_margin")  # random minus map (deletion), map minus random (insertion)


def margins(image: dict[str, Any], n_boot: int = 2000) -> dict[str, Any]:
    """By how much the map beats random per case, averaged, with 95% bootstrap intervals over lesions or
    patients (a row without a `group` counts as its own): {"deletion_margin", "insertion_margin",
    "n_groups"}, each margin {"estimate", "ci"}; positive = better than random. Replaces the summary's
    normal-approximation intervals over cases."""
    from skinui.stats import bootstrap_mean

    rows = image.get("cases") or []
    if not rows:
        return {}
    groups = [r.get("group") or r["case_id"] for r in rows]
    d = bootstrap_mean([r["random_deletion_auc"] - r["deletion_auc"] for r in rows], groups, n_boot)
    i = bootstrap_mean([r["insertion_auc"] - r["random_insertion_auc"] for r in rows], groups, n_boot)

    def kept(b: dict[str, Any]) -> dict[str, Any]:
        # 6 decimals: the inputs carry 4, and the last float digits move with summation order between
        # machines, which would rewrite every card on each re-tabulation
        return {"estimate": None if b["estimate"] is None else round(b["estimate"], 6),
                "ci": [None if v is None else round(v, 6) for v in b["ci"]]}

    return {"deletion_margin": kept(d), "insertion_margin": kept(i), "n_groups": d["n_groups"],
            "interval": "95% percentile bootstrap over lesions/patients (2000 replicates)"}


def fmt_ci(block: dict[str, Any] | None, digits: int = 3, signed: bool = False) -> str:
    """"0.083 [0.071, 0.095]" (a signed "+0.083 [...]" with `signed`); "n/a" where undefined."""
    if not block or block.get("estimate") is None:
        return "n/a"
    f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    lo, hi = block.get("ci") or (None, None)
    return f.format(block["estimate"]) + (f" [{f.format(lo)}, {f.format(hi)}]" if lo is not None else "")


def layer_name(encoder: Any) -> str:
    """The Grad-CAM layer's module path inside the backbone (e.g. "bn2", "blocks.4")."""
    net, layer = getattr(encoder, "net", encoder), encoder.target_layer
    return next((name for name, mod in net.named_modules() if mod is layer), "?")


def sample(cases: list[Any], max_cases: int | None, seed: int = 0) -> list[Any]:
    """At most `max_cases`, drawn at random with `seed` and kept in the split's order."""
    if not max_cases or max_cases >= len(cases):
        return cases
    keep = np.sort(np.random.default_rng(seed).choice(len(cases), max_cases, replace=False))
    return [cases[i] for i in keep]


def case_row(case: Any, row: dict[str, Any], classes: list[str], group: str | None = None) -> dict[str, Any]:
    """One case's numbers, rounded: what the JSON keeps per case (enough for the paired intervals), with the
    lesion or patient the bootstrap resamples by."""
    return {"case_id": case.case_id, "group": group or case.case_id, "target": classes[row["target"]],
            "full": round(row["full"], 4),
            "baseline": round(row["baseline"], 4),
            **{f"{p}{k}_auc": round(row[kind][f"{k}_auc"], 4)
               for kind, p in (("map", ""), ("random", "random_")) for k in ("deletion", "insertion")}}


def measure(entry: Any, cases: list[Any], steps: int = 16, baseline: str = "blur", seeds: int = 3,
            random: str = "map") -> dict[str, dict[str, Any]]:
    """{modality: {"layer", "grid", "summary", "cases"}} over every case that carries that image."""
    from skinui.explain import gradcams
    from skinui.explain.faithfulness import case_faithfulness, feature_grid, summarise

    rows: dict[str, list[dict[str, Any]]] = {}
    kept: dict[str, list[dict[str, Any]]] = {}
    grids: dict[str, int | None] = {}
    flat: dict[str, int] = {}
    for i, case in enumerate(cases):
        encoded = entry.encode(case)
        for m, cam in gradcams(encoded).items():
            if m not in grids:
                grids[m] = feature_grid(encoded, m) if random == "map" else None
            flat[m] = flat.get(m, 0) + int(float(np.ptp(cam)) <= 0)
            row = case_faithfulness(encoded, m, cam, steps=steps, baseline=baseline,
                                    seeds=tuple(range(seeds)), grid=grids[m])
            rows.setdefault(m, []).append(row)
            kept.setdefault(m, []).append(case_row(case, row, entry.classes, case_group(entry.card, case)))
        if (i + 1) % 50 == 0:
            print(f"{entry.name}: {i + 1}/{len(cases)} cases", file=sys.stderr, flush=True)
    encoders = entry.model.image_encoders
    return {m: {"layer": layer_name(encoders[m]), "grid": grids[m],
                "summary": {**summarise(r), "flat_maps": flat[m]}, "cases": kept[m]} for m, r in rows.items()}


def load_results(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """entry -> split -> the JSON written by a measuring run (NAME.faith-val.json, NAME.faith-test.json)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.faith-*.json")):
        result = json.loads(path.read_text())
        out.setdefault(result["entry"], {})[result["split"]] = result
    return out


def table(folder: Path) -> str:
    """Markdown: per entry and image, the test split's areas for the map and for random, the mean margins
    by which the map beats random with their intervals, the share of cases where it does, and the same
    shares on validation (a replication)."""
    def pair(s: dict[str, Any], a: str, b: str) -> str:
        return f"{s[a]:.3f} · {s[b]:.3f}"

    lines = ["| entry · image | layer | test cases | p(class): image → blurred | deletion AUC: map · random ↓ | "
             "insertion AUC: map · random ↑ | map better than random, deletion (95% CI) | map better than random, "
             "insertion (95% CI) | map beats random: deletion · insertion | val (cases): beats random |",
             "|---|---|---:|---|---|---|---:|---:|---|---|"]
    for entry, splits in load_results(folder).items():
        test, val = splits.get("test"), splits.get("val")
        if test is None:
            continue
        for m, image in test["images"].items():
            s = image["summary"]
            v = ((val or {}).get("images") or {}).get(m, {}).get("summary")
            val_cell = f"{pair(v, 'beats_random_deletion', 'beats_random_insertion')} ({v['n']})" if v else "n/a"
            b = margins(image)
            lines.append(f"| `{entry}` · {m} | {image['layer']} | {s['n']} | {s['full_probability']:.3f} → "
                         f"{s['baseline_probability']:.3f} | {pair(s, 'deletion_auc', 'random_deletion_auc')} | "
                         f"{pair(s, 'insertion_auc', 'random_insertion_auc')} | "
                         f"{fmt_ci(b.get('deletion_margin'), signed=True)} | {fmt_ci(b.get('insertion_margin'), signed=True)} | "
                         f"{pair(s, 'beats_random_deletion', 'beats_random_insertion')} | {val_cell} |")
    return "\n".join(lines) + "\n"


def card_block(splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The card's `explain_faithfulness`: per image, the method and each split's compact summary with the
    margins over random and their 95% intervals."""
    block: dict[str, Any] = {}
    for split, result in sorted(splits.items()):
        for m, image in result["images"].items():
            entry = block.setdefault(m, {"layer": image["layer"], **result["method"]})
            entry[split] = {**{k: image["summary"][k] for k in CARD_KEYS}, **margins(image)}
    return block


def update_cards(folder: Path, weights_dir: str) -> list[str]:
    """Write `explain_faithfulness` into each measured entry's card (`write_blocks`: and out of the others)."""
    return write_blocks(weights_dir, "explain_faithfulness",
                        {name: card_block(splits) for name, splits in load_results(folder).items()})


def run_table(args: argparse.Namespace) -> int:
    body = table(args.table)
    if args.write:
        from training.markdown import write_section

        write_section(args.write, "faithfulness", body,
                      f"python -m training.faithfulness --table {args.table} --write {args.write}")
    else:
        print(body)
    if args.update_cards:
        print("cards updated: " + ", ".join(update_cards(args.table, args.weights_dir)), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from skinui.explain.faithfulness import BASELINES

    ap = entry_measure_parser("python -m training.faithfulness", __doc__.splitlines()[0], "*.faith-*.json",
                              "each entry's explain_faithfulness")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--baseline", default="blur", choices=list(BASELINES))
    ap.add_argument("--random", default="map", choices=["map", "pixel"],
                    help="random reference on the Grad-CAM layer's grid (default) or per pixel")
    ap.add_argument("--seeds", type=int, default=3, help="random maps averaged per case")
    args = ap.parse_args(argv)
    if args.table is not None:
        return run_table(args)
    found = entry_and_cases(ap, args)
    if found is None:
        return 2
    entry, cases, note = found
    chosen = sample(cases, args.max_cases)
    if len(chosen) < len(cases):
        note += f"; a random sample (seed 0) of {len(chosen)} of its {len(cases)} cases"
    start = time.perf_counter()
    images = measure(entry, chosen, args.steps, args.baseline, args.seeds, args.random)
    method = {"steps": args.steps, "baseline": args.baseline, "random": args.random, "seeds": args.seeds,
              "target": "predicted class (calibrated decision)"}
    result = {"entry": entry.name, "split": args.split, "note": note, "views": decision(entry.card), "method": method,
              "seconds": round(time.perf_counter() - start, 1), "images": images}
    if args.out:
        Path(args.out).write_text(to_json(result) + "\n")
    print(json.dumps({**result, "images": {m: {k: v for k, v in i.items() if k != "cases"}
                                           for m, i in images.items()}}, indent=1))
    return 0 if images else 1


if __name__ == "__main__":
    sys.exit(main())
