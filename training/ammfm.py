"""AMMFM's branch-weight search on validation (after `python -m training fit` has trained the heads).

`training.loop.fit` trains the `ammfm` structure (skinui/models/ammfm.py) like any fast-path entry (the
summed cross-entropy CE_C + CE_D + CE_F, best epoch on validation); then, for a structure that sets
`searches_branch_weights`, it calls `search_branch_weights` before export: every (clinical, dermoscopic,
fused) weight vector on the simplex in steps of `structure.search_step` (0.1: 66 vectors) scores the
validation split's P = w_C P_C + w_D P_D + w_F P_F by `train.select_metric`, ties broken by the lower
NLL (training.fusionm4net.search_weights). The winner goes into the structure and `model.structure.
branch_weights` (the card), and every row into `<run>/branch_search.json`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data import Prepared
from training.fusionm4net import score, search_weights, simplex_grid


@torch.no_grad()
def branch_probs(task: Any, indices: np.ndarray, branches: tuple[str, ...]) -> np.ndarray:
    """[N, B, K] each branch's probabilities on cached features, averaged over the eval views."""
    views = int(task.cfg[task.views_cfg]["eval_views"])
    caches = task._cache_for("val", list(indices), views)
    task.model.eval()
    bs, out = int(task.cfg["train"]["eval_batch_size"]), []
    for s in range(0, len(indices), bs):
        pos = np.arange(s, min(s + bs, len(indices)))
        per_view = []
        for v in range(views):
            o = task.forward_module(task._batch(caches, pos, np.asarray(indices)[pos], {m: np.full(len(pos), v) for m in caches}))
            per_view.append(torch.stack([o.branch_logits[b].float().softmax(1) for b in branches], 1))
        out.append(torch.stack(per_view).mean(0).cpu())
    return torch.cat(out).numpy().astype(np.float64)


def search_branch_weights(cfg: dict[str, Any], task: Any, prep: Prepared, model: torch.nn.Module,
                          run_dir: Path) -> dict[str, Any]:
    """Grid-search the branch weights on validation; set them in the model; return the record."""
    from skinui.models.ammfm import BRANCHES

    structure = model.structure
    val = np.asarray(prep.split["val"])
    probs = branch_probs(task, val, BRANCHES)
    metric = cfg["train"]["select_metric"]
    step = float(cfg["model"]["structure"].get("search_step", 0.1))
    best, rows = search_weights([probs[:, i] for i in range(len(BRANCHES))], prep.labels[val],
                                simplex_grid(len(BRANCHES), step), metric)
    weights = [round(float(w), 6) for w in best]
    structure.branch_weights = torch.tensor(weights, dtype=torch.float32, device=structure.branch_weights.device)
    model.cfg["structure"]["branch_weights"] = weights
    chosen = next(r for r in rows if r["weights"] == weights)
    value, neg_nll = score(prep.labels[val], probs.mean(1), metric)  # the unsearched mixture, for comparison
    equal = {"weights": [1 / 3] * 3, metric: value, "nll": -neg_nll}
    record = {"branches": list(BRANCHES), "weights": weights, "metric": metric, "step": step, "val": chosen,
              "val_equal_weights": equal, "grid_size": len(rows)}
    (Path(run_dir) / "branch_search.json").write_text(json.dumps({**record, "rows": rows}, indent=1))
    return record
