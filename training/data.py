"""From a config to tensors: load the dataset, split it by group, fit the metadata encoder, batch.

Everything a model sees is decided here, once: which cases, which split (recorded so evaluation
re-derives the same test set), which metadata columns (encoder fitted on the training part only)
and how a case becomes a batch row (images resized + normalised, absent modalities masked).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skinui.cases import IMAGE_MODALITIES, Case, ConceptVector
from skinui.datasets import get_adapter
from skinui.datasets.splits import Split, grouped_kfold, split_cases
from skinui.encoding import MetadataEncoder
from skinui.models.preprocess import preprocess_image, to_tensor
from skinui.schema import Schema

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Prepared:
    dataset: str
    schema: Schema
    classes: list[str]
    cases: list[Case]  # labelled cases only
    labels: np.ndarray  # int64 [N] class indices
    split: dict[str, list[int]]
    split_record: dict[str, Any]  # written to the model card; enough to re-derive the split
    encoder: MetadataEncoder | None
    meta: np.ndarray | None  # float32 [N, D], encoded with the training-fitted encoder
    meta_present: np.ndarray | None  # bool [N]: any input field given (else masked, as inference does)
    skipped: dict[str, int]


def resolve_root(cfg_root: str | None, cli_root: str | None) -> Path:
    """`--data-root` (relative to the working directory) wins; a config path is relative to the repo."""
    if cli_root:
        return Path(cli_root).expanduser().resolve()
    if not cfg_root:
        raise ValueError("No data folder given: pass --data-root DIR or set data_root: in the config.")
    path = Path(cfg_root).expanduser()
    return path if path.is_absolute() else (REPO / path).resolve()


def case_ids_sha256(cases: Sequence[Case], indices: Sequence[int]) -> str:
    ids = sorted(cases[i].case_id for i in indices)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def make_split(dataset: str, cases: list[Case], split_cfg: dict[str, Any]) -> tuple[Split, str]:
    """The configured split and the group key it used; checks that no group crosses parts."""
    adapter_cls = get_adapter_class(dataset)
    group_key = split_cfg.get("group_key") or adapter_cls.schema.group_key
    method, seed = split_cfg["method"], int(split_cfg["seed"])
    fractions = tuple(float(f) for f in split_cfg["fractions"])
    if method == "kfold":
        folds = grouped_kfold(cases, group_key, k=int(split_cfg["k"]), seed=seed, val_fraction=fractions[1])
        return folds[int(split_cfg["fold"])], group_key
    if method not in ("grouped", "official", "auto"):
        raise ValueError(f"split.method must be auto, grouped, official or kfold, not {method!r}.")
    return split_cases(adapter_cls, cases, seed=seed, fractions=fractions, use_official=method != "grouped"), group_key


def get_adapter_class(dataset: str) -> type:
    from skinui.datasets import DATASETS

    return DATASETS.get(dataset)


# (dataset, resolved root) -> load_cases' result, once `keep_cases_in_memory()` has been called.
_CASES: dict[tuple[str, str], tuple[list[Case], dict[str, int], Schema]] | None = None


def keep_cases_in_memory() -> None:
    """A study runs dozens of fits in one process on the same files: parse them once, for every caller."""
    global _CASES
    if _CASES is None:
        _CASES = {}


def load_cases(dataset: str, root: Path) -> tuple[list[Case], dict[str, int], Schema]:
    key = (dataset, str(Path(root).resolve()))
    if _CASES is not None and key in _CASES:
        return _CASES[key]
    result = get_adapter(dataset, root).load()
    schema = get_adapter_class(dataset).schema
    labelled = [c for c in result.cases if c.label in schema.classes]
    skipped = dict(result.dropped)
    if len(labelled) < len(result.cases):
        skipped["unlabelled"] = len(result.cases) - len(labelled)
    if _CASES is not None:
        _CASES[key] = (labelled, skipped, schema)
    return labelled, skipped, schema


def prepare(cfg: dict[str, Any], data_root: Path, fit_encoder: bool = True) -> Prepared:
    """Load, split and encode per the config (the encoder is fitted on the training part only)."""
    dataset = cfg["dataset"]
    cases, skipped, schema = load_cases(dataset, data_root)
    if not cases:
        raise ValueError(f"No labelled {dataset} cases were found under {data_root}; check --data-root.")
    classes = list(schema.classes)
    labels = np.array([classes.index(c.label) for c in cases], dtype=np.int64)
    split, group_key = make_split(dataset, cases, cfg["split"])
    if not split["train"] or not split["val"]:
        raise ValueError("The split left the training or validation part empty; use more cases or other fractions.")
    record = {
        **{k: cfg["split"][k] for k in ("method", "seed", "fractions", "k", "fold")},
        "group_key": group_key,
        "description": getattr(split, "method", ""),
        "sizes": {p: len(v) for p, v in split.items()},
        "test_sha256": case_ids_sha256(cases, split["test"]),
    }
    encoder = meta = present = None
    if "metadata" in cfg["model"]["modalities"] and fit_encoder:
        md = cfg.get("metadata") or {}
        encoder = MetadataEncoder(schema, force_leaky=md.get("force_leaky") or (), fields=md.get("fields"))
        encoder.fit([cases[i] for i in split["train"]])
        meta = encoder.transform(cases)
        present = np.array([any(c.metadata.get(f) is not None for f in encoder.field_names) for c in cases])
    return Prepared(dataset, schema, classes, cases, labels, dict(split), record, encoder, meta, present, skipped)


def model_config(cfg: dict[str, Any], prep: Prepared) -> dict[str, Any]:
    """The `model:` block completed with what the data decides (classes, metadata width and groups)."""
    model = dict(cfg["model"])
    model["num_classes"] = len(prep.classes)
    from skinui.models.structures import STRUCTURES

    structure = dict(model.get("structure") or {"name": "jf"})
    if getattr(STRUCTURES.get(structure.get("name", "jf")), "uses_class_counts", False):  # e.g. dualrefnet
        counts = np.bincount(prep.labels[prep.split["train"]], minlength=len(prep.classes))
        model["structure"] = {**structure, "class_counts": [int(c) for c in counts]}
    if prep.encoder is not None:
        model["meta_dim"] = prep.encoder.dim
        model["meta_groups"] = [cols for _, cols in prep.encoder.groups]
        model["meta_missing"] = prep.encoder.transform([{}])[0].tolist()  # how "all fields missing" encodes
    return model


# -- images ---------------------------------------------------------------------------------------
def _jitter(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    from skinui.models.preprocess import jitter

    return jitter(img, *rng.uniform(1 - strength, 1 + strength, size=3))


def random_augment(img: np.ndarray, rng: np.random.Generator, aug: dict[str, Any]) -> np.ndarray:
    """Full fine-tuning's augmentation: random crop, flips, 90-degree turns and colour jitter (lesions have no 'up').

    `crop_scale: [lo, hi]` keeps a random square covering lo..hi of the image's area (resized back
    by `image_tensor`), so the network sees lesions at several scales, as dermatoscopes frame them.
    """
    if aug.get("crop_scale"):
        lo, hi = aug["crop_scale"]
        h, w = img.shape[:2]
        side = int(round(min(h, w) * float(np.sqrt(rng.uniform(lo, hi)))))
        if side < min(h, w):
            y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
            img = img[y:y + side, x:x + side]
    if aug.get("flip") and rng.random() < 0.5:
        img = img[:, ::-1]
    if aug.get("rot90"):
        img = np.rot90(img, int(rng.integers(4)))
    if aug.get("color_jitter"):
        img = _jitter(np.ascontiguousarray(img), rng, float(aug["color_jitter"]))
    return np.ascontiguousarray(img)


def image_tensor(value: Any, size: int) -> torch.Tensor:
    """RGB array -> normalised [3, size, size]; a concept vector -> float [n_concepts]."""
    if isinstance(value, ConceptVector):
        return torch.as_tensor(np.asarray(value.values, dtype=np.float32))
    return to_tensor(value, size)


class CaseDataset(torch.utils.data.Dataset):
    """Row i of `indices` -> {modality: tensor | None, "metadata": tensor, "label", "index"}.

    Training augmentation draws from an RNG seeded by (seed, epoch, case index), so the stream is
    the same with any number of loader workers and after a resume. `preprocess` (the model's
    `model.preprocess`) is applied to each decoded image first, before augmentation, as at inference.
    """

    def __init__(self, prep: Prepared, indices: Sequence[int], modalities: Sequence[str], image_size: int,
                 augment: dict[str, Any] | None = None, seed: int = 0, preprocess: dict[str, Any] | None = None) -> None:
        self.prep, self.indices, self.preprocess = prep, list(indices), preprocess
        self.image_modalities = [m for m in modalities if m in IMAGE_MODALITIES]
        self.use_meta = "metadata" in modalities
        self.size, self.augment, self.seed, self.epoch = image_size, augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> dict[str, Any]:
        i = self.indices[j]
        case = self.prep.cases[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        item: dict[str, Any] = {"label": int(self.prep.labels[i]), "index": i}
        for m in self.image_modalities:
            value = case.image(m)
            if value is not None and not isinstance(value, ConceptVector):
                value = preprocess_image(value, self.preprocess)
                if self.augment:
                    value = random_augment(value, rng, self.augment)
            item[m] = None if value is None else image_tensor(value, self.size)
        if self.use_meta:
            item["metadata"] = torch.from_numpy(self.prep.meta[i]) if self.prep.meta_present[i] else None
        return item


def collate(items: list[dict[str, Any]]) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Stack rows into a model batch; a modality absent in some rows is zero-filled and masked."""
    batch: dict[str, Any] = {"mask": {}}
    keys = [k for k in items[0] if k not in ("label", "index")]
    for key in keys:
        values = [it[key] for it in items]
        present = [v is not None for v in values]
        if not any(present):
            batch[key] = None
            continue
        like = next(v for v in values if v is not None)
        batch[key] = torch.stack([v if v is not None else torch.zeros_like(like) for v in values])
        if not all(present):
            batch["mask"][key] = torch.tensor(present)
    target = torch.tensor([it["label"] for it in items], dtype=torch.long)
    index = torch.tensor([it["index"] for it in items], dtype=torch.long)
    return batch, target, index


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch
