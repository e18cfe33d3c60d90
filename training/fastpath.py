"""Train from a cache of what the frozen part of the network computes: the CPU fast path and stage 2.

Full fine-tuning decodes and pushes every image through the whole encoder every epoch (about 5
images/s on a 2-core CPU). Here the frozen part runs once per image over K augmented views
(`skinui.models.preprocess.augment_views`: flips and 90-degree turns, then colour-jittered
copies), its outputs are stored in fp16 (RAM, or .npy memmaps on disk reused by every run with
the same frozen weights), and each epoch draws one cached view per case:

- `fastpath` (`FastPathTask`): frozen = the encoder's stem (`forward_stem`, split by the image
  encoder's `stem_blocks`); trained = the trunk (`forward_trunk`), metadata encoder, fusion, heads.
- `features` (`FeatureTask`, stage 2 of the two-stage protocol): frozen = the whole image encoder,
  fine-tuned once per dataset and modality in stage 1 (`stage2.backbone`); trained = the metadata
  encoder, fusion and heads (`model.head` on cached `encode` features). Every fusion entry of a
  dataset then sits on the same encoder, so the differences between entries are the fusion's.

Validation and test use `eval_views` views (1 = the plain image; 2 = plus its mirror image),
their probabilities averaged.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from skinui.cases import ConceptVector
from skinui.models.preprocess import augment_views, preprocess_image
from training.data import Prepared, image_tensor, to_device
from training.runtime import Runtime
from training.tasks import Batch, Task, log_mean_probs


def state_sha256(modules: Iterable[nn.Module]) -> str:
    """Hash of the frozen weights: a cache is valid exactly as long as these are unchanged."""
    h = hashlib.sha256()
    for module in modules:
        for name, t in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def images_fingerprint(cases: Sequence[Any], modality: str) -> str:
    """SHA-256 over each case's image file (resolved path, size, modification time) of `modality`.

    Case ids alone do not identify pixels: two SynthDerm folders (e.g. the independent and the
    interaction variant, or a regenerated one) share ids, so a cache keyed by ids would silently
    serve one folder's features for the other."""
    h = hashlib.sha256()
    for case in cases:
        ref = getattr(case, modality, None)
        path = getattr(ref, "path", None)
        if path is None:
            h.update(b"-\n")
            continue
        try:
            st = Path(path).stat()
            h.update(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}|missing\n".encode())
    return h.hexdigest()


class ViewCache:
    """fp16 outputs of the frozen part: `data[row, view]`, plus `present[row]` (the modality exists)."""

    def __init__(self, data: np.ndarray, present: np.ndarray) -> None:
        self.data, self.present = data, present

    @property
    def views(self) -> int:
        return int(self.data.shape[1])

    def take(self, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.data[rows, views])).float()


def build_view_cache(
    prep: Prepared, indices: Sequence[int], modality: str, views: int, represent, image_size: int,
    device: torch.device, batch_size: int = 32, dtype: str = "float16", path: Path | None = None, desc: str = "",
    preprocess: dict[str, Any] | None = None,
) -> ViewCache:
    """Run `represent` (frozen, no grad) over `views` views of each case's image; RAM or .npy memmap.

    `preprocess` (the model's `model.preprocess`) is applied to the decoded image before its views are made."""
    n = len(indices)
    present = np.array([prep.cases[i].image(modality) is not None for i in indices]) if n else np.zeros(0, bool)
    data: np.ndarray | None = None
    pending: list[tuple[int, int, torch.Tensor]] = []

    def flush() -> None:
        nonlocal data
        if not pending:
            return
        x = torch.stack([t for _, _, t in pending]).to(device)
        with torch.no_grad():
            out = represent(x).float().cpu().numpy().astype(dtype)
        if data is None:
            shape = (n, views, *out.shape[1:])
            data = (np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape) if path is not None
                    else np.zeros(shape, dtype=dtype))
        for k, (row, v, _) in enumerate(pending):
            data[row, v] = out[k]
        pending.clear()

    for row, i in enumerate(tqdm(indices, desc=desc or f"caching {modality}", leave=False, unit="case")):
        img = prep.cases[i].image(modality)
        if img is None:
            continue
        if isinstance(img, ConceptVector):  # no pixels to augment: every view is the vector itself
            tensors = [image_tensor(img, image_size)] * views
        else:
            tensors = [image_tensor(v, image_size) for v in augment_views(preprocess_image(img, preprocess), views)]
        pending.extend((row, v, t) for v, t in enumerate(tensors))
        if len(pending) >= batch_size:
            flush()
    flush()
    if data is None:  # no case has this modality: keep a 1-wide placeholder, always masked
        data = np.zeros((n, views, 1), dtype=dtype)
    if isinstance(data, np.memmap):
        data.flush()
    return ViewCache(data, present)


class CachedForward(nn.Module):
    """`forward(batch)` where each image modality holds cached frozen outputs, not pixels."""

    def __init__(self, model: nn.Module, through_trunk: bool) -> None:
        super().__init__()
        self.model, self.through_trunk = model, through_trunk

    def forward(self, batch: dict[str, Any]):
        feats = {}
        for m in self.model.image_modalities:
            if batch.get(m) is not None:
                h = batch[m]
                feats[m] = self.model.image_encoders[m].forward_trunk(h) if self.through_trunk else h
        if batch.get("metadata") is not None:
            feats.update(self.model.encode({"metadata": batch["metadata"]}))
        return self.model.head(feats, batch.get("mask"))


class CachedTask(Task):
    through_trunk = True
    views_cfg = "fastpath"

    def __init__(self, cfg: dict[str, Any], model: nn.Module, prep: Prepared, rt: Runtime, run_dir: Path) -> None:
        super().__init__(cfg, model, prep, rt)
        if len(getattr(model, "auxiliary", ())):
            raise ValueError(f"train.mode {self.mode} trains from cached {'stems' if self.through_trunk else 'features'}, "
                             f"but model.auxiliary ({', '.join(model.auxiliary)}) needs the input images; use "
                             f"train.mode: full.")
        self.run_dir = Path(run_dir)
        self.forward_module = CachedForward(model, self.through_trunk)
        self.caches: dict[str, dict[str, ViewCache]] = {}

    # -- what is frozen, and what it computes (subclasses) ----------------------------------------
    def frozen_modules(self, modality: str) -> list[nn.Module]:
        raise NotImplementedError

    def represent(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def module(self) -> nn.Module:
        return self.forward_module

    def prepare_model(self) -> None:
        for m in self.model.image_modalities:
            for module in self.frozen_modules(m):
                module.eval()
                module.requires_grad_(False)
        self._cache_for("train", self.train_idx, int(self.cfg[self.views_cfg]["views"]))

    def modules_to_train_mode(self) -> None:
        self.module.train()
        for m in self.model.image_modalities:  # frozen BatchNorms keep their statistics
            for module in self.frozen_modules(m):
                module.eval()

    # -- caches -------------------------------------------------------------------------------------
    def _cache_dir(self, part: str, indices: Sequence[int], views: int, modality: str) -> Path:
        c = self.cfg["cache"]
        key = json.dumps({
            "mode": self.mode, "dataset": self.prep.dataset, "cases": [self.prep.cases[i].case_id for i in indices],
            "images": images_fingerprint([self.prep.cases[i] for i in indices], modality),
            "views": views, "size": int(self.model.cfg["image_size"]), "dtype": c["dtype"], "modality": modality,
            **({"preprocess": self.model.cfg["preprocess"]} if self.model.cfg.get("preprocess") else {}),
            "frozen": state_sha256(self.frozen_modules(modality)),
            # what the frozen part returns when its weights alone do not say (stage_maps: which stages, pooled how)
            **({"stem": tag} if (tag := getattr(self.model.image_encoders[modality], "cache_tag", None)) else {}),
        })
        base = Path(c["dir"]) if c.get("dir") else self.run_dir.parent / "_cache"
        return base / f"{self.mode}-{self.prep.dataset}-{modality}-{part}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def _cache_for(self, part: str, indices: Sequence[int], views: int) -> dict[str, ViewCache]:
        key = f"{part}/{views}/" + hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()
        if key in self.caches:
            return self.caches[key]
        c, out = self.cfg["cache"], {}
        self.model.eval()
        for m in self.model.image_modalities:
            build = lambda path, m=m: build_view_cache(  # noqa: E731
                self.prep, indices, m, views, lambda x, m=m: self.represent(m, x), int(self.model.cfg["image_size"]),
                self.rt.device, int(c["batch_size"]), c["dtype"], path, desc=f"caching {m} ({part}, {views} views)",
                preprocess=self.model.cfg.get("preprocess"))
            if c["store"] == "ram":
                out[m] = build(None)
                continue
            folder = self._cache_dir(part, indices, views, m)
            if self.rt.is_main and not (folder / "done.json").is_file():
                folder.mkdir(parents=True, exist_ok=True)
                cache = build(folder / "data.npy")
                np.save(folder / "present.npy", cache.present)
                (folder / "done.json").write_text(json.dumps({"shape": list(cache.data.shape)}))
            self.rt.barrier()
            out[m] = ViewCache(np.load(folder / "data.npy", mmap_mode="r"), np.load(folder / "present.npy"))
        self.caches[key] = out
        return out

    def _batch(self, caches: dict[str, ViewCache], positions: np.ndarray, rows: np.ndarray,
               views: dict[str, np.ndarray]) -> dict[str, Any]:
        """positions: into the cache; rows: into prep (for metadata)."""
        batch: dict[str, Any] = {"mask": {}}
        for m, cache in caches.items():
            present = cache.present[positions]
            batch[m] = cache.take(positions, views[m]) if present.any() else None
            if present.any() and not present.all():
                batch["mask"][m] = torch.from_numpy(present)
        if self.prep.meta is not None and "metadata" in self.model.modalities:
            batch["metadata"] = torch.from_numpy(self.prep.meta[rows])
            present = self.prep.meta_present[rows]
            if not present.all():
                batch["mask"]["metadata"] = torch.from_numpy(present)
        return to_device(batch, self.rt.device, self.rt.channels_last)

    # -- the loop's interface -------------------------------------------------------------------------
    def train_batches(self, epoch: int) -> Iterable[Batch]:
        caches = self._cache_for("train", self.train_idx, int(self.cfg[self.views_cfg]["views"]))
        train_idx = np.asarray(self.train_idx)
        seed = int(self.cfg["train"]["seed"])
        for step, positions in enumerate(self.batch_rows(epoch)):
            rng = np.random.default_rng([seed, epoch, step, 104729])  # the view drawn for each row
            views = {m: rng.integers(c.views, size=len(positions)) for m, c in caches.items()}
            rows = train_idx[positions]
            yield self._batch(caches, positions, rows, views), self.targets(rows)

    def targets(self, rows: np.ndarray) -> torch.Tensor:
        """The training target of these prepared rows: their class index (a multi-task subclass adds columns)."""
        return torch.from_numpy(self.prep.labels[rows]).to(self.rt.device)

    @torch.no_grad()
    def predict(self, indices: Sequence[int], part: str = "eval") -> np.ndarray:
        indices = list(indices)
        n_views = int(self.cfg[self.views_cfg]["eval_views"])
        caches = self._cache_for(part, indices, n_views)
        self.model.eval()
        bs = int(self.cfg["train"]["eval_batch_size"])
        out = []
        for s in range(0, len(indices), bs):
            positions = np.arange(s, min(s + bs, len(indices)))
            rows = np.asarray(indices)[positions]
            per_view = []
            for v in range(n_views):
                views = {m: np.full(len(positions), v) for m in caches}
                with self.rt.autocast():
                    per_view.append(self.forward_module(self._batch(caches, positions, rows, views)).logits)
            out.append(log_mean_probs(per_view).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.num_classes), np.float32)


class FastPathTask(CachedTask):
    """Frozen stem, cached; the trunk, metadata encoder, fusion and heads are trained."""

    mode = "fastpath"
    through_trunk, views_cfg = True, "fastpath"

    def frozen_modules(self, modality: str) -> list[nn.Module]:
        return list(self.model.image_encoders[modality].stem_modules())

    def represent(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.model.image_encoders[modality].forward_stem(x)


class FeatureTask(CachedTask):
    """Stage 2: the stage-1 image encoder frozen whole; cached pooled features feed `model.head`."""

    mode = "features"
    through_trunk, views_cfg = False, "stage2"

    def frozen_modules(self, modality: str) -> list[nn.Module]:
        return [self.model.image_encoders[modality]]

    def represent(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return self.model.image_encoders[modality](x)
