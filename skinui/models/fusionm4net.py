"""FusionM4Net (the dissertation's chapter 6): FusionNet, then an RBF SVM on metadata + its probabilities.

The whole system is a config (training/configs/synthderm_fusionm4net.yaml) trained by
`training.fusionm4net`; this module is what inference runs, the `fusionm4net` structure:

- stage 1, FusionNet: the clinical and the dermoscopic image each have their own encoder (the model's
  per-modality encoders); the fused feature is their element-wise sum, f_F = P_C f_C + P_D f_D, where
  P_m is the identity when both encoders have the same width (`width: null`, the SynthDerm case: two
  1280-wide EfficientNet-Lite0 encoders) and otherwise a linear projection to `width`; three branches
  (clinical on f_C, dermoscopic on f_D, fusion on f_F), each a dropout + linear classifier, trained with
  the summed cross-entropy L = CE_C + CE_D + CE_F; P1 = sum_b w_b softmax(z_b), the branch weights w
  (`branch_weights`, clinical / dermoscopic / fusion, summing to one) found by a grid search on validation.
- stage 2: an RBF support vector classifier on x = [metadata ; P1] (`svm_input: combined`; `branches`
  feeds the three branch probabilities instead), the metadata being the zoo's fitted encoding (one-hot
  columns with an `unknown` level; the model's metadata encoder is the identity, `dims: []`). The SVM is
  libsvm's C-SVC as scikit-learn fits it, stored as tensors (support vectors, dual coefficients,
  intercepts, gamma, the Platt parameters of every class pair) and evaluated here in torch: one-vs-one
  decision values, Platt-scaled pairwise probabilities, coupled into class probabilities exactly as
  libsvm's `multiclass_probability` does (Wu, Lin and Weng 2004, method 2). Nothing is unpickled; the
  result equals `SVC.predict_proba` (tests/test_fusionm4net.py).
- the decision: P = w1 P1 + w2 P2 (`stage_weights`, searched on validation); logits = log P, so
  temperature scaling and softmax treat it like every other structure. Every step is a torch operation,
  so gradients reach the image encoders through the SVM too (Grad-CAM explains the final output).

Without an SVM (`svm: null`, while stage 1 trains) the output is P1.

Multi-task (the chapter's Derm7pt setting: the diagnosis plus the seven-point criteria): `tasks` names
further tasks and their class counts. Each task has its own three branch heads on the same features, its
own branch weights, SVM (on [metadata ; that task's P1]) and stage weights (`task_weights`, `task_svms`),
the loss sums every task's three cross-entropies (unknown labels, -1, are skipped), and each task's final
probabilities are `out.features["task.<name>"]`. The diagnosis stays the model's output (`logits`), so
calibration, Grad-CAM and every report treat it like any other entry.
"""
from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skinui.models.structures import (
    _EPS,
    STRUCTURES,
    ModelOutput,
    StructureBase,
    _head,
    mix_branches,
    probability_output,
)

BRANCHES = ("clinical", "dermoscopic", "fusion")  # the order of `branch_weights`
SVM_INPUTS = ("combined", "branches")
MIN_PROB = 1e-7  # libsvm's clamp of the pairwise probabilities


def pairs(num_classes: int) -> list[tuple[int, int]]:
    """libsvm's one-vs-one order: (0,1), (0,2), ..., (1,2), ..."""
    return list(combinations(range(num_classes), 2))


def couple(r: torch.Tensor) -> torch.Tensor:
    """libsvm's `multiclass_probability`: pairwise r [B, K, K] (r_ij + r_ji = 1) -> class probabilities [B, K].

    The same fixed-point iteration, the same stopping rule (max |Qp_t - pQp| < 0.005 / K, checked per
    case before each sweep) and the same iteration cap max(100, K); batched, a converged case is frozen.
    Differentiable (no in-place updates)."""
    b, k = r.shape[:2]  # two classes go through the iteration too, as in scikit-learn's libsvm
    eye = torch.eye(k, dtype=torch.bool, device=r.device)
    rt = r.transpose(1, 2)  # rt[t, j] = r[j, t]
    diag = (rt ** 2).masked_fill(eye, 0).sum(2)  # Q_tt = sum_{j != t} r_jt^2
    q = torch.where(eye, torch.diag_embed(diag), -(rt * r))  # Q_tj = -r_jt r_tj
    p = r.new_full((b, k), 1.0 / k)
    eps = 0.005 / k
    done = torch.zeros(b, dtype=torch.bool, device=r.device)
    for _ in range(max(100, k)):
        qp = (q @ p[..., None])[..., 0]
        pqp = (p * qp).sum(1)
        done = done | ((qp - pqp[:, None]).abs().amax(1) < eps)
        if bool(done.all()):
            break
        for t in range(k):
            qtt = q[:, t, t]
            diff = (pqp - qp[:, t]) / qtt
            scale = (1 + diff)[:, None]
            p_new = (p + diff[:, None] * F.one_hot(torch.tensor(t, device=r.device), k).to(p)) / scale
            pqp_new = (pqp + diff * (diff * qtt + 2 * qp[:, t])) / (1 + diff) ** 2
            qp_new = (qp + diff[:, None] * q[:, t, :]) / scale
            keep = done[:, None]
            p, qp, pqp = torch.where(keep, p, p_new), torch.where(keep, qp, qp_new), torch.where(done, pqp, pqp_new)
    return p


class RBFSVC(nn.Module):
    """A fitted multi-class libsvm C-SVC with an RBF kernel, as tensors (float64, like libsvm).

    Buffers (scikit-learn's names): `support` [n_SV, D] (`support_vectors_`, grouped by class),
    `dual` [K-1, n_SV] (`_dual_coef_`), `intercept` [P] (`_intercept_`, = -rho), `prob_a`, `prob_b` [P]
    (`probA_`, `probB_`), `gamma` [] (`_gamma`); `n_support` (a config value: the shapes depend on it)
    says which support vectors belong to which class."""

    def __init__(self, num_classes: int, n_support: list[int], dim: int) -> None:
        super().__init__()
        if len(n_support) != num_classes or min(n_support) < 0 or sum(n_support) < 1:
            raise ValueError(f"fusionm4net svm.n_support must be {num_classes} support-vector counts, not {n_support}.")
        self.num_classes, self.n_support, self.dim = num_classes, [int(n) for n in n_support], int(dim)
        n, p = sum(self.n_support), len(pairs(num_classes))
        f64 = torch.float64
        self.register_buffer("support", torch.zeros(n, dim, dtype=f64))
        self.register_buffer("dual", torch.zeros(num_classes - 1, n, dtype=f64))
        self.register_buffer("intercept", torch.zeros(p, dtype=f64))
        self.register_buffer("prob_a", torch.zeros(p, dtype=f64))
        self.register_buffer("prob_b", torch.zeros(p, dtype=f64))
        self.register_buffer("gamma", torch.zeros((), dtype=f64))

    @staticmethod
    def spec_of(svc: Any) -> dict[str, Any]:
        """The config values a fitted `sklearn.svm.SVC` needs here (the tensors' shapes)."""
        return {"n_support": [int(n) for n in svc.n_support_], "dim": int(svc.support_vectors_.shape[1]),
                "C": float(svc.C), "gamma": float(svc._gamma)}

    @torch.no_grad()
    def load_sklearn(self, svc: Any) -> RBFSVC:
        """Copy a fitted `SVC(kernel="rbf", probability=True)`'s parameters (training only)."""
        if svc.kernel != "rbf" or not getattr(svc, "probability", False):
            raise ValueError("fusionm4net stores an SVC(kernel='rbf', probability=True).")
        if self.spec_of(svc)["n_support"] != self.n_support or svc.support_vectors_.shape[1] != self.dim:
            raise ValueError("the SVC's support vectors do not fit this model's svm spec; rebuild it with spec_of(svc).")
        as64 = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
        self.support.copy_(as64(svc.support_vectors_))
        self.dual.copy_(as64(svc._dual_coef_))
        self.intercept.copy_(as64(svc._intercept_).reshape(-1))
        with warnings.catch_warnings():  # scikit-learn 1.9 deprecates probability=True and these attributes
            warnings.simplefilter("ignore", FutureWarning)
            self.prob_a.copy_(as64(svc.probA_).reshape(-1))
            self.prob_b.copy_(as64(svc.probB_).reshape(-1))
        self.gamma.copy_(as64(svc._gamma))
        return self

    def pair_coefficients(self) -> torch.Tensor:
        """[n_SV, P]: column p holds, for pair (i, j), dual[j-1] on class i's vectors and dual[i] on class j's."""
        start = [0]
        for n in self.n_support:
            start.append(start[-1] + n)
        coef = self.dual.new_zeros(self.dual.shape[1], len(pairs(self.num_classes)))
        for p, (i, j) in enumerate(pairs(self.num_classes)):
            coef[start[i]:start[i + 1], p] = self.dual[j - 1, start[i]:start[i + 1]]
            coef[start[j]:start[j + 1], p] = self.dual[i, start[j]:start[j + 1]]
        return coef

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """libsvm's one-vs-one decision values [B, P] (scikit-learn's `decision_function_shape="ovo"`;
        its binary decision_function is the negative of this)."""
        x = x.to(torch.float64)
        sq = ((x[:, None, :] - self.support[None]) ** 2).sum(-1)  # [B, n_SV]
        return torch.exp(-self.gamma * sq) @ self.pair_coefficients() + self.intercept

    def pairwise(self, x: torch.Tensor) -> torch.Tensor:
        """r [B, K, K]: r_ij = P(i | i or j), Platt-scaled and clamped as libsvm does; r_ji = 1 - r_ij."""
        f = self.decision(x)
        rij = torch.sigmoid(-(f * self.prob_a + self.prob_b)).clamp(MIN_PROB, 1 - MIN_PROB)  # 1 / (1 + e^{fA+B})
        k, idx = self.num_classes, pairs(self.num_classes)
        upper = torch.zeros(len(idx), k * k, dtype=f.dtype, device=f.device)
        lower = torch.zeros_like(upper)
        for p, (i, j) in enumerate(idx):
            upper[p, i * k + j] = 1.0
            lower[p, j * k + i] = 1.0
        return (rij @ upper + (1 - rij) @ lower).reshape(-1, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, K] (float64): scikit-learn's `predict_proba`."""
        return couple(self.pairwise(x))


@STRUCTURES.register("fusionm4net")
class FusionM4Net(StructureBase):
    """FusionNet's three branches (P1), the SVM on [metadata ; P1] (P2), P = w1 P1 + w2 P2."""

    needs_both = True
    generic = False  # needs both images: tested on its own (tests/test_fusionm4net.py), not in the any-modality sweep
    wants_image_dims = True  # skinui.models.model passes {modality: width} of the concatenated image features

    def __init__(self, dim_image: int, dim_meta: int, num_classes: int, image_dims: dict[str, int] | None = None,
                 width: int | None = None, dropout: float = 0.2, branch_weights: list[float] | None = None,
                 stage_weights: list[float] | None = None, svm: dict[str, Any] | None = None,
                 svm_input: str = "combined", tasks: dict[str, int] | None = None,
                 task_weights: dict[str, dict[str, list[float]]] | None = None,
                 task_svms: dict[str, dict[str, Any] | None] | None = None, task_loss_weight: float = 1.0,
                 **kw: Any) -> None:
        super().__init__(dim_image, dim_meta, num_classes, dropout=dropout, **kw)
        dims = dict(image_dims or {})
        if sorted(dims) != ["clinical", "dermoscopic"]:
            raise ValueError("structure fusionm4net needs a clinical and a dermoscopic image (model.modalities: "
                             "[dermoscopic, clinical, metadata]).")
        if svm_input not in SVM_INPUTS:
            raise ValueError(f"fusionm4net svm_input must be one of {', '.join(SVM_INPUTS)}, not {svm_input!r}.")
        self.image_dims, self.svm_input = dims, svm_input
        same = len(set(dims.values())) == 1
        self.width = int(width or (next(iter(dims.values())) if same else min(dims.values())))
        self.project = nn.ModuleDict({m: nn.Identity() if d == self.width else nn.Linear(d, self.width)
                                      for m, d in dims.items()})
        self.heads = nn.ModuleDict({"clinical": _head(dims["clinical"], num_classes, dropout),
                                    "dermoscopic": _head(dims["dermoscopic"], num_classes, dropout),
                                    "fusion": _head(self.width, num_classes, dropout)})
        # config values, saved in the card; buffers so that they travel with the module (not in the state dict)
        self.register_buffer("branch_weights", _weights(branch_weights, 3, "branch_weights"), persistent=False)
        self.register_buffer("stage_weights", _weights(stage_weights, 2, "stage_weights"), persistent=False)
        self.dim_meta, self.svm = int(dim_meta), None
        if svm:
            self.svm = self._svm_for(num_classes, svm, "svm")
        # further tasks (Derm7pt's criteria): the same three branches, weights and SVM per task
        self.tasks = {str(t): int(k) for t, k in (tasks or {}).items()}
        if any(k < 2 for k in self.tasks.values()) or (tasks is not None and not isinstance(tasks, dict)):
            raise ValueError("fusionm4net tasks must map each further task to its number of classes (at least 2), "
                             "e.g. {pigment_network: 3}.")
        self.task_loss_weight = float(task_loss_weight)
        widths = {"clinical": dims["clinical"], "dermoscopic": dims["dermoscopic"], "fusion": self.width}
        self.task_heads = nn.ModuleDict({t: nn.ModuleDict({b: _head(widths[b], k, dropout) for b in BRANCHES})
                                         for t, k in self.tasks.items()})
        self.task_svm = nn.ModuleDict()
        for t, k in self.tasks.items():
            w = (task_weights or {}).get(t, {})
            self.register_buffer(f"_branch_weights_{t}", _weights(w.get("branch"), 3, f"task_weights.{t}.branch"),
                                 persistent=False)
            self.register_buffer(f"_stage_weights_{t}", _weights(w.get("stage"), 2, f"task_weights.{t}.stage"),
                                 persistent=False)
            if (task_svms or {}).get(t):
                self.task_svm[t] = self._svm_for(k, task_svms[t], f"task_svms.{t}")

    def _svm_for(self, num_classes: int, spec: dict[str, Any], name: str) -> RBFSVC:
        want = self.svm_width(num_classes)
        if int(spec["dim"]) != want:
            raise ValueError(f"fusionm4net {name}.dim is {spec['dim']} but [metadata ; probabilities] is {want} wide.")
        return RBFSVC(num_classes, spec["n_support"], want)

    def task_weights(self, task: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(branch weights [3], stage weights [2]) of `task` (None: the diagnosis)."""
        if task is None:
            return self.branch_weights, self.stage_weights
        return getattr(self, f"_branch_weights_{task}"), getattr(self, f"_stage_weights_{task}")

    def attach(self, branch_weights: Any, stage_weights: Any, svc: Any = None, task: str | None = None) -> dict[str, Any]:
        """Training: the searched weights and a fitted scikit-learn SVC into this structure, for the diagnosis
        (`task` None) or a further task. Returns the `model.structure` entries that rebuild it (written into
        the card; the SVC's tensors go to the state dict)."""
        w1 = _weights(np.asarray(branch_weights, dtype=np.float64).tolist(), 3, "branch_weights")
        w2 = _weights(np.asarray(stage_weights, dtype=np.float64).tolist(), 2, "stage_weights")
        k = self.num_classes if task is None else self.tasks[task]
        spec, fitted = None, None
        if svc is not None:
            spec = RBFSVC.spec_of(svc)
            want = self.svm_width(k)
            if spec["dim"] != want:
                raise ValueError(f"the SVC was fitted on {spec['dim']} inputs; this structure feeds it {want}.")
            fitted = RBFSVC(k, spec["n_support"], spec["dim"]).load_sklearn(svc)
        weights = {"branch": [float(v) for v in w1], "stage": [float(v) for v in w2]}
        if task is None:
            self.branch_weights, self.stage_weights = w1, w2
            if fitted is not None:
                self.svm = fitted
            return {"branch_weights": weights["branch"], "svm": spec, "stage_weights": weights["stage"]}
        setattr(self, f"_branch_weights_{task}", w1)
        setattr(self, f"_stage_weights_{task}", w2)
        if fitted is not None:
            self.task_svm[task] = fitted
        return {"task_weights": {task: weights}, "task_svms": {task: spec}}

    def svm_width(self, num_classes: int | None = None) -> int:
        k = self.num_classes if num_classes is None else num_classes
        return self.dim_meta + (3 if self.svm_input == "branches" else 1) * k

    def split(self, f_image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The concatenated image features back into {modality: [B, D_m]} (the model's modality order)."""
        out, start = {}, 0
        for m, d in self.image_dims.items():
            out[m] = f_image[:, start:start + d]
            start += d
        return out

    def fuse(self, f: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fusion branch's feature: the element-wise sum of the (projected) clinical and dermoscopic features."""
        return self.project["clinical"](f["clinical"]) + self.project["dermoscopic"](f["dermoscopic"])

    def branch_features(self, f_image: torch.Tensor) -> dict[str, torch.Tensor]:
        """{clinical, dermoscopic, fusion}: the features each branch's heads read."""
        f = self.split(f_image)
        return {"clinical": f["clinical"], "dermoscopic": f["dermoscopic"], "fusion": self.fuse(f)}

    def stage1(self, f_image: torch.Tensor, task: str | None = None,
               feats: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Branch logits {clinical, dermoscopic, fusion} and P1 = sum_b w_b softmax(z_b) of the diagnosis
        (`task` None) or a further task."""
        feats = self.branch_features(f_image) if feats is None else feats
        heads = self.heads if task is None else self.task_heads[task]
        z = {b: heads[b](feats[b]) for b in BRANCHES}
        return z, mix_branches(z, BRANCHES, self.task_weights(task)[0])

    def svm_features(self, f_meta: torch.Tensor, z: dict[str, torch.Tensor], p1: torch.Tensor) -> torch.Tensor:
        """x = [metadata ; P1] (or [metadata ; P_C ; P_D ; P_F] with svm_input: branches)."""
        probs = [p1] if self.svm_input == "combined" else [z[b].float().softmax(1) for b in BRANCHES]
        return torch.cat([f_meta.float(), *probs], 1)

    def decide(self, z: dict[str, torch.Tensor], p1: torch.Tensor, f_meta: torch.Tensor,
               task: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(P = w1 P1 + w2 P2, P2) of one task; P = P1 and P2 None while it has no SVM."""
        svm = self.svm if task is None else (self.task_svm[task] if task in self.task_svm else None)
        if svm is None:
            return p1, None
        p2 = svm(self.svm_features(f_meta, z, p1))
        w = self.task_weights(task)[1].to(torch.float64)
        return (w[0] * p1.to(torch.float64) + w[1] * p2).to(p1.dtype), p2.to(p1.dtype)

    def forward(self, f_image: torch.Tensor, f_meta: torch.Tensor, present: torch.Tensor) -> ModelOutput:
        feats = self.branch_features(f_image)
        z, p1 = self.stage1(f_image, feats=feats)
        p, p2 = self.decide(z, p1, f_meta)
        extra: dict[str, torch.Tensor] = {}
        for t in self.tasks:
            zt, p1t = self.stage1(f_image, t, feats)
            extra[f"task.{t}"] = self.decide(zt, p1t, f_meta, t)[0]
            extra.update({f"task.{t}.{b}": zt[b] for b in BRANCHES})
        if p2 is None:
            return probability_output(p1, z, **extra)
        branches = {**z, "svm": torch.log(p2.clamp_min(_EPS))}
        return probability_output(p, branches, p1=p1, p2=p2, **extra)

    def loss(self, out: ModelOutput, target: torch.Tensor) -> torch.Tensor:
        """Stage 1's summed cross-entropy CE_C + CE_D + CE_F (the SVM is fitted, not trained by gradient); with
        further tasks `target` is [B, 1 + T] (diagnosis, then each task's class or -1 where unknown) and each
        task adds task_loss_weight x its own three branches' cross-entropy over the cases that have its label."""
        diagnosis = target if target.dim() == 1 else target[:, 0]
        total = sum(F.cross_entropy(out.branch_logits[b].float(), diagnosis) for b in BRANCHES)
        if not self.tasks or target.dim() == 1:
            return total
        for i, t in enumerate(self.tasks, start=1):
            known = target[:, i] >= 0
            if bool(known.any()):
                total = total + self.task_loss_weight * sum(
                    F.cross_entropy(out.features[f"task.{t}.{b}"][known].float(), target[known, i]) for b in BRANCHES)
        return total


def _weights(values: Any, n: int, name: str) -> torch.Tensor:
    """n non-negative weights normalised to sum to one (None: the default, uniform branches or stage 1 alone)."""
    default = [1 / 3] * 3 if n == 3 else [1.0, 0.0]
    w = torch.tensor(values if values is not None else default, dtype=torch.float32)
    if w.shape != (n,) or (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError(f"fusionm4net {name} must be {n} non-negative numbers, not all zero "
                         "(branch weights: clinical, dermoscopic, fusion; stage weights: stage 1, stage 2).")
    return w / w.sum()
