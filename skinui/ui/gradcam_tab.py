"""Grad-CAM tab: heatmaps on both images, any class, adjustable opacity, optional second entry."""
from __future__ import annotations

from typing import Any

import gradio as gr

from skinui.cases import IMAGE_MODALITIES
from skinui.ui import figures
from skinui.ui.entries import AppError
from skinui.ui.session import AppContext, Session, encoded_case
from skinui.ui.texts import PREDICTED

NONE = "none"


def compute_cams(ctx: AppContext, name: str, session: Session, target: str | None) -> tuple[str, dict[str, Any]]:
    """(class explained, {modality: heatmap}) for entry `name` on the session's case."""
    from skinui.explain import gradcams, resolve_target

    with encoded_case(ctx.cache, session, name) as enc:
        t = resolve_target(enc, target if target in enc.classes else None)
        return enc.classes[t], gradcams(enc, t)


def overlays(session: Session, cams: dict[str, Any], opacity: float) -> list[Any]:
    return [figures.overlay(session.images[m], cams.get(m), opacity) if session.images.get(m) is not None else None
            for m in IMAGE_MODALITIES]


def caption(name: str | None, target: str | None, cams: dict[str, Any]) -> str:
    if not name:
        return ""
    if not cams:
        return f"{name}: no image branch to explain on this case (no image given, or the entry takes none)."
    return f"**{name}**: where the model looked for **{target}** (red = more weight)."


def render(ctx: AppContext, session: Session, opacity: float = 0.5) -> list[Any]:
    """[class picker, caption, dermoscopic, clinical, compare caption, compare dermoscopic, compare clinical]."""
    classes = session.explanation.classes if session.explanation is not None else []
    picker = gr.update(choices=[PREDICTED, *classes], value=PREDICTED)
    main = [caption(session.entry, session.cam_target, session.cams), *overlays(session, session.cams, opacity)]
    cmp = session.compare or {}
    second = [caption(cmp.get("entry"), cmp.get("target"), cmp.get("cams", {})),
              *overlays(session, cmp.get("cams", {}), opacity)] if cmp else ["", None, None]
    return [picker, *main, second[0], *[gr.update(value=v, visible=bool(cmp)) for v in second[1:]]]


def on_class(ctx: AppContext, choice: str, opacity: float, session: Session) -> list[Any]:
    if session.explanation is None:
        return [session, "Analyse a case first.", None, None]
    target = None if choice == PREDICTED else choice
    try:
        label, cams = compute_cams(ctx, session.entry, session, target)
    except (AppError, ValueError) as err:
        return [session, f"⚠️ {err}", None, None]
    session = session.with_(cams=cams, cam_target=label)
    return [session, caption(session.entry, label, cams), *overlays(session, cams, opacity)]


def on_compare(ctx: AppContext, other: str, choice: str, opacity: float, session: Session) -> list[Any]:
    hidden = [gr.update(value=None, visible=False)] * len(IMAGE_MODALITIES)
    if other in (None, "", NONE) or session.explanation is None:
        return [session.with_(compare=None), "", *hidden]
    try:
        label, cams = compute_cams(ctx, other, session, None if choice == PREDICTED else choice)
    except (AppError, ValueError) as err:
        return [session, f"⚠️ {err}", *hidden]
    session = session.with_(compare={"entry": other, "target": label, "cams": cams})
    return [session, caption(other, label, cams),
            *[gr.update(value=v, visible=True) for v in overlays(session, cams, opacity)]]


def build(ctx: AppContext, session_state: gr.State) -> None:
    with gr.Tab("Grad-CAM", id="gradcam"):
        with gr.Row():
            picker = gr.Dropdown([PREDICTED], value=PREDICTED, label="Explain class", elem_id="cam-class")
            opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Heatmap opacity", elem_id="cam-opacity")
            other = gr.Dropdown([NONE, *ctx.cache.names()], value=NONE, label="Compare with a second entry",
                                elem_id="cam-compare")
        cap = gr.Markdown(elem_id="cam-caption")
        with gr.Row():
            images = [gr.Image(label=f"{m.capitalize()} + Grad-CAM", format="png", interactive=False, height=300,
                               elem_id=f"cam-{m}") for m in IMAGE_MODALITIES]
        cap2 = gr.Markdown(elem_id="cam-compare-caption")
        with gr.Row():
            images2 = [gr.Image(label=f"{m.capitalize()} (second entry)", format="png", interactive=False,
                                height=300, visible=False, elem_id=f"cam2-{m}") for m in IMAGE_MODALITIES]
    ctx.add_view([picker, cap, *images, cap2, *images2], lambda s: render(ctx, s))
    picker.input(lambda ch, op, s: on_class(ctx, ch, op, s), [picker, opacity, session_state],
                 [session_state, cap, *images], api_visibility="private")
    other.change(lambda o, ch, op, s: on_compare(ctx, o, ch, op, s), [other, picker, opacity, session_state],
                 [session_state, cap2, *images2], api_visibility="private")
    opacity.release(lambda op, s: render(ctx, s, op)[1:], [opacity, session_state],
                    [cap, *images, cap2, *images2], api_visibility="private")
