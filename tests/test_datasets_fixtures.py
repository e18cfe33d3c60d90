"""Adapters on tiny datasets written in the official layouts, including the bad data they must count."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from fixtures.official_layouts import make_derm7pt, make_ham10000, make_isic2019, make_milk10k

from skinui.cases import ConceptVector, ImageRef
from skinui.datasets import DATASETS, NAMES, DatasetError, load_dataset, schema_for
from skinui.schema import SCHEMAS


def test_registry_is_lazy_and_complete():
    assert set(NAMES) <= set(DATASETS.names())
    assert "ham10000" in DATASETS
    with pytest.raises(DatasetError, match="Unknown dataset"):
        DATASETS.get("nope")
    for name in ("ham10000", "pad-ufes-20", "milk10k", "isic2019", "derm7pt"):
        schema = schema_for(name)
        assert schema is SCHEMAS.get(name) and schema.dataset == name
        assert schema.licence and schema.citation and set(schema.class_names) == set(schema.classes)
        assert schema.group_key in ("lesion_id", "patient_id")
        assert DATASETS.get(name).schema is schema


def test_ham10000_bad_data_is_counted_not_dropped_silently(tmp_path):
    rows = make_ham10000(tmp_path, n=14, missing=("ISIC_0000002",), broken=("ISIC_0000003",), bad_age=(4,),
                         unknown_label=(5,))
    lazy = load_dataset("ham10000", tmp_path)  # without verification the broken file is still a case
    assert len(lazy.cases) == 12 and lazy.dropped == {"missing_image": 1, "unknown_label": 1}
    result = load_dataset("ham10000", tmp_path, verify_images=True)
    assert result.dropped == {"missing_image": 1, "unknown_label": 1, "unreadable_image": 1}
    assert result.repaired == {"repaired_age_out_of_range": 1}
    assert len(result.cases) + result.n_skipped == len(rows)
    case4 = next(c for c in result.cases if c.case_id == "ISIC_0000004")
    assert case4.metadata["age"] is None  # out of range -> missing, case kept
    assert {c.dermoscopic.path.parent.name for c in result.cases} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}


def test_milk10k_full_layout_with_a_missing_image(tmp_path):
    lesions = make_milk10k(tmp_path, n=12, images=True, missing=("ISIC_0000003",))  # lesion 1's dermoscopic
    result = load_dataset("milk10k", tmp_path)
    assert len(result.cases) == 12 and result.n_skipped == 0
    assert result.repaired == {"missing_image": 1}
    assert any("missing" in note for note in result.notes)
    by_id = {c.case_id: c for c in result.cases}
    hole = by_id["IL_0000001"]
    assert hole.dermoscopic is None and isinstance(hole.clinical, ImageRef)
    assert hole.clinical.path.parts[-2:] == ("IL_0000001", "ISIC_0000002.jpg")
    assert hole.modalities() == ["clinical", "metadata"]
    full = by_id["IL_0000000"]
    assert isinstance(full.dermoscopic, ImageRef) and full.dermoscopic.path.name == "ISIC_0000001.jpg"
    assert isinstance(full.extra["concepts"]["dermoscopic"], ConceptVector)
    assert full.image("clinical").shape == (48, 48, 3)
    assert [c.label for c in result.cases] == [x["label"] for x in lesions]
    # site '' in the file is missing; the supplement's leak fields are in the record.
    assert by_id["IL_0000002"].metadata["site"] is None
    assert by_id["IL_0000007"].metadata["invasion_thickness_interval"] == "<0.8"


def test_milk10k_concept_mode_when_images_folder_absent(tmp_path):
    make_milk10k(tmp_path, n=5, images=False, supplement=False)
    result = load_dataset("milk10k", tmp_path)
    assert len(result.cases) == 5
    case = result.cases[0]
    assert isinstance(case.dermoscopic, ConceptVector) and isinstance(case.clinical, ConceptVector)
    assert case.dermoscopic.values.dtype == np.float32 and len(case.dermoscopic.names) == 7
    assert "diagnosis_full" not in case.metadata  # no supplement, no leak column invented


def test_milk10k_ground_truth_without_a_single_class_is_counted(tmp_path):
    make_milk10k(tmp_path, n=4, images=False)
    gt = tmp_path / "MILK10k_Training_GroundTruth.csv"
    lines = gt.read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",0.0" * 11  # lesion 0: no positive class
    gt.write_text("\n".join(lines) + "\n")
    result = load_dataset("milk10k", tmp_path)
    assert len(result.cases) == 3 and result.dropped == {"unknown_label": 1}


def test_isic2019_layout_unk_missing_image_and_official_test(tmp_path):
    rows = make_isic2019(tmp_path, n=18, missing=("ISIC_0000005",), unk=(7,), with_test=6)
    result = load_dataset("isic2019", tmp_path)
    assert result.dropped == {"missing_image": 1, "unknown_label": 1}
    assert len(result.cases) == len(rows) - 2
    labels = Counter(c.label for c in result.cases)
    assert "UNK" not in labels and set(labels) <= set(schema_for("isic2019").classes)
    by_id = {c.case_id: c for c in result.cases}
    assert "ISIC_0000001_downsampled" in by_id
    assert by_id["ISIC_0000000"].lesion_id is None and by_id["ISIC_0000000"].group("lesion_id") == "ISIC_0000000"
    assert by_id["ISIC_0000002"].metadata["anatom_site_general"] is None
    split = DATASETS.get("isic2019").official_split(result.cases)
    assert len(split["test"]) == 6 and len(split["train"]) == len(result.cases) - 6


def test_isic2019_without_test_files_has_no_official_split(tmp_path):
    make_isic2019(tmp_path, n=8)
    result = load_dataset("isic2019", tmp_path)
    assert len(result.cases) == 8
    assert DATASETS.get("isic2019").official_split(result.cases) is None


def test_derm7pt_layout_labels_criteria_and_official_split(tmp_path):
    rows = make_derm7pt(tmp_path, n=16, missing=("Aal/C003.jpg",), odd_diagnosis=(5,))
    result = load_dataset("derm7pt", tmp_path)
    assert result.dropped == {"unknown_label": 1} and result.repaired == {"missing_image": 1}
    assert len(result.cases) == 15
    by_id = {c.case_id: c for c in result.cases}
    assert by_id["4"].clinical is None and isinstance(by_id["4"].dermoscopic, ImageRef)
    assert by_id["1"].label == "BCC" and by_id["2"].label == "NEV" and by_id["3"].label == "MEL"
    assert by_id["4"].extra["diagnosis"] == "dermatofibroma" and by_id["4"].label == "MISC"
    assert by_id["7"].label == "MEL" and by_id["7"].extra["diagnosis"] == "melanoma (more than 1.5 mm)"
    assert set(by_id["1"].extra["criteria"]) == {"pigment_network", "streaks", "pigmentation",
                                                  "regression_structures", "dots_and_globules",
                                                  "blue_whitish_veil", "vascular_structures"}
    assert by_id["1"].clinical.path.parts[-3:] == ("images", "Aal", "C000.jpg")
    split = DATASETS.get("derm7pt").official_split(result.cases)
    # index files name rows 0-8 train, 9-11 valid, 12-15 test of meta.csv; row 5 was dropped.
    ids = {part: [result.cases[i].case_id for i in idx] for part, idx in split.items()}
    assert ids["val"] == ["10", "11", "12"] and ids["test"] == ["13", "14", "15", "16"]
    assert "6" not in ids["train"] and len(ids["train"]) == 8
    assert rows[0]["clinic"] == "Aal/C000.jpg"


def test_bad_roots_raise_sentences(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("derm7pt", tmp_path / "absent")
    with pytest.raises(DatasetError, match="meta.csv"):
        load_dataset("derm7pt", tmp_path)
    with pytest.raises(DatasetError, match="MILK10k_Training_Metadata.csv"):
        load_dataset("milk10k", tmp_path)
