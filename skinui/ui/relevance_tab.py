"""Feature relevance tab: which clinical fields drove a class (IG and grouped feature ablation)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from skinui.explain import METHOD_LABELS, quality
from skinui.ui import figures, texts, whatif
from skinui.ui.entries import AppError
from skinui.ui.session import AppContext, Session, encoded_case
from skinui.ui.texts import PREDICTED

BOTH = "all side by side"
EXPLAINER = (
    "Integrated Gradients (zero baseline, 50 steps) integrates the gradient from an all-zero encoded "
    "input to this case; feature ablation replaces one field at a time by *unknown* and measures the "
    "change; Shapley value sampling averages that change over random orders of the fields, so fields "
    "that only matter together share the credit. Each bar sums a field's one-hot and missingness columns "
    "and is divided by the largest magnitude; green pushes towards the class, red away from it. On "
    "SynthDerm, where the truth is known, Integrated Gradients ranks the fields best (docs/EXPLANATIONS.md)."
)


def plots_for(scores: dict[str, dict[str, float]], target: str, mode: str,
              raw: dict[str, dict[str, float]] | None = None, typed: dict[str, Any] | None = None) -> list[Any]:
    """One plot update per registered method (visible per `mode`)."""
    out = []
    for method in list(METHOD_LABELS):
        label = METHOD_LABELS.get(method, method)
        show = mode in (BOTH, label) and bool(scores.get(method))
        fig = figures.relevance_figure(scores[method], f"{label}: fields for {target}", raw=(raw or {}).get(method),
                                       values_typed=typed) if scores.get(method) else None
        out.append(gr.update(value=fig, visible=show))
    return out


def disagreement(scores: dict[str, dict[str, float]]) -> str:
    """A sentence when the methods name different top fields (then neither ranking deserves much trust)."""
    tops = {METHOD_LABELS.get(m, m): max(s, key=lambda k: abs(s[k])) for m, s in scores.items() if any(s.values())}
    if len(set(tops.values())) <= 1:
        return ""
    return ("The methods disagree on the most relevant field (" + "; ".join(f"{m}: {f}" for m, f in tops.items())
            + "): read the ranking as uncertain.")


def note_for(session: Session) -> str:
    ex = session.explanation
    if ex is None:
        return "Analyse a case to see which clinical fields drove the prediction."
    if not ex.relevance:
        return f"{session.entry} takes no metadata, so there is no field relevance to show."
    if all(v == 0 for scores in ex.relevance.values() for v in scores.values()):
        return "All relevances are zero: this case has no metadata (or the model ignores it), so no field drove it."
    return " ".join(t for t in (EXPLAINER, disagreement(ex.relevance)) if t)


def shown_methods(mode: str) -> list[str]:
    """The relevance methods a mode shows (all of them side by side, or one)."""
    return [m for m in METHOD_LABELS if mode in (BOTH, METHOD_LABELS[m])]


def measured(ctx: AppContext, session: Session, mode: str) -> str:
    """The analysed entry's measured relevance quality for the methods shown (or why there is none)."""
    if session.explanation is None or not session.explanation.relevance or not session.entry:
        return ""
    try:
        return quality.relevance_sentence(ctx.cache.card(session.entry), shown_methods(mode))
    except AppError:
        return ""


def with_measured(note: str, ctx: AppContext, session: Session, mode: str) -> str:
    return "\n\n".join(t for t in (note, measured(ctx, session, mode)) if t)


def render(ctx: AppContext, session: Session) -> list[Any]:
    """[class picker, note (with the entry's measured relevance quality), one plot per method]."""
    ex = session.explanation
    classes = ex.classes if ex is not None else []
    picker = gr.update(choices=[PREDICTED, *classes], value=PREDICTED)
    scores = ex.relevance if ex is not None else {}
    raw = ex.relevance_raw if ex is not None else {}
    return [picker, with_measured(note_for(session), ctx, session, BOTH),
            *plots_for(scores, ex.target if ex else "", BOTH, raw, session.metadata)]


def on_change(ctx: AppContext, choice: str, mode: str, session: Session) -> list[Any]:
    ex = session.explanation
    if ex is None or not ex.relevance:
        return [note_for(session), *plots_for({}, "", mode)]
    from skinui.explain import relevance, resolve_target
    from skinui.explain.core import normalise_signed

    try:
        with encoded_case(ctx.cache, session, session.entry) as enc:
            t = resolve_target(enc, None if choice == PREDICTED else choice)
            raw = {m: relevance(enc, m, t, scaled=False) for m in METHOD_LABELS}
            scores = {m: normalise_signed(s) for m, s in raw.items()}
            target = enc.classes[t]
    except (AppError, ValueError) as err:
        return [f"⚠️ {err}", *plots_for({}, "", mode)]
    note = " ".join(t for t in (note_for(session), disagreement(scores)) if t and t not in note_for(session)) or \
        note_for(session)
    return [with_measured(note, ctx, session, mode), *plots_for(scores, target, mode, raw, session.metadata)]


# -- What if? (one metadata field changed, the image features reused) ---------------------------------

def control_updates(c: whatif.Control | None) -> list[Any]:
    """[slider, unknown checkbox, choice dropdown] for a field's value control (hidden when None)."""
    if c is None:
        return [gr.update(visible=False)] * 3
    if c.kind == "numeric":
        return [gr.update(minimum=c.minimum, maximum=c.maximum, step=c.step, value=c.number, visible=True),
                gr.update(value=c.unknown, visible=True), gr.update(visible=False)]
    return [gr.update(visible=False), gr.update(value=False, visible=False),
            gr.update(choices=c.choices, value=c.choice, visible=True)]


def what_if_reset(ctx: AppContext, session: Session, name: str | None) -> list[Any]:
    """[slider, unknown, choice, sentence, plot] of field `name` at its value as analysed (the baseline)."""
    if session.explanation is None or not session.entry:
        return [*control_updates(None), texts.WHATIF_BEFORE, gr.update(value=None, visible=False)]
    try:
        with encoded_case(ctx.cache, session, session.entry) as enc:
            fields = [f.name for f in whatif.fields_of(enc.entry)]
            if not fields:
                return [*control_updates(None), texts.WHATIF_NO_METADATA.format(entry=enc.entry.name),
                        gr.update(value=None, visible=False)]
            name = name if name in fields else fields[0]
            c = whatif.control(enc.entry, name, whatif.baseline_values(enc).get(name))
            sentence, fig = whatif.baseline_view(enc, name)
    except (AppError, ValueError) as err:
        return [*control_updates(None), f"⚠️ {err}", gr.update(value=None, visible=False)]
    return [*control_updates(c), sentence, gr.update(value=fig, visible=True)]


def what_if_render(ctx: AppContext, session: Session) -> list[Any]:
    """[field picker, slider, unknown, choice, back button, sentence, plot] after an analysis."""
    choices: list[tuple[str, str]] = []
    if session.explanation is not None and session.entry:
        try:
            with ctx.cache.use(session.entry) as entry:
                choices = whatif.field_choices(entry)
        except AppError:
            choices = []
    first = choices[0][1] if choices else None
    picker = gr.update(choices=choices, value=first, visible=bool(choices))
    slider, unknown, choice, sentence, plot = what_if_reset(ctx, session, first)
    return [picker, slider, unknown, choice, gr.update(visible=bool(choices)), sentence, plot]


def what_if_change(ctx: AppContext, session: Session, name: str | None, value: Any) -> list[Any]:
    """[sentence, plot] with field `name` set to `value`; a sentence (never a traceback) when it cannot be used."""
    if session.explanation is None or not session.entry:
        return [texts.WHATIF_BEFORE, gr.update(value=None, visible=False)]
    try:
        with encoded_case(ctx.cache, session, session.entry) as enc:
            sentence, fig = whatif.view(enc, name, value)
    except (AppError, ValueError) as err:
        return [f"⚠️ {err}", gr.update()]
    return [sentence, gr.update(value=fig, visible=True)]


def build_what_if(ctx: AppContext, session_state: gr.State) -> list[Any]:
    """The what-if block (inside the relevance tab) and its events; returns the view's outputs."""
    gr.Markdown(texts.WHATIF_INTRO)
    with gr.Row(equal_height=True):
        field = gr.Dropdown([], label="Field", elem_id="whatif-field", visible=False, scale=2)
        slider = gr.Slider(0, 120, value=0, step=1, label="Value", elem_id="whatif-slider", visible=False, scale=3,
                           buttons=[])
        unknown = gr.Checkbox(value=False, label="unknown", elem_id="whatif-unknown", visible=False, scale=1)
        choice = gr.Dropdown([whatif.UNKNOWN], value=whatif.UNKNOWN, label="Value", elem_id="whatif-choice",
                             visible=False, scale=3)
        back = gr.Button(texts.WHATIF_BACK, elem_id="whatif-reset", visible=False, scale=1)
    sentence = gr.Markdown(texts.WHATIF_BEFORE, elem_id="whatif-text")
    plot = gr.Plot(label="As analysed and what if", elem_id="whatif-plot", visible=False)
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    for trigger in (field.input, back.click):
        trigger(lambda s, f: what_if_reset(ctx, s, f), [session_state, field], [slider, unknown, choice, sentence, plot],
                **quiet)
    # slider: on release (drag end, or a typed number on leaving the box); moving it clears "unknown"
    slider.release(lambda s, f, v: [False, *what_if_change(ctx, s, f, v)], [session_state, field, slider],
                   [unknown, sentence, plot], **quiet)
    unknown.input(lambda s, f, v, u: what_if_change(ctx, s, f, None if u else v), [session_state, field, slider, unknown],
                  [sentence, plot], **quiet)
    choice.input(lambda s, f, v: what_if_change(ctx, s, f, v), [session_state, field, choice], [sentence, plot],
                 **quiet)
    return [field, slider, unknown, choice, back, sentence, plot]


def build(ctx: AppContext, session_state: gr.State) -> None:
    with gr.Tab("Feature relevance", id="relevance"):
        with gr.Row():
            picker = gr.Dropdown([PREDICTED], value=PREDICTED, label="Relevance for class", elem_id="rel-class")
            mode = gr.Radio([BOTH, *(METHOD_LABELS.get(m, m) for m in list(METHOD_LABELS))], value=BOTH,
                            label="Method", elem_id="rel-method")
        note = gr.Markdown(elem_id="rel-note")
        with gr.Row():
            plots = [gr.Plot(label=METHOD_LABELS.get(m, m), elem_id=f"rel-{m}") for m in list(METHOD_LABELS)]
        what_if_outputs = build_what_if(ctx, session_state)
    ctx.add_view([picker, note, *plots], lambda s: render(ctx, s))
    ctx.add_view(what_if_outputs, lambda s: what_if_render(ctx, s))
    for control in (picker.input, mode.input):
        control(lambda ch, md, s: on_change(ctx, ch, md, s), [picker, mode, session_state], [note, *plots],
                api_visibility="private")
