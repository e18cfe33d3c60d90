"""Adapters on the real development data in ../shared/data (skipped with a reason when absent).

Counts are those of ../shared/data/README.md, so an adapter that drops or invents rows fails.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import data_dir

from skinui.cases import ConceptVector, ImageRef
from skinui.datasets import load_dataset, schema_for
from skinui.datasets.splits import check_groups_disjoint, split_cases
from skinui.encoding import MetadataEncoder
from skinui.schema import LeakError

pytestmark = pytest.mark.data

HAM_COUNTS = {"nv": 3268, "bkl": 426, "mel": 348, "bcc": 203, "akiec": 127, "vasc": 50, "df": 38}
PAD_COUNTS = {"NEV": 132, "BCC": 132, "SEK": 95, "ACK": 71, "MEL": 30, "SCC": 16}
MILK_COUNTS = {"BCC": 1892, "NV": 575, "BKL": 416, "SCCKA": 346, "MEL": 340, "AKIEC": 227, "VASC": 36,
               "DF": 37, "BEN_OTH": 34, "INF": 32, "MAL_OTH": 6}


def test_ham10000_counts_and_cases():
    result = load_dataset("ham10000", data_dir("ham10000"))
    assert len(result.cases) == 4460
    assert Counter(c.label for c in result.cases) == HAM_COUNTS
    assert result.n_skipped == 0
    case = result.cases[0]
    assert isinstance(case.dermoscopic, ImageRef) and case.dermoscopic.exists()
    assert case.clinical is None and case.lesion_id.startswith("HAM_")
    assert set(case.metadata) == {"age", "sex", "localization", "dx_type"}
    assert "dataset" in case.extra["provenance"]
    # 'unknown' in the file is read as missing, never as a vocabulary value.
    assert all(c.metadata["sex"] in ("male", "female", None) for c in result.cases)
    assert sum(c.metadata["age"] is None for c in result.cases) > 0
    img = case.image("dermoscopic")
    assert img.dtype == np.uint8 and img.shape[2] == 3


def test_pad_ufes20_counts_masks_and_types():
    result = load_dataset("pad-ufes-20", data_dir("pad-ufes-20"))
    assert len(result.cases) == 476
    assert Counter(c.label for c in result.cases) == PAD_COUNTS
    assert all(isinstance(c.clinical, ImageRef) and c.dermoscopic is None for c in result.cases)
    assert all(isinstance(c.mask, ImageRef) and c.mask.path.name.endswith("_mask.png") for c in result.cases)
    schema = schema_for("pad-ufes-20")
    # 8 clinical inputs; the 13-field lifestyle/history/diameter block is read but is a leak field
    assert len(schema.fields) == 8 and len(schema.missingness_block) == 13
    assert set(schema.missingness_block) <= set(schema.leak_fields)
    for c in result.cases:
        assert c.metadata["itch"] in (True, False, None)
        assert c.metadata["fitspatrick"] is None or 1 <= c.metadata["fitspatrick"] <= 6
    # About 37% of rows leave the lifestyle fields empty: they must come out missing, not False.
    empty = sum(c.metadata["smoke"] is None for c in result.cases) / len(result.cases)
    assert 0.3 < empty < 0.45
    # ... and every one of those rows is a lesion that was not biopsied: never a cancer (the leak)
    assert not any(c.metadata["smoke"] is None and c.label in schema.cancer_classes for c in result.cases)


def test_pad_split_groups_by_patient():
    result = load_dataset("pad-ufes-20", data_dir("pad-ufes-20"))
    split = split_cases("pad-ufes-20", result.cases, seed=0)
    check_groups_disjoint(result.cases, split, "patient_id")
    assert sum(len(v) for v in split.values()) == 476


def test_milk10k_concept_mode_on_real_csvs():
    result = load_dataset("milk10k", data_dir("milk10k"))
    assert len(result.cases) == 3941
    assert Counter(c.label for c in result.cases) == MILK_COUNTS
    assert result.n_skipped == 0
    assert any("ConceptVector" in note for note in result.notes)
    for case in result.cases[:50]:
        for m in ("dermoscopic", "clinical"):
            vec = getattr(case, m)
            assert isinstance(vec, ConceptVector) and vec.values.shape == (7,)
            assert vec.names[0] == "MONET_ulceration_crust"
        assert case.modalities() == ["dermoscopic", "clinical", "metadata"]
        assert case.metadata["diagnosis_full"]  # leak kept in the record, refused as input
        assert set(case.extra["provenance"]) == {"dermoscopic", "clinical"}
    # The two images of a lesion carry different concept scores.
    assert not np.allclose(result.cases[0].dermoscopic.values, result.cases[0].clinical.values)


def test_milk10k_leaks_refused_and_encoder_uses_clinical_fields_only():
    result = load_dataset("milk10k", data_dir("milk10k"))
    schema = schema_for("milk10k")
    with pytest.raises(LeakError):
        MetadataEncoder(schema, fields=["age_approx", "diagnosis_full"])
    with pytest.raises(LeakError):
        MetadataEncoder(schema, fields=["image_manipulation"])
    enc = MetadataEncoder(schema).fit(result.cases[:500])
    assert {name for name, _ in enc.groups} == {"age_approx", "sex", "skin_tone_class", "site"}
    X = enc.transform(result.cases[:10])
    assert X.shape == (10, enc.dim) and np.isfinite(X).all()
