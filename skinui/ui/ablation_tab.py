"""Modality ablation tab: switch inputs off and see the prediction at once; every subset in a table.

All subsets are computed with the analysis (one batched head pass), so a toggle is a table lookup.
"""
from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from skinui.ui import figures, texts
from skinui.ui.session import AppContext, Session
from skinui.vocabulary import MODALITIES, MODALITY_TITLES, SHORT


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{"inputs": r["subset"], "prediction": r["prediction"], "confidence": round(r["confidence"], 3),
                          "note": "" if r["complete"] else "case lacks an input of this subset"} for r in rows],
                        columns=["inputs", "prediction", "confidence", "note"])


def pick(rows: list[dict[str, Any]], enabled: list[str]) -> dict[str, Any] | None:
    """The ablation row for the enabled modalities (restricted to the entry's own)."""
    for r in rows:
        if set(r["modalities"]) == set(enabled):
            return r
    return None


def toggled(session: Session, d: bool, c: bool, m: bool) -> list[Any]:
    """[sentence, probability figure] for the switched-on inputs."""
    ex = session.explanation
    if ex is None:
        return ["Analyse a case first; then switch inputs off here.", None]
    wanted = [mod for mod, on in zip(MODALITIES, (d, c, m)) if on]
    used = [mod for mod in wanted if any(mod in r["modalities"] for r in ex.ablation)]
    row = pick(ex.ablation, used)
    if row is None:
        return ["Switch on at least one input this entry uses.", None]
    ignored = [mod for mod in wanted if mod not in used]
    text = (f"With **{row['subset']}**: {texts.decision_headline(row['probabilities'], row['prediction'])} "
            f"(all inputs: {texts.decision_headline(ex.probabilities, ex.prediction)}).")
    if texts.decision_words(row["probabilities"], row["prediction"]):
        text += (" The decided class is not the most probable one: the prevalence-adjusted rule picks the class "
                 "whose probability is highest relative to how common it is.")
    if not row["complete"]:
        text += " The case itself lacks one of these inputs, so that branch uses the model's missing embedding."
    if ignored:
        text += f" This entry does not use {', '.join(ignored)}."
    return [text, figures.probability_figure(row["probabilities"], title=f"Probabilities with {row['subset']}",
                                         predicted=row["prediction"])]


def render(ctx: AppContext, session: Session) -> list[Any]:
    """[toggle x3 (reset on), sentence, probability figure, table, subset figure]."""
    ex = session.explanation
    resets = [gr.update(value=True) for _ in MODALITIES]
    if ex is None:
        return [*resets, *toggled(session, True, True, True), None, None]
    return [*resets, *toggled(session, True, True, True), table(ex.ablation),
            figures.ablation_figure(ex.ablation, ex.prediction)]


def build(ctx: AppContext, session_state: gr.State) -> None:
    with gr.Tab("Modality ablation", id="ablation"):
        with gr.Row():
            toggles = [gr.Checkbox(value=True, label=f"{MODALITY_TITLES[m]} ({SHORT[m]})", elem_id=f"toggle-{m}")
                       for m in MODALITIES]
        text = gr.Markdown(elem_id="ablation-text")
        with gr.Row():
            probs = gr.Plot(label="Prediction with the chosen inputs", elem_id="ablation-probs")
            subsets = gr.Plot(label="Every subset", elem_id="ablation-subsets")
        frame = gr.Dataframe(label="Every subset of inputs for this case", interactive=False, elem_id="ablation-table")
    ctx.add_view([*toggles, text, probs, frame, subsets], lambda s: render(ctx, s))
    for t in toggles:
        t.input(lambda s, d, c, m: toggled(s, d, c, m), [session_state, *toggles], [text, probs],
                api_visibility="private")
