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

With further tasks (`model.structure.tasks`, e.g. Derm7pt's seven-point criteria; the dataset adapter's
`tasks` / `task_labels` give their labels) FusionNet trains every task's heads at once (one summed loss;
the epoch is chosen on the diagnosis), and steps 3-7 run per task: its own branch weights, SVM on
[metadata ; its P1] and stage weights, each searched on that task's labelled validation cases. Each task's
validation and test scores (balanced accuracy, macro AUC, group-bootstrap intervals) go into the card's
`fusionm4net.tasks` block.
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
DIAGNOSIS = "diagnosis"  # the key of the model's own task in the per-task dicts below


class FusionNetTask(FeatureTask):
    """The stage-2 feature task trained on a subset of the training rows (a half, or all of them).

    `task_targets` [N, T] (every prepared case's further-task labels, -1 unknown) or None: when set, each
    training target becomes [B, 1 + T], diagnosis first, as `FusionM4Net.loss` reads it."""

    task_targets: np.ndarray | None = None

    def use_rows(self, rows: np.ndarray, seed: int) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        labels = self.prep.labels[np.asarray(self.train_idx)[self.rows]]
        self.sampler = EpochSampler(labels, self.cfg["train"]["sampler"], seed, self.rt.rank, self.rt.world_size)

    def batch_rows(self, epoch: int) -> list[np.ndarray]:
        return [self.rows[b] for b in super().batch_rows(epoch)]

    def targets(self, rows: np.ndarray) -> torch.Tensor:
        target = super().targets(rows)
        if self.task_targets is None:
            return target
        return torch.cat([target[:, None], torch.from_numpy(self.task_targets[rows]).to(target.device)], 1)

    @torch.no_grad()
    def view_means(self, caches: dict[str, ViewCache], positions: np.ndarray, rows: np.ndarray, views: int,
                   read: Callable[[Any], dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
        """`read(model output)` ({key: [B, ...]}) for every case, averaged over `views` views, as float64."""
        self.model.eval()
        bs, out = int(self.cfg["train"]["eval_batch_size"]), {}
        for s in range(0, len(positions), bs):
            pos, r = positions[s:s + bs], rows[s:s + bs]
            per_view = [read(self.forward_module(self._batch(caches, pos, r, {m: np.full(len(pos), v) for m in caches})))
                        for v in range(views)]
            for key in per_view[0]:
                out.setdefault(key, []).append(torch.stack([p[key].double() for p in per_view]).mean(0).cpu())
        return {key: torch.cat(v).numpy() for key, v in out.items()}

    def branch_probs(self, caches: dict[str, ViewCache], positions: np.ndarray, rows: np.ndarray,
                     views: int) -> dict[str, np.ndarray]:
        """{task: [N, 3, K_task]} each branch's probabilities (clinical, dermoscopic, fusion), averaged over
        `views` views; the diagnosis under DIAGNOSIS."""
        tasks = [DIAGNOSIS, *self.model.structure.tasks]

        def read(o: Any) -> dict[str, torch.Tensor]:
            return {t: torch.stack([(o.branch_logits[b] if t == DIAGNOSIS else o.features[f"task.{t}.{b}"])
                                    .float().softmax(1) for b in BRANCHES], 1) for t in tasks}

        return self.view_means(caches, positions, rows, views, read)

    def task_outputs(self, caches: dict[str, ViewCache], positions: np.ndarray, rows: np.ndarray,
                     views: int) -> dict[str, np.ndarray]:
        """{further task: [N, K_task]} the shipped model's final probabilities (`out.features["task.<t>"]`)."""
        return self.view_means(caches, positions, rows, views,
                               lambda o: {t: o.features[f"task.{t}"] for t in self.model.structure.tasks})


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
        probs = combine(task.branch_probs(val["caches"], val["positions"], val["rows"], val["views"])[DIAGNOSIS],
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


# -- further tasks (Derm7pt's seven-point criteria) -------------------------------------------------------
def resolve_tasks(configured: Any, dataset: str) -> dict[str, int]:
    """`model.structure.tasks` ({name: classes}) checked against what the dataset labels (its adapter's `tasks`)."""
    from skinui.datasets import DATASETS

    tasks = dict(configured or {})
    known = DATASETS.get(dataset).tasks
    for name, k in tasks.items():
        if name not in known:
            offered = ", ".join(known) if known else "none"
            raise ValueError(f"fusionm4net task {name!r} is not labelled in {dataset} (its further tasks: {offered}); "
                             f"remove it from model.structure.tasks.")
        if int(k) != len(known[name]):
            raise ValueError(f"fusionm4net task {name!r} has {len(known[name])} classes in {dataset} "
                             f"({', '.join(known[name])}), not {k}; set model.structure.tasks.{name}: {len(known[name])}.")
    return {name: int(k) for name, k in tasks.items()}


def task_targets(prep: Prepared, tasks: dict[str, int]) -> np.ndarray:
    """[N, T] int64: each prepared case's class of each further task, -1 where the case does not say."""
    from skinui.datasets import DATASETS

    adapter = DATASETS.get(prep.dataset)
    rows = [adapter.task_labels(case) for case in prep.cases]
    return np.array([[r.get(t, -1) for t in tasks] for r in rows], dtype=np.int64).reshape(len(rows), len(tasks))


def split_tasks(stacked: np.ndarray, widths: dict[str, int]) -> dict[str, np.ndarray]:
    """[N, 3, sum K] back into {task: [N, 3, K_task]} (the order of `widths`)."""
    cuts = np.cumsum(list(widths.values()))[:-1]
    return dict(zip(widths, np.split(stacked, cuts, axis=2)))


def fit_decision(p_val: np.ndarray, p_oos: np.ndarray, meta_train: np.ndarray, meta_val: np.ndarray,
                 y_train: np.ndarray, y_val: np.ndarray, search: dict[str, Any], metric: str, mode: str, seed: int,
                 name: str = DIAGNOSIS) -> dict[str, Any]:
    """One task's decision, on its labelled rows (label >= 0): branch weights on validation, the SVM on
    [metadata ; out-of-sample P1] with C and gamma chosen on validation, then the stage weights on validation."""
    tr, va = y_train >= 0, y_val >= 0
    k = p_val.shape[2]
    if set(np.unique(y_train[tr]).tolist()) != set(range(k)) or not va.any():
        raise ValueError(f"fusionm4net cannot fit its {name} stage 2: the training split must hold every one of its "
                         f"{k} classes and validation at least one labelled case (training holds "
                         f"{sorted(set(np.unique(y_train[tr]).tolist()))}, validation {int(va.sum())} cases).")
    p_val, y_val = p_val[va], y_val[va]
    w_branch, branch_table = search_weights(list(p_val.transpose(1, 0, 2)), y_val,
                                            simplex_grid(3, float(search["branch_step"])), metric)
    p1_val = combine(p_val, w_branch)
    x_train = svm_inputs(meta_train[tr], p_oos[tr], w_branch, mode)
    x_val = svm_inputs(meta_val[va], p_val, w_branch, mode)
    svm_table, best = [], None
    for c in search["svm_C"]:
        for gamma in search["svm_gamma"]:
            svc = fit_svm(x_train, y_train[tr], float(c), gamma, seed)
            s = score(y_val, svm_probabilities(svc, x_val), metric)
            svm_table.append({"C": float(c), "gamma": gamma, "gamma_value": float(svc._gamma), metric: s[0],
                              "nll": -s[1], "n_support": int(svc.n_support_.sum())})
            if best is None or s > best[0]:
                best = (s, svc)
    svc = best[1]
    p2_val = svm_probabilities(svc, x_val)
    w_stage, stage_table = search_weights([p1_val, p2_val], y_val, simplex_grid(2, float(search["stage_step"])), metric)
    return {"branch": w_branch, "stage": w_stage, "svc": svc, "dim": int(x_train.shape[1]), "known_val": va,
            "p_val": p_val, "p1_val": p1_val, "p2_val": p2_val, "final_val": w_stage[0] * p1_val + w_stage[1] * p2_val,
            "branch_table": branch_table, "svm_table": svm_table, "stage_table": stage_table}


def task_report(task: FusionNetTask, prep: Prepared, decisions: dict[str, dict[str, Any]], tasks: dict[str, int],
                labels: dict[str, np.ndarray], views: int, group_key: str) -> dict[str, Any]:
    """The card's `fusionm4net.tasks`: per further task its classes, searched weights, SVM and validation and
    test scores of the shipped model (balanced accuracy, macro AUC, group-bootstrap 95% intervals; test read
    for the report only, after every choice was made on validation)."""
    from skinui.datasets import DATASETS
    from skinui.stats import bootstrap_scores

    names = DATASETS.get(prep.dataset).tasks
    out: dict[str, Any] = {}
    parts = {part: np.asarray(prep.split[part]) for part in ("val", "test") if len(prep.split.get(part, ()))}
    probs = {part: task.task_outputs(task._cache_for(part, list(idx), views), np.arange(len(idx)), idx, views)
             for part, idx in parts.items()}
    for t in tasks:
        d = decisions[t]
        row: dict[str, Any] = {
            "classes": list(names[t]),
            "branch_weights": dict(zip(BRANCHES, map(float, d["branch"]))),
            "stage_weights": {"stage1": float(d["stage"][0]), "stage2": float(d["stage"][1])},
            "svm": {"C": float(d["svc"].C), "gamma": float(d["svc"]._gamma),
                    "n_support": [int(n) for n in d["svc"].n_support_], "dim": d["dim"],
                    "torch_vs_search_max_abs_diff_val": d["torch_vs_search"]},
            "val_branches": {b: _scores(labels[t][parts["val"]][d["known_val"]], d["p_val"][:, i])
                             for i, b in enumerate(BRANCHES)},
        }
        for part, idx in parts.items():
            y, known = labels[t][idx], labels[t][idx] >= 0
            if len(np.unique(y[known])) < 2:
                row[part] = {"n_cases": int(known.sum()), "note": "fewer than two classes labelled: not scored"}
                continue
            groups = [prep.cases[i].group(group_key) for i in idx[known]]
            row[part] = bootstrap_scores(y[known], probs[part][t][known], None, groups)
        out[t] = row
    return out


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
    tasks = resolve_tasks(s_cfg.get("tasks"), prep.dataset)
    model = build(cfg, prep, rt, wdir)  # the stage-1 encoders loaded from their entries
    missing_metadata_is_unknown(model)
    task = FusionNetTask(cfg, model, prep, rt, run_dir)
    targets = task_targets(prep, tasks)  # [N, T], -1 unknown
    task.task_targets = targets if tasks else None
    task.prepare_model()  # freezes the encoders, caches the training features
    init = trainable(model)
    train_idx, val_idx = np.asarray(prep.split["train"]), np.asarray(prep.split["val"])
    views, eval_views = int(cfg["stage2"]["views"]), int(cfg["stage2"]["eval_views"])
    train_caches = task._cache_for("train", list(train_idx), views)
    val = {"caches": task._cache_for("val", list(val_idx), eval_views), "positions": np.arange(len(val_idx)),
           "rows": val_idx, "views": eval_views, "labels": prep.labels[val_idx]}
    labels = {DIAGNOSIS: prep.labels, **{t: targets[:, i] for i, t in enumerate(tasks)}}
    widths = {DIAGNOSIS: len(prep.classes), **tasks}
    y_train, y_val = prep.labels[train_idx], prep.labels[val_idx]
    if eval_views > views:
        raise ValueError("stage2.eval_views must not exceed stage2.views (held-out training rows are predicted "
                         "from the training cache's first views).")

    def predict_rows(state: dict[str, torch.Tensor], rows: np.ndarray) -> np.ndarray:
        """[N, 3, sum of the tasks' classes]: every task's branch probabilities side by side (split_tasks undoes it)."""
        model.load_state_dict(state, strict=False)
        probs = task.branch_probs(train_caches, rows, train_idx[rows], eval_views)
        return np.concatenate([probs[t] for t in widths], 2)

    # 1. stage 1 on the whole training split: what ships
    full = train_stage1(task, np.arange(len(train_idx)), init, val, seed, "all")
    p_val = task.branch_probs(val["caches"], val["positions"], val["rows"], eval_views)
    # 3. out-of-sample stage-1 probabilities of the training split (half-split)
    group_key = prep.split_record["group_key"]
    halves = half_split([prep.cases[i].group(group_key) for i in train_idx], y_train, int(search["half_seed"]))
    fits: list[dict[str, Any]] = []

    def fit_half(rows: np.ndarray) -> dict[str, torch.Tensor]:
        fits.append(train_stage1(task, rows, init, val, seed + 1 + len(fits), f"half {len(fits)}"))
        return fits[-1]["state"]

    p_oos = split_tasks(out_of_sample(halves, fit_half, predict_rows)[0], widths)
    p_in = split_tasks(predict_rows(full["state"], np.arange(len(train_idx))), widths)  # in-sample, for the card only
    model.load_state_dict(full["state"], strict=False)
    # 2, 4, 5 per task: branch weights, the SVM on [metadata ; out-of-sample P1] (C and gamma on validation,
    # where P1 comes from the shipped stage 1), stage weights
    mode = s_cfg.get("svm_input", "combined")
    decisions = {t: fit_decision(p_val[t], p_oos[t], prep.meta[train_idx], prep.meta[val_idx], labels[t][train_idx],
                                 labels[t][val_idx], search, metric, mode, seed, t)
                 for t in widths}
    # 6. the SVMs into the model, as tensors; the torch SVM must reproduce scikit-learn's
    structure_cfg = {**model.cfg["structure"]}
    for t, d in decisions.items():
        entries = model.structure.attach(d["branch"], d["stage"], d["svc"], None if t == DIAGNOSIS else t)
        for key in ("task_weights", "task_svms"):  # merged per task, not replaced
            if key in entries:
                entries[key] = {**(structure_cfg.get(key) or {}), **entries[key]}
        structure_cfg.update(entries)
    structure_cfg.pop("image_dims", None)  # filled in by the model from its encoders
    model.cfg["structure"] = structure_cfg
    with torch.no_grad():
        model.eval()
        feats = {m: c.take(val["positions"], np.zeros(len(val_idx), int)) for m, c in val["caches"].items()}
        feats.update(model.encode({"metadata": torch.from_numpy(prep.meta[val_idx])}))
        mask = {"metadata": torch.from_numpy(prep.meta_present[val_idx])}
        got = model.head(feats, mask)
    d = decisions[DIAGNOSIS]
    torch_vs_sklearn = float(np.abs(got.features["p2"].double().numpy() - d["p2_val"]).max())
    for t in tasks:  # the shipped model's final task probabilities against the search's (on the labelled rows)
        dt = decisions[t]
        dt["torch_vs_search"] = float(np.abs(got.features[f"task.{t}"].double().numpy()[dt["known_val"]]
                                             - dt["final_val"]).max())
    worst = max([torch_vs_sklearn, *(decisions[t]["torch_vs_search"] for t in tasks)])
    if worst > 1e-5:
        raise RuntimeError(f"the torch SVM differs from scikit-learn's by {worst:.2g} on validation.")
    w_branch, w_stage, svc = d["branch"], d["stage"], d["svc"]
    p1_val, p2_val, final_val, step = d["p1_val"], d["p2_val"], d["final_val"], float(search["stage_step"])
    branch_table, svm_table, stage_table = d["branch_table"], d["svm_table"], d["stage_table"]

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
                "input": mode, "dim": int(d["dim"]), "grid": svm_table,
                "torch_vs_sklearn_max_abs_diff_val": torch_vs_sklearn},
        "half_split": {"group_key": group_key, "seed": int(search["half_seed"]),
                       "sizes": [int((halves == 0).sum()), int((halves == 1).sum())],
                       "groups": [len({prep.cases[i].group(group_key) for i in train_idx[halves == h]}) for h in (0, 1)],
                       "best_epochs": [f["best_epoch"] for f in fits],
                       "train_p1_out_of_sample": _scores(y_train, combine(p_oos[DIAGNOSIS], w_branch)),
                       "train_p1_in_sample": _scores(y_train, combine(p_in[DIAGNOSIS], w_branch))},
        "stage1": {"best_epoch": full["best_epoch"], "epochs_run": full["epochs_run"]},
        "val": {"stage1_uniform": _scores(y_val, combine(p_val[DIAGNOSIS], np.full(3, 1 / 3))),
                "stage1": _scores(y_val, p1_val), "stage2_svm": _scores(y_val, p2_val), "final": _scores(y_val, final_val),
                **{b: _scores(y_val, p_val[DIAGNOSIS][:, i]) for i, b in enumerate(BRANCHES)}},
        "branch_grid_top": sorted(branch_table, key=lambda r: (r[metric], -r["nll"]), reverse=True)[:5],
        "stage_grid": stage_table,
    }
    if tasks:
        block["tasks"] = task_report(task, prep, decisions, tasks, labels, eval_views, group_key)
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
