"""HAM10000 (Tschandl et al. 2018): dermoscopic images + age, sex, localization.

Official layout: `HAM10000_metadata.csv` (`lesion_id,image_id,dx,dx_type,age,sex,localization,
dataset`) and `HAM10000_images_part_1/`, `HAM10000_images_part_2/` holding `<image_id>.jpg`.
A lesion may have several images, so splits group by `lesion_id`. The value `unknown` in `sex`
and `localization` is read as missing (the encoder's implicit `unknown` level).
"""
from __future__ import annotations

from skinui.cases import Case
from skinui.datasets import DATASETS, DatasetAdapter, LoadResult, Tally, clean_metadata, image_slot, read_csv
from skinui.schema import SCHEMAS, Field, Schema

CLASS_NAMES = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion (solar lentigo, seborrheic keratosis, lichen planus-like keratosis)",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}
LOCALIZATIONS = (
    "abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand",
    "lower extremity", "neck", "scalp", "trunk", "upper extremity",
)

SCHEMA = SCHEMAS.register("ham10000")(Schema(
    dataset="ham10000",
    classes=tuple(CLASS_NAMES),
    fields=(
        Field("age", "numeric", unit="years", valid_range=(0, 120), description="Patient age (5-year steps)"),
        Field("sex", "categorical", ("male", "female"), description="Patient sex"),
        Field("localization", "categorical", LOCALIZATIONS, description="Anatomical site of the lesion"),
    ),
    group_key="lesion_id",
    modalities=("dermoscopic", "metadata"),
    leak_fields={
        "dx_type": "it records how the diagnosis was confirmed (histopathology for most malignant lesions, "
        "follow-up for nevi), so it encodes the label rather than the patient",
    },
    leak_field_specs=(
        Field("dx_type", "categorical", ("histo", "follow_up", "consensus", "confocal"),
              description="How the diagnosis was confirmed"),
    ),
    provenance_fields={
        "dataset": "the source collection (Vienna/Rosendahl sites and devices); it describes the archive, not "
        "the patient, and its class mix differs by site",
    },
    class_names=CLASS_NAMES,
    licence="CC BY-NC-SA 4.0 (non-commercial)",
    citation="Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
    "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018).",
))

IMAGE_FOLDERS = ["HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images"]


@DATASETS.register("ham10000")
class Ham10000Adapter(DatasetAdapter):
    name = "ham10000"
    schema = SCHEMA

    def load(self, verify_images: bool = False) -> LoadResult:
        _, rows = read_csv(self.require("HAM10000_metadata.csv", "HAM10000_metadata.csv"))
        images = self.index_images(IMAGE_FOLDERS)
        tally, cases = Tally(), []
        for row in rows:
            if row.get("dx") not in CLASS_NAMES:
                tally.drop("unknown_label")
                continue
            ref = image_slot(images.get(row["image_id"]), verify_images, tally)
            if ref is None:
                continue
            cases.append(Case(
                case_id=row["image_id"],
                dermoscopic=ref,
                metadata=clean_metadata(SCHEMA, row, tally),
                label=row["dx"],
                lesion_id=row.get("lesion_id") or None,
                extra={"provenance": {"dataset": row.get("dataset") or None}},
            ))
        if tally.counts.get("missing_image"):
            tally.note(f"{tally.counts['missing_image']} metadata rows have no image file in {', '.join(IMAGE_FOLDERS[:2])}.")
        return tally.result(self.name, cases)
