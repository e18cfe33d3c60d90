"""Calibration tab: the entry's reliability diagram and ECE before/after temperature, this case marked."""
from __future__ import annotations

from typing import Any

import gradio as gr

from skinui.ui import figures
from skinui.ui.session import AppContext, Session


def bin_of(bins: list[dict[str, Any]], confidence: float) -> dict[str, Any] | None:
    for b in bins:
        if b["lower"] < confidence <= b["upper"] or (b["lower"] == 0 and confidence == 0):
            return b
    return None


def summary(calibration: dict[str, Any] | None, confidence: float | None) -> str:
    if not calibration:
        return "This entry's model card has no calibration data, so its confidence has not been checked."
    t, e, ec = calibration.get("temperature"), calibration.get("ece"), calibration.get("ece_calibrated")
    lines = [f"Temperature **T = {t:.2f}** (fitted on the validation split)." if t else "No temperature.",
             f"Expected calibration error (ECE: the average gap between the confidence the model states and "
             f"how often it is right) on the test split: **{e:.3f}** before, **{ec:.3f}** after "
             f"temperature scaling." if e is not None and ec is not None else ""]
    floor, n = calibration.get("ece_floor"), sum(b.get("count", 0) for b in calibration.get("bins_calibrated") or [])
    if floor is not None and n:
        lines.append(f"On {n} test cases even perfectly calibrated probabilities would measure an ECE of about "
                     f"**{floor:.3f}** (sampling noise alone), so differences below that are not evidence.")
    if confidence is not None:
        b = bin_of(calibration.get("bins_calibrated") or calibration.get("bins") or [], confidence)
        if b and b.get("count"):
            lines.append(f"This case's confidence is {confidence:.0%}. On the test split, cases with confidence "
                         f"{b['lower']:.0%}–{b['upper']:.0%} were right {b['accuracy']:.0%} of the time "
                         f"({b['count']} cases).")
        else:
            lines.append(f"This case's confidence is {confidence:.0%}; no test case had a confidence in that range, "
                         "so there is no evidence of how reliable it is.")
    return "\n\n".join(line for line in lines if line)


def render(ctx: AppContext, session: Session) -> list[Any]:
    if not session.entry:
        return ["Analyse a case to see how far its confidence can be trusted.", None]
    calibration = ctx.cache.card(session.entry).get("calibration")
    confidence = session.explanation.confidence if session.explanation is not None else None
    return [summary(calibration, confidence), figures.reliability_figure(calibration, confidence)]


def build(ctx: AppContext) -> None:
    with gr.Tab("Calibration", id="calibration"):
        text = gr.Markdown("Analyse a case to see how far its confidence can be trusted.", elem_id="calibration-text")
        plot = gr.Plot(label="Reliability diagram", elem_id="calibration-plot")
    ctx.add_view([text, plot], lambda s: render(ctx, s))
