"""Dataset adapters: official on-disk layouts in, `Case`s out.

Each dataset lives in its own module, which registers its adapter class in `DATASETS` and its
`Schema` in `skinui.schema.SCHEMAS` when imported. Registration is lazy (`_MODULES` maps a name
to its module, imported on first use) so `import skinui.datasets` stays cheap and a module that
fails to import only breaks its own dataset.

Adapters never drop a row silently: every row that does not become a Case is counted under a
reason (`missing_image`, `unreadable_image`, `unknown_label`, ...), and every value repaired on a
kept case (an age outside its valid range set to missing) under `repaired_<field>_<problem>`.
"""
from __future__ import annotations

import csv
import importlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from skinui.cases import Case, ImageRef
from skinui.encoding import coerce_value
from skinui.registry import Registry
from skinui.schema import SCHEMAS, Schema

NAMES = ("ham10000", "pad-ufes-20", "milk10k", "isic2019", "derm7pt", "synthderm")
_MODULES = {
    "ham10000": "skinui.datasets.ham10000",
    "pad-ufes-20": "skinui.datasets.pad_ufes20",
    "milk10k": "skinui.datasets.milk10k",
    "isic2019": "skinui.datasets.isic2019",
    "derm7pt": "skinui.datasets.derm7pt",
    "synthderm": "skinui.datasets.synthderm",
}


class DatasetError(ValueError):
    """A dataset cannot be read as asked; the message is a sentence saying what to do."""


def _ensure_imported(name: str) -> None:
    if name not in _MODULES:
        raise DatasetError(f"Unknown dataset {name!r}; choose one of: {', '.join(NAMES)}.")
    try:
        importlib.import_module(_MODULES[name])
    except ImportError as err:
        raise DatasetError(f"The {name} adapter could not be loaded ({err}); reinstall SkinUI.") from err


class _LazyRegistry(Registry):
    """A `Registry` whose entries are imported on first `get`; `names()` lists every known name."""

    def get(self, name: str):  # type: ignore[override]
        if name not in self._items:
            _ensure_imported(name)
            if name not in self._items:
                raise DatasetError(f"The {name} module registers no adapter; reinstall SkinUI.")
        return super().get(name)

    def names(self) -> list[str]:
        return sorted(set(_MODULES) | set(self._items))

    def __contains__(self, name: object) -> bool:
        return name in _MODULES or name in self._items


DATASETS: Registry[type[DatasetAdapter]] = _LazyRegistry("dataset")


def schema_for(name: str) -> Schema:
    """The dataset's schema, importing its module first (so `SCHEMAS` is populated)."""
    if name not in SCHEMAS:
        _ensure_imported(name)
    return SCHEMAS.get(name)


@dataclass
class LoadResult:
    dataset: str
    cases: list[Case]
    skipped: dict[str, int]  # every reason counted: dropped rows *and* repairs on kept cases
    notes: list[str] = field(default_factory=list)
    kept_reasons: frozenset[str] = frozenset()  # reasons in `skipped` whose rows were kept as cases

    @property
    def dropped(self) -> dict[str, int]:
        """Reasons (and counts) for rows that did not become cases."""
        return {k: v for k, v in self.skipped.items() if k not in self.kept_reasons}

    @property
    def repaired(self) -> dict[str, int]:
        """Problems counted on cases that were kept (a value set to missing, an image slot empty)."""
        return {k: v for k, v in self.skipped.items() if k in self.kept_reasons}

    @property
    def n_skipped(self) -> int:
        """Number of rows not yielded as cases."""
        return sum(self.dropped.values())


class Tally:
    """Counts dropped rows and kept-case repairs while an adapter reads its files."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.kept: set[str] = set()
        self.notes: list[str] = []

    def drop(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n

    def repair(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n
        self.kept.add(reason)

    def note(self, sentence: str) -> None:
        self.notes.append(sentence)

    def result(self, dataset: str, cases: list[Case]) -> LoadResult:
        return LoadResult(dataset, cases, dict(sorted(self.counts.items())), list(self.notes), frozenset(self.kept))


class DatasetAdapter:
    """Base of every adapter: `load()` reads the official layout under `root` into Cases."""

    name: str = ""
    schema: Schema

    def __init__(self, root: str | Path, **options: Any) -> None:
        self.root = Path(root).expanduser()
        self.options = options
        if not self.root.is_dir():
            raise DatasetError(
                f"The {self.name} folder {self.root} does not exist; pass --root the folder that holds "
                f"the dataset's official files."
            )

    def load(self, verify_images: bool = False) -> LoadResult:
        raise NotImplementedError

    # Further labels of the same image beside the diagnosis (Derm7pt's seven-point criteria), for multi-task
    # structures: task name -> its class names, in order. Never model inputs (they are leak fields).
    tasks: dict[str, tuple[str, ...]] = {}

    @classmethod
    def task_labels(cls, case: Case) -> dict[str, int]:
        """Each of `tasks`' class index for `case`, -1 where the case does not say (a masked target)."""
        return {t: -1 for t in cls.tasks}

    @classmethod
    def official_split(cls, cases: list[Case]) -> dict[str, list[int]] | None:
        """Indices of the dataset's own partition, read from `case.extra["official_split"]`.

        Adapters of datasets with an official split record each case's part there when loading;
        None when any case lacks it (no official split, or cases mixed from elsewhere).
        """
        parts: dict[str, list[int]] = {}
        for i, case in enumerate(cases):
            part = case.extra.get("official_split")
            if part is None:
                return None
            parts.setdefault(part, []).append(i)
        return parts or None

    # -- helpers shared by the adapters ---------------------------------------------------------
    def require(self, relative: str, what: str) -> Path:
        path = self.root / relative
        if not path.is_file():
            raise DatasetError(
                f"{path} was not found, so {self.root} is not a {self.name} folder; pass --root the folder "
                f"that holds {what}."
            )
        return path

    def index_images(self, folders: list[str], suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png")) -> dict[str, Path]:
        """Map file stem -> path over the given sub-folders (those absent are ignored)."""
        index: dict[str, Path] = {}
        for folder in folders:
            base = self.root / folder
            if not base.is_dir():
                continue
            for path in base.iterdir():
                if path.suffix.lower() in suffixes:
                    index.setdefault(path.stem, path)
        return index


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Rows as raw strings (no type guessing: the schema decides how each column is read)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
        return list(reader.fieldnames or []), rows


def image_slot(path: Path | None, verify: bool, tally: Tally, kept: bool = False) -> ImageRef | None:
    """An ImageRef for an existing (and, if asked, decodable) file; otherwise counts why not.

    `kept=True` counts the problem as a repair (the case survives with this slot empty).
    """
    count = tally.repair if kept else tally.drop
    if path is None or not path.is_file():
        count("missing_image")
        return None
    if verify and not image_is_readable(path):
        count("unreadable_image")
        return None
    return ImageRef(path)


def image_is_readable(path: Path) -> bool:
    """Cheap integrity check: PIL parses the header and verifies the stream without decoding it all."""
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # PIL raises many types for broken files; any of them means unreadable
        return False


def clean_metadata(schema: Schema, raw: dict[str, Any], tally: Tally, names: list[str] | None = None) -> dict[str, Any]:
    """Typed values for the schema's clinical and leak fields; problems set to None and counted."""
    out: dict[str, Any] = {}
    for spec in schema.fields + schema.leak_field_specs:
        if names is not None and spec.name not in names:
            continue
        value, problem = coerce_value(spec, raw.get(spec.name))
        if problem:
            tally.repair(f"repaired_{spec.name}_{problem}")
        out[spec.name] = value
    return out


def get_adapter(name: str, root: str | Path, **options: Any) -> DatasetAdapter:
    return DATASETS.get(name)(root, **options)


def load_dataset(name: str, root: str | Path, verify_images: bool = False, **options: Any) -> LoadResult:
    """Read dataset `name` from `root`; raises `DatasetError` with a user sentence when it cannot."""
    return get_adapter(name, root, **options).load(verify_images=verify_images)


__all__ = [
    "DATASETS",
    "NAMES",
    "DatasetAdapter",
    "DatasetError",
    "LoadResult",
    "Tally",
    "clean_metadata",
    "get_adapter",
    "image_slot",
    "load_dataset",
    "read_csv",
    "schema_for",
]
