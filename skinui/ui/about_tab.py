"""About tab: the not-a-medical-device statement (its one place in the app), limits, licences, cards."""
from __future__ import annotations

import json
from typing import Any

import gradio as gr

from skinui import evidence, views
from skinui.ui import teaching, texts
from skinui.ui.cards import card_fusion, card_structure, headline_metrics
from skinui.ui.case_tab import broken_markdown
from skinui.ui.entries import EntryCache
from skinui.ui.figures import alpha_by_class_figure
from skinui.ui.session import AppContext


def licences_markdown(cache: EntryCache) -> str:
    """One line per dataset of the installed entries: licence and citation (card first, then schema)."""
    lines = []
    for ds in sorted({str(c.get("dataset")) for c in cache.cards}):
        card = next(c for c in cache.cards if str(c.get("dataset")) == ds)
        licence, citation = card.get("licence") or "", ""
        try:
            from skinui.datasets import schema_for

            schema = schema_for(ds)
            licence, citation = licence or schema.licence, schema.citation
        except Exception:  # a dataset without a schema module still gets its card's licence
            pass
        lines.append(f"- **{ds}**: {licence or 'licence not recorded'}" + (f". {citation}" if citation else ""))
    return "\n".join(lines) or "No entries installed, so no datasets to list."


def split_words(split: Any) -> str:
    """'split grouped by patient_id, ... (train 333 / val 72 / test 71)' from a card's split record."""
    if not isinstance(split, dict):
        return f"split {split or 'not recorded'}"
    sizes = split.get("sizes") or {}
    counts = " / ".join(f"{k} {sizes[k]}" for k in ("train", "val", "test") if k in sizes)
    return f"split {split.get('description') or split.get('method', '?')}" + (f" ({counts})" if counts else "")


def card_markdown(card: dict[str, Any] | None) -> str:
    if not card:
        return "No entry installed."
    training = card.get("training") or {}
    calibration = card.get("calibration") or {}
    rows = [
        f"### {card.get('title') or card['name']}",
        card.get("description", ""),
        f"- **Dataset**: {card.get('dataset')}; classes {', '.join(card.get('classes', []))}",
        f"- **Inputs**: {', '.join(card.get('modalities', []))}; fusion `{card_fusion(card)}`, "
        f"structure `{card_structure(card)}`",
        f"- **Test metrics**: {headline_metrics(card)} (95% intervals over lesions/patients)",
        f"- **Validation balanced accuracy** (same decision rule; what choices read): "
        f"{evidence.with_interval(card, 'balanced_accuracy', 'val')}" if card.get("metrics_val") else "",
        f"- **Calibration**: T = {calibration.get('temperature', 1.0):.2f}, ECE {calibration.get('ece', float('nan')):.3f}"
        f" → {calibration.get('ece_calibrated', float('nan')):.3f}" if calibration else "- **Calibration**: none",
        "- **Decision rule**: prevalence-adjusted (the class most probable relative to how common it is)"
        if calibration.get("decision") == "prevalence_adjusted" else "",
        views.card_words(card),
        evidence.anchor_words(card),
        f"- **Trained**: {split_words(training.get('split'))}, seed {training.get('seed', '?')}, "
        f"on {training.get('device', '?')}; command `{training.get('command', '?')}`",
        f"- **Licence**: {card.get('licence', 'not recorded')}",
    ]
    if card.get("leaky"):
        rows.append(f"- ⚠️ **Leaky**: this entry was trained with label-leaking fields forced as inputs "
                    f"({', '.join(card.get('force_leaky', []))}); its scores overstate real performance.")
    return "\n".join(r for r in rows if r)


def build(ctx: AppContext) -> None:
    cache = ctx.cache
    with gr.Tab("About", id="about"):
        gr.Markdown(texts.NOT_A_MEDICAL_DEVICE, elem_id="about-statement")
        gr.Markdown(texts.LIMITS)
        gr.Markdown("### Data licences\n" + licences_markdown(cache))
        gr.Markdown("### Model cards")
        if cache.broken:
            gr.Markdown(broken_markdown(cache), elem_id="about-broken")
        pick = gr.Dropdown(cache.names(), value=ctx.default, label="Entry", elem_id="about-entry")
        card_md = gr.Markdown(card_markdown(cache.card(ctx.default) if ctx.default else None), elem_id="about-card")
        first_alpha = alpha_by_class_figure(cache.card(ctx.default) if ctx.default else None)
        alpha_plot = gr.Plot(first_alpha, label="Which modality each class leans on (JI-ADF α per class)",
                             visible=first_alpha is not None, elem_id="about-alpha")
        with gr.Accordion("Full model card (JSON)", open=False):
            raw = gr.Code(json.dumps(_public(cache.card(ctx.default)) if ctx.default else {}, indent=2),
                          language="json")
        teaching.build()

    def show(name: str | None) -> tuple[str, Any, str]:
        card = cache.card(name) if name else None
        fig = alpha_by_class_figure(card)
        return (card_markdown(card), gr.Plot(fig, visible=fig is not None),
                json.dumps(_public(card) if card else {}, indent=2))

    pick.change(show, [pick], [card_md, alpha_plot, raw], api_visibility="private")
    # After each analysis the About tab shows the card of the entry that produced it.
    ctx.add_view([pick, card_md, alpha_plot, raw],
                 lambda s: [gr.update(value=s.entry or ctx.default), *show(s.entry or ctx.default)])


def _public(card: dict[str, Any]) -> dict[str, Any]:
    """The card without the bulky fitted encoder statistics and bins (shown elsewhere)."""
    hidden = {"metadata_encoder", "calibration"}
    return {k: v for k, v in card.items() if k not in hidden}
