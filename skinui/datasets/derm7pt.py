"""Derm7pt (Kawahara et al. 2018): a clinical + a dermoscopic image per case, 3 clinical fields.

Official layout: `meta/meta.csv` (`case_num, diagnosis, seven_point_score, pigment_network,
streaks, pigmentation, regression_structures, dots_and_globules, blue_whitish_veil,
vascular_structures, level_of_diagnostic_difficulty, elevation, location, sex, clinic, derm,
management, notes`), `meta/{train,valid,test}_indexes.csv` (column `indexes`: 0-based rows of
meta.csv; the official split) and `images/<clinic>`, `images/<derm>` (relative paths).

Label: the 20 raw diagnoses grouped into the 5 classes of the dataset's own `derm7pt` package
(`ArgenzianoDatasetGroupInfrequent`), the grouping used by most papers on it: BCC, NEV (all
nevi), MEL (all melanomas), MISC (dermatofibroma, lentigo, melanosis, miscellaneous, vascular
lesion) and SK. The raw diagnosis stays in `case.extra["diagnosis"]` and the seven-point
criteria in `case.extra["criteria"]` (they are labels of the image, so also leak fields); `tasks` /
`task_labels` give them grouped as the multi-task papers predict them (FusionM4Net's Derm7pt heads).
"""
from __future__ import annotations

from skinui.cases import Case
from skinui.datasets import DATASETS, DatasetAdapter, LoadResult, Tally, clean_metadata, image_slot, read_csv
from skinui.schema import SCHEMAS, Field, Schema

CLASS_NAMES = {
    "BCC": "Basal cell carcinoma",
    "NEV": "Nevus (blue, Clark, combined, congenital, dermal, recurrent, Reed/Spitz)",
    "MEL": "Melanoma (in situ, invasive, metastasis)",
    "MISC": "Other (dermatofibroma, lentigo, melanosis, vascular lesion, miscellaneous)",
    "SK": "Seborrheic keratosis",
}
GROUPS = {
    "BCC": ("basal cell carcinoma",),
    "NEV": ("nevus", "blue nevus", "clark nevus", "combined nevus", "congenital nevus", "dermal nevus",
            "recurrent nevus", "reed or spitz nevus"),
    "MEL": ("melanoma", "melanoma (in situ)", "melanoma (less than 0.76 mm)", "melanoma (0.76 to 1.5 mm)",
            "melanoma (more than 1.5 mm)", "melanoma metastasis"),
    "MISC": ("dermatofibroma", "lentigo", "melanosis", "miscellaneous", "vascular lesion"),
    "SK": ("seborrheic keratosis",),
}
DIAGNOSIS_TO_CLASS = {d: code for code, names in GROUPS.items() for d in names}
CRITERIA = {
    "pigment_network": ("absent", "typical", "atypical"),
    "streaks": ("absent", "regular", "irregular"),
    "pigmentation": ("absent", "diffuse regular", "localized regular", "diffuse irregular", "localized irregular"),
    "regression_structures": ("absent", "blue areas", "white areas", "combinations"),
    "dots_and_globules": ("absent", "regular", "irregular"),
    "blue_whitish_veil": ("absent", "present"),
    "vascular_structures": ("absent", "arborizing", "comma", "hairpin", "within regression", "wreath", "dotted",
                            "linear irregular"),
}
# The criteria as the multi-task papers on Derm7pt predict them (Kawahara et al.'s own `derm7pt` package,
# `Derm7PtDatasetGroupInfrequent`, also read by FusionM4Net): raw levels grouped into 2-3 classes.
CRITERIA_GROUPS = {
    "pigment_network": {"absent": ("absent",), "typical": ("typical",), "atypical": ("atypical",)},
    "streaks": {"absent": ("absent",), "regular": ("regular",), "irregular": ("irregular",)},
    "pigmentation": {"absent": ("absent",), "regular": ("diffuse regular", "localized regular"),
                     "irregular": ("diffuse irregular", "localized irregular")},
    "regression_structures": {"absent": ("absent",), "present": ("blue areas", "white areas", "combinations")},
    "dots_and_globules": {"absent": ("absent",), "regular": ("regular",), "irregular": ("irregular",)},
    "blue_whitish_veil": {"absent": ("absent",), "present": ("present",)},
    "vascular_structures": {"absent": ("absent",),
                            "regular": ("arborizing", "comma", "hairpin", "within regression", "wreath"),
                            "irregular": ("dotted", "linear irregular")},
}
_CRITERION = "a seven-point checklist criterion read off the dermoscopic image by the diagnosing expert"

SCHEMA = SCHEMAS.register("derm7pt")(Schema(
    dataset="derm7pt",
    classes=tuple(CLASS_NAMES),
    fields=(
        Field("elevation", "categorical", ("flat", "palpable", "nodular"), description="Lesion elevation"),
        Field("location", "categorical", ("abdomen", "acral", "back", "buttocks", "chest", "genital areas",
                                          "head neck", "lower limbs", "upper limbs"), description="Body location"),
        Field("sex", "categorical", ("female", "male"), description="Patient sex"),
    ),
    group_key="lesion_id",
    modalities=("dermoscopic", "clinical", "metadata"),
    leak_fields={
        "management": "the treatment decision (excision, follow-up) follows from the diagnosis",
        "level_of_diagnostic_difficulty": "rated by the expert after the diagnosis was known",
        "seven_point_score": "the sum of the expert's seven-point criteria, a diagnostic score for melanoma",
        **{name: _CRITERION for name in CRITERIA},
    },
    leak_field_specs=(
        Field("management", "categorical", ("clinical follow up", "excision", "no further examination"),
              description="Management decision"),
        Field("level_of_diagnostic_difficulty", "categorical", ("low", "medium", "high"),
              description="Diagnostic difficulty"),
        Field("seven_point_score", "numeric", unit="points", valid_range=(0, 10), description="Seven-point score"),
        *(Field(name, "categorical", levels, description=name.replace("_", " ")) for name, levels in CRITERIA.items()),
    ),
    class_names=CLASS_NAMES,
    licence="Research use per the Derm7pt release terms (derm.cs.sfu.ca); not for redistribution",
    citation="Kawahara J., Daneshvar S., Argenziano G., Hamarneh G. Seven-point checklist and skin lesion "
    "classification using multitask multimodal neural nets. IEEE JBHI 23(2), 538-546 (2019).",
))

SPLIT_FILES = {"train": "meta/train_indexes.csv", "val": "meta/valid_indexes.csv", "test": "meta/test_indexes.csv"}


@DATASETS.register("derm7pt")
class Derm7ptAdapter(DatasetAdapter):
    name = "derm7pt"
    schema = SCHEMA

    tasks = {name: tuple(groups) for name, groups in CRITERIA_GROUPS.items()}

    @classmethod
    def task_labels(cls, case: Case) -> dict[str, int]:
        """The grouped seven-point criteria of `case` (-1 where the row left one blank or gave an unknown level)."""
        raw = case.extra.get("criteria") or {}
        out = {}
        for name, groups in CRITERIA_GROUPS.items():
            level = str(raw.get(name) or "").strip().lower()
            out[name] = next((i for i, members in enumerate(groups.values()) if level in members), -1)
        return out

    def _official_parts(self, tally: Tally) -> dict[int, str]:
        part_of: dict[int, str] = {}
        for part, rel in SPLIT_FILES.items():
            if not (self.root / rel).is_file():
                tally.note(f"{rel} is missing, so the official split is not available.")
                return {}
            for row in read_csv(self.root / rel)[1]:
                try:
                    part_of[int(float(row["indexes"]))] = part
                except (KeyError, ValueError):
                    tally.note(f"{rel} has a row without a valid 'indexes' value; it was ignored.")
        return part_of

    def load(self, verify_images: bool = False) -> LoadResult:
        _, rows = read_csv(self.require("meta/meta.csv", "meta/meta.csv"))
        tally, cases = Tally(), []
        part_of = self._official_parts(tally)
        images = self.root / "images"
        for i, row in enumerate(rows):
            diagnosis = row.get("diagnosis", "").strip().lower()
            label = DIAGNOSIS_TO_CLASS.get(diagnosis)
            if label is None:
                tally.drop("unknown_label")
                continue
            slots = {
                kind: image_slot(images / row[col] if row.get(col) else None, verify_images, tally, kept=True)
                for kind, col in (("clinical", "clinic"), ("dermoscopic", "derm"))
            }
            if not any(slots.values()):
                tally.drop("no_image_modality")
                continue
            case_id = row.get("case_num") or str(i + 1)
            extra = {"diagnosis": diagnosis, "criteria": {c: row.get(c) or None for c in CRITERIA},
                     "notes": row.get("notes") or None}
            if i in part_of:
                extra["official_split"] = part_of[i]
            cases.append(Case(
                case_id=case_id,
                dermoscopic=slots["dermoscopic"],
                clinical=slots["clinical"],
                metadata=clean_metadata(SCHEMA, row, tally),
                label=label,
                lesion_id=case_id,  # one lesion per case in Derm7pt
                extra=extra,
            ))
        if part_of and any("official_split" not in c.extra for c in cases):
            tally.note("Some cases are in none of the official index files, so the official split is not used.")
        if tally.counts.get("missing_image"):
            tally.note(f"{tally.counts['missing_image']} image files are missing; those cases keep that modality empty.")
        return tally.result(self.name, cases)
