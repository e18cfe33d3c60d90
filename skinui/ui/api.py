"""The named `predict` endpoint (DESIGN.md contract) for `gradio_client` users and scripts.

Inputs `(entry, dermoscopic, clinical, metadata_json)`; output
`{"entry", "probabilities", "prediction", "branch_weights", "warnings"}` plus the trust fields
`prediction_set` (conformal set, most probable first, or null), `set_coverage` (its guaranteed
coverage, e.g. 0.9), `set_mode` ("marginal": over all cases; "class": for each true diagnosis), `unusual` (image modality -> {score, threshold, unusual}, or null) and
`uncertainty` (measure -> {value, rank among validation cases}, or null); or `{"entry", "error"}`
with a sentence when the request cannot be answered. It never raises a traceback at the caller.
"""
from __future__ import annotations

import json
from typing import Any

import gradio as gr

from skinui.cases import ImageError
from skinui.ui.cards import card_structure
from skinui.ui.entries import SYNTHETIC, AppError, EntryCache
from skinui.ui.inputs import CaseInputs, build_case, ignored_notes
from skinui.ui.session import AppContext, UploadImage, shrink
from skinui.ui.uploads import delete_upload, read_upload


def parse_metadata(text: str | None) -> dict[str, Any]:
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise AppError(f"metadata_json is not valid JSON ({err.msg} at character {err.pos}); send an object "
                       'such as {"age": 55, "sex": "female"}.') from None
    except (ValueError, RecursionError):  # a number of over 4,300 digits, or nesting thousands deep
        raise AppError('metadata_json holds a number too long or nesting too deep to read; send a flat object '
                       'such as {"age": 55, "sex": "female"}.') from None
    if not isinstance(value, dict):  # worded as what to send: an error must say what to do
        raise AppError('metadata_json must be a JSON object; send one such as {"age": 55, "sex": "female"}.')
    return value


def _read_all(paths: dict[str, str | None]) -> dict[str, Any]:
    """Read every upload (each temp copy deleted even when another one fails)."""
    images, errors = {}, []
    try:
        for modality, path in paths.items():
            try:
                # deleted below, once all are read: gradio stores one file sent as both modalities
                # once, so deleting after the first read made the second one "not found"
                image = read_upload(path, delete=False)
                images[modality] = shrink(image) if image is not None else None
            except ImageError as err:
                errors.append(f"{modality} image: {err}")
    finally:
        for path in {p for p in paths.values() if p}:
            delete_upload(path)
    if errors:
        raise AppError(" ".join(errors))
    return images


def predict(cache: EntryCache, default: str | None, entry: str | None, dermoscopic: str | None,
            clinical: str | None, metadata_json: str | None) -> dict[str, Any]:
    """One prediction; user errors come back as `{"entry", "error"}`."""
    name = (entry or "").strip()
    notes: list[str] = []
    try:
        images = _read_all({"dermoscopic": dermoscopic, "clinical": clinical})
        inputs = CaseInputs(images, parse_metadata(metadata_json))
        if not name:  # the default follows the inputs: a real photo never goes to a synthetic-data model
            name = cache.default_for(inputs.present()) or default or ""
            if name and cache.card(name).get("dataset") == SYNTHETIC and any(
                    m in inputs.present() for m in ("dermoscopic", "clinical")):
                notes.append(f"No real-data entry reads this image, so the default {name} answered: it was trained "
                             f"on SynthDerm, SkinUI's synthetic benchmark, and says nothing about a real lesion.")
        if not name:
            raise AppError("No model entry is installed; put entries in the weights folder (see the Case tab).")
        card = cache.card(name)
        with cache.use(name) as loaded:
            result = loaded.predict([build_case(loaded, inputs)], tta=True)[0]
    except (AppError, ValueError) as err:
        # the echo is made UTF-8-safe: a name with a lone surrogate ("\ud800", sent escaped in JSON)
        # failed gradio's JSON encoding of the answer, a traceback in the log and a generic error
        echo = (name or default or "").encode("utf-8", "replace").decode("utf-8")
        return {"entry": echo, "error": str(err)}  # no entry chosen yet: the app default
    return {
        "entry": name,
        "probabilities": {k: float(v) for k, v in result.probabilities.items()},
        "prediction": result.prediction,
        "branch_weights": dict(result.branch_weights) if card_structure(card) == "jiadf" and result.branch_weights
        else None,
        "warnings": [*notes, *result.warnings, *ignored_notes(card, inputs.present())],
        "prediction_set": result.prediction_set,
        "set_coverage": result.set_coverage,
        "set_mode": result.set_mode,
        "unusual": result.unusual,
        "uncertainty": result.uncertainty,
    }


def build(ctx: AppContext) -> None:
    """Hidden components carrying the endpoint (files arrive as uploads, as for the UI)."""
    with gr.Row(visible=False):
        entry = gr.Textbox(label="entry")
        derm = UploadImage(label="dermoscopic")
        clin = UploadImage(label="clinical")
        meta = gr.Textbox(label="metadata_json")
        out = gr.JSON(label="result")
        button = gr.Button("predict")
    button.click(lambda e, d, c, m: predict(ctx.cache, ctx.default, e, d, c, m), [entry, derm, clin, meta], [out],
                 api_name="predict", api_description="Class probabilities for one case (see DESIGN.md).")
