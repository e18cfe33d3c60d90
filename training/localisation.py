"""`python -m training.localisation`: does an entry's Grad-CAM sit on the lesion? Measured, per layer.

    python -m training.localisation --weights weights/NAME --data-root DIR [--split val|test]
        [--layers bn2 blocks.4 blocks.5] [--max-cases N] [--out FILE.json]

For every case of the split that has a lesion mask (PAD-UFES-20's masks, SynthDerm's per-image
masks), Grad-CAM of the predicted class is taken at each candidate layer of each image branch and
scored by `skinui.explain.measures`: energy inside the lesion and the pointing game, beside the
centre-Gaussian baseline and the lesion's own area share (what a uniform map scores). Choose the
layer on `--split val`; then report `--split test` once with the chosen layer.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _module(net: Any, path: str) -> Any:
    for part in path.split("."):
        net = net[int(part)] if part.isdigit() else getattr(net, part)
    return net


def measure(entry: Any, cases: list[Any], layers: list[str]) -> dict[str, dict[str, Any]]:
    """{"<modality>@<layer>": summary} over the cases that carry that modality's mask."""
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
                enc.set_target_layer(_module(enc.net, layer))
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
                        "energy": energy_in_mask(cam, mask), "pointing": pointing_game(cam, mask),
                        "area": float(mask.mean()), "centre_energy": energy_in_mask(centre, mask),
                        "centre_pointing": pointing_game(centre, mask)})
    finally:
        for m, enc in encoders.items():
            enc.set_target_layer(original[m])
    return {key: summarise(r) for key, r in rows.items()}


def main(argv: list[str] | None = None) -> int:
    from skinui.zoo import load_entry
    from training.evaluate import EvaluationError, select_cases

    ap = argparse.ArgumentParser(prog="python -m training.localisation", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="weights/NAME")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--layers", nargs="+", default=["bn2", "blocks.5", "blocks.4"],
                    help="module paths inside the timm backbone (default: the app's bn2, then earlier ones)")
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    path = Path(args.weights)
    entry = load_entry(path.name.removesuffix(".json"), path.parent)
    try:
        cases, _, note = select_cases(entry.card, entry.card["dataset"], Path(args.data_root).resolve(), args.split)
    except EvaluationError as err:
        print(str(err), file=sys.stderr)
        return 2
    cases = cases[: args.max_cases] if args.max_cases else cases
    result = {"entry": entry.name, "split": args.split, "note": note,
              "layers": measure(entry, cases, args.layers)}
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0 if result["layers"] else 1


if __name__ == "__main__":
    sys.exit(main())
