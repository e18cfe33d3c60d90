"""ISIC 2019 (BCN20000 + HAM10000 + MSK): dermoscopic images + age, site, sex; 8 classes.

Official layout: `ISIC_2019_Training_Metadata.csv` (`image,age_approx,anatom_site_general,
lesion_id,sex`), `ISIC_2019_Training_GroundTruth.csv` (`image` + one-hot `MEL,NV,BCC,AK,BKL,DF,
VASC,SCC,UNK`) and `ISIC_2019_Training_Input/<image>.jpg`. When the released test files
(`ISIC_2019_Test_Metadata.csv`, `ISIC_2019_Test_GroundTruth.csv`, `ISIC_2019_Test_Input/`) are
there too, they are read as the official test split.

`UNK` ("none of the other classes") has no training images by design of the challenge, so a row
whose only positive is UNK (or that has none or several) is counted under `unknown_label` and not
yielded: a model trained here has 8 classes. Splits group by `lesion_id`, falling back to the
image where it is empty.
"""
from __future__ import annotations

from skinui.cases import Case
from skinui.datasets import DATASETS, DatasetAdapter, LoadResult, Tally, clean_metadata, image_slot, read_csv
from skinui.schema import SCHEMAS, Field, Schema

CLASS_NAMES = {
    "MEL": "Melanoma",
    "NV": "Melanocytic nevus",
    "BCC": "Basal cell carcinoma",
    "AK": "Actinic keratosis",
    "BKL": "Benign keratosis (solar lentigo, seborrheic keratosis, lichen planus-like keratosis)",
    "DF": "Dermatofibroma",
    "VASC": "Vascular lesion",
    "SCC": "Squamous cell carcinoma",
}
SITES = (
    "anterior torso", "posterior torso", "lateral torso", "upper extremity", "lower extremity",
    "head/neck", "palms/soles", "oral/genital",
)

SCHEMA = SCHEMAS.register("isic2019")(Schema(
    dataset="isic2019",
    classes=tuple(CLASS_NAMES),
    fields=(
        Field("age_approx", "numeric", unit="years", valid_range=(0, 120), description="Approximate age (5-year steps)"),
        Field("sex", "categorical", ("male", "female"), description="Patient sex"),
        Field("anatom_site_general", "categorical", SITES, description="General anatomical site"),
    ),
    group_key="lesion_id",
    modalities=("dermoscopic", "metadata"),
    class_names=CLASS_NAMES,
    licence="CC BY-NC 4.0",
    citation="Tschandl P. et al. The HAM10000 dataset (2018); Codella N. et al. Skin lesion analysis toward "
    "melanoma detection, ISIC 2017 (2018); Combalia M. et al. BCN20000: dermoscopic lesions in the wild (2019).",
))

PARTS = {
    "train": ("ISIC_2019_Training_Metadata.csv", "ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Input"),
    "test": ("ISIC_2019_Test_Metadata.csv", "ISIC_2019_Test_GroundTruth.csv", "ISIC_2019_Test_Input"),
}


def _label(row: dict[str, str]) -> str | None:
    hits = []
    for code in (*CLASS_NAMES, "UNK"):
        try:
            if float(row.get(code) or 0) >= 0.5:
                hits.append(code)
        except ValueError:
            return None
    return hits[0] if len(hits) == 1 and hits[0] != "UNK" else None


@DATASETS.register("isic2019")
class Isic2019Adapter(DatasetAdapter):
    name = "isic2019"
    schema = SCHEMA

    def load(self, verify_images: bool = False) -> LoadResult:
        meta_name, truth_name, _ = PARTS["train"]
        self.require(meta_name, meta_name)
        self.require(truth_name, truth_name)
        test_present = all((self.root / f).is_file() for f in PARTS["test"][:2])
        tally, cases = Tally(), []
        for part, (meta_name, truth_name, folder) in PARTS.items():
            if part == "test" and not test_present:
                continue
            cases += self._read_part(part if test_present else None, meta_name, truth_name, folder, verify_images, tally)
        if tally.counts.get("unknown_label"):
            tally.note(f"{tally.counts['unknown_label']} rows are UNK or have no single class; ISIC 2019 trains 8 classes.")
        if test_present:
            tally.note("The released ISIC 2019 test files were found and form the official test split.")
        return tally.result(self.name, cases)

    def _read_part(self, part: str | None, meta_name: str, truth_name: str, folder: str,
                   verify: bool, tally: Tally) -> list[Case]:
        _, meta = read_csv(self.root / meta_name)
        _, truth = read_csv(self.root / truth_name)
        labels = {r["image"]: _label(r) for r in truth}
        images = self.index_images([folder])
        orphans = len(set(labels) - {r.get("image", "") for r in meta})
        if orphans:
            tally.drop("missing_metadata", orphans)
        cases = []
        for row in meta:
            image = row.get("image", "")
            if image not in labels:
                tally.drop("missing_label")
                continue
            if labels[image] is None:
                tally.drop("unknown_label")
                continue
            ref = image_slot(images.get(image), verify, tally)
            if ref is None:
                continue
            cases.append(Case(
                case_id=image,
                dermoscopic=ref,
                metadata=clean_metadata(SCHEMA, row, tally),
                label=labels[image],
                lesion_id=row.get("lesion_id") or None,
                extra={"official_split": part} if part else {},
            ))
        return cases
