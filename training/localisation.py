"""`python -m training.localisation`: does an entry's Grad-CAM sit on the lesion? Measured, per layer.

    python -m training.localisation --weights weights/NAME --data-root DIR [--split val|test]
        [--layers bn2 blocks.4 blocks.5] [--max-cases N] [--out FILE.json]
    python -m training.localisation --table docs/explanations [--write docs/EXPLANATIONS.md]

For every case of the split that has a lesion mask (PAD-UFES-20's masks, SynthDerm's per-image
masks), Grad-CAM of the predicted class is taken at each candidate layer of each image branch and
scored by `skinui.explain.measures`: energy inside the lesion and the pointing game, beside the
centre-Gaussian baseline and the lesion's own area share (what a uniform map scores), with 95%
bootstrap intervals over lesions/patients (the JSON keeps one row per case, so they can be recomputed).
Choose the layer on `--split val`; then report `--split test` once with the chosen layer.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from skinui.views import decision
from training.measure_cli import case_group, entry_and_cases, entry_measure_parser, to_json, write_blocks


def measure(entry: Any, cases: list[Any], layers: list[str]) -> dict[str, dict[str, Any]]:
    """{"<modality>@<layer>": summary with intervals, and "cases": one row per case} over the cases that
    carry that modality's mask."""
    from skinui.explain import gradcams
    from skinui.explain.measures import (
        case_mask,
        centre_baseline,
        energy_in_mask,
        mask_in_input_frame,
        pointing_game,
        summarise,
    )

    encoders = entry.model.image_encoders
    original = {m: enc.target_layer for m, enc in encoders.items()}
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        for layer in layers:
            for enc in encoders.values():
                enc.set_target_path(layer)
            for case in cases:
                masks = {m: case_mask(case, m) for m in encoders}
                if not any(v is not None for v in masks.values()):
                    continue
                encoded = entry.encode(case)
                for m, cam in gradcams(encoded).items():
                    if masks.get(m) is None:
                        continue
                    mask = mask_in_input_frame(masks[m], cam.shape[0])
                    centre = centre_baseline(cam.shape)
                    rows.setdefault(f"{m}@{layer}", []).append({
                        "case_id": case.case_id, "group": case_group(entry.card, case),
                        "energy": energy_in_mask(cam, mask), "pointing": pointing_game(cam, mask),
                        "area": float(mask.mean()), "centre_energy": energy_in_mask(centre, mask),
                        "centre_pointing": pointing_game(centre, mask)})
    finally:
        for m, enc in encoders.items():
            enc.set_target_layer(original[m])
    return {key: {**summarise(r), "cases": [_rounded(x) for x in r]} for key, r in rows.items()}


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """A case's row as the JSON keeps it (4 decimals: enough to recompute every interval)."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def chosen(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """entry -> image modality -> the layer chosen on validation (highest energy in lesion) with its
    validation and test measurements (the test read once, with that layer)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for val_path in sorted(folder.glob("*.val.json")):
        test_path = val_path.with_name(val_path.name.replace(".val.json", ".test.json"))
        if not test_path.is_file():
            continue
        val, test = json.loads(val_path.read_text()), json.loads(test_path.read_text())
        best: dict[str, tuple[str, dict[str, Any]]] = {}
        for key, s in val["layers"].items():
            modality, layer = key.split("@")
            if s["energy_in_lesion"] is not None and (
                    modality not in best or s["energy_in_lesion"] > best[modality][1]["energy_in_lesion"]):
                best[modality] = (layer, s)
        for modality, (layer, v) in sorted(best.items()):
            t = test["layers"].get(f"{modality}@{layer}")
            if t:
                out.setdefault(val["entry"], {})[modality] = {"layer": layer, "val": v, "test": t}
    return out


CARD_KEYS = ("n", "energy_in_lesion", "pointing_game", "lesion_area", "centre_energy_in_lesion", "centre_pointing_game")
INTERVAL_KEYS = ("energy_in_lesion_ci", "pointing_game_ci", "energy_minus_centre", "pointing_minus_centre", "n_groups")


def card_block(choice: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The card's `explain` block: the Grad-CAM layer per image and what it measured (the app shows it),
    with the test split's 95% bootstrap intervals where the measurement kept its cases."""
    def keep(s: dict[str, Any]) -> dict[str, Any]:
        return {k: s[k] for k in (*CARD_KEYS, *INTERVAL_KEYS) if k in s}

    return {"gradcam_layer": {m: c["layer"] for m, c in choice.items()},
            "chosen_on": "validation: highest share of Grad-CAM energy inside the lesion masks "
                         "(python -m training.localisation; docs/EXPLANATIONS.md)",
            "localisation": {m: {"val": {k: c["val"][k] for k in CARD_KEYS}, "test": keep(c["test"])}
                             for m, c in choice.items()}}


def verdict(margin: dict[str, Any] | None) -> str:
    """Does the map beat the centre blob? "yes"/"no" where the interval of the difference excludes 0,
    "tie" where it does not, "n/a" without an interval."""
    if not margin or margin.get("estimate") is None or not margin.get("ci") or margin["ci"][0] is None:
        return "n/a"
    lo, hi = margin["ci"]
    return "yes" if lo > 0 else "no" if hi < 0 else "tie"


def table(folder: Path) -> str:
    """Markdown: per entry and image, the layer chosen on validation (highest energy in lesion) and its
    test numbers with 95% intervals, beside the uniform-map floor (lesion area) and the centre baseline,
    and the paired difference to that baseline."""
    from training.faithfulness import fmt_ci

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    def with_ci(t: dict[str, Any], key: str) -> str:
        return fmt_ci({"estimate": t.get(key), "ci": t.get(f"{key}_ci")})

    lines = ["| entry · image | layer (chosen on val) | val energy | test cases | test energy in lesion (95% CI) | "
             "area (uniform) | centre energy | energy − centre (95% CI) | test pointing (95% CI) | centre pointing | "
             "pointing − centre (95% CI) | beats centre? |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for entry, images in chosen(folder).items():
        for modality, c in images.items():
            v, t = c["val"], c["test"]
            lines.append(f"| `{entry}` · {modality} | {c['layer']} | {fmt(v['energy_in_lesion'])} | {t['n']} | "
                         f"{with_ci(t, 'energy_in_lesion')} | {fmt(t['lesion_area'])} | {fmt(t['centre_energy_in_lesion'])} | "
                         f"{fmt_ci(t.get('energy_minus_centre'), signed=True)} | {with_ci(t, 'pointing_game')} | "
                         f"{fmt(t['centre_pointing_game'])} | {fmt_ci(t.get('pointing_minus_centre'), signed=True)} | "
                         f"{verdict(t.get('energy_minus_centre'))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = entry_measure_parser("python -m training.localisation", __doc__.splitlines()[0], "*.val/test.json",
                              "each entry's chosen Grad-CAM layer and its numbers")
    ap.add_argument("--layers", nargs="+", default=["bn2", "blocks.5", "blocks.4"],
                    help="module paths inside the timm backbone (default: the app's bn2, then earlier ones)")
    args = ap.parse_args(argv)
    if args.table is not None:
        body = table(args.table)
        if args.write:
            from training.markdown import write_section

            write_section(args.write, "localisation", body, f"python -m training.localisation --table {args.table} "
                          f"--write {args.write}")
        else:
            print(body)
        if args.update_cards:
            write_blocks(args.weights_dir, "explain", {name: card_block(c) for name, c in chosen(args.table).items()})
        return 0
    found = entry_and_cases(ap, args)
    if found is None:
        return 2
    entry, cases, note = found
    cases = cases[: args.max_cases] if args.max_cases else cases
    result = {"entry": entry.name, "split": args.split, "note": note, "views": decision(entry.card),
              "layers": measure(entry, cases, args.layers)}
    if args.out:
        Path(args.out).write_text(to_json(result) + "\n")
    print(json.dumps({**result, "layers": {k: {x: v for x, v in s.items() if x != "cases"}
                                           for k, s in result["layers"].items()}}, indent=1))
    return 0 if result["layers"] else 1


if __name__ == "__main__":
    sys.exit(main())
