"""Grad-CAM tab: heatmaps on both images, any class, adjustable opacity, optional second entry."""
from __future__ import annotations

from typing import Any

import gradio as gr

from skinui.explain import quality
from skinui.ui import figures, mask_view
from skinui.ui.cards import pixel_modalities
from skinui.ui.entries import AppError
from skinui.ui.session import AppContext, Session, encoded_case
from skinui.ui.texts import PREDICTED
from skinui.views import CAM_SENTENCE, card_averages
from skinui.vocabulary import IMAGE_MODALITIES, MODALITY_TITLES

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
        panel = mask_view.beside(ctx, name, session, m, image, figures.cam_panel(image, cams.get(m), opacity)) if show else None
        out.append(gr.update(value=panel, visible=show))
    return out


def caption(name: str | None, target: str | None, cams: dict[str, Any], card: dict[str, Any] | None = None) -> str:
    """What the maps show, then (with the entry's card) its measured numbers and what they mean."""
    if not name:
        return ""
    if not cams:
        return f"{name}: no image branch to explain on this case (no image given, or the entry takes none)."
    text = f"**{name}**: where the model looked for **{target}** (left: the image; right: red = more weight)."
    flat = [m for m, cam in cams.items() if figures.is_flat(cam)]
    if flat:
        text += (f" The {' and '.join(flat)} map is flat: no region raises the score of {target} at the "
                 f"explained layer (common for a class the model finds unlikely), so nothing is highlighted.")
    text += CAM_SENTENCE if card_averages(card) else ""
    return text + mask_view.caption(card) + (measures(card, list(cams)) if card is not None else "")


MEASURED_HEAD = ("**How good are this entry's maps?** Measured on held-out test cases (docs/EXPLANATIONS.md; "
                 "95% intervals over lesions or patients):")


def measures(card: dict[str, Any], modalities: list[str]) -> str:
    """The entry's measured numbers for these images (a small table where it has any) and one sentence
    on what they mean; says plainly when nothing was measured and why."""
    table = quality.gradcam_table(card, modalities)
    sentence = meaning(card, modalities)
    return f"\n\n{MEASURED_HEAD}\n\n{table}\n\n{sentence}" if table else f" {sentence}"


def meaning(card: dict[str, Any], modalities: list[str]) -> str:
    """One sentence on what the measured numbers mean, images with the same verdicts named together."""
    groups: dict[str, list[str]] = {}
    for m in modalities:
        groups.setdefault(localisation_clause(card, m), []).append(m)
    parts = [clause.format(images=" and ".join(ms)) for clause, ms in groups.items()]
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "; read them as a rough pointer, not an outline of the lesion."


def localisation_clause(card: dict[str, Any], modality: str) -> str:
    """What this image's measured numbers mean, with "{images}" for the image names (so images with the
    same verdicts share one clause); why not, where the entry was not measured."""
    t = quality.localisation(card).get(modality)
    faith = quality.faithfulness_clause(card, modality)
    if not t or t.get("energy_in_lesion") is None:
        reason = quality.why_not(card, "localisation")
        dataset = quality.DATASET_NAMES.get(str(card.get("dataset")), card.get("dataset"))
        why = (f"{dataset} has no lesion masks to check them against" if reason == "no lesion masks"
               else "that measurement has not been run for it yet")
        return f"how well the {{images}} maps find the lesion is not measured for this entry: {why}" + (
            f", but {faith}" if faith else "")
    e = t["energy_in_lesion"]
    area = "more weight on the lesion than" if e > t["lesion_area"] else "no more weight on the lesion than"
    centre = quality.interval_verdict(t.get("energy_minus_centre")) or (
        "more than" if e > t["centre_energy_in_lesion"] else "no more than")
    return (f"the {{images}} maps (layer {t['layer']}, chosen on validation) put {area} an even map and {centre} "
            f"a blob in the middle of the picture" + (f", and {faith}" if faith else ""))


def localisation_sentence(card: dict[str, Any], modality: str) -> str:
    """`meaning` for one image."""
    return meaning(card, [modality])


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
                    "the lesion than a uniform map but, for most entries, no more than a blob drawn in the middle "
                    "of the picture: read them as where the model drew its evidence from, not as an outline of the "
                    "lesion. Each entry's own measured numbers are under its caption.",
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
