"""`python -m training.seeds`: re-train stage-2 configs with other training seeds, same split, and tabulate.

One split and one seed cannot tell a 0.2-point difference from noise. This re-runs each config
with `train.seed=K` for every K given (seed 0 is the shipped entry, read from its card), exporting
into a scratch zoo under OUT (never into `weights/`), and prints a markdown table of the test
metrics, mean ± sample std over all seeds:

    python -m training.seeds --configs synthderm_late_concat synthderm_jiadf --seeds 1 2 3 4 [--update-cards]

`--update-cards` writes mean, sample sd and the per-seed values into each shipped card's `seeds`
block, which RESULTS and the app show next to the shipped seed.

Only stage-2 configs (`train.mode: features`): their frozen stage-1 encoders are copied from
`weights/` into the scratch zoo, so every seed trains the same head on the same features.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from training.study import mean_std

REPO = Path(__file__).resolve().parents[1]


def scratch_zoo(backbones: set[str], weights: Path, target: Path) -> None:
    """`target` holds the shared files and the stage-1 entries `backbones`, as they are in `weights` now.

    Files are refreshed when they differ: a scratch zoo outlives the runs that made it, and a
    retrained stage-1 entry or a new out-of-distribution file must reach the next seed's run.
    """
    import filecmp

    (target / "shared").mkdir(parents=True, exist_ok=True)
    wanted = [(p, target / "shared" / p.name) for p in sorted((weights / "shared").iterdir()) if p.is_file()]
    wanted += [(weights / f"{n}{ext}", target / f"{n}{ext}") for n in sorted(backbones) for ext in (".json", ".safetensors")]
    for src, dst in wanted:
        if not dst.is_file() or not filecmp.cmp(src, dst, shallow=False):
            shutil.copyfile(src, dst)


def run_seed(cfg: dict[str, Any], seed: int, out: Path, weights: Path, data_root: str | None = None) -> dict[str, Any]:
    """Train the resolved config `cfg` with `train.seed=seed` into a scratch zoo; its test report."""
    import training.export as export
    from skinui.zoo import predates_decision_check
    from training.loop import fit

    cfg = {**cfg, "train": {**cfg["train"], "seed": seed}}
    # Every seed reads the same frozen-encoder features (the views are deterministic): one cache
    # under OUT for all seeds, not one per seed folder.
    cfg["cache"] = {**cfg["cache"], "dir": cfg["cache"].get("dir") or str(out / "_cache")}
    config = cfg["name"]
    if cfg["train"]["mode"] != "features":
        raise SystemExit(f"{config} is not a stage-2 config (train.mode: features); seeds re-runs only those.")
    run_dir, zoo = out / f"seed{seed}" / cfg["name"], out / f"seed{seed}" / "weights"
    from training.stage2 import backbone_entries

    image_mods = [m for m in cfg["model"]["modalities"] if m != "metadata"]
    backbones = sorted(backbone_entries(cfg["stage2"]["backbone"], image_mods)) if image_mods else []
    # A finished run is reused only if it was trained on the encoders that ship now: a retrained
    # stage-1 entry makes every earlier seed run of its stage-2 entries stale.
    made_on = {n: json.loads((weights / f"{n}.json").read_text()).get("sha256") for n in backbones}
    stamp = run_dir / "backbones.json"
    fresh = (run_dir / "report_test.json").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == made_on
    if not fresh:
        if backbones:
            scratch_zoo(set(backbones), weights, zoo)
        fit(cfg, data_root, str(run_dir), "cpu", command=f"python -m training.seeds --configs {config} --seeds {seed}",
            weights_dir=str(zoo))
        stamp.write_text(json.dumps(made_on) + "\n")
    elif (card := zoo / f"{config}.json").is_file() and predates_decision_check(json.loads(card.read_text())):
        # Same weights, exported before today's decision rule (the decision-weight and views checks): score
        # them again under it, so the seeds are compared with the shipped seed 0 under one rule. No retraining.
        if (run_dir / "best.safetensors").is_file():
            export.export_run(str(run_dir), str(zoo), data_root, "cpu")
        else:  # a run `fit` did not checkpoint (FusionM4Net's stages): from the scratch zoo's stored entry
            export.reexport_entry(str(card), data_root, run_dir=run_dir)
    return json.loads((run_dir / "report_test.json").read_text())


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| entry | bal. acc. | macro AUC | macro F1 | per seed (bal. acc.) | seeds |", "|---|---|---|---|---|---|"]
    for name, reps in sorted(results.items(), key=lambda kv: -np.mean([r["balanced_accuracy"] for r in kv[1]])):
        bacc = [r["balanced_accuracy"] for r in reps]
        lines.append(f"| `{name}` | {mean_std(bacc)} | {mean_std([r['macro']['auc'] for r in reps])} | "
                     f"{mean_std([r['macro_f1'] for r in reps])} | {', '.join(f'{b:.3f}' for b in bacc)} | {len(reps)} |")
    return "\n".join(lines)


def seed_summary(reports: list[dict[str, Any]], seeds: list[int], command: str) -> dict[str, Any]:
    """The card's `seeds` block: test metrics over training seeds (seed 0 = the shipped entry)."""
    def stats(values: list[float]) -> dict[str, Any]:
        arr = np.asarray(values, dtype=np.float64)
        return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
                "values": [float(v) for v in arr]}

    return {"seeds": seeds, "split": "test", "command": command,
            "balanced_accuracy": stats([r["balanced_accuracy"] for r in reports]),
            "macro_auc": stats([r["macro"]["auc"] for r in reports]),
            "macro_f1": stats([r["macro_f1"] for r in reports])}


def main(argv: list[str] | None = None) -> int:
    from training.config import load_config

    ap = argparse.ArgumentParser(prog="python -m training.seeds", description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", required=True, help="stage-2 config names (training/configs/NAME.yaml)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4], help="extra training seeds (0 = shipped)")
    ap.add_argument("--out", default=str(REPO / "runs" / "seeds"))
    ap.add_argument("--weights-dir", default=str(REPO / "weights"), help="the zoo holding the seed-0 entries")
    ap.add_argument("--update-cards", action="store_true",
                    help="write mean and sd over the seeds into each shipped card (its `seeds` block)")
    args = ap.parse_args(argv)
    weights, out = Path(args.weights_dir), Path(args.out)
    results: dict[str, list[dict[str, Any]]] = {}
    for config in args.configs:
        card = json.loads((weights / f"{config}.json").read_text())  # seed 0: the shipped entry
        if card["training"].get("seed", 0) != 0:
            raise SystemExit(f"{config} in {weights} was not trained with seed 0.")
        results[config] = [card["metrics"]]
        for seed in args.seeds:
            cfg = load_config(REPO / "training" / "configs" / f"{config}.yaml")
            results[config].append(run_seed(cfg, seed, out, weights))
            print(f"{config} seed {seed}: balanced accuracy {results[config][-1]['balanced_accuracy']:.3f}",
                  file=sys.stderr)
    print(table(results))
    if args.update_cards:
        from skinui.zoo import write_card

        for config, reports in results.items():
            card = json.loads((weights / f"{config}.json").read_text())
            command = f"python -m training.seeds --configs {config} --seeds {' '.join(map(str, args.seeds))}"
            card["seeds"] = seed_summary(reports, [0, *args.seeds], command)
            write_card(card, weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
