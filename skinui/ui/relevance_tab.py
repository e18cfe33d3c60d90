"""Feature relevance tab: which clinical fields drove a class (IG and grouped feature ablation)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from skinui.explain import METHOD_LABELS
from skinui.ui import figures
from skinui.ui.entries import AppError
from skinui.ui.session import AppContext, Session, encoded_case
from skinui.ui.texts import PREDICTED

BOTH = "both side by side"
EXPLAINER = (
    "Integrated Gradients (zero baseline, 50 steps) integrates the gradient from an all-zero encoded "
    "input to this case; feature ablation replaces one field at a time by *unknown* and measures the "
    "change. Each bar sums a field's one-hot and missingness columns and is divided by the largest "
    "magnitude; green pushes towards the class, red away from it."
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


def render(ctx: AppContext, session: Session) -> list[Any]:
    """[class picker, note, one plot per method]."""
    ex = session.explanation
    classes = ex.classes if ex is not None else []
    picker = gr.update(choices=[PREDICTED, *classes], value=PREDICTED)
    scores = ex.relevance if ex is not None else {}
    raw = ex.relevance_raw if ex is not None else {}
    return [picker, note_for(session), *plots_for(scores, ex.target if ex else "", BOTH, raw, session.metadata)]


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
    return [" ".join(t for t in (note_for(session), disagreement(scores)) if t and t not in note_for(session)) or
            note_for(session), *plots_for(scores, target, mode, raw, session.metadata)]


def build(ctx: AppContext, session_state: gr.State) -> None:
    with gr.Tab("Feature relevance", id="relevance"):
        with gr.Row():
            picker = gr.Dropdown([PREDICTED], value=PREDICTED, label="Relevance for class", elem_id="rel-class")
            mode = gr.Radio([BOTH, *(METHOD_LABELS.get(m, m) for m in list(METHOD_LABELS))], value=BOTH,
                            label="Method", elem_id="rel-method")
        note = gr.Markdown(elem_id="rel-note")
        with gr.Row():
            plots = [gr.Plot(label=METHOD_LABELS.get(m, m), elem_id=f"rel-{m}") for m in list(METHOD_LABELS)]
    ctx.add_view([picker, note, *plots], lambda s: render(ctx, s))
    for control in (picker.input, mode.input):
        control(lambda ch, md, s: on_change(ctx, ch, md, s), [picker, mode, session_state], [note, *plots],
                api_visibility="private")
