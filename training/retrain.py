"""`python -m training.retrain`: retrain every shipped entry of one dataset, then re-measure it, in one command.

    python -m training.retrain --dataset ham10000 [--data-root DIR] [--device auto] [--seeds 1 2 3 4] [--dry-run]

The shipped entries are those in `weights/` whose card names the dataset and whose config exists
in `training/configs/`. Each is refitted from its config in dependency order (stage-1 encoders and
metadata-only entries first, then every stage-2 entry once the entries its `stage2.backbone` names
exist), then the whole dataset is re-measured: trust blocks (`training.trust`), evaluation reports
and intervals (`training.reports`), the stage-2 seeds (`training.seeds`), the metadata anchor's paired
differences where the dataset has one (`training.anchor --pair-entries`) and the RESULTS and TRUST
tables. A stage-1 config with `train.mode: full` (e.g. `ham10000_image_gpu.yaml`) wants a GPU; on a
CPU it still runs, slowly (docs/BENCHMARKS.md gives the cost). Retraining a stage-1 encoder replaces
its `weights/shared/` file, so its old file is removed first (the zoo refuses to overwrite a shared
file in use). `--dry-run` prints the commands without running them.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from training.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "training" / "configs"


def shipped(dataset: str, weights_dir: Path) -> dict[str, dict[str, Any]]:
    """Entry name -> resolved config, for the dataset's entries that have a config file."""
    out = {}
    for card_path in sorted(weights_dir.glob("*.json")):
        card = json.loads(card_path.read_text())
        if card.get("dataset") != dataset:
            continue
        path = CONFIGS / f"{card_path.stem}.yaml"  # a config's stem is its entry's name, unless it sets name:
        found = path if path.is_file() else _config_naming(card_path.stem)
        if found is not None:
            out[card_path.stem] = {"path": found, "cfg": load_config(found)}
    return out


def _config_naming(name: str) -> Path | None:
    for path in sorted(CONFIGS.glob("*.yaml")):
        if not path.name.startswith("_") and load_config(path)["name"] == name:
            return path
    return None


def order(entries: dict[str, dict[str, Any]]) -> list[str]:
    """Stage 1 (and metadata-only) first; a stage-2 entry after every entry its backbone names."""
    from training.stage2 import backbone_entries

    needs = {}
    for name, e in entries.items():
        cfg = e["cfg"]
        if cfg["train"]["mode"] == "features":
            image_mods = [m for m in cfg["model"]["modalities"] if m != "metadata"]
            needs[name] = backbone_entries(cfg["stage2"]["backbone"], image_mods) & set(entries)
        else:
            needs[name] = set()
        experts = ((cfg["model"].get("structure") or {}).get("experts") or {})  # structure product: two shipped entries
        needs[name] |= {n for n in experts.values() if isinstance(n, str)} & set(entries)
        streams = {Path(f).stem for f in ((cfg["model"].get("image_encoder") or {}).get("stream_weights") or {}).values()}
        needs[name] |= {n for n, e in entries.items() if n != name and (e["cfg"].get("export") or {}).get("shared_encoder") in streams}
    done: list[str] = []
    while len(done) < len(entries):
        ready = sorted(n for n in entries if n not in done and needs[n] <= set(done))
        if not ready:
            raise SystemExit(f"Cannot order {sorted(set(entries) - set(done))}: their backbones form a cycle.")
        done += ready
    return done


def commands(dataset: str, data_root: str, weights_dir: Path, device: str, seeds: list[int]) -> list[list[str]]:
    entries = shipped(dataset, weights_dir)
    if not entries:
        raise SystemExit(f"No shipped {dataset} entry with a config in training/configs; nothing to retrain.")
    py = [sys.executable, "-m"]
    names = order(entries)
    cmds = []
    for name in names:
        cfg = entries[name]["cfg"]
        if cfg["train"]["mode"] != "features" and cfg["export"].get("shared_encoder"):
            cmds.append(["rm", "-f", str(weights_dir / "shared" / f"{cfg['export']['shared_encoder']}.safetensors")])
        config = str(entries[name]["path"].relative_to(REPO))
        segmenter = ((cfg["model"].get("image_encoder") or {}).get("segmenter") or {}).get("weights")
        if segmenter:  # TDBN: its lesion segmenter first (training.segment)
            cmds.append(py + ["training.segment", "--config", config, "--data-root", data_root])
        cmds.append(py + ["training", "fit", "--config", config,
                          "--data-root", data_root, "--device", device, "--weights-dir", str(weights_dir)])
        if segmenter:  # ... and its Dice and IoU into the new card
            cmds.append(py + ["training.segment", "--config", config, "--data-root", data_root, "--measure-only",
                              "--update-card", "--weights-dir", str(weights_dir)])
    data = f"{dataset}={data_root}"
    cmds.append(py + ["training.trust", "--weights-dir", str(weights_dir), "--data", data, "--update-cards", *names])
    cmds.append(py + ["training.reports", "--weights-dir", str(weights_dir), "--data", data, "--update-cards"])
    stage2 = [entries[n]["path"].stem for n in names if entries[n]["cfg"]["train"]["mode"] == "features"]
    if stage2 and seeds:
        cmds.append(py + ["training.seeds", "--weights-dir", str(weights_dir), "--configs", *stage2,
                          "--seeds", *map(str, seeds), "--update-cards"])
    anchor = Path("docs") / "reports" / f"anchor-{dataset}.json"
    if (REPO / anchor).is_file():  # the dataset has a metadata anchor: re-pair it with the retrained entries
        cmds.append(py + ["training.anchor", "--dataset", dataset, "--data-root", data_root, "--out", str(anchor),
                          "--pair-entries", "--weights-dir", str(weights_dir), "--update-cards"])
    cmds.append(py + ["training.results", "--dataset", dataset, "--weights-dir", str(weights_dir),
                      "--write", "docs/RESULTS.md"])
    cmds.append(py + ["training.trust_tables", "--weights-dir", str(weights_dir), "--write", "docs/TRUST.md"])
    return cmds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.retrain", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="ham10000, pad-ufes-20, synthderm, ...")
    ap.add_argument("--data-root", help="the dataset's folder (default: the configs' data_root)")
    ap.add_argument("--weights-dir", default="weights")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4], help="extra stage-2 training seeds")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    weights_dir = Path(args.weights_dir)
    root = args.data_root
    if root is None:
        first = next(iter(shipped(args.dataset, weights_dir).values()), None)
        root = first["cfg"]["data_root"] if first else None
    if root is None:
        raise SystemExit(f"No shipped {args.dataset} entry, so no data folder to default to; pass --data-root.")
    for cmd in commands(args.dataset, root, weights_dir, args.device, args.seeds):
        print("$", shlex.join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True, cwd=REPO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
