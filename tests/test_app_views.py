"""Every view function of the app, called directly: inputs in, figures, tables and sentences out."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from skinui.demo import make_demo_entry
from skinui.ui import (
    ablation_tab,
    about_tab,
    calibration_tab,
    case_tab,
    compare_tab,
    figures,
    gradcam_tab,
    prediction_tab,
    relevance_tab,
    texts,
)
from skinui.ui.app import build_app
from skinui.ui.cards import card_fusion
from skinui.ui.entries import EntryCache
from skinui.ui.form import MetadataForm, to_form, to_raw
from skinui.ui.inputs import modality_notes
from skinui.ui.session import Session

SIZE = 64


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri_jiadf", image_size=SIZE, val_balanced_accuracy=0.5)
    make_demo_entry(folder, "tri_jf", image_size=SIZE, structure="jf", fusion="concat", seed=1,
                    val_balanced_accuracy=0.3)
    make_demo_entry(folder, "dm_late", image_size=SIZE, structure="late", modalities=("dermoscopic", "metadata"))
    demo, ctx = build_app(folder)
    return ctx


def images(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"dermoscopic": rng.integers(0, 255, (90, 80, 3), dtype=np.uint8),
            "clinical": rng.integers(0, 255, (70, 70, 3), dtype=np.uint8)}


def form_values(ctx, **values) -> list:
    return [values.get(s.name, to_form(s.field, None)) for s in ctx.form.fields]


@pytest.fixture(scope="module")
def analysed(app):
    session, status = case_tab.analyse_session(app, "tri_jiadf", Session(), images(),
                                               form_values(app, age="63", sex="female", bleeding="yes"))
    assert session.explanation is not None, status
    return session, status


def test_default_entry_is_the_best_trimodal_entry_on_validation(app, tmp_path):
    assert app.default == "tri_jiadf"
    assert app.cache.names() == ["dm_late", "tri_jf", "tri_jiadf"]
    # the choice reads validation, never structure names or the test split
    make_demo_entry(tmp_path, "tri_jiadf", image_size=SIZE, val_balanced_accuracy=0.3)
    make_demo_entry(tmp_path, "tri_jf", image_size=SIZE, structure="jf", fusion="concat", val_balanced_accuracy=0.6)
    make_demo_entry(tmp_path, "dm_late", image_size=SIZE, structure="late", modalities=("dermoscopic", "metadata"),
                    val_balanced_accuracy=0.9)  # best on validation, but takes fewer inputs
    assert EntryCache(tmp_path).default_name() == "tri_jf"


def test_form_is_generated_from_the_cards(app):
    form: MetadataForm = app.form
    names = [s.name for s in form.fields]
    assert names[:3] == ["age", "sex", "site"] and len(form.components) == len(names)
    age = next(s for s in form.fields if s.name == "age")
    assert "years" in age.field.label and "0–120" in age.field.label
    raw = form.raw_values("tri_jiadf", form_values(app, age="150", sex="female", bleeding="no"))
    assert raw["age"] == "150" and raw["sex"] == "female" and raw["bleeding"] is False and raw["site"] is None
    assert form.raw_values("missing-entry", []) == {}
    updates = form.visibility("tri_jiadf")
    assert updates[0]["visible"] is True and all(u["visible"] for u in updates[1:])


def test_form_value_round_trip():
    from skinui.schema import Field

    num = Field("age", "numeric", unit="years", valid_range=(0, 120))
    cat = Field("sex", "categorical", ("female", "male"))
    flag = Field("itch", "boolean")
    assert to_form(num, 42.0) == "42" and to_form(num, None) == "" and to_raw(num, " ") is None
    assert to_form(cat, "male") == "male" and to_form(cat, "other") == "unknown" and to_raw(cat, "unknown") is None
    assert to_form(flag, True) == "yes" and to_raw(flag, "no") is False and to_raw(flag, "unknown") is None


def test_analysis_warns_about_typed_in_values(app, analysed):
    session, status = case_tab.analyse_session(app, "tri_jiadf", Session(), images(),
                                               form_values(app, age="150", diameter_mm="abc", sex="female"))
    assert "outside the valid range 0-120" in status and "not a number" in status
    assert session.explanation is not None  # bad values become missing, the analysis still runs


def test_analysis_without_inputs_says_what_to_do(app):
    session, status = case_tab.analyse_session(app, "dm_late", Session(), {}, form_values(app))
    assert session.explanation is None and "Add an image or some metadata" in status
    # it names what this entry reads: no clinical close-up, which dm_late cannot use
    assert "a dermoscopic image or the patient metadata of the synthderm form" in status
    assert "clinical" not in status
    _, status = case_tab.analyse_session(app, None, Session(), {}, [])
    assert "No model entry" in status


def test_prediction_view(app, analysed):
    session, _ = analysed
    headline, probs, branches = prediction_tab.render(app, session)
    ex = session.explanation
    assert f"## {ex.prediction}" in headline and "Branch weights α" in headline
    # JIF's weights are a fixed average: never read as "this decision leaned most on ..."
    jif = prediction_tab.headline(ex, {}, structure="jif")
    assert "Branch weights α" not in jif and "fixed, equal weights" in jif
    assert isinstance(probs, go.Figure) and len(probs.data[0].x) == len(ex.classes)
    assert branches["visible"] is True and isinstance(branches["value"], go.Figure)
    empty = prediction_tab.render(app, Session())
    assert "Analyse a case" in empty[0] and empty[2]["visible"] is False


def test_gradcam_views(app, analysed):
    session, _ = analysed
    out = gradcam_tab.render(app, session, opacity=0.3)
    assert out[0]["choices"][0] == gradcam_tab.PREDICTED
    derm, clin = out[2]["value"], out[3]["value"]
    h, w = session.images["dermoscopic"].shape[:2]
    # plain image | overlay | colour scale, in one picture
    assert derm.shape[0] == h and derm.shape[1] > 2 * w and np.array_equal(derm[:, :w], session.images["dermoscopic"])
    assert clin.shape[0] == session.images["clinical"].shape[0]
    new_session, caption, d2, *_ = gradcam_tab.on_class(app, "DF", 0.5, session)
    assert "DF" in caption and new_session.cam_target == "DF" and not np.array_equal(d2["value"], derm)
    cmp_session, cap2, u1, _ = gradcam_tab.on_compare(app, "tri_jf", gradcam_tab.PREDICTED, 0.5, session)
    assert "tri_jf" in cap2 and u1["visible"] and cmp_session.compare["entry"] == "tri_jf"
    assert gradcam_tab.on_compare(app, "none", gradcam_tab.PREDICTED, 0.5, session)[2]["visible"] is False


def test_changing_the_class_updates_the_second_entry_too(app, analysed):
    session, _ = analysed
    cmp_session = gradcam_tab.on_compare(app, "tri_jf", gradcam_tab.PREDICTED, 0.5, session)[0]
    out = gradcam_tab.on_class(app, "DF", 0.5, cmp_session)
    new_session, cap2 = out[0], out[4]
    assert new_session.compare["target"] == "DF" and "**DF**" in cap2


def test_gradcam_hides_panels_the_entry_cannot_read_and_explains_a_flat_map(app, analysed):
    session, _ = analysed
    dm = gradcam_tab.panels(app, "dm_late", session, session.cams, 0.5)
    assert dm[0]["visible"] is True and dm[1]["visible"] is False  # dm_late reads no clinical image
    flat = gradcam_tab.caption("e", "DF", {"dermoscopic": np.zeros((8, 8), np.float32)})
    assert "map is flat" in flat


def test_overlay_opacity_blends():
    image = np.full((10, 12, 3), 100, np.uint8)
    cam = np.zeros((4, 4), np.float32)
    assert np.array_equal(figures.overlay(image, cam, 0.0), image)
    assert not np.array_equal(figures.overlay(image, cam, 1.0), image)
    assert figures.overlay(image, cam, 0.5).shape == image.shape and figures.overlay(image, None, 0.5) is image


def test_relevance_views(app, analysed):
    session, _ = analysed
    out = relevance_tab.render(app, session)
    assert "Integrated Gradients" in out[1] and all(u["visible"] for u in out[2:])
    note, ig, fa, shap = relevance_tab.on_change(app, "BCC", "Integrated Gradients", session)
    assert ig["visible"] is True and fa["visible"] is False and shap["visible"] is False
    assert "BCC" in ig["value"].layout.title.text
    bars = ig["value"].data[0]
    assert len(bars.y) == len(app.cache.card("tri_jiadf")["metadata_encoder"]["fields"])
    assert max(abs(v) for v in bars.x) == pytest.approx(1.0)
    # each bar names the field's value; the unscaled effect (probability points) is on hover
    assert "age = 63" in bars.y and "site = unknown" in bars.y
    assert all("effect on P" in h and "points" in h for h in bars.hovertext)
    raw = session.explanation.relevance_raw["integrated_gradients"]
    assert max(abs(v) for v in raw.values()) < 1.0 + 1e-9 and raw != session.explanation.relevance["integrated_gradients"]


def test_relevance_says_when_the_methods_disagree():
    agree = {"integrated_gradients": {"age": 0.9, "sex": 0.1}, "feature_ablation": {"age": -1.0, "sex": 0.2}}
    assert relevance_tab.disagreement(agree) == ""
    differ = {"integrated_gradients": {"age": 0.9, "sex": 0.1}, "feature_ablation": {"age": 0.1, "sex": 1.0}}
    assert "disagree" in relevance_tab.disagreement(differ) and "sex" in relevance_tab.disagreement(differ)


def test_ablation_views(app, analysed):
    session, _ = analysed
    out = ablation_tab.render(app, session)
    frame = out[5]
    assert isinstance(frame, pd.DataFrame) and list(frame["inputs"]) == ["D+C+M", "D+C", "D+M", "C+M", "D", "C", "M"]
    text, fig = ablation_tab.toggled(session, True, False, False)
    row = ablation_tab.pick(session.explanation.ablation, ["dermoscopic"])
    assert "**D**" in text and row["prediction"] in text and isinstance(fig, go.Figure)
    assert "at least one" in ablation_tab.toggled(session, False, False, False)[0]


def test_calibration_view(app, analysed):
    session, _ = analysed
    text, fig = calibration_tab.render(app, session)
    assert "T = " in text and "before" in text and "This case's confidence" in text
    assert "200 test cases even perfectly calibrated" in text  # the sampling-noise floor of the ECE
    shapes = [s for s in fig.layout.shapes if s.type == "line"]
    assert shapes and shapes[0].x0 == pytest.approx(session.explanation.confidence)
    assert "no calibration data" in calibration_tab.summary(None, 0.5)


def test_compare_view_reports_agreement(app, analysed):
    session, _ = analysed
    calls = []
    frame, gallery, text, matrix = compare_tab.compare(app.cache, "synthderm", session,
                                                       lambda *a, **k: calls.append(a))
    assert list(frame["entry"]) == ["dm_late", "tri_jf", "tri_jiadf"] and len(calls) == 3
    assert len(gallery) == 5  # late D+M: one image; the two trimodal entries: two each
    majority = frame["prediction"].mode()[0]
    assert f"**{majority}**" in text and set(frame["agrees with majority"]) <= {"yes", "no"}
    # for teachers: size and how much each entry leans on the metadata on this very case
    assert all(p.endswith(" M") for p in frame["parameters"]) and all("points of P(" in r for r in frame["metadata reliance"])
    assert all(ms >= 0 for ms in frame["ms on this case"])  # encode (unless cached) + Grad-CAM + ablation, as timed
    fit = dict(zip(frame["entry"], frame["fit to this case"]))
    assert fit["tri_jiadf"] == "all its inputs" and fit["dm_late"] == "ignores clinical image"
    papers = dict(zip(frame["entry"], frame["paper"]))  # where each method comes from
    assert papers["tri_jiadf"] == "Tang et al. 2024; Nguyen et al. 2026"
    # every entry's probabilities side by side, one row per entry
    assert list(matrix.data[0].y) == ["dm_late", "tri_jf", "tri_jiadf"] and len(matrix.data[0].x) == 8
    assert "Analyse a case" in compare_tab.compare(app.cache, "synthderm", Session())[2]


def test_method_texts_cover_every_registered_name(app):
    from skinui.models.fusion import FUSIONS
    from skinui.models.structures import STRUCTURES

    assert set(FUSIONS.names()) <= set(texts.FUSION_TEXTS)
    assert set(STRUCTURES.names()) <= set(texts.STRUCTURE_TEXTS)
    md = compare_tab.methods_markdown(app.cache, "synthderm")
    assert "**mmfa**" in md and "**jiadf**" in md and "**late**" in md and "f_J = [f_I ; f_M]" in md
    # every method in the zoo is described, whether or not this dataset's entries use it
    assert all(f"**{f}**" in md for f in FUSIONS.names()) and "**metablock** *(no entry in synthderm uses it)*" in md
    assert card_fusion(app.cache.card("dm_late")) == "none"


def test_about_view(app):
    md = about_tab.card_markdown(app.cache.card("tri_jiadf"))
    assert "Demo jiadf/mmfa" in md and "ECE" in md and "synthderm" in md
    assert "synthderm" in about_tab.licences_markdown(app.cache)
    assert "not a medical device" in texts.NOT_A_MEDICAL_DEVICE


def test_modality_notes_explain_missing_and_ignored_inputs(app):
    card = app.cache.card("dm_late")
    notes = modality_notes(card, ["clinical", "metadata"])
    assert any("no dermoscopic" in n for n in notes) and any("does not use the clinical" in n for n in notes)
    summary, explained = case_tab.entry_info(app.cache, "tri_jiadf", ["dermoscopic"])
    assert "mmfa" in summary and "missing" in explained


def test_app_without_entries_starts_and_says_how_to_get_them(tmp_path):
    demo, ctx = build_app(tmp_path / "empty")
    assert ctx.default is None and ctx.cache.names() == []
    md = case_tab.entries_markdown(ctx.cache)
    assert "No model entries are installed" in md and "SKINUI_WEIGHTS" in md


def test_unknown_default_entry_falls_back(app):
    demo, ctx = build_app(cache=app.cache, default_entry="nope")
    assert ctx.default == "tri_jiadf"


def test_entry_cache_is_lru_and_shares_one_model(app):
    cache = EntryCache(app.cache.weights_dir, capacity=1)
    with cache.use("tri_jiadf") as a:
        pass
    with cache.use("tri_jiadf") as b:
        assert a is b and not any(p.requires_grad for p in b.model.parameters())
    with cache.use("tri_jf"):
        pass
    assert list(cache._loaded) == ["tri_jf"]


def test_concept_score_entries_are_not_fed_photos(tmp_path):
    """MILK10k concept entries read MONET scores, not pixels: photos are left out, with a sentence."""
    make_demo_entry(tmp_path, "concepts", dataset="milk10k", backbone="concept_mlp", image_size=64)
    make_demo_entry(tmp_path, "pixels", dataset="milk10k", image_size=64, structure="jf", fusion="concat",
                    modalities=("clinical", "metadata"))
    demo, ctx = build_app(tmp_path)
    assert ctx.default == "pixels"  # more modalities, but a photo cannot feed it
    values = [("63" if s.name.startswith("age") else to_form(s.field, None)) for s in ctx.form.fields]
    session, status = case_tab.analyse_session(ctx, "concepts", Session(), images(), values)
    assert "concept scores" in status and session.explanation.cams == {}
    _, status = case_tab.analyse_session(ctx, "concepts", Session(), images(), [to_form(s.field, None) for s in ctx.form.fields])
    assert "concepts reads the patient metadata of the milk10k form, and this case has none" in status


def test_alpha_by_class_figure_stacks_branch_weights():
    from skinui.ui.figures import alpha_by_class_figure

    card = {"alpha_by_class": {"MEL": {"image": 0.1, "joint": 0.8, "metadata": 0.1, "n": 5},
                               "BCC": {"image": 0.5, "joint": 0.3, "metadata": 0.2, "n": 9}}}
    fig = alpha_by_class_figure(card)
    assert [t.name.split(" ")[0] for t in fig.data] == ["image", "joint", "metadata"]
    assert list(fig.data[0].y) == [0.1, 0.5] and fig.layout.barmode == "stack"
    assert alpha_by_class_figure({"name": "no alpha"}) is None


def test_switching_dataset_carries_the_same_facts_over(tmp_path):
    """Age, sex and site typed for SynthDerm fill HAM10000's still-unknown fields; nothing else does."""
    make_demo_entry(tmp_path, "syn", image_size=SIZE, modalities=("dermoscopic", "metadata"), structure="late")
    make_demo_entry(tmp_path, "ham", image_size=SIZE, dataset="ham10000", modalities=("dermoscopic", "metadata"),
                    structure="late")
    form = MetadataForm(EntryCache(tmp_path).cards)
    values = [to_form(s.field, None) for s in form.fields]
    index = {(s.dataset, s.name): i for i, s in enumerate(form.fields)}
    values[index["synthderm", "age"]] = "67"
    values[index["synthderm", "sex"]] = "male"
    values[index["synthderm", "site"]] = "upper_extremity"
    values[index["synthderm", "diameter_mm"]] = "8"
    out = form.carry_over("syn", "ham", values)
    assert out[index["ham10000", "age"]] == "67"
    assert out[index["ham10000", "sex"]] == "male"
    assert out[index["ham10000", "localization"]] == "upper extremity"  # HAM spells it with a space
    assert all(isinstance(out[i], dict) for (ds, _), i in index.items() if ds == "synthderm")  # untouched
    values[index["ham10000", "age"]] = "40"  # already typed there: kept
    assert isinstance(form.carry_over("syn", "ham", values)[index["ham10000", "age"]], dict)
    assert all(isinstance(v, dict) for v in form.carry_over("syn", "syn", values))  # same dataset: nothing


def _explained(probabilities: dict, prediction: str):
    from types import SimpleNamespace

    return SimpleNamespace(probabilities=probabilities, prediction=prediction,
                           confidence=probabilities[prediction], branch_weights=None)


def test_headline_never_shows_a_losers_probability_as_the_winners():
    """ham10000_jiadf on a nevus: decided mel at 39% beside nv at 53% must say so in one sentence."""
    ex = _explained({"nv": 0.531, "mel": 0.390, "bkl": 0.079}, "mel")
    text = prediction_tab.headline(ex, {"mel": "Melanoma"})
    assert "prevalence-adjusted decision" in text and "the most probable class is **nv** (53.1%)" in text
    assert "Confidence **39.0%**" not in text and "relative to how common each class is" in text
    assert texts.NOTICE_SHORT in text  # the notice sits next to every prediction
    plain = prediction_tab.headline(_explained({"nv": 0.8, "mel": 0.2}, "nv"), {})
    assert "most probable" not in plain and "Probability **80.0%**" in plain
    assert texts.decision_headline({"nv": 0.53, "df": 0.06}, "df") == "**df** (P 6%; most probable: nv 53%)"
    assert "further heads" not in plain  # single-task entries say nothing about criteria
    ex = _explained({"MEL": 0.7, "NEV": 0.3}, "MEL")
    ex.tasks = {"blue_whitish_veil": {"absent": 0.35, "present": 0.65},
                "pigment_network": {"absent": 0.2, "typical": 0.3, "atypical": 0.5}}
    text = prediction_tab.headline(ex, {})
    assert "- blue whitish veil: **present** (65%)" in text and "- pigment network: **atypical** (50%)" in text


def test_ablation_sentence_says_when_the_decision_is_not_the_most_probable_class(analysed):
    session, _ = analysed
    ex = session.explanation
    rows = [dict(r) for r in ex.ablation]
    low = min(rows[-1]["probabilities"], key=rows[-1]["probabilities"].get)
    rows[-1]["prediction"] = low  # as the prevalence rule may pick a rare class
    fake = session.with_(explanation=type(ex)(**{**ex.__dict__, "ablation": rows}))
    only = rows[-1]["modalities"]
    text = ablation_tab.toggled(fake, *(m in only for m in ("dermoscopic", "clinical", "metadata")))[0]
    assert "most probable:" in text and "prevalence-adjusted rule" in text


def test_about_tab_follows_the_entry_in_use_and_words_the_split(app, analysed):
    session, _ = analysed
    views = app.render_views(session.with_(entry="tri_jf"))
    assert any(isinstance(v, str) and "Demo jf/concat" in v for v in views)
    words = about_tab.split_words({"description": "grouped by patient_id", "sizes": {"train": 3, "val": 1, "test": 1}})
    assert words == "split grouped by patient_id (train 3 / val 1 / test 1)" and "{" not in words


def test_compare_defaults_to_the_analysed_entrys_dataset(tmp_path):
    make_demo_entry(tmp_path, "tri", image_size=SIZE)
    make_demo_entry(tmp_path, "pad", image_size=SIZE, dataset="pad-ufes-20", modalities=("clinical", "metadata"))
    demo, ctx = build_app(tmp_path, default_entry="tri")
    views = ctx.render_views(Session(entry="pad"))
    assert any(isinstance(v, dict) and v.get("value") == "pad-ufes-20" for v in views)


def test_no_internal_case_id_reaches_a_user(app):
    with app.cache.use("tri_jiadf") as entry:
        from skinui.ui.inputs import CaseInputs, build_case

        with pytest.raises(ValueError) as err:
            entry.predict([build_case(entry, CaseInputs({}, {}))])
    assert "This case carries none" in str(err.value) and "app-case" not in str(err.value)


def test_real_example_cases_load_with_their_attribution(tmp_path):
    from skinui.examples import REAL_EXAMPLES, load_real_example

    assert 1 <= len(REAL_EXAMPLES) <= 6  # the data README allows six at most
    assert {r["dataset"] for r in REAL_EXAMPLES} == {"ham10000", "pad-ufes-20"}
    leak_free = [set(r["metadata"]) & {"dx_type", "biopsed", "diagnostic", "smoke", "gender"} for r in REAL_EXAMPLES]
    assert leak_free == [set()] * len(REAL_EXAMPLES)  # only the datasets' clinical input fields
    make_demo_entry(tmp_path, "ham_demo", dataset="ham10000", modalities=("dermoscopic", "metadata"), image_size=SIZE)
    demo, ctx = build_app(tmp_path)
    i = next(k for k, r in enumerate(REAL_EXAMPLES) if r["dataset"] == "ham10000")
    out = case_tab.example_outputs(ctx, i, real=True)
    ex = load_real_example(i)
    assert out[0] is ex.images["dermoscopic"] and out[1] is None  # a dermoscopic case: no clinical image
    assert out[4]["value"] == "ham_demo" and "CC BY-NC-SA 4.0" in out[6] and "Tschandl" in out[6]
    age = [s.name for s in ctx.form.fields].index("age")
    assert out[7 + age] == f"{ex.metadata['age']:g}"


def test_case_report_is_one_self_contained_file_with_every_part(app, analysed):
    from skinui.ui import case_report

    session, _ = analysed
    page = case_report.case_report_html(session, app.cache.card(session.entry))
    ex = session.explanation
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")  # offline, nothing fetched
    assert page.count("data:image/png;base64,") == 4  # two inputs + two Grad-CAM panels
    assert texts.NOTICE_SHORT in page and f"<b>{ex.prediction}</b>" in page and "Decision rule" in page
    assert "age</td><td>63" in page and "Modality ablation" in page and "integrated gradients" in page
    assert "app-case" not in page and "/tmp" not in page  # nothing identifying beyond what was typed
    assert "further head" not in page  # a single-task entry
    import dataclasses

    multi = session.with_(explanation=dataclasses.replace(ex, tasks={"streaks": {"absent": 0.2, "irregular": 0.8}}))
    page = case_report.case_report_html(multi, app.cache.card(session.entry))
    assert "streaks (further head, uncalibrated)" in page and "irregular" in page
    path = case_report.write_case_report(session, app.cache.card(session.entry))
    assert open(path, encoding="utf-8").read().startswith("<!doctype html>")
    button = prediction_tab.report_button(app, session)
    assert button["visible"] is True and button["value"].endswith(".html")
    assert prediction_tab.report_button(app, Session())["visible"] is False


def test_compare_warns_when_an_entry_lacks_an_input_the_case_does_not_give():
    card = {"modalities": ["dermoscopic", "clinical", "metadata"], "model": {"image_encoder": {"name": "x"}}}
    assert compare_tab.fit_words(card, ["dermoscopic", "metadata"]) == "⚠️ lacks clinical image (predicts without it)"


def test_gradcam_caption_reports_the_measured_localisation_of_the_layer_in_use():
    from skinui.ui import gradcam_tab
    from skinui.zoo import list_entries, load_entry

    cards = {c["name"]: c for c in list_entries()}
    synth = cards["synthderm_jf_concat"]
    cam = {"dermoscopic": np.random.default_rng(0).random((8, 8)).astype(np.float32)}
    text = gradcam_tab.caption("synthderm_jf_concat", "MEL", cam, synth)
    measured = synth["explain"]["localisation"]["dermoscopic"]["test"]
    assert f"| weight on the lesion (an even map · a blob in the middle) | {measured['energy_in_lesion']:.0%}" in text
    # "no more than" from the point estimates; "less than" once the card carries the interval of the difference
    assert "layer blocks.4" in text and ("no more than a blob in the middle" in text or "less than a blob" in text)
    assert "not measured" in gradcam_tab.caption("ham10000_image", "mel", cam, cards["ham10000_image"])
    # the card's choice is the layer the entry explains at
    enc = load_entry("synthderm_jf_concat").model.image_encoders["dermoscopic"]
    assert enc.target_layer is enc.net.blocks[4]
    pad = load_entry("pad_ufes20_image_gpu").model.image_encoders["clinical"]
    assert cards["pad_ufes20_image_gpu"]["explain"]["gradcam_layer"]["clinical"] == "bn2" and pad.target_layer is pad.net.bn2


def test_every_method_names_its_source_and_compare_rows_carry_it():
    from skinui.ui import texts

    for kind, table in (("fusion", texts.FUSION_TEXTS), ("structure", texts.STRUCTURE_TEXTS)):
        for name in table:
            assert texts.paper(kind, name), f"{kind} {name} has no source"
            assert "*Source:*" in texts.describe(kind, name)
    assert texts.paper("fusion", "metablock") == "Pacheco & Krohling 2021"
    assert "arXiv:2604.27343" in texts.describe("structure", "jiadf")
