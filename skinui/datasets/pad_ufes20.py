"""PAD-UFES-20 (Pacheco et al. 2020): smartphone clinical images + 8 clinical input fields.

Official layout: `metadata.csv` with 26 columns (ids `patient_id, lesion_id, img_id`, the label
`diagnostic`, `biopsed`, and 21 clinical fields) and the images under `images/` (the official
archive splits them into `imgs_part_1..3/`, accepted too). Where `masks/<img_id stem>_mask.png`
exists (a third-party addition, 255 = lesion) it becomes `Case.mask`. Several images and lesions
share a patient, so splits group by `patient_id`. Booleans are `True`/`False`; empty cells and
`UNK` are missing. The release's other 13 clinical fields (lifestyle, history, diameters) are
read but are leak fields: they are empty exactly for non-biopsied lesions (see UNBIOPSIED_BLOCK).
"""
from __future__ import annotations

from pathlib import Path

from skinui.cases import Case, ImageRef
from skinui.datasets import DATASETS, DatasetAdapter, LoadResult, Tally, clean_metadata, image_slot, read_csv
from skinui.schema import SCHEMAS, Field, Schema

CLASS_NAMES = {
    "ACK": "Actinic keratosis",
    "BCC": "Basal cell carcinoma",
    "MEL": "Melanoma",
    "NEV": "Nevus",
    "SCC": "Squamous cell carcinoma (incl. Bowen's disease)",
    "SEK": "Seborrheic keratosis",
}
# Ancestry vocabulary as released (BRASIL and BRAZIL both occur; kept as the data spells them).
BACKGROUNDS = (
    "POMERANIA", "GERMANY", "ITALY", "BRAZIL", "BRASIL", "PORTUGAL", "NETHERLANDS", "POLAND",
    "CZECH", "AUSTRIA", "SPAIN", "ISRAEL", "NORWAY", "FRANCE",
)
REGIONS = (
    "ARM", "NECK", "FACE", "HAND", "FOREARM", "CHEST", "NOSE", "THIGH", "SCALP", "EAR", "BACK",
    "FOOT", "ABDOMEN", "LIP",
)


def _yes_no(name: str, description: str) -> Field:
    return Field(name, "boolean", description=description)


# The lifestyle, history and diameter block: clinical questions, but the release leaves all of them
# empty for 181 of 476 development rows, every one a lesion that was not biopsied (no BCC, MEL or
# SCC). Whether they are filled encodes the label (`python -m skinui.data audit`: missingness AUC
# about 0.7), so a model that sees them learns "blank means benign". They are leak fields: never
# inputs unless a config forces them (the card then says leaky: true).
UNBIOPSIED_BLOCK = (
    Field("gender", "categorical", ("FEMALE", "MALE"), description="Patient sex"),
    Field("fitspatrick", "numeric", unit="Fitzpatrick type", valid_range=(1, 6),
          description="Fitzpatrick skin type (1-6; the column name keeps the release's spelling)"),
    Field("diameter_1", "numeric", unit="mm", valid_range=(0, 200), description="Lesion's larger diameter"),
    Field("diameter_2", "numeric", unit="mm", valid_range=(0, 200), description="Lesion's smaller diameter"),
    _yes_no("smoke", "Patient smokes"),
    _yes_no("drink", "Patient drinks alcohol"),
    _yes_no("pesticide", "Patient works or has worked with pesticides"),
    _yes_no("skin_cancer_history", "Patient has had skin cancer"),
    _yes_no("cancer_history", "Patient's family has a history of cancer"),
    _yes_no("has_piped_water", "Patient's home has piped water"),
    _yes_no("has_sewage_system", "Patient's home has a sewage system"),
    Field("background_father", "categorical", BACKGROUNDS, description="Father's ancestry"),
    Field("background_mother", "categorical", BACKGROUNDS, description="Mother's ancestry"),
)
UNBIOPSIED_WHY = ("the release leaves it empty only for lesions that were not biopsied (never BCC, MEL or SCC), "
                  "so whether it is filled encodes the label")


SCHEMA = SCHEMAS.register("pad-ufes-20")(Schema(
    dataset="pad-ufes-20",
    classes=tuple(CLASS_NAMES),
    fields=(
        Field("age", "numeric", unit="years", valid_range=(0, 120), description="Patient age"),
        Field("region", "categorical", REGIONS, description="Anatomical region of the lesion"),
        _yes_no("itch", "The lesion itches"),
        _yes_no("grew", "The lesion has grown"),
        _yes_no("hurt", "The lesion hurts"),
        _yes_no("changed", "The lesion has changed"),
        _yes_no("bleed", "The lesion has bled"),
        _yes_no("elevation", "The lesion is elevated"),
    ),
    group_key="patient_id",
    modalities=("clinical", "metadata"),
    leak_fields={
        "biopsed": "biopsy was done for every cancer and only some benign lesions, so it records the "
        "diagnostic pathway, not the patient",
        "diagnostic": "it is the label itself",
        **{spec.name: UNBIOPSIED_WHY for spec in UNBIOPSIED_BLOCK},
    },
    leak_field_specs=(
        Field("biopsed", "boolean", description="The diagnosis was confirmed by biopsy"),
        Field("diagnostic", "categorical", tuple(CLASS_NAMES), description="The diagnosis (the label)"),
        *UNBIOPSIED_BLOCK,
    ),
    class_names=CLASS_NAMES,
    missingness_block=tuple(spec.name for spec in UNBIOPSIED_BLOCK),
    cancer_classes=("BCC", "MEL", "SCC"),
    licence="CC BY 4.0",
    citation="Pacheco A.G.C. et al. PAD-UFES-20: a skin lesion dataset composed of patient data and clinical "
    "images collected from smartphones. Data in Brief 32, 106221 (2020).",
))

IMAGE_FOLDERS = ["images", "imgs_part_1", "imgs_part_2", "imgs_part_3",
                 "images/imgs_part_1", "images/imgs_part_2", "images/imgs_part_3"]


@DATASETS.register("pad-ufes-20")
class PadUfes20Adapter(DatasetAdapter):
    name = "pad-ufes-20"
    schema = SCHEMA

    def load(self, verify_images: bool = False) -> LoadResult:
        _, rows = read_csv(self.require("metadata.csv", "PAD-UFES-20's metadata.csv"))
        images = self.index_images(IMAGE_FOLDERS)
        masks = self.index_images(["masks"], (".png",))
        tally, cases = Tally(), []
        for row in rows:
            if row.get("diagnostic") not in CLASS_NAMES:
                tally.drop("unknown_label")
                continue
            stem = Path(row.get("img_id", "")).stem
            ref = image_slot(images.get(stem), verify_images, tally)
            if ref is None:
                continue
            mask = masks.get(f"{stem}_mask")
            cases.append(Case(
                case_id=stem,
                clinical=ref,
                metadata=clean_metadata(SCHEMA, row, tally),
                label=row["diagnostic"],
                lesion_id=row.get("lesion_id") or None,
                patient_id=row.get("patient_id") or None,
                mask=ImageRef(mask) if mask is not None else None,
            ))
        with_mask = sum(c.mask is not None for c in cases)
        if cases and with_mask < len(cases):
            tally.note(f"{with_mask} of {len(cases)} cases have a lesion mask under masks/.")
        return tally.result(self.name, cases)
