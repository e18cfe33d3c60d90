"""Prediction tab: calibrated probabilities, top diagnosis, JIF / JI-ADF branches and weights alpha."""
from __future__ import annotations

from typing import Any

import gradio as gr

from skinui.trust.words import trust_markdown
from skinui.ui import figures, texts
from skinui.ui.cards import card_structure
from skinui.ui.session import AppContext, Session

BRANCH_WORDS = {"image": "the images", "joint": "the joint (image + metadata) features", "metadata": "the metadata"}


def class_names(ctx: AppContext, name: str | None) -> dict[str, str]:
    """Plain-language class names from the entry's card (or its dataset schema), when known."""
    if not name:
        return {}
    card = ctx.cache.card(name)
    names = card.get("class_names")
    if not names:
        try:
            from skinui.datasets import schema_for

            names = schema_for(str(card.get("dataset"))).class_names
        except Exception:  # an unknown dataset only costs the plain-language labels
            names = {}
    return dict(names or {})


def headline(ex: Any, names: dict[str, str], structure: str = "jiadf") -> str:
    label = names.get(ex.prediction, "")
    why = texts.decision_words(ex.probabilities, ex.prediction)
    if why:  # the decided class is not the most probable one: never show its number as the winner's
        top = max(ex.probabilities, key=ex.probabilities.get)
        text = (f"## {ex.prediction}{f' — {label}' if label else ''} (prevalence-adjusted decision)\n"
                f"P({ex.prediction}) = **{ex.confidence:.1%}** (calibrated); the most probable class is **{top}** "
                f"({ex.probabilities[top]:.1%}). {why}")
    else:
        text = f"## {ex.prediction}{f' — {label}' if label else ''}\nProbability **{ex.confidence:.1%}** (calibrated)"
    trust = trust_markdown(ex, names)
    if trust:
        text += f"\n\n{trust}"
    text += f"\n\n_{texts.NOTICE_SHORT}_"
    if ex.branch_weights and structure == "jiadf":  # adaptive: alpha is this case's own
        lead = max(ex.branch_weights, key=ex.branch_weights.get)
        parts = ", ".join(f"{b} {w:.2f}" for b, w in ex.branch_weights.items())
        text += (f"\n\nBranch weights α: {parts}. This decision leaned most on {BRANCH_WORDS.get(lead, lead)}.")
    elif ex.branch_weights:  # JIF: a fixed average, the same for every case; nothing to read into it
        present = [BRANCH_WORDS.get(b, b) for b, w in ex.branch_weights.items() if w > 0]
        text += (f"\n\nThis joint-individual entry averages its branches ({', '.join(present)}) with fixed, equal "
                 f"weights; only JI-ADF weighs them per case.")
    text += task_lines(getattr(ex, "tasks", None))
    return text


def task_lines(tasks: dict[str, dict[str, float]] | None) -> str:
    """A multi-task entry's further answers (FusionM4Net on Derm7pt: the seven-point criteria), one line each:
    the most probable class and its probability, uncalibrated (only the diagnosis is calibrated)."""
    if not tasks:
        return ""
    rows = []
    for task, probs in tasks.items():
        top = max(probs, key=probs.get)
        rows.append(f"- {task.replace('_', ' ')}: **{top}** ({probs[top]:.0%})")
    return ("\n\nThis entry also reads these from the images (its further heads; uncalibrated probabilities):\n"
            + "\n".join(rows))


def render(ctx: AppContext, session: Session) -> list[Any]:
    """[headline markdown, probability figure, branch figure (visible only for JIF / JI-ADF)]."""
    ex = session.explanation
    if ex is None:
        return ["Analyse a case on the Case tab to see its prediction.", None, gr.update(value=None, visible=False)]
    names = class_names(ctx, session.entry)
    branch = figures.branch_figure(ex.branch_probabilities, ex.branch_weights, ex.prediction)
    structure = card_structure(ctx.cache.card(session.entry)) if session.entry else "jiadf"
    return [headline(ex, names, structure), figures.probability_figure(ex.probabilities, names, predicted=ex.prediction),
            gr.update(value=branch, visible=branch is not None)]


def build(ctx: AppContext) -> None:
    with gr.Tab("Prediction", id="prediction"):
        top = gr.Markdown("Analyse a case on the Case tab to see its prediction.", elem_id="prediction-headline")
        download = gr.DownloadButton("Download report (HTML)", visible=False, size="sm", elem_id="download-report")
        with gr.Row():
            # min_width: on a phone the two charts stack instead of squeezing each other to a strip
            probs = gr.Plot(label="Class probabilities", elem_id="prediction-probs", min_width=340, scale=3)
            branches = gr.Plot(label="Branches", visible=False, elem_id="prediction-branches", min_width=340, scale=2)
    ctx.add_view([top, probs, branches], lambda s: render(ctx, s))
    ctx.add_view([download], lambda s: [report_button(ctx, s)])


def report_button(ctx: AppContext, session: Session) -> Any:
    """The download of this analysis' case report (hidden until a case is analysed)."""
    if session.explanation is None or not session.entry:
        return gr.update(value=None, visible=False)
    from skinui.ui.case_report import write_case_report

    return gr.update(value=write_case_report(session, ctx.cache.card(session.entry)), visible=True)
