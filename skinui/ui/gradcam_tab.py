"""Grad-CAM tab: heatmaps on both images, any class, adjustable opacity, optional second entry."""
from __future__ import annotations

from typing import Any

import gradio as gr

from skinui.ui import figures
from skinui.ui.cards import pixel_modalities
from skinui.ui.entries import AppError
from skinui.ui.session import AppContext, Session, encoded_case
from skinui.ui.texts import PREDICTED
from skinui.vocabulary import IMAGE_MODALITIES, MODALITY_LABELS, MODALITY_TITLES

NONE = "none"


def compute_cams(ctx: AppContext, name: str, session: Session, target: str | None) -> tuple[str, dict[str, Any]]:
    """(class explained, {modality: heatmap}) for entry `name` on the session's case."""
    from skinui.explain import gradcams, resolve_target

    with encoded_case(ctx.cache, session, name) as enc:
        t = resolve_target(enc, target if target in enc.classes else None)
        return enc.classes[t], gradcams(enc, t)


def panels(ctx: AppContext, name: str | None, session: Session, cams: dict[str, Any], opacity: float) -> list[Any]:
    """One update per image modality: plain | overlay | colour scale, hidden where entry `name` reads no
    such image or the case has none."""
    reads = set(pixel_modalities(ctx.cache.card(name))) if name else set()
    out = []
    for m in IMAGE_MODALITIES:
        image = session.images.get(m)
        show = m in reads and image is not None
        out.append(gr.update(value=figures.cam_panel(image, cams.get(m), opacity) if show else None, visible=show))
    return out


def caption(name: str | None, target: str | None, cams: dict[str, Any], card: dict[str, Any] | None = None) -> str:
    if not name:
        return ""
    if not cams:
        return f"{name}: no image branch to explain on this case (no image given, or the entry takes none)."
    text = f"**{name}**: where the model looked for **{target}** (left: the image; right: red = more weight)."
    flat = [m for m, cam in cams.items() if figures.is_flat(cam)]
    if flat:
        text += (f" The {' and '.join(flat)} map is flat: no region raises the score of {target} at the "
                 f"explained layer (common for a class the model finds unlikely), so nothing is highlighted.")
    return text + "".join(f" {localisation_sentence(card, m)}" for m in cams if card is not None)


def localisation_sentence(card: dict[str, Any], modality: str) -> str:
    """How well this entry's maps found the lesion on held-out cases with outlines (docs/EXPLANATIONS.md)."""
    explain = card.get("explain") or {}
    measured = (explain.get("localisation") or {}).get(modality)
    label = MODALITY_LABELS[modality]
    if not measured:
        return (f"How well these {label} maps find the lesion is not measured for this entry: its data has no "
                f"lesion outlines; read them as a rough pointer.")
    t, layer = measured["test"], explain["gradcam_layer"][modality]
    e = t["energy_in_lesion"]

    def than(x: float) -> str:
        return "more than" if e > x else "no more than"

    return (f"Measured on {t['n']} held-out {label}s with lesion outlines, this entry's maps (layer {layer}, "
            f"chosen on validation) put {e:.0%} of their weight on the lesion: {than(t['lesion_area'])} an even map "
            f"({t['lesion_area']:.0%}) and {than(t['centre_energy_in_lesion'])} a blob in the middle of the "
            f"picture ({t['centre_energy_in_lesion']:.0%}), so read them as a rough pointer, not an outline.")


def _card(ctx: AppContext, name: str | None) -> dict[str, Any] | None:
    return ctx.cache.card(name) if name else None


def render(ctx: AppContext, session: Session, opacity: float = 0.5) -> list[Any]:
    """[class picker, caption, dermoscopic, clinical, compare caption, compare dermoscopic, compare clinical]."""
    classes = session.explanation.classes if session.explanation is not None else []
    picker = gr.update(choices=[PREDICTED, *classes], value=PREDICTED)
    return [picker, *views(ctx, session, opacity)]


def views(ctx: AppContext, session: Session, opacity: float) -> list[Any]:
    """[caption, panels..., compare caption, compare panels...] for the session's cams."""
    main = [caption(session.entry, session.cam_target, session.cams, _card(ctx, session.entry)),
            *panels(ctx, session.entry, session, session.cams, opacity)]
    cmp = session.compare or {}
    if not cmp:
        return [*main, "", *[gr.update(value=None, visible=False) for _ in IMAGE_MODALITIES]]
    return [*main, caption(cmp["entry"], cmp["target"], cmp["cams"], _card(ctx, cmp["entry"])), *panels(ctx, cmp["entry"], session, cmp["cams"], opacity)]


def on_class(ctx: AppContext, choice: str, opacity: float, session: Session) -> list[Any]:
    """The chosen class for both entries: the second entry never keeps explaining the old class."""
    if session.explanation is None:
        return [session, "Analyse a case first.", *[None] * len(IMAGE_MODALITIES), "", *[None] * len(IMAGE_MODALITIES)]
    target = None if choice == PREDICTED else choice
    try:
        label, cams = compute_cams(ctx, session.entry, session, target)
        session = session.with_(cams=cams, cam_target=label)
        if session.compare:
            other = session.compare["entry"]
            label2, cams2 = compute_cams(ctx, other, session, target)
            session = session.with_(compare={"entry": other, "target": label2, "cams": cams2})
    except (AppError, ValueError) as err:
        return [session, f"⚠️ {err}", *[gr.update() for _ in range(2 * len(IMAGE_MODALITIES) + 1)]]
    return [session, *views(ctx, session, opacity)]


def on_compare(ctx: AppContext, other: str, choice: str, opacity: float, session: Session) -> list[Any]:
    hidden = [gr.update(value=None, visible=False)] * len(IMAGE_MODALITIES)
    if other in (None, "", NONE) or session.explanation is None:
        return [session.with_(compare=None), "", *hidden]
    try:
        label, cams = compute_cams(ctx, other, session, None if choice == PREDICTED else choice)
    except (AppError, ValueError) as err:
        return [session, f"⚠️ {err}", *hidden]
    session = session.with_(compare={"entry": other, "target": label, "cams": cams})
    return [session, caption(other, label, cams, _card(ctx, other)), *panels(ctx, other, session, cams, opacity)]


def build(ctx: AppContext, session_state: gr.State) -> None:
    with gr.Tab("Grad-CAM", id="gradcam"):
        with gr.Row():
            picker = gr.Dropdown([PREDICTED], value=PREDICTED, label="Explain class", elem_id="cam-class")
            opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Heatmap opacity", elem_id="cam-opacity")
            other = gr.Dropdown([NONE, *ctx.cache.names()], value=NONE, label="Compare with a second entry",
                                elem_id="cam-compare")
        gr.Markdown("Measured against lesion masks (docs/EXPLANATIONS.md), these maps put more weight on "
                    "the lesion than a uniform map but less than a blob drawn in the middle of the picture: "
                    "read them as where the model drew its evidence from, not as an outline of the lesion.",
                    elem_id="cam-caution")
        with gr.Row(equal_height=False):  # the two entries side by side, one column each
            with gr.Column():
                cap = gr.Markdown(elem_id="cam-caption")
                images = [gr.Image(label=f"{MODALITY_TITLES[m]} · Grad-CAM · scale", format="png", interactive=False,
                                   height=260, elem_id=f"cam-{m}") for m in IMAGE_MODALITIES]
            with gr.Column():
                cap2 = gr.Markdown(elem_id="cam-compare-caption")
                images2 = [gr.Image(label=f"{MODALITY_TITLES[m]} (second entry)", format="png", interactive=False,
                                    height=260, visible=False, elem_id=f"cam2-{m}") for m in IMAGE_MODALITIES]
    ctx.add_view([picker, cap, *images, cap2, *images2], lambda s: render(ctx, s))
    picker.input(lambda ch, op, s: on_class(ctx, ch, op, s), [picker, opacity, session_state],
                 [session_state, cap, *images, cap2, *images2], api_visibility="private")
    other.change(lambda o, ch, op, s: on_compare(ctx, o, ch, op, s), [other, picker, opacity, session_state],
                 [session_state, cap2, *images2], api_visibility="private")
    opacity.release(lambda op, s: views(ctx, s, op), [opacity, session_state],
                    [cap, *images, cap2, *images2], api_visibility="private")
