"""MetadataEncoder: fit on training rows only, transform, serialise, validate typed-in values, leak guard."""
from __future__ import annotations

import json

import numpy as np
import pytest

from skinui.cases import Case
from skinui.datasets import schema_for
from skinui.encoding import MetadataEncoder, coerce_value
from skinui.schema import Field, LeakError

TRAIN = [
    {"age": 30, "sex": "male", "localization": "back", "dx_type": "histo"},
    {"age": 50, "sex": "female", "localization": "face", "dx_type": "follow_up"},
    {"age": None, "sex": None, "localization": "back", "dx_type": "histo"},
    {"age": "70", "sex": "male", "localization": "unknown", "dx_type": "consensus"},
]


@pytest.fixture
def ham():
    return schema_for("ham10000")


def test_fit_transform_shapes_imputation_and_groups(ham):
    enc = MetadataEncoder(ham).fit(TRAIN)
    assert enc.columns[:2] == ["age", "age__missing"]
    assert "sex=unknown" in enc.columns and "localization=unknown" in enc.columns
    assert not any(c.startswith("dx_type") for c in enc.columns)  # the leak is not an input
    X = enc.transform(TRAIN)
    assert X.dtype == np.float32 and X.shape == (4, enc.dim)
    # numeric: standardised on observed values, missing row imputed by the median and flagged
    observed = X[[0, 1, 3], 0]
    assert abs(observed.mean()) < 1e-6
    assert X[2, 1] == 1.0 and X[0, 1] == 0.0
    assert X[2, 0] == pytest.approx((50 - 50) / np.std([30, 50, 70]))
    # categorical one-hot: exactly one level per field, missing -> unknown
    groups = dict(enc.groups)
    for name in ("sex", "localization"):
        assert (X[:, groups[name]].sum(axis=1) == 1).all()
    assert X[2, enc.columns.index("sex=unknown")] == 1.0
    assert X[3, enc.columns.index("localization=unknown")] == 1.0
    assert sorted(i for idx in groups.values() for i in idx) == list(range(enc.dim))
    assert groups["age"] == [0, 1]  # the missingness flag belongs to its field's group


def test_fit_uses_only_the_rows_it_is_given(ham):
    a = MetadataEncoder(ham).fit(TRAIN[:2])
    b = MetadataEncoder(ham).fit(TRAIN)
    assert a.stats["age"]["median"] == 40.0 and b.stats["age"]["median"] == 50.0
    case = Case("x", metadata={"age": 60, "sex": "female", "localization": "face"})
    assert not np.allclose(a.transform([case]), b.transform([case]))


def test_round_trip_through_json(ham):
    enc = MetadataEncoder(ham).fit(TRAIN)
    again = MetadataEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    rows = TRAIN + [{"age": "abc", "sex": "MALE", "localization": "Lower Extremity"}]
    np.testing.assert_array_equal(enc.transform(rows), again.transform(rows))
    assert again.columns == enc.columns and again.groups == enc.groups
    assert again.validate({"age": 200})[1] == enc.validate({"age": 200})[1]


def test_validate_cleans_typed_values_with_warning_sentences(ham):
    enc = MetadataEncoder(ham).fit(TRAIN)
    clean, warnings = enc.validate({"age": "150", "sex": "Female", "localization": "moon", "dx_type": "histo",
                                    "colour": "red"})
    assert clean == {"age": None, "sex": "female", "localization": None}
    text = " ".join(warnings)
    assert "outside the valid range 0-120 years" in text
    assert "'moon' is not one of the known values" in text
    assert "leaks the label" in text and "'colour' is not a metadata field" in text
    assert all(w.endswith(".") for w in warnings) and len(warnings) == 4
    clean, warnings = enc.validate({"age": "forty"})
    assert clean["age"] is None and "not a number" in warnings[0]
    clean, warnings = enc.validate({"age": 42, "sex": "male", "localization": "back"})
    assert warnings == [] and clean["age"] == 42.0
    # cleaned values encode exactly as the raw ones would
    np.testing.assert_array_equal(enc.transform([clean]), enc.transform([{"age": 42, "sex": "male", "localization": "back"}]))


def test_leak_fields_refused_unless_forced(ham):
    with pytest.raises(LeakError, match="dx_type"):
        MetadataEncoder(ham, fields=["age", "dx_type"])
    with pytest.raises(LeakError, match="provenance"):
        MetadataEncoder(ham, fields=["dataset"])
    with pytest.raises(ValueError, match="not leak fields"):
        MetadataEncoder(ham, force_leaky=["age"])
    forced = MetadataEncoder(ham, force_leaky=["dx_type"]).fit(TRAIN)
    assert forced.leaky and "dx_type=histo" in forced.columns
    assert forced.to_dict()["force_leaky"] == ["dx_type"]
    assert not MetadataEncoder(ham).fit(TRAIN).leaky


def test_booleans_and_open_vocabularies():
    pad = schema_for("pad-ufes-20")
    enc = MetadataEncoder(pad, fields=["itch", "region"]).fit([{"itch": "True", "region": "FACE"},
                                                               {"itch": "False", "region": "BACK"},
                                                               {"itch": "UNK", "region": ""}])
    X = enc.transform([{"itch": True}, {"itch": "no"}, {"itch": None}])
    itch = dict(enc.groups)["itch"]
    assert X[:, itch].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    milk = schema_for("milk10k")
    forced = MetadataEncoder(milk, force_leaky=["diagnosis_full"], fields=["diagnosis_full"])
    forced.fit([{"diagnosis_full": "Nevus, Reed"}, {"diagnosis_full": "Basal cell carcinoma"}])
    assert forced.columns == ["diagnosis_full=Basal cell carcinoma", "diagnosis_full=Nevus, Reed", "diagnosis_full=unknown"]
    assert forced.transform([{"diagnosis_full": "never seen"}])[0, -1] == 1.0


def test_coerce_value_rules():
    age = Field("age", "numeric", valid_range=(0, 120))
    assert coerce_value(age, "45.0") == (45.0, None)
    assert coerce_value(age, -3) == (None, "out_of_range")
    assert coerce_value(age, "nan") == (None, None)
    assert coerce_value(age, True) == (None, "non_numeric")
    site = Field("site", "categorical", ("head_neck_face", "trunk"))
    assert coerce_value(site, "Head neck face") == ("head_neck_face", None)
    assert coerce_value(site, "UNK") == (None, None)
    assert coerce_value(site, "leg") == (None, "unlisted")


def test_transform_before_fit_is_a_clear_error(ham):
    with pytest.raises(RuntimeError, match="not fitted"):
        MetadataEncoder(ham).transform(TRAIN)
    with pytest.raises(ValueError, match="at least one"):
        MetadataEncoder(ham).fit([])
