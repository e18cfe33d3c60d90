"""Training runs paired on validation (issue 17 levers and backbones): per-case validation probabilities of
each run's best weights (argmax decision, the per-epoch selection rule) and the paired difference against the
first run (`skinui.stats.paired_difference`: group bootstrap over lesions, 2,000 replicates); for a run named
`baseline`, also whether it reproduces the shipped ham10000_image weights. Runs are folders under
runs/levers/ written by `python -m training fit ... --no-export --out runs/levers/NAME` (docs/BENCHMARKS.md).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/paired_runs.py baseline mixup02 smooth01 views6 lite1 lite2 \
        cut5 cut3 baseline16 cut3_16
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skinui.calibration import softmax  # noqa: E402
from skinui.metrics import quick_scores  # noqa: E402
from skinui.stats import paired_difference  # noqa: E402
from training.data import prepare, resolve_root  # noqa: E402
from training.loop import build  # noqa: E402
from training.runtime import setup  # noqa: E402
from training.tasks import make_task  # noqa: E402

HERE = REPO / "runs" / "levers"


def shipped_state():
    """weights/ham10000_image (head) + its shared encoder, fp16 on disk, as a state dict of the training model."""
    return {k: v.float() if v.is_floating_point() else v for k, v in {
        **load_file("weights/ham10000_image.safetensors"),
        **{f"encoders.dermoscopic.{k}": v for k, v in
           load_file("weights/shared/ham10000_dermoscopic_lite0.safetensors").items()}}.items()}


def val_probs(name: str):
    """`shipped`: the shipped ham10000_image weights through the same prediction path (argmax, uncalibrated)."""
    run = HERE / name
    run.mkdir(exist_ok=True)
    out = run / "val_probs.npz"
    cfg = yaml.safe_load(((HERE / "baseline" if name == "shipped" else run) / "config.yaml").read_text())
    rt = setup("cpu", "off", False)
    prep = prepare(cfg, resolve_root(cfg["data_root"], None))
    val = prep.split["val"]
    groups = [prep.cases[i].group("lesion_id") for i in val]
    labels = prep.labels[val]
    if not out.is_file():
        model = build(cfg, prep, rt, Path("weights"))
        task = make_task(cfg, model, prep, rt, run)
        for m in model.image_modalities:  # frozen parts as in training (prepare_model without the train cache)
            for module in task.frozen_modules(m):
                module.eval()
        model.load_state_dict(shipped_state() if name == "shipped" else load_file(str(run / "best.safetensors")))
        probs = softmax(task.predict(val, part="val"))
        np.savez(out, probs=probs, labels=labels, case_ids=np.array([prep.cases[i].case_id for i in val]))
        if name == "baseline":
            shipped = {k: v.half() if v.is_floating_point() else v for k, v in shipped_state().items()}
            mine = model.state_dict()
            common = [k for k in shipped if k in mine]
            same = [k for k in common if torch.equal(mine[k].to(shipped[k].dtype), shipped[k])]
            diff = max(float((mine[k].float() - shipped[k].float()).abs().max()) for k in common
                       if shipped[k].is_floating_point())
            steps = {k: (int(mine[k]), int(shipped[k])) for k in common if k.endswith("num_batches_tracked")}
            (run / "vs_shipped.json").write_text(json.dumps({
                "tensors_compared": len(common), "shipped_tensors": len(shipped), "equal_after_fp16_cast": len(same),
                "max_abs_diff": diff,
                "bn_batches_tracked_mine_vs_shipped": sorted(set(steps.values()))}, indent=1))
    probs = np.load(out)["probs"]
    return labels, groups, probs


def main(names):
    labels, groups, base = val_probs(names[0])
    rows = {}
    for name in names:
        lab, grp, probs = val_probs(name)
        assert np.array_equal(lab, labels) and list(grp) == list(groups)
        s = quick_scores(labels, probs, probs.shape[1])
        row = {"val_balanced_accuracy": s["balanced_accuracy"], "val_macro_auc": s["macro_auc"]}
        if name != names[0]:
            d = paired_difference(labels, groups, (probs, None), (base, None), n_boot=2000, seed=0)
            row["minus_" + names[0]] = {k: d[k] for k in ("balanced_accuracy", "macro_auc")}
            row["n_groups"] = d["n_groups"]
        rows[name] = row
        print(name, json.dumps(row))
    (HERE / f"paired_vs_{names[0]}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:] or ["baseline"])
