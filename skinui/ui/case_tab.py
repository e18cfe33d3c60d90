"""Case tab: the two images, the metadata form, the model picker, example cases, Analyse."""
from __future__ import annotations

from typing import Any

import gradio as gr

from skinui import evidence
from skinui.cases import ImageError
from skinui.examples import EXAMPLES, REAL_EXAMPLES, load_example, load_real_example
from skinui.ui import texts
from skinui.ui.cards import (
    card_fusion,
    card_structure,
    entry_label,
    headline_metrics,
    short_modalities,
    usable_modalities,
)
from skinui.ui.entries import AppError, EntryCache
from skinui.ui.form import to_form
from skinui.ui.inputs import ignored_notes, modality_notes
from skinui.ui.session import AppContext, Session, UploadImage, encoded_case, shrink
from skinui.ui.uploads import PREVIEW_GRACE_S, read_upload
from skinui.vocabulary import IMAGE_MODALITIES, MODALITY_TITLES

INPUT_NAMES = {"dermoscopic": "a dermoscopic image", "clinical": "a clinical close-up",
               "metadata": "the patient metadata of the {dataset} form"}


def broken_markdown(cache: EntryCache) -> str:
    """The folder's broken entries and why, or '' when every entry is sound."""
    lines = cache.broken_lines()
    if not lines:
        return ""
    return ("⚠️ **Broken entries in the weights folder** (not offered until fixed):\n\n"
            + "\n".join(f"- {line}" for line in lines))


def entries_markdown(cache: EntryCache) -> str:
    """Every installed entry grouped by dataset (then the broken ones), or how to get entries."""
    broken = broken_markdown(cache)
    if not cache.cards:
        msg = texts.HOW_TO_GET_ENTRIES.format(weights=cache.weights_dir)
        msg = f"{cache.listing_error}\n\n{msg}" if cache.listing_error else msg
        return f"{msg}\n\n{broken}" if broken else msg
    lines, dataset = [], None
    for card in cache.cards:
        if card.get("dataset") != dataset:
            dataset = card.get("dataset")
            lines += ["", f"**{dataset}**", "", "| entry | inputs | fusion | structure | test metrics |",
                      "|---|---|---|---|---|"]
        lines.append(f"| {card['name']} | {short_modalities(card.get('modalities', []))} | {card_fusion(card)} | "
                     f"{card_structure(card)} | {headline_metrics(card)} |")
    if broken:
        lines += ["", broken]
    return "\n".join(lines).strip()


def present_images(*images: Any) -> list[str]:
    """Image modalities given, from the per-modality image states (in IMAGE_MODALITIES order)."""
    return [m for m, image in zip(IMAGE_MODALITIES, images) if image is not None]


def entry_info(cache: EntryCache, name: str | None, images: list[str]) -> tuple[str, str]:
    """(entry summary, what happens with this case's modalities) for the picker."""
    if not name:
        return "No entry selected.", ""
    try:
        card = cache.card(name)
    except AppError as err:
        return str(err), ""
    summary = (f"**{card.get('title') or name}** — dataset *{card.get('dataset')}*, inputs "
               f"{', '.join(card.get('modalities', []))}; fusion `{card_fusion(card)}`, structure "
               f"`{card_structure(card)}`; {headline_metrics(card)}. Classes: {', '.join(card.get('classes', []))}.")
    # metadata counts as given: the form is right there (the analysis itself words what is missing)
    notes = modality_notes(card, [*images, "metadata"])
    return summary, "\n\n".join(notes + ([texts.MISSING_MODALITY] if notes else []))


def on_upload(path: str | None, modality: str) -> tuple[Any, Any, str]:
    """Validate an upload into (display, kept pixels, status); gradio's temp copy is deleted.

    Each image modality has its own state, so two uploads finishing together cannot overwrite
    each other's result.
    """
    try:
        image = read_upload(path, delay_s=PREVIEW_GRACE_S)  # the browser is still fetching its preview
    except ImageError as err:
        return None, None, f"⚠️ {MODALITY_TITLES[modality]}: {err}"
    if image is None:
        return None, None, ""
    kept = shrink(image)
    return kept, kept, f"{MODALITY_TITLES[modality]} loaded ({image.shape[1]}×{image.shape[0]} px)."


def analyse_session(ctx: AppContext, name: str | None, session: Session, images: dict[str, Any],
                    form_values: list[Any]) -> tuple[Session, str]:
    """Run the full explanation of the case (these images, the form) with entry `name`."""
    from skinui.explain import explain_case

    session = session.with_(images={m: images.get(m) for m in IMAGE_MODALITIES}, encoded={})
    if not name:
        return session, "No model entry is installed or selected; see the list of entries below."
    raw = ctx.form.raw_values(name, form_values)
    session = session.with_(metadata=raw)
    card = ctx.cache.card(name)
    usable = usable_modalities(card)
    if not any(m in session.inputs().present() for m in usable):
        wanted = [INPUT_NAMES[m].format(dataset=card.get("dataset")) for m in usable]
        what = " or ".join(wanted) if wanted else "nothing an upload or the form can give (see its model card)"
        return session, (f"Add an image or some metadata first: {name} reads {what}, and this case has none "
                         f"of that yet. Then press Analyse.")
    with encoded_case(ctx.cache, session, name) as enc:
        explanation = explain_case(enc)
    warnings = ignored_notes(card, session.inputs().present()) + explanation.warnings
    session = session.with_(entry=name, explanation=explanation, cams=explanation.cams,
                            cam_target=explanation.target, compare=None, warnings=warnings)
    status = (f"{texts.decision_headline(explanation.probabilities, explanation.prediction)} ({name}); "
              f"analysed in {explanation.seconds['total']:.2f} s. Open the other tabs for the explanations.")
    if warnings:
        status += "\n\n" + "\n".join(f"- ⚠️ {w}" for w in warnings)
    return session, status


def build(ctx: AppContext) -> None:
    c = ctx.components
    with gr.Tab("Case", id="case"):
        with gr.Row():
            for m in IMAGE_MODALITIES:
                c[m] = UploadImage(label=f"{MODALITY_TITLES[m]} (optional)", format="png", height=260,
                                   sources=["upload", "clipboard"], elem_id=f"input-{m}")
        # Each label sits above its buttons, not beside them: in a row it was squeezed into a
        # one-letter column on a phone.
        if EXAMPLES:
            gr.Markdown("**SynthDerm examples** (synthetic cases, one click):", elem_id="examples-label")
            with gr.Row():
                c["examples"] = [gr.Button(ex.title, size="sm", elem_id=f"example-{i}", min_width=120)
                                 for i, ex in enumerate(EXAMPLES)]
        if REAL_EXAMPLES:
            gr.Markdown("**Real cases** (development data, test split; HAM10000 CC BY-NC-SA 4.0, "
                        "PAD-UFES-20 CC BY 4.0; attribution in `skinui/examples/real/README.md`):",
                        elem_id="real-examples-label")
            with gr.Row():
                c["real_examples"] = [gr.Button(rec["title"], size="sm", elem_id=f"real-example-{i}", min_width=160)
                                      for i, rec in enumerate(REAL_EXAMPLES)]
        choices = [(entry_label(card), card["name"]) for card in ctx.cache.cards]
        c["entry"] = gr.Dropdown(choices, value=ctx.default, label="Model (zoo entry, grouped by dataset)",
                                 elem_id="entry-picker", interactive=bool(choices))
        summary, notes = entry_info(ctx.cache, ctx.default, [])
        c["entry_info"] = gr.Markdown(summary, elem_id="entry-info")
        c["notes"] = gr.Markdown(notes, elem_id="modality-notes")
        ctx.form.render(ctx.default)
        with gr.Row():
            c["analyse"] = gr.Button("Analyse", variant="primary", elem_id="analyse", scale=3)
            c["reset"] = gr.Button("Reset case", variant="secondary", elem_id="reset", scale=1)
        c["images"] = {m: gr.State(None) for m in IMAGE_MODALITIES}  # per session, one per modality
        c["entry_before"] = gr.State(ctx.default)  # the entry the form was last shown for
        c["status"] = gr.Markdown(elem_id="status")
        with gr.Accordion("Installed model entries", open=not ctx.cache.cards or bool(ctx.cache.broken)):
            gr.Markdown(entries_markdown(ctx.cache), elem_id="entries-table")


def wire(ctx: AppContext, session_state: gr.State) -> None:
    """Events of the Case tab; called after every tab registered its views."""
    c = ctx.components
    states = [c["images"][m] for m in IMAGE_MODALITIES]
    info_outputs = [c["entry_info"], c["notes"]]

    def info(name: str | None, *images: Any) -> tuple[str, str]:
        return entry_info(ctx.cache, name, present_images(*images))

    for m in IMAGE_MODALITIES:
        c[m].upload(lambda p, m=m: on_upload(p, m), [c[m]], [c[m], c["images"][m], c["status"]],
                    api_visibility="private").then(info, [c["entry"], *states], info_outputs, api_visibility="private")
        c[m].clear(lambda: None, None, [c["images"][m]], api_visibility="private").then(
            info, [c["entry"], *states], info_outputs, api_visibility="private")

    form_groups = list(ctx.form.groups.values())
    n_images = len(IMAGE_MODALITIES)

    def on_entry(name: str | None, before: str | None, *values: Any) -> list[Any]:
        """Show the entry's form (what the user typed for another dataset carries over) and its notes."""
        shown = ctx.form.visibility(name)
        carried = ctx.form.carry_over(before, name, values[n_images:])
        fields = [f if isinstance(v, dict) else {**f, "value": v}  # a dict is "leave the value"
                  for f, v in zip(shown[len(form_groups):], carried)]
        return [*info(name, *values[:n_images]), *shown[:len(form_groups)], *fields, name]

    outputs = [session_state, c["status"], *ctx.view_outputs]

    def analyse(name: str | None, session: Session, *values: Any) -> list[Any]:
        images = dict(zip(IMAGE_MODALITIES, values[:len(IMAGE_MODALITIES)]))
        try:
            session, status = analyse_session(ctx, name, session, images, list(values[len(IMAGE_MODALITIES):]))
        except (AppError, ValueError) as err:
            return [session, f"⚠️ {err}", *ctx.render_views(session)]
        return [session, status, *ctx.render_views(session)]

    inputs = [c["entry"], session_state, *states, *ctx.form.components]
    c["analyse"].click(analyse, inputs, outputs, api_visibility="private")
    # Switching the entry re-runs an analysis the user already asked for (after the form carried
    # over), so every tab stays consistent.
    c["entry"].change(on_entry, [c["entry"], c["entry_before"], *states, *ctx.form.components],
                      info_outputs + form_groups + ctx.form.components + [c["entry_before"]],
                      api_visibility="private").then(
        lambda name, s, *v: analyse(name, s, *v) if s.explanation is not None else [gr.skip()] * len(outputs),
        inputs, outputs, api_visibility="private")

    def reset() -> list[Any]:
        """A blank case: images, typed values and every result gone (the entry choice stays)."""
        fresh = Session()
        blank = [to_form(s.field, None) for s in ctx.form.fields]
        return [None, None, *[None] * len(states), *blank, fresh, "Case cleared: add images or metadata, then Analyse.",
                *ctx.render_views(fresh)]

    c["reset"].click(reset, None, [c["dermoscopic"], c["clinical"], *states, *ctx.form.components, session_state,
                                   c["status"], *ctx.view_outputs], api_visibility="private").then(
        info, [c["entry"], *states], info_outputs, api_visibility="private")

    example_targets = [c["dermoscopic"], c["clinical"], *states, c["entry"], c["entry_before"], c["status"],
                       *ctx.form.components]
    for i, button in enumerate(c.get("real_examples", [])):
        button.click(lambda i=i: example_outputs(ctx, i, real=True), None, example_targets,
                     api_visibility="private").then(info, [c["entry"], *states], info_outputs, api_visibility="private")
    for i, button in enumerate(c.get("examples", [])):
        button.click(lambda i=i: example_outputs(ctx, i), None,
                     [c["dermoscopic"], c["clinical"], *states, c["entry"], c["entry_before"], c["status"],
                      *ctx.form.components],
                     api_visibility="private").then(info, [c["entry"], *states], info_outputs, api_visibility="private")


def example_outputs(ctx: AppContext, index: int, real: bool = False) -> list[Any]:
    """Load example `index` (SynthDerm, or `real`): images, its metadata into its dataset's form, and
    an entry of that dataset (the app's default if it is one, else the best on validation)."""
    ex = load_real_example(index) if real else load_example(index)
    images = [ex.images.get(m) for m in IMAGE_MODALITIES]
    cards = [card for card in ctx.cache.cards if card.get("dataset") == ex.dataset and not card.get("leaky")]
    synth = [card["name"] for card in cards]
    chosen = (ctx.default if ctx.default in synth else evidence.best_on_validation(cards) or synth[0]) if synth else None
    # entry_before = the example's entry, so the switch does not carry other datasets' values into it
    entry, before = (gr.update(value=chosen), chosen) if chosen else (gr.update(), gr.skip())
    note = (f"Loaded {ex.title}: a real {ex.dataset} case ({ex.truth['licence']}; {ex.truth['citation']})"
            if real and synth else f"Loaded {ex.title}: a synthetic {ex.label} case." if synth else
            f"Loaded {ex.title}; no {ex.dataset} entry is installed, so its metadata cannot be used by the current model.")
    return [*images, *images, entry, before, note, *ctx.form.fill(ex.dataset, ex.metadata)]
