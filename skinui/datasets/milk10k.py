"""MILK10k (Tschandl et al. 2025, ISIC 2025): one clinical close-up + one dermoscopic image per lesion.

Official layout: `MILK10k_Training_Metadata.csv` (two rows per lesion, `image_type` =
`clinical: close-up` or `dermoscopic`, patient fields, seven per-image `MONET_*` concept scores),
`MILK10k_Training_GroundTruth.csv` (one-hot over 11 classes), optionally
`MILK10k_Training_Supplement.csv` (per image: `diagnosis_full`, `diagnosis_confirm_type`,
`invasion_thickness_interval`) and `MILK10k_Training_Input/<lesion_id>/<isic_id>.jpg`.

Two modes, chosen by whether the image folder exists (or forced with `concepts=True/False`):
- images: slots are `ImageRef`s and the MONET scores go to `case.extra["concepts"]`;
- concepts (a release without pixels): each image slot holds a `ConceptVector` of that image's
  seven MONET scores, typed so nothing mistakes it for an image and never silently empty.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from skinui.cases import Case, ConceptVector
from skinui.datasets import (
    DATASETS,
    DatasetAdapter,
    DatasetError,
    LoadResult,
    Tally,
    clean_metadata,
    image_slot,
    read_csv,
)
from skinui.schema import SCHEMAS, Field, Schema

CLASS_NAMES = {
    "AKIEC": "Actinic keratosis / intraepidermal carcinoma",
    "BCC": "Basal cell carcinoma",
    "BEN_OTH": "Other benign proliferation",
    "BKL": "Benign keratinocytic lesion (seborrheic keratosis, solar lentigo, LPLK)",
    "DF": "Dermatofibroma",
    "INF": "Inflammatory or infectious condition",
    "MAL_OTH": "Other malignant proliferation",
    "MEL": "Melanoma",
    "NV": "Melanocytic nevus",
    "SCCKA": "Squamous cell carcinoma / keratoacanthoma",
    "VASC": "Vascular lesion or haemorrhage",
}
CONCEPTS = (
    "MONET_ulceration_crust", "MONET_hair", "MONET_vasculature_vessels", "MONET_erythema",
    "MONET_pigmented", "MONET_gel_water_drop_fluid_dermoscopy_liquid", "MONET_skin_markings_pen_ink_purple_pen",
)
IMAGE_TYPES = {"clinical: close-up": "clinical", "dermoscopic": "dermoscopic"}
SITES = ("head_neck_face", "trunk", "upper_extremity", "lower_extremity", "hand", "foot", "genital")
PROVENANCE = ("attribution", "copyright_license", "image_manipulation")
_HOW = "it records how the diagnosis was made, which differs by diagnosis"
_SUB = "it is (a level of) the diagnosis itself"

SCHEMA = SCHEMAS.register("milk10k")(Schema(
    dataset="milk10k",
    classes=tuple(CLASS_NAMES),
    fields=(
        Field("age_approx", "numeric", unit="years", valid_range=(0, 120), description="Approximate age (5-year steps)"),
        Field("sex", "categorical", ("male", "female"), description="Patient sex"),
        Field("skin_tone_class", "numeric", unit="class", valid_range=(0, 5),
              description="Skin tone class (0 lightest to 5 darkest), an ordinal scale"),
        Field("site", "categorical", SITES, description="Anatomical site of the lesion"),
    ),
    group_key="lesion_id",
    modalities=("dermoscopic", "clinical", "metadata"),
    leak_fields={
        "diagnosis_full": _SUB,
        "diagnosis_1": _SUB, "diagnosis_2": _SUB, "diagnosis_3": _SUB, "diagnosis_4": _SUB, "diagnosis_5": _SUB,
        "diagnosis_confirm_type": _HOW,
        "melanocytic": "it says whether the lesion is melanocytic, which splits the classes",
        "concomitant_biopsy": _HOW,
        "invasion_thickness_interval": "only melanomas (and some SCCs) have an invasion thickness, so its "
        "presence reveals the class",
    },
    leak_field_specs=(
        Field("diagnosis_full", "categorical", description="Full diagnosis text (open vocabulary)"),
        *(Field(f"diagnosis_{i}", "categorical", description=f"Diagnosis, hierarchy level {i}") for i in range(1, 6)),
        Field("diagnosis_confirm_type", "categorical", (
            "histopathology", "single contributor clinical assessment", "serial imaging showing no change",
            "confocal microscopy with consensus dermoscopy", "single image expert consensus",
        ), description="How the diagnosis was confirmed"),
        Field("melanocytic", "boolean", description="The lesion is melanocytic"),
        Field("concomitant_biopsy", "boolean", description="A biopsy was taken at imaging"),
        Field("invasion_thickness_interval", "categorical",
              ("<0.8", ">0.8-1.0", ">1.0-2.0", ">2.0-3.0", ">3.0-4.0", ">4.0-Inf"),
              unit="mm", description="Melanoma invasion thickness interval"),
    ),
    provenance_fields={
        "attribution": "who contributed the image; it describes the archive, not the patient",
        "copyright_license": "the image's licence; a legal attribute of the file, not of the lesion",
        "image_manipulation": "whether the image was altered (e.g. anonymised); a property of the file "
        "that a model could exploit as a shortcut, not a clinical sign",
    },
    class_names=CLASS_NAMES,
    licence="CC BY-NC (per its copyright_license column)",
    citation="Tschandl P. et al. MILK10k: A Hierarchical Multimodal Imaging-Learning Toolkit for diagnosing "
    "pigmented and nonpigmented skin cancer and its simulators. J. Invest. Dermatol. (2025).",
))

IMAGE_FOLDER = "MILK10k_Training_Input"
LEAK_NAMES = tuple(SCHEMA.leak_fields)


def _concepts(row: dict[str, str]) -> ConceptVector | None:
    try:
        values = np.asarray([float(row[c]) for c in CONCEPTS], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        return None
    return ConceptVector(values, CONCEPTS) if np.isfinite(values).all() else None


def _label(row: dict[str, str]) -> str | None:
    """The single class whose one-hot cell is 1; None for no or several positives."""
    hits = []
    for code in CLASS_NAMES:
        try:
            if float(row.get(code) or 0) >= 0.5:
                hits.append(code)
        except ValueError:
            return None
    return hits[0] if len(hits) == 1 else None


@DATASETS.register("milk10k")
class Milk10kAdapter(DatasetAdapter):
    name = "milk10k"
    schema = SCHEMA

    def load(self, verify_images: bool = False) -> LoadResult:
        columns, rows = read_csv(self.require("MILK10k_Training_Metadata.csv", "MILK10k_Training_Metadata.csv"))
        _, truth = read_csv(self.require("MILK10k_Training_GroundTruth.csv", "MILK10k_Training_GroundTruth.csv"))
        supplement: dict[str, dict[str, str]] = {}
        if (self.root / "MILK10k_Training_Supplement.csv").is_file():
            supp_columns, supp_rows = read_csv(self.root / "MILK10k_Training_Supplement.csv")
            supplement = {r["isic_id"]: r for r in supp_rows if r.get("isic_id")}
            columns = columns + supp_columns
        # Leak fields go into case.metadata only when this release has the column (never as inputs unforced).
        self._names = SCHEMA.field_names + [n for n in LEAK_NAMES if n in columns]
        concept_mode = self.options.get("concepts")
        if concept_mode is None:
            concept_mode = not (self.root / IMAGE_FOLDER).is_dir()
        if concept_mode and not set(CONCEPTS) <= set(columns):
            raise DatasetError(
                f"{self.root} has neither {IMAGE_FOLDER}/ nor the MONET concept columns, so MILK10k has no image "
                "modality to offer; download the images or the official metadata file with MONET scores."
            )

        tally = Tally()
        by_lesion: dict[str, dict[str, dict[str, str]]] = {}
        for row in rows:
            kind = IMAGE_TYPES.get(row.get("image_type", ""))
            if kind is None:
                tally.drop("unknown_image_type")
                continue
            by_lesion.setdefault(row["lesion_id"], {})[kind] = row
        labels = {r["lesion_id"]: _label(r) for r in truth}
        missing_meta = sum(1 for lesion in labels if lesion not in by_lesion)
        if missing_meta:
            tally.drop("missing_metadata", missing_meta)
            tally.note(f"{missing_meta} ground-truth lesions have no rows in the metadata file.")

        cases = []
        for lesion, images in by_lesion.items():
            if lesion not in labels:
                tally.drop("missing_label")
                continue
            if labels[lesion] is None:
                tally.drop("unknown_label")
                continue
            case = self._case(lesion, images, labels[lesion], supplement, concept_mode, verify_images, tally)
            if case is not None:
                cases.append(case)
        self._notes(tally, concept_mode)
        return tally.result(self.name, cases)

    def _case(self, lesion: str, images: dict[str, dict[str, str]], label: str, supplement: dict,
              concept_mode: bool, verify: bool, tally: Tally) -> Case | None:
        slots: dict[str, object] = {}
        concepts: dict[str, ConceptVector | None] = {}
        for kind in ("dermoscopic", "clinical"):
            row = images.get(kind)
            if row is None:
                tally.repair(f"missing_{kind}_row")
                slots[kind] = concepts[kind] = None
                continue
            concepts[kind] = _concepts(row)
            if concept_mode:
                slots[kind] = concepts[kind]
                if concepts[kind] is None:
                    tally.repair("missing_concepts")
            else:
                path = self.root / IMAGE_FOLDER / lesion / f"{row['isic_id']}.jpg"
                slots[kind] = image_slot(path, verify, tally, kept=True)
        if slots["dermoscopic"] is None and slots["clinical"] is None:
            tally.drop("no_image_modality")
            return None
        ordered = [images[k] for k in ("dermoscopic", "clinical") if k in images]
        merged: dict[str, str] = {}
        for row in ordered:  # lesion-level values: the dermoscopic row first, the clinical one fills gaps
            for key, value in {**supplement.get(row["isic_id"], {}), **row}.items():
                if value and not merged.get(key):
                    merged[key] = value
        extra: dict[str, object] = {
            "isic_ids": {k: images[k]["isic_id"] for k in images},
            "provenance": {k: {p: images[k].get(p) or None for p in PROVENANCE} for k in images},
        }
        if not concept_mode:
            extra["concepts"] = concepts
        return Case(
            case_id=lesion,
            dermoscopic=slots["dermoscopic"],
            clinical=slots["clinical"],
            metadata=clean_metadata(SCHEMA, merged, tally, self._names),
            label=label,
            lesion_id=lesion,
            extra=extra,
        )

    @staticmethod
    def _notes(tally: Tally, concept_mode: bool) -> None:
        if concept_mode:
            tally.note(
                f"No {IMAGE_FOLDER}/ folder: the dermoscopic and clinical slots hold each image's 7 MONET concept "
                "scores (ConceptVector), not pixels."
            )
        if tally.counts.get("missing_image"):
            tally.note(
                f"{tally.counts['missing_image']} image files are missing; those lesions are kept with that "
                "modality empty (None)."
            )


def image_path(root: Path, lesion_id: str, isic_id: str) -> Path:
    """Where the official release keeps an image."""
    return root / IMAGE_FOLDER / lesion_id / f"{isic_id}.jpg"
