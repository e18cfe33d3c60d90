"""One training setting swept over several seeds of stage-2 configs, scored on validation only (issue 17 levers).

A single seed cannot tell a lever from noise on 72 validation cases (seed-to-seed sd of the best epoch's
balanced accuracy is 0.01-0.05 on PAD-UFES-20), so each value of the setting trains every config with
seeds 0..N-1 (`--no-export`: nothing reaches weights/, the test split is never read) and the table gives
mean ± sample sd of the best epoch's validation scores (argmax of the uncalibrated softmax, the epoch
the config's own `select_metric` chose). Runs share one feature cache and are skipped when present.

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/seed_sweep.py --configs pad_ufes20_jf_concat pad_ufes20_jf_metablock \
        --key model.modality_dropout --values 0.1 0.3 0.5 --seeds 5 --out runs/mdrop
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_dir(out: Path, config: str, value: str, seed: int) -> Path:
    return out / f"{config.removeprefix('pad_ufes20_')}_p{value}_s{seed}"


def best_epoch(run: Path) -> dict:
    """The epoch the run selected (the last one flagged best)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("best")][-1]


def train(config: str, key: str, value: str, seed: int, out: Path) -> None:
    run = run_dir(out, config, value, seed)
    if (run / "summary.json").is_file():
        return
    cmd = [sys.executable, "-m", "training", "fit", "--config", f"training/configs/{config}.yaml", "--no-export",
           "--out", str(run), "--set", f"cache.dir={out.parent / '_cache'}", "--set", f"train.seed={seed}",
           "--set", f"{key}={value}"]
    with open(f"{run}.log", "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)


def _mean_sd(x: list[float]) -> str:
    return f"{statistics.mean(x):.3f} ± {statistics.stdev(x):.3f}"


def table(configs: list[str], key: str, values: list[str], seeds: int, out: Path) -> str:
    lines = [f"| config | {key} | val bal. acc. | val macro AUC | val macro F1 | seeds |", "|---|---|---|---|---|---|"]
    for config in configs:
        for value in values:
            best = [best_epoch(run_dir(out, config, value, s)) for s in range(seeds)]

            cells = [_mean_sd([b[f"val_{m}"] for b in best]) for m in ("balanced_accuracy", "macro_auc", "macro_f1")]
            lines.append(f"| `{config}` | {value} | {' | '.join(cells)} | {seeds} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", required=True)
    ap.add_argument("--key", required=True, help="a --set key of `training fit`, e.g. model.modality_dropout")
    ap.add_argument("--values", nargs="+", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/sweep"))
    ap.add_argument("--table-only", action="store_true", help="tabulate runs already trained")
    a = ap.parse_args()
    if not a.table_only:
        for value in a.values:
            for config in a.configs:
                for seed in range(a.seeds):
                    train(config, a.key, value, seed, a.out)
    print(table(a.configs, a.key, a.values, a.seeds, a.out))


if __name__ == "__main__":
    main()
