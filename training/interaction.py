"""`python -m training.interaction`: the fusion ladder on SynthDerm's interaction variant, over seeds.

SynthDerm's `interaction` variant (docs/SYNTHDERM.md) makes MEL/NV separable only by dermoscopy x
metadata and BKL/AKIEC only by clinical image x metadata, as exclusive-or mixtures. Its design fixes
ceilings per fusion rung (`skinui.synth.design`, `skinui.synth.ceilings`): a fusion that *adds*
per-modality evidence (late fusion with a learned combination; one linear layer over concatenated
features) can decide at most three of the four cells of an exclusive-or pair, a fusion that can
model interactions (Hadamard, attention, JI-ADF's MMFA) all four. This trains each rung with every
seed on the same frozen stage-1 encoders (the shipped SynthDerm ones: trained on the independent
design, whose renderers draw the same codes, so their features separate every code) and asks
whether the measured order follows the designed one:

    python -m skinui.synth --n 2000 --seed 0 --size 128 --variant interaction --out runs/data/synthderm-x
    python -m training.interaction --data-root runs/data/synthderm-x --seeds 0 1 2 3 4 \
        --json docs/reports/synthderm-interaction.json --write docs/SYNTHDERM.md
    python -m training.interaction --from-json docs/reports/synthderm-interaction.json --write docs/SYNTHDERM.md

Scores: test balanced accuracy over all classes, and per exclusive-or pair the balanced accuracy of
deciding between its two classes by their two probabilities (chance 0.5), each as the mean over
seeds with a 95% interval that resamples test lesions (every replicate averages the seeds on the
same resampled lesions); rung differences are paired on the same replicates.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
XOR_PAIRS = (("MEL", "NV"), ("AKIEC", "BKL"))
# rung name -> (stage-2 config it starts from, overrides, kind): "additive" rungs combine the
# modalities' evidence linearly, "interacting" ones can multiply it.
RUNGS: dict[str, tuple[str, dict[str, Any], str]] = {
    "images_only": ("synthderm_jiadf_dc", {}, "single side"),
    "metadata_only": ("synthderm_jiadf_m", {}, "single side"),
    "late": ("synthderm_late_concat", {}, "additive"),
    "jf_concat": ("synthderm_jf_concat", {}, "additive"),
    "jf_hadamard": ("synthderm_jf_concat", {"model": {"fusion": {"name": "hadamard"}}}, "interacting"),
    "jf_mmfa": ("synthderm_jf_mmfa", {}, "interacting"),
    "jiadf": ("synthderm_jiadf", {}, "interacting"),
}


def rung_config(rung: str, data_root: str) -> dict[str, Any]:
    from training.config import deep_merge, load_config

    config, over, _ = RUNGS[rung]
    cfg = deep_merge(load_config(REPO / "training" / "configs" / f"{config}.yaml"), over)
    cfg["name"] = f"interaction_{rung}"
    cfg["data_root"] = data_root
    return cfg


def pair_balanced_accuracy(labels: np.ndarray, probs: np.ndarray, a: int, b: int, weights: np.ndarray) -> np.ndarray:
    """[B] balanced accuracy of choosing between classes a and b by their probabilities, on their cases."""
    w = np.atleast_2d(weights)
    pick_a = probs[:, a] >= probs[:, b]
    recalls = []
    for cls, right in ((a, pick_a), (b, ~pick_a)):
        on = (labels == cls).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append((w @ (on * right)) / (w @ on))
    return np.mean(recalls, axis=0)


def seed_mean(per_seed: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray, weights: np.ndarray,
              pair: tuple[int, int] | None) -> np.ndarray:
    """[B] mean over seeds of the metric on each replicate's weights (probs, predicted) per seed."""
    from skinui.stats import balanced_accuracy_w

    if pair is None:
        return np.mean([balanced_accuracy_w(labels, pred, weights) for _, pred in per_seed], axis=0)
    return np.mean([pair_balanced_accuracy(labels, probs, *pair, weights) for probs, _ in per_seed], axis=0)


def summarise(scored: dict[str, list[tuple[np.ndarray, np.ndarray]]], labels: np.ndarray, groups: list[str],
              classes: list[str], n_boot: int = 2000) -> dict[str, Any]:
    """Per rung and metric: mean over seeds with its lesion-bootstrap interval, per-seed values; and the
    paired differences between every interacting and every additive rung."""
    from skinui.stats import _json, group_weights, percentile_interval

    ones, boot = np.ones((1, labels.size)), group_weights(groups, n_boot, 0)
    metrics = {"balanced_accuracy": None, **{f"{a} vs {b}": (classes.index(a), classes.index(b)) for a, b in XOR_PAIRS}}
    out: dict[str, Any] = {"rungs": {}, "differences": {}}
    reps: dict[tuple[str, str], np.ndarray] = {}
    for rung, per_seed in scored.items():
        row: dict[str, Any] = {"kind": RUNGS[rung][2], "seeds": len(per_seed)}
        for name, pair in metrics.items():
            point = float(seed_mean(per_seed, labels, ones, pair)[0])
            reps[rung, name] = seed_mean(per_seed, labels, boot, pair)
            values = [float(seed_mean([s], labels, ones, pair)[0]) for s in per_seed]
            row[name] = {"mean": point, "ci": [_json(v) for v in percentile_interval(reps[rung, name])],
                         "per_seed": values, "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
        out["rungs"][rung] = row
    for hi in [r for r in scored if RUNGS[r][2] == "interacting"]:
        for lo in [r for r in scored if RUNGS[r][2] == "additive"]:
            out["differences"][f"{hi} - {lo}"] = {
                name: {"estimate": out["rungs"][hi][name]["mean"] - out["rungs"][lo][name]["mean"],
                       "ci": [_json(v) for v in percentile_interval(reps[hi, name] - reps[lo, name])]}
                for name in metrics}
    return out


def ceilings() -> dict[str, Any]:
    """The design's ceilings on D+C+M, for the rungs' kinds (docs/SYNTHDERM.md explains each)."""
    from skinui.synth import design
    from skinui.synth.ceilings import additive_accuracy, bayes_accuracy, pair_accuracy

    full, bayes = design.MODALITIES, bayes_accuracy(variant="interaction")
    return {"product_of_posteriors": design.late_accuracy(full, "interaction"),
            "best_additive": additive_accuracy(full, "interaction"),
            "interacting": design.ideal_accuracy(full, "interaction"),
            "product_of_posteriors_metadata_profiles": bayes["late"][full],
            "interacting_metadata_profiles": bayes["joint"][full],
            "xor_pair": {"product_of_posteriors": 0.5, "best_additive": 0.75, "interacting": 1.0},
            "xor_pair_metadata_profiles": {f"{a} vs {b}": pair_accuracy(a, b, "interaction") for a, b in XOR_PAIRS}}


def follows_design(summary: dict[str, Any]) -> dict[str, bool]:
    """The designed predictions, read on the measured intervals."""
    diffs = summary["differences"].values()
    pairs = [f"{a} vs {b}" for a, b in XOR_PAIRS]
    additive = [r for r in summary["rungs"].values() if r["kind"] == "additive"]
    return {
        "every interacting rung beats every additive rung (interval above 0)":
            all(d["balanced_accuracy"]["ci"][0] > 0 for d in diffs),
        "additive rungs stay at or below the best additive rule on each exclusive-or pair (0.75, interval)":
            all(r[p]["ci"][0] <= 0.75 for r in additive for p in pairs),
        "interacting rungs pass 0.75 on each exclusive-or pair (interval above)":
            all(r[p]["ci"][0] > 0.75 for r in summary["rungs"].values() if r["kind"] == "interacting" for p in pairs),
    }


def score_run(zoo: Path, name: str, data_root: Path, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list[str]]:
    """(calibrated probabilities, decisions, labels, lesion groups, classes) of a seed's entry on test."""
    from skinui.zoo import load_entry
    from training.evaluate import shipped_scores

    entry = load_entry(name, zoo)
    _, labels, groups, (probs, pred) = shipped_scores(entry, "synthderm", data_root, "test", cache)
    return probs, pred, labels, groups, list(entry.classes)


def main(argv: list[str] | None = None) -> int:
    from skinui.metrics import balanced_accuracy
    from training.evaluate import EncodeCache
    from training.seeds import run_seed

    ap = argparse.ArgumentParser(prog="python -m training.interaction", description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="runs/data/synthderm-x", help="a SynthDerm folder made with --variant interaction")
    ap.add_argument("--rungs", nargs="+", default=list(RUNGS), choices=list(RUNGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", default=str(REPO / "runs" / "interaction"))
    ap.add_argument("--weights-dir", default=str(REPO / "weights"), help="the zoo holding the stage-1 encoders")
    ap.add_argument("--json", help="write the summary here (e.g. docs/reports/synthderm-interaction.json)")
    ap.add_argument("--from-json", help="no training: render a summary written earlier by --json")
    ap.add_argument("--write", help="put the tables into this markdown file's interaction-ladder block")
    args = ap.parse_args(argv)
    if args.from_json:
        summary = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        summary["ceilings"] = ceilings()  # the design's, deterministic: recomputed, never trained
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        return emit(summary, args.write, args.from_json)
    root = Path(args.data_root).resolve()
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SystemExit(f"{root} is not a SynthDerm folder; make one with python -m skinui.synth "
                         "--n 2000 --seed 0 --size 128 --variant interaction --out runs/data/synthderm-x") from None
    if manifest.get("variant") != "interaction":
        raise SystemExit(f"{root} was generated without --variant interaction; its pairs need no interaction.")
    out, cache = Path(args.out), EncodeCache()
    scored: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    labels = groups = classes = None
    for rung in args.rungs:
        cfg = rung_config(rung, str(root))
        for seed in args.seeds:
            run_seed(cfg, seed, out, Path(args.weights_dir), str(root))
            probs, pred, labels, groups, classes = score_run(out / f"seed{seed}" / "weights", cfg["name"], root, cache)
            scored.setdefault(rung, []).append((probs, pred))
            print(f"{rung} seed {seed}: test balanced accuracy {balanced_accuracy(labels, pred):.3f}", file=sys.stderr)
    summary = summarise(scored, labels, groups, classes)
    summary.update({"data": {"root": str(Path(args.data_root)), "manifest": {k: manifest[k] for k in ("n", "seed", "size", "variant")},
                             "test_cases": int(labels.size), "test_lesions": len(set(groups))},
                    "seeds": args.seeds, "ceilings": ceilings(), "command": "python -m training.interaction "
                    + " ".join(argv if argv is not None else sys.argv[1:])})
    summary["follows_design"] = follows_design(summary)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return emit(summary, args.write, args.json)


def emit(summary: dict[str, Any], write: str | None, json_path: str | None) -> int:
    from training.markdown import write_section

    text = markdown(summary)
    print(text)
    if write:
        generator = f"python -m training.interaction --from-json {json_path}" if json_path else summary["command"]
        write_section(Path(write), "interaction-ladder", text + "\n", generator)
    return 0


def markdown(summary: dict[str, Any]) -> str:
    def cell(v: dict[str, Any]) -> str:
        return f"{v['mean']:.3f} ({v['ci'][0]:.3f}–{v['ci'][1]:.3f}) ± {v['sd']:.3f}"

    pairs = [f"{a} vs {b}" for a, b in XOR_PAIRS]
    lines = ["| rung | kind | balanced accuracy | " + " | ".join(pairs) + " |", "|---|---|---|---|---|"]
    for rung, r in summary["rungs"].items():
        lines.append(f"| `{rung}` | {r['kind']} | {cell(r['balanced_accuracy'])} | "
                     + " | ".join(cell(r[p]) for p in pairs) + " |")
    lines += ["", "| difference | balanced accuracy | " + " | ".join(pairs) + " |", "|---|---|---|---|"]
    for name, d in summary["differences"].items():
        lines.append(f"| {name} | " + " | ".join(f"{d[k]['estimate']:+.3f} [{d[k]['ci'][0]:+.3f}, {d[k]['ci'][1]:+.3f}]"
                                                  for k in ("balanced_accuracy", *pairs)) + " |")
    c = summary.get("ceilings")
    if c:
        lines += ["", f"Designed ceilings, D+C+M balanced accuracy: product of per-modality posteriors "
                  f"{c['product_of_posteriors_metadata_profiles']:.3f}, interacting (Bayes) "
                  f"{c['interacting_metadata_profiles']:.3f} (metadata through its profiles); with readable codes "
                  f"{c['product_of_posteriors']:.3f} · best additive {c['best_additive']:.3f} · interacting "
                  f"{c['interacting']:.3f}. On each exclusive-or pair: 0.5 · 0.75 · 1.0 with readable codes; "
                  "with metadata through its profiles, product " + " and ".join(
                      f"{v['late']:.3f}" for v in c["xor_pair_metadata_profiles"].values()) + ", Bayes " + " and ".join(
                      f"{v['joint']:.3f}" for v in c["xor_pair_metadata_profiles"].values())
                  + f" ({', '.join(c['xor_pair_metadata_profiles'])})."]
    d = summary.get("data", {})
    if d:
        lines += ["", f"Mean over seeds {', '.join(map(str, summary['seeds']))} (± sd over seeds), 95% interval "
                  f"resampling the {d['test_lesions']} test lesions ({d['test_cases']} cases); `{summary['command']}`."]
    lines += [""] + [f"- {k}: **{'yes' if v else 'no'}**" for k, v in summary.get("follows_design", {}).items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
