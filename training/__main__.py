"""`python -m training {fit,evaluate,export}`; multi-GPU with `torchrun --nproc_per_node K -m training fit ...`.

fit       train per a YAML config; writes the run dir (resolved config, command, metrics.jsonl,
          checkpoints) and, at the end, the zoo entry weights/<name>.{safetensors,json}
evaluate  score a zoo entry on a dataset split; writes report.json and report.html
export    write the zoo entry again from a finished (or killed) run dir's best weights
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, KeyError)


def _command(argv: list[str] | None) -> str:
    """The command as a user would retype it (torchrun's launcher included when it started us)."""
    args = shlex.join(argv if argv is not None else sys.argv[1:])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if world == 1:
        return f"python -m training {args}"
    nodes = f"--nnodes {world // local} " if world > local else ""
    return f"torchrun {nodes}--nproc_per_node {local} -m training {args}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("fit", help="train a zoo entry from a config")
    f.add_argument("--config", required=True, help="training/configs/NAME.yaml")
    f.add_argument("--data-root", help="dataset folder (overrides data_root: in the config)")
    f.add_argument("--out", help="run directory (default runs/<name>)")
    f.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    f.add_argument("--epochs", type=int, help="override train.epochs")
    f.add_argument("--resume", action="store_true", help="continue from the run dir's last checkpoint")
    f.add_argument("--weights-dir", help="where the zoo entry is written (default weights/)")
    f.add_argument("--no-export", action="store_true", help="train only; write no zoo entry")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, e.g. --set train.optimizer.lr=3e-4 (repeatable)")
    f.add_argument("--hash-weights", action="store_true",
                   help="every rank writes weights_rank<R>.sha256 of its final weights (DDP check)")

    e = sub.add_parser("evaluate", help="evaluate a zoo entry")
    e.add_argument("--weights", required=True, help="weights/NAME (the entry's files without extension)")
    e.add_argument("--dataset", help="dataset name (default: the entry's)")
    e.add_argument("--data-root", required=True)
    e.add_argument("--split", default="test", choices=["test", "val", "all"])
    e.add_argument("--out", required=True, help="folder for report.json and report.html")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--inline-js", action="store_true", help="embed plotly.js in report.html (works offline)")
    e.add_argument("--average-views", action="store_true",
                   help="also score the probabilities averaged over the photo and its 3 flipped views "
                        "(report.json average_views; 4x the image-encoder time)")

    x = sub.add_parser("export", help="write the zoo entry from a run dir's best weights")
    src = x.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="the run directory of `fit`")
    src.add_argument("--entry", nargs="+", help="weights/NAME ...: re-calibrate and re-score shipped entries of one "
                                                "dataset (no retraining)")
    x.add_argument("--weights-dir", help="default: the config's export.weights_dir")
    x.add_argument("--data-root", help="dataset folder (default: the one the run used)")
    x.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])

    args = ap.parse_args(argv)
    try:
        if args.cmd == "fit":
            from training.config import load_config
            from training.loop import fit

            overrides = list(args.set)
            if args.epochs is not None:
                overrides.append(f"train.epochs={args.epochs}")
            if args.no_export:
                overrides.append("export.enabled=false")
            cfg = load_config(args.config, overrides)
            run_dir = fit(cfg, args.data_root, args.out, args.device, args.resume, _command(argv), args.weights_dir,
                          args.hash_weights)
            print(f"run written to {run_dir}")
        elif args.cmd == "evaluate":
            from training.evaluate import run

            rep = run(args.weights, args.dataset, args.data_root, args.split, args.out, args.device, args.batch_size,
                      args.inline_js, args.average_views)
            print(f"{rep['entry']} on {rep['n_cases']} cases: balanced accuracy {rep['balanced_accuracy']:.3f}, "
                  f"macro AUC {rep['macro']['auc']:.3f}; report in {args.out}")
            if rep.get("average_views"):
                a = rep["average_views"]["averaged"]
                print(f"averaged over {len(rep['average_views']['views'])} views: balanced accuracy "
                      f"{a['balanced_accuracy']:.3f}, macro AUC {a['macro_auc']:.3f}")
        else:
            from training.export import export_run, reexport_entry

            paths = ([reexport_entry(e, args.data_root) for e in args.entry] if args.entry else
                     [export_run(args.run, args.weights_dir, args.data_root, args.device)])
            for path in paths:
                print(f"entry written to {path}")
    except USER_ERRORS as err:
        if os.environ.get("SKINUI_DEBUG"):
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
