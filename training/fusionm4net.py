"""FusionM4Net's two stages as one `fit` (`python -m training fit --config training/configs/synthderm_fusionm4net.yaml`).

`training.loop.fit` hands a config whose structure is `fusionm4net` (skinui/models/fusionm4net.py) to
`fit` here. Read top to bottom:

1. The stage-1 encoders are the shipped frozen SynthDerm encoders (`stage2.backbone`), their pooled
   features cached once per dataset and shared with every stage-2 entry (training.fastpath.FeatureTask).
2. FusionNet (three branches on the cached features, summed cross-entropy, the recipe's optimiser and
   schedule, best epoch by `train.select_metric` on validation) is trained on the whole training split:
   the stage 1 that ships.
3. Branch weights (clinical, dermoscopic, fusion): a grid on the simplex (`search.branch_step`, weights
   summing to one), scored on validation (`train.select_metric`, ties broken by the lower NLL).
4. Out-of-sample stage-1 probabilities for the SVM: the training split is halved by lesion group
   (`half_split`); FusionNet is trained afresh on one half and predicts the other, and vice versa
   (`out_of_sample`), so no probability the SVM is fitted on comes from a network that saw the case.
5. Stage 2: an RBF `sklearn.svm.SVC(probability=True)` on [one-hot metadata ; P1] (the zoo's metadata
   encoder, fitted on the training split), C (and gamma) chosen on validation, where P1 comes from the
   shipped stage 1, as at inference.
6. P = w1 P1 + w2 P2, w1 on a grid (`search.stage_step`) scored on validation.
7. The SVM becomes tensors in the model (no pickle), the torch SVM is checked against scikit-learn on
   validation, and `training.export.export` saves, calibrates and scores the entry like every other.
"""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from skinui.metrics import quick_scores
from skinui.models.fusionm4net import BRANCHES
from training.data import Prepared, prepare, resolve_root
from training.fastpath import FeatureTask, ViewCache
from training.optim import Schedule, build_optimizer, compute_loss
from training.runtime import seed_everything, setup
from training.sampling import EpochSampler

REPO = Path(__file__).resolve().parents[1]
SEARCH = {"branch_step": 0.1, "stage_step": 0.05, "svm_C": [0.1, 1.0, 10.0, 100.0, 1000.0], "svm_gamma": ["scale"],
          "half_seed": 0}


# -- the searches -----------------------------------------------------------------------------------------
def simplex_grid(parts: int, step: float) -> np.ndarray:
    """Every weight vector of `parts` non-negative multiples of `step` summing to one, [G, parts]."""
    n = int(round(1 / step))
    if abs(n * step - 1) > 1e-9:
        raise ValueError(f"fusionm4net search steps must divide 1, not {step}.")

    def rec(left: int, k: int) -> list[list[int]]:
        return [[left]] if k == 1 else [[i, *rest] for i in range(left, -1, -1) for rest in rec(left - i, k - 1)]

    return np.array(rec(n, parts), dtype=np.float64) / n


def score(labels: np.ndarray, probs: np.ndarray, metric: str) -> tuple[float, float]:
    """(validation metric, -NLL): compared as a tuple, so the NLL breaks ties of the (coarse) metric."""
    labels = np.asarray(labels)
    value = quick_scores(labels, probs, probs.shape[1])[metric]
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))
    return float(value if value is not None else -np.inf), -nll


def search_weights(probs: Sequence[np.ndarray], labels: np.ndarray, grid: np.ndarray,
                   metric: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The grid row w maximising score(sum_i w_i probs_i) (first of equals), and every row's score."""
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probs])  # [n, N, K]
    rows, best, best_w = [], None, None
    for w in np.asarray(grid, dtype=np.float64):
        w = w / w.sum()  # normalised to sum to one
        s = score(labels, np.tensordot(w, stack, 1), metric)
        rows.append({"weights": [round(float(v), 6) for v in w], metric: s[0], "nll": -s[1]})
        if best is None or s > best:
            best, best_w = s, w
    return best_w, rows


# -- out-of-sample stage-1 probabilities --------------------------------------------------------------------
def half_split(groups: Sequence[str], labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """0 / 1 per row: whole groups (lesions) in one half; within each class, groups alternate between the
    halves in a seeded random order, so both halves hold every class about equally."""
    rng = np.random.default_rng([seed, 0xF4])
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    names = sorted(members)
    names = [names[i] for i in rng.permutation(len(names))]
    names.sort(key=lambda g: int(np.bincount(labels[members[g]]).argmax()))  # stable: random within a class
    halves = np.zeros(len(groups), dtype=np.int64)
    sizes = [0, 0]
    for g in names:
        h = int(sizes[1] < sizes[0])  # the smaller half takes the next group
        halves[members[g]] = h
        sizes[h] += len(members[g])
    return halves


def out_of_sample(halves: np.ndarray, fit: Callable[[np.ndarray], Any],
                  predict: Callable[[Any, np.ndarray], np.ndarray]) -> tuple[np.ndarray, list[Any]]:
    """Each row's prediction by the model fitted on the other half (rows are positions in the training split).

    `fit(rows)` trains on those rows only; `predict(model, rows)` returns one array row per row. Returns the
    stacked predictions in row order and the two fitted models."""
    out: np.ndarray | None = None
    models = []
    for h in (0, 1):
        seen, unseen = np.flatnonzero(halves == h), np.flatnonzero(halves != h)
        if not len(seen) or not len(unseen):
            raise ValueError("fusionm4net's half split left a half empty; the training split is too small.")
        model = fit(seen)
        pred = np.asarray(predict(model, unseen))
        if out is None:
            out = np.zeros((len(halves), *pred.shape[1:]), dtype=pred.dtype)
        out[unseen] = pred
        models.append(model)
    return out, models


def combine(branch_probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """P1 [N, K] = sum_b w_b P_b from branch probabilities [N, 3, K]."""
    return np.einsum("b,nbk->nk", np.asarray(weights, dtype=np.float64), branch_probs.astype(np.float64))


def svm_inputs(meta: np.ndarray, branch_probs: np.ndarray, weights: np.ndarray, mode: str = "combined") -> np.ndarray:
    """x = [metadata ; P1] (`combined`) or [metadata ; P_C ; P_D ; P_F] (`branches`), as the structure builds it."""
    probs = combine(branch_probs, weights) if mode == "combined" else branch_probs.reshape(len(branch_probs), -1)
    return np.concatenate([meta.astype(np.float32), probs.astype(np.float32)], 1).astype(np.float64)


def fit_svm(x: np.ndarray, y: np.ndarray, c: float, gamma: Any, seed: int) -> Any:
    from sklearn.svm import SVC

    with warnings.catch_warnings():  # scikit-learn 1.9 deprecates probability=True (libsvm's Platt + coupling)
        warnings.simplefilter("ignore", FutureWarning)
        return SVC(kernel="rbf", C=c, gamma=gamma, probability=True, random_state=seed).fit(x, y)


def svm_probabilities(svc: Any, x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return svc.predict_proba(x)


# -- stage 1 on cached features -----------------------------------------------------------------------------
class FusionNetTask(FeatureTask):
    """The stage-2 feature task trained on a subset of the training rows (a half, or all of them)."""

    def use_rows(self, rows: np.ndarray, seed: int) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        labels = self.prep.labels[np.asarray(self.train_idx)[self.rows]]
        self.sampler = EpochSampler(labels, self.cfg["train"]["sampler"], seed, self.rt.rank, self.rt.world_size)

    def batch_rows(self, epoch: int) -> list[np.ndarray]:
        return [self.rows[b] for b in super().batch_rows(epoch)]

    @torch.no_grad()
    def branch_probs(self, caches: dict[str, ViewCache], positions: np.ndarray, rows: np.ndarray,
                     views: int) -> np.ndarray:
        """[N, 3, K] each branch's probabilities (clinical, dermoscopic, fusion), averaged over `views` views."""
        self.model.eval()
        bs, out = int(self.cfg["train"]["eval_batch_size"]), []
        for s in range(0, len(positions), bs):
            pos, r = positions[s:s + bs], rows[s:s + bs]
            per_view = []
            for v in range(views):
                o = self.forward_module(self._batch(caches, pos, r, {m: np.full(len(pos), v) for m in caches}))
                per_view.append(torch.stack([o.branch_logits[b].float().softmax(1) for b in BRANCHES], 1))
            out.append(torch.stack(per_view).mean(0).cpu())
        return torch.cat(out).numpy().astype(np.float64)


def missing_metadata_is_unknown(model: torch.nn.Module) -> None:
    """An absent metadata record enters the SVM as the encoding of 'every field unknown' (how the encoder
    writes a training case without metadata), not as a learned vector: the SVM is fitted, not trained."""
    with torch.no_grad():
        model.missing["metadata"].copy_(model.meta_missing)
    model.missing["metadata"].requires_grad_(False)


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("encoders.")}


def train_stage1(task: FusionNetTask, rows: np.ndarray, init: dict[str, torch.Tensor], val: dict[str, Any],
                 seed: int, tag: str) -> dict[str, Any]:
    """FusionNet from `init` on training rows `rows`; the best epoch on validation (uniform branch weights)."""
    model, tr = task.model, task.cfg["train"]
    model.load_state_dict(init, strict=False)
    task.use_rows(rows, seed)
    optimizer = build_optimizer(model, tr)
    schedule = Schedule(optimizer, tr)
    metric, patience = tr["select_metric"], int(tr["early_stopping"])
    best: dict[str, Any] = {"value": None, "epoch": 0, "state": trainable(model)}
    history = []
    for epoch in range(int(tr["epochs"])):
        t0 = time.time()
        seed_everything(seed, epoch, 0)
        schedule.start_epoch(epoch)
        task.modules_to_train_mode()
        losses = []
        for batch, target in task.train_batches(epoch):
            loss = compute_loss(model, task.module(batch), target, None, 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        probs = combine(task.branch_probs(val["caches"], val["positions"], val["rows"], val["views"]),
                        np.full(3, 1 / 3))
        value = quick_scores(val["labels"], probs, probs.shape[1])[metric]
        schedule.end_epoch(value)
        if value is not None and (best["value"] is None or value > best["value"]):
            best = {"value": value, "epoch": epoch + 1, "state": trainable(model)}
        history.append({"fit": tag, "epoch": epoch + 1, "train_loss": float(np.mean(losses)), f"val_{metric}": value,
                        "seconds": round(time.time() - t0, 2)})
        if patience and epoch + 1 - best["epoch"] >= patience:
            break
    model.load_state_dict(best["state"], strict=False)
    return {"state": best["state"], "best_epoch": best["epoch"], "best_value": best["value"],
            "epochs_run": len(history), "history": history}


# -- the whole system ---------------------------------------------------------------------------------------
def _scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    q = quick_scores(labels, probs, probs.shape[1])
    return {"balanced_accuracy": q["balanced_accuracy"], "macro_auc": q["macro_auc"]}


def fit(cfg: dict[str, Any], data_root: str | None = None, out: str | None = None, device: str = "auto",
        command: str = "", weights_dir: str | None = None) -> Path:
    """Train FusionM4Net per `cfg` and export it as a zoo entry; returns the run directory."""
    from training.loop import build

    tr, s_cfg = cfg["train"], dict(cfg["model"]["structure"])
    search = {**SEARCH, **(s_cfg.get("search") or {})}
    seed, metric = int(tr["seed"]), tr["select_metric"]
    if tr["mode"] != "features":
        raise ValueError("fusionm4net trains on the cached features of frozen stage-1 encoders: set train.mode: "
                         "features and stage2.backbone.")
    rt = setup(device, "off", False)
    if rt.distributed:
        raise ValueError("fusionm4net trains in one process (its heads and SVM take minutes on a CPU); run it "
                         "without torchrun.")
    run_dir = Path(out) if out else REPO / "runs" / cfg["name"]
    wdir = Path(weights_dir or cfg["export"]["weights_dir"])
    wdir = wdir if wdir.is_absolute() else (Path.cwd() / wdir)
    root = resolve_root(cfg.get("data_root"), data_root)
    cfg = {**cfg, "data_root": str(root)}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (run_dir / "command.txt").write_text(command + "\n")
    started = time.time()

    prep: Prepared = prepare(cfg, root)
    model = build(cfg, prep, rt, wdir)  # the stage-1 encoders loaded from their entries
    missing_metadata_is_unknown(model)
    task = FusionNetTask(cfg, model, prep, rt, run_dir)
    task.prepare_model()  # freezes the encoders, caches the training features
    init = trainable(model)
    train_idx, val_idx = np.asarray(prep.split["train"]), np.asarray(prep.split["val"])
    views, eval_views = int(cfg["stage2"]["views"]), int(cfg["stage2"]["eval_views"])
    train_caches = task._cache_for("train", list(train_idx), views)
    val = {"caches": task._cache_for("val", list(val_idx), eval_views), "positions": np.arange(len(val_idx)),
           "rows": val_idx, "views": eval_views, "labels": prep.labels[val_idx]}
    y_train, y_val = prep.labels[train_idx], prep.labels[val_idx]
    if eval_views > views:
        raise ValueError("stage2.eval_views must not exceed stage2.views (held-out training rows are predicted "
                         "from the training cache's first views).")

    def predict_rows(state: dict[str, torch.Tensor], rows: np.ndarray) -> np.ndarray:
        model.load_state_dict(state, strict=False)
        return task.branch_probs(train_caches, rows, train_idx[rows], eval_views)

    # 1. stage 1 on the whole training split: what ships
    full = train_stage1(task, np.arange(len(train_idx)), init, val, seed, "all")
    p_val = task.branch_probs(val["caches"], val["positions"], val["rows"], eval_views)
    # 2. branch weights on validation
    w_branch, branch_table = search_weights(list(p_val.transpose(1, 0, 2)), y_val,
                                            simplex_grid(3, float(search["branch_step"])), metric)
    p1_val = combine(p_val, w_branch)
    # 3. out-of-sample stage-1 probabilities of the training split (half-split)
    group_key = prep.split_record["group_key"]
    halves = half_split([prep.cases[i].group(group_key) for i in train_idx], y_train, int(search["half_seed"]))
    fits: list[dict[str, Any]] = []

    def fit_half(rows: np.ndarray) -> dict[str, torch.Tensor]:
        fits.append(train_stage1(task, rows, init, val, seed + 1 + len(fits), f"half {len(fits)}"))
        return fits[-1]["state"]

    p_oos, _ = out_of_sample(halves, fit_half, predict_rows)
    p_in = predict_rows(full["state"], np.arange(len(train_idx)))  # in-sample, for the card only
    model.load_state_dict(full["state"], strict=False)
    # 4. the SVM on [metadata ; out-of-sample P1]; C and gamma on validation (P1 of the shipped stage 1)
    mode = s_cfg.get("svm_input", "combined")
    x_train = svm_inputs(prep.meta[train_idx], p_oos, w_branch, mode)
    x_val = svm_inputs(prep.meta[val_idx], p_val, w_branch, mode)
    svm_table, best_svm = [], None
    for c in search["svm_C"]:
        for gamma in search["svm_gamma"]:
            svc = fit_svm(x_train, y_train, float(c), gamma, seed)
            s = score(y_val, svm_probabilities(svc, x_val), metric)
            svm_table.append({"C": float(c), "gamma": gamma, "gamma_value": float(svc._gamma), metric: s[0],
                              "nll": -s[1], "n_support": int(svc.n_support_.sum())})
            if best_svm is None or s > best_svm[0]:
                best_svm = (s, svc)
    svc = best_svm[1]
    p2_val = svm_probabilities(svc, x_val)
    # 5. stage weights on validation
    step = float(search["stage_step"])
    w_stage, stage_table = search_weights([p1_val, p2_val], y_val, simplex_grid(2, step), metric)
    # 6. the SVM into the model, as tensors; the torch SVM must reproduce scikit-learn's
    model.cfg["structure"] = {**model.cfg["structure"], **model.structure.attach(w_branch, w_stage, svc)}
    model.cfg["structure"].pop("image_dims", None)  # filled in by the model from its encoders
    with torch.no_grad():
        model.eval()
        feats = {m: c.take(val["positions"], np.zeros(len(val_idx), int)) for m, c in val["caches"].items()}
        feats.update(model.encode({"metadata": torch.from_numpy(prep.meta[val_idx])}))
        mask = {"metadata": torch.from_numpy(prep.meta_present[val_idx])}
        got = model.head(feats, mask)
    torch_vs_sklearn = float(np.abs(got.features["p2"].double().numpy() - p2_val).max())
    if torch_vs_sklearn > 1e-5:
        raise RuntimeError(f"the torch SVM differs from scikit-learn's by {torch_vs_sklearn:.2g} on validation.")
    final_val = w_stage[0] * p1_val + w_stage[1] * p2_val

    history = full["history"] + [row for f in fits for row in f["history"]]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    block = {
        "branches": list(BRANCHES),
        "branch_weights": dict(zip(BRANCHES, map(float, w_branch))),
        "stage_weights": {"stage1": float(w_stage[0]), "stage2": float(w_stage[1])},
        "search": {"metric": metric, "tie_break": "lower validation NLL", "branch_step": search["branch_step"],
                   "stage_step": step, "svm_C": search["svm_C"], "svm_gamma": search["svm_gamma"],
                   "on": "validation, from the cached (fp16) encoder features, argmax decision"},
        "svm": {"C": float(svc.C), "gamma": float(svc._gamma), "n_support": [int(n) for n in svc.n_support_],
                "input": mode, "dim": int(x_train.shape[1]), "grid": svm_table,
                "torch_vs_sklearn_max_abs_diff_val": torch_vs_sklearn},
        "half_split": {"group_key": group_key, "seed": int(search["half_seed"]),
                       "sizes": [int((halves == 0).sum()), int((halves == 1).sum())],
                       "groups": [len({prep.cases[i].group(group_key) for i in train_idx[halves == h]}) for h in (0, 1)],
                       "best_epochs": [f["best_epoch"] for f in fits],
                       "train_p1_out_of_sample": _scores(y_train, combine(p_oos, w_branch)),
                       "train_p1_in_sample": _scores(y_train, combine(p_in, w_branch))},
        "stage1": {"best_epoch": full["best_epoch"], "epochs_run": full["epochs_run"]},
        "val": {"stage1_uniform": _scores(y_val, combine(p_val, np.full(3, 1 / 3))), "stage1": _scores(y_val, p1_val),
                "stage2_svm": _scores(y_val, p2_val), "final": _scores(y_val, final_val),
                **{b: _scores(y_val, p_val[:, i]) for i, b in enumerate(BRANCHES)}},
        "branch_grid_top": sorted(branch_table, key=lambda r: (r[metric], -r["nll"]), reverse=True)[:5],
        "stage_grid": stage_table,
    }
    (run_dir / "fusionm4net.json").write_text(json.dumps(block, indent=1))
    summary = {"epochs_run": full["epochs_run"], "best_epoch": full["best_epoch"], "select_metric": metric,
               "best_value": full["best_value"], "select_decision": "argmax of the uncalibrated softmax",
               "seconds": round(time.time() - started, 1), "device": rt.describe(), "command": command}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if cfg["export"]["enabled"]:
        from skinui.zoo import write_card
        from training.export import export

        card_path = export(cfg, prep, model, run_dir, wdir, summary)
        card = json.loads(card_path.read_text())
        write_card({**card, "fusionm4net": block}, wdir)
    return run_dir
