"""What-if metadata (relevance tab): one field changed, the image features reused, baseline kept."""
from __future__ import annotations

import numpy as np
import pytest

from skinui.cases import Case
from skinui.paths import default_weights_dir
from skinui.ui import figures, relevance_tab, texts, whatif

FUSION = "ham10000_jf_weighted_concat"
IMAGE_ONLY = "ham10000_image"
CASE = {"age": "50", "sex": "male", "localization": None}  # localization unknown in the case as analysed


def load(name: str):
    if not (default_weights_dir() / f"{name}.safetensors").is_file():
        pytest.skip(f"shipped entry {name} is not installed in {default_weights_dir()}")
    from skinui.zoo import load_entry

    entry = load_entry(name)
    entry.model.eval()
    return entry


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (160, 180, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def enc():
    return load(FUSION).encode(Case("", dermoscopic=image(), metadata=dict(CASE)))


def biggest_move(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) for k in a)


def test_changing_age_moves_the_probabilities(enc):
    baseline, changed, sentence = whatif.what_if(enc, "age", 85)
    assert baseline.probabilities == enc.prediction().probabilities  # the baseline is the case as analysed
    assert changed is not None and sum(changed.probabilities.values()) == pytest.approx(1.0)
    assert biggest_move(baseline.probabilities, changed.probabilities) > 1e-3, sentence
    # the what-if is exactly what a fresh prediction of the edited case gives
    fresh = enc.entry.encode(Case("", dermoscopic=image(), metadata={**CASE, "age": 85})).prediction()
    assert biggest_move(fresh.probabilities, changed.probabilities) < 1e-6 and fresh.prediction == changed.prediction


@pytest.mark.parametrize("name,value", [("age", 50), ("age", "50"), ("sex", "male"), ("localization", "unknown")])
def test_the_baseline_value_reproduces_the_baseline_exactly(enc, name, value):
    baseline, changed, sentence = whatif.what_if(enc, name, value)
    assert changed is not None
    assert biggest_move(baseline.probabilities, changed.probabilities) < 1e-7
    assert changed.prediction == baseline.prediction
    assert "as in the case" in sentence


def test_a_different_value_is_not_taken_for_the_baseline(enc):
    # the counterpart of the test above: one category away from the case's value does move
    _, changed, sentence = whatif.what_if(enc, "localization", "face")
    baseline = enc.prediction()
    assert biggest_move(baseline.probabilities, changed.probabilities) > 1e-4 and "as in the case" not in sentence


def test_the_sentence_names_the_field_both_values_and_the_probabilities(enc):
    baseline, changed, sentence = whatif.what_if(enc, "age", 85)
    assert sentence.startswith("Age 50 → 85 years:")
    named = [c for c in enc.classes if f"P({c}) " in sentence]
    assert baseline.prediction in named and changed.prediction in named
    for c in named:
        a, b = baseline.probabilities[c], changed.probabilities[c]
        d = abs(b - a)
        digits = 0 if d >= 0.01 else 1 if d >= 0.001 else 2
        assert f"P({c}) {a:.{digits}%} → {b:.{digits}%}" in sentence
    stays = changed.prediction == baseline.prediction
    assert (f"the prediction stays {baseline.prediction}" in sentence) == stays
    assert (f"changes from {baseline.prediction} to {changed.prediction}" in sentence) == (not stays)


def test_setting_a_known_value_to_unknown_is_a_what_if_too(enc):
    _, changed, sentence = whatif.what_if(enc, "age", None)
    assert changed is not None and sentence.startswith("Age 50 years → unknown:")


@pytest.mark.parametrize("name,value,words", [
    ("age", 150, "outside the valid range 0–120"),
    ("age", -3, "outside the valid range"),
    ("age", "fifty", "not a number"),
    ("age", float("nan"), "unknown"),  # NaN is the encoder's missing value, not an error
    ("localization", "moon", "not one of its values"),
    ("dx_type", "histo", "reads no field called 'dx_type'"),
    (None, 3, "reads no field called None"),
])
def test_invalid_values_get_a_sentence_never_a_traceback(enc, name, value, words):
    baseline, changed, sentence = whatif.what_if(enc, name, value)
    assert words in sentence
    assert baseline.probabilities == enc.prediction().probabilities
    if words != "unknown":
        assert changed is None
    text, fig = whatif.view(enc, name, value)  # the UI's callback: a sentence and the baseline plot
    assert text == sentence and len(fig.data) == (1 if changed is None else 2)


def test_an_entry_without_metadata_gets_the_note():
    entry = load(IMAGE_ONLY)
    enc = entry.encode(Case("", dermoscopic=image()))
    assert whatif.fields_of(entry) == [] and whatif.field_choices(entry) == []
    baseline, changed, sentence = whatif.what_if(enc, "age", 60)
    assert changed is None and sentence == texts.WHATIF_NO_METADATA.format(entry=IMAGE_ONLY)
    assert baseline.prediction == enc.prediction().prediction


def test_controls_follow_the_schema(enc):
    entry = enc.entry
    assert [n for _, n in whatif.field_choices(entry)] == ["age", "sex", "localization"]  # no leak field (dx_type)
    age = whatif.control(entry, "age", 50.0)
    assert (age.kind, age.minimum, age.maximum, age.number, age.unknown) == ("numeric", 0, 120, 50, False)
    unknown_age = whatif.control(entry, "age", None)
    assert unknown_age.unknown and unknown_age.number == entry.encoder.stats["age"]["median"]
    site = whatif.control(entry, "localization", None)
    assert site.kind == "choice" and site.choices[0] == "unknown" and "face" in site.choices and site.choice == "unknown"
    assert whatif.control(entry, "dx_type", "histo") is None


def test_what_if_figure_puts_the_baseline_beside_the_what_if(enc):
    text, fig = whatif.view(enc, "age", 85)
    assert fig.layout.barmode == "group" and len(fig.data) == 2
    assert list(fig.data[0].x) == enc.classes and "as analysed (age 50 years)" in fig.data[0].name
    assert "what if (age 85 years)" in fig.data[1].name
    assert list(fig.data[1].y) == pytest.approx([whatif.what_if(enc, "age", 85)[1].probabilities[c] for c in enc.classes])
    assert len(figures.what_if_figure({"a": 0.4, "b": 0.6}, None, "as analysed").data) == 1


# -- through the app's view functions (untrained demo entries: fast, and one without metadata) -----------------

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from skinui.demo import make_demo_entry
    from skinui.ui.app import build_app

    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri", image_size=64, structure="jiadf")
    make_demo_entry(folder, "img_only", image_size=64, structure="late", modalities=("dermoscopic",))
    return build_app(folder)[1]


def session_for(app, name: str):
    from skinui.ui import case_tab
    from skinui.ui.form import to_form
    from skinui.ui.session import Session

    values = [{"age": "63", "sex": "female"}.get(s.name, to_form(s.field, None)) for s in app.form.fields]
    session, status = case_tab.analyse_session(app, name, Session(), {"dermoscopic": image(), "clinical": image(1)},
                                               values)
    assert session.explanation is not None, status
    return session


def test_the_view_changes_age_without_recomputing_image_features(app):
    session = session_for(app, "tri")
    field, slider, unknown, choice, back, sentence, plot = relevance_tab.what_if_render(app, session)
    assert field["value"] == "age" and ("Age (years, 0–120)", "age") in field["choices"] and field["visible"]
    assert (slider["minimum"], slider["maximum"], slider["value"], slider["visible"]) == (0, 120, 63, True)
    assert unknown["value"] is False and choice["visible"] is False and back["visible"] is True
    assert "Age is 63 years in the case as analysed" in sentence and len(plot["value"].data) == 1

    cached = session.encoded["tri"]
    calls = []
    with app.cache.use("tri") as entry:
        hooks = [enc.register_forward_hook(lambda *a: calls.append(1)) for enc in entry.model.image_encoders.values()]
    try:
        text, fig = relevance_tab.what_if_change(app, session, "age", 90.0)
    finally:
        for h in hooks:
            h.remove()
    assert calls == [] and session.encoded["tri"] is cached  # image features reused, the cache untouched
    assert text.startswith("Age 63 → 90 years:") and len(fig["value"].data) == 2

    out = relevance_tab.what_if_change(app, session, "age", 500)
    assert "outside the valid range" in out[0]
    # a categorical field: the value control becomes a dropdown with 'unknown', back to the case restores it
    slider, unknown, choice, sentence, plot = relevance_tab.what_if_reset(app, session, "sex")
    assert slider["visible"] is False and choice["value"] == "female" and "unknown" in choice["choices"]
    assert len(plot["value"].data) == 1


def test_the_view_of_an_entry_without_metadata_is_one_note(app):
    session = session_for(app, "img_only")
    field, slider, unknown, choice, back, sentence, plot = relevance_tab.what_if_render(app, session)
    assert sentence == texts.WHATIF_NO_METADATA.format(entry="img_only")
    assert not any(u["visible"] for u in (field, slider, unknown, choice, back, plot))
    from skinui.ui.session import Session

    assert relevance_tab.what_if_render(app, Session())[5] == texts.WHATIF_BEFORE  # before any analysis


def test_describe_words_no_move_a_new_class_and_the_branch_weight():
    from skinui.inference import Prediction
    from skinui.schema import Field

    site = Field("site", "categorical", ("back", "face"))
    base = Prediction({"mel": 0.30, "nv": 0.70}, "nv", 0.70, branch_weights={"image": 0.5, "joint": 0.3, "metadata": 0.2})
    same = Prediction({"mel": 0.3002, "nv": 0.6998}, "nv", 0.6998)
    flips = Prediction({"mel": 0.62, "nv": 0.38}, "mel", 0.62,
                       branch_weights={"image": 0.3, "joint": 0.3, "metadata": 0.4})
    quiet = whatif.describe(site, "back", "face", base, same, "demo")
    assert quiet.startswith("Site back → face:") and "next to no use of site" in quiet and "stays nv (70%)" in quiet
    loud = whatif.describe(site, "back", None, base, flips, "demo", notes=["a new warning"])
    assert "P(nv) 70% → 38%" in loud and "P(mel) 30% → 62%" in loud
    assert "changes from nv to mel" in loud and "0.20 → 0.40" in loud and loud.endswith("⚠️ a new warning")
