"""Compare methods tab: every entry of a dataset on the current case, and what each method is."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

import gradio as gr
import pandas as pd

from skinui import evidence, plots
from skinui.explain import quality
from skinui.ui import figures, texts
from skinui.ui.cards import card_fusion, card_structure, short_modalities, usable_modalities
from skinui.ui.entries import AppError, EntryCache
from skinui.ui.session import AppContext, Session, encoded_case
from skinui.vocabulary import MODALITY_LABELS

PROGRESS = gr.Progress()  # gradio recognises a progress parameter by this default value
COLUMNS = ["entry", "inputs", "fit to this case", "fusion", "structure", "paper", "parameters", "ms on this case", "prediction",
           "confidence", "metadata reliance",
           "agrees with majority",
           "test bal. acc. (95% CI)", "test macro AUC (95% CI)", "val bal. acc.", "vs best on validation (paired)",
           "vs simple baseline (paired)"]


def datasets(cache: EntryCache) -> list[str]:
    return sorted({str(c.get("dataset")) for c in cache.cards})


def methods_markdown(cache: EntryCache, dataset: str | None) -> str:
    """Every fusion method and structure SkinUI implements, in plain words with its equation; those
    the dataset's entries use are marked, so a class sees what is in the comparison and what is not."""
    cards = [c for c in cache.cards if c.get("dataset") == dataset] if dataset else cache.cards
    used_f = {card_fusion(c) for c in cards}
    used_s = {card_structure(c) for c in cards}
    where = f" in {dataset}" if dataset else ""

    def mark(used: bool) -> str:
        return f" *(an entry{where} uses it)*" if used else f" *(no entry{where} uses it)*"

    parts = ["### Fusion methods"] + [f"**{f}**{mark(f in used_f)} — {texts.describe('fusion', f)}"
                                      for f in texts.FUSION_TEXTS]
    parts += ["### Structures"] + [f"**{s}**{mark(s in used_s)} — {texts.describe('structure', s)}"
                                   for s in texts.STRUCTURE_TEXTS]
    return "\n\n".join(parts)


def run_one(cache: EntryCache, name: str, session: Session) -> tuple[dict[str, Any], list[tuple[Any, str]]]:
    """Prediction row and Grad-CAM thumbnails of one entry on the case."""
    from skinui.explain import gradcams, modality_ablation

    start = time.perf_counter()
    with encoded_case(cache, session, name) as enc:
        prediction = enc.prediction()
        thumbs = [(figures.thumbnail(figures.overlay(session.images[m], heat, 0.5)), f"{name} · {m}")
                  for m, heat in gradcams(enc).items()]
        params = sum(p.numel() for p in enc.entry.model.parameters())
        reliance = metadata_reliance(modality_ablation(enc), prediction.prediction)
    card = cache.card(name)
    row = {"entry": name + (" (LEAKY)" if card.get("leaky") else ""), "inputs": short_modalities(card.get("modalities", [])),
           "fusion": card_fusion(card), "structure": card_structure(card),
           "paper": "; ".join(p for p in (texts.paper("fusion", card_fusion(card)),
                                          texts.paper("structure", card_structure(card))) if p),
           "prediction": prediction.prediction,
           "confidence": round(prediction.confidence, 3), "parameters": f"{params / 1e6:.2f} M",
           "metadata reliance": reliance, "probabilities": prediction.probabilities,
           "ms on this case": round((time.perf_counter() - start) * 1000),
           "fit to this case": fit_words(card, session.inputs().present())}
    return row, thumbs


def fit_words(card: dict[str, Any], present: list[str]) -> str:
    """'all its inputs', or which of its inputs the case lacks and which of the case's it ignores."""
    reads = usable_modalities(card)
    missing = [MODALITY_LABELS[m] for m in reads if m not in present]
    ignored = [MODALITY_LABELS[m] for m in present if m not in reads]
    parts = ([f"⚠️ lacks {', '.join(missing)} (predicts without it)"] if missing else []) + \
            ([f"ignores {', '.join(ignored)}"] if ignored else [])
    return "; ".join(parts) or "all its inputs"


def metadata_reliance(rows: list[dict[str, Any]], predicted: str) -> str:
    """How much this case's prediction leans on the metadata: P(predicted) with it minus without it."""
    full = rows[0]
    without = [r for r in rows if set(r["modalities"]) == set(full["modalities"]) - {"metadata"}]
    if "metadata" not in full["modalities"] or not without:
        return "no metadata input" if "metadata" not in full["modalities"] else "metadata only"
    delta = full["probabilities"][predicted] - without[0]["probabilities"][predicted]
    return f"{delta * 100:+.0f} points of P({predicted})"


def evidence_columns(card: dict[str, Any], best: str | None) -> dict[str, str]:
    """The card's test scores with intervals and its paired difference to the best entry on validation."""
    val = evidence.metric(card, "balanced_accuracy", "val")
    return {"test bal. acc. (95% CI)": evidence.with_interval(card, "balanced_accuracy"),
            "test macro AUC (95% CI)": evidence.with_interval(card, "macro_auc"),
            "val bal. acc.": "n/a" if val is None else f"{val:.3f}",
            "vs best on validation (paired)": evidence.versus_text(card, best) if best else "",
            # the dataset's logistic-regression anchor on its always-filled fields, where it has one
            "vs simple baseline (paired)": evidence.anchor_cell(card)}


def evidence_view(cache: EntryCache, dataset: str | None) -> tuple[Any, str]:
    """(interval figure, sentence) for the dataset's entries, from their cards alone (no case needed)."""
    cards = [c for c in cache.cards if c.get("dataset") == dataset]
    rows = evidence.interval_rows(cards)
    if not rows:
        return None, "These entries' cards carry no intervals yet (`python -m training.reports --update-cards`)."
    return plots.interval_figure(rows), evidence.indistinguishable_sentence(cards)


RANK_COLUMNS = ["rank", "entry", "inputs", "test bal. acc. (95% CI)", "measure (95% CI)"]
RANK_DEFAULT = next(iter(quality.RANK_KEYS))


def ranking(cache: EntryCache, dataset: str | None, key: str) -> tuple[pd.DataFrame, str]:
    """(table, sentence): the dataset's entries best first by `key` (accuracy or an explanation measure),
    from their cards alone; entries without that measure last, saying "not measured" and why."""
    key = key if key in quality.RANK_KEYS else RANK_DEFAULT
    cards = [c for c in cache.cards if c.get("dataset") == dataset]
    rows = quality.rank(cards, key)
    table = pd.DataFrame([{"rank": r["rank"] or "–", "entry": r["entry"],
                           "inputs": short_modalities(cache.card(r["entry"]).get("modalities", [])),
                           "measure (95% CI)": r["text"],
                           "test bal. acc. (95% CI)": evidence.with_interval(cache.card(r["entry"]))} for r in rows],
                         columns=RANK_COLUMNS)
    measured = sum(r["rank"] is not None for r in rows)
    what = quality.RANK_KEYS[key][2]
    sentence = (f"Ranked by {what}; {measured} of {len(rows)} entries measured"
                + (", the rest listed last as not measured." if measured < len(rows) else ".")
                + (" Neighbouring ranks whose intervals overlap are not clearly different." if measured > 1 else ""))
    return table, sentence


def compare(cache: EntryCache, dataset: str | None, session: Session,
            progress: Any = None) -> tuple[pd.DataFrame, list, str, Any]:
    """(table, thumbnails, agreement sentence, probability matrix) for every entry of `dataset` on the case."""
    if session.explanation is None:
        return pd.DataFrame(columns=COLUMNS), [], "Analyse a case on the Case tab first.", None
    names = [c["name"] for c in cache.cards if c.get("dataset") == dataset]
    rows, gallery, failed = [], [], []
    for i, name in enumerate(names):
        if progress is not None:
            progress((i, len(names)), desc=f"Running {name}")
        try:
            row, thumbs = run_one(cache, name, session)
        except (AppError, ValueError) as err:
            failed.append(f"{name}: {err}")
            continue
        rows.append(row)
        gallery += thumbs
    if not rows:
        return pd.DataFrame(columns=COLUMNS), [], "No entry of this dataset could run: " + "; ".join(failed), None
    cards = [c for c in cache.cards if c.get("dataset") == dataset]
    best = evidence.best_on_validation(cards)
    for r in rows:
        r.update(evidence_columns(cache.card(r["entry"].removesuffix(" (LEAKY)")), best))
    votes = Counter(r["prediction"] for r in rows)
    majority, count = votes.most_common(1)[0]
    for r in rows:
        r["agrees with majority"] = "yes" if r["prediction"] == majority else "no"
    text = (f"{count} of {len(rows)} entries predict **{majority}**"
            + (f"; the others: {', '.join(f'{k} ({v})' for k, v in votes.items() if k != majority)}." if len(votes) > 1
               else " — full agreement."))
    if failed:
        text += "\n\nCould not run: " + "; ".join(failed)
    return pd.DataFrame(rows, columns=COLUMNS), gallery, text, plots.probability_matrix_figure(rows)


def build(ctx: AppContext, session_state: gr.State) -> None:
    sets = datasets(ctx.cache)
    default = ctx.cache.card(ctx.default).get("dataset") if ctx.default else None
    with gr.Tab("Compare methods", id="compare"):
        with gr.Row():
            dataset = gr.Dropdown(sets, value=default, label="Dataset", elem_id="compare-dataset")
            run = gr.Button("Run every entry of this dataset on the case", variant="primary", elem_id="compare-run")
        text = gr.Markdown(elem_id="compare-text")
        frame = gr.Dataframe(headers=COLUMNS, interactive=False, label="Predictions", elem_id="compare-table")
        matrix = gr.Plot(label="Probabilities side by side", elem_id="compare-matrix")
        gallery = gr.Gallery(label="Grad-CAM thumbnails (predicted class)", columns=6, height=240,
                             elem_id="compare-gallery")
        with gr.Accordion("How sure are these scores? (test split, 95% intervals)", open=True):
            first_fig, first_text = evidence_view(ctx.cache, default)
            intervals_text = gr.Markdown(first_text, elem_id="compare-intervals-text")
            gr.Markdown(texts.METRICS_PLAIN, elem_id="compare-metrics-plain")
            intervals_plot = gr.Plot(first_fig, label="Balanced accuracy with 95% bootstrap intervals",
                                     elem_id="compare-intervals")
        with gr.Accordion("Rank the entries: by accuracy or by how good their explanations are", open=True):
            rank_key = gr.Radio(list(quality.RANK_KEYS), value=RANK_DEFAULT, label="Rank by", elem_id="compare-rank-key")
            first_rank, first_rank_text = ranking(ctx.cache, default, RANK_DEFAULT)
            rank_text = gr.Markdown(first_rank_text, elem_id="compare-rank-text")
            rank_frame = gr.Dataframe(first_rank, headers=RANK_COLUMNS, interactive=False, label="Entries ranked",
                                      wrap=True, column_widths=["6%", "22%", "8%", "18%", "46%"], elem_id="compare-rank")
        with gr.Accordion("What each method does (for teachers)", open=True):
            methods = gr.Markdown(methods_markdown(ctx.cache, default), elem_id="compare-methods")

    def on_run(ds: str, session: Session, progress: gr.Progress = PROGRESS) -> tuple[Any, Any, str, Any]:
        return compare(ctx.cache, ds, session, progress)

    run.click(on_run, [dataset, session_state], [frame, gallery, text, matrix], api_visibility="private")
    def on_dataset(ds: str, key: str = RANK_DEFAULT) -> tuple[str, Any, str, Any, str]:
        fig, sentence = evidence_view(ctx.cache, ds)
        return (methods_markdown(ctx.cache, ds), fig, sentence, *ranking(ctx.cache, ds, key))

    outputs = [methods, intervals_plot, intervals_text, rank_frame, rank_text]
    dataset.change(on_dataset, [dataset, rank_key], outputs, api_visibility="private")
    rank_key.change(lambda ds, key: ranking(ctx.cache, ds, key), [dataset, rank_key], [rank_frame, rank_text],
                    api_visibility="private")

    def after_analysis(session: Session) -> list[Any]:
        """Compare defaults to the dataset of the entry that analysed the case (never the start-up one's)."""
        ds = ctx.cache.card(session.entry).get("dataset") if session.entry else default
        return [gr.update(value=ds), *on_dataset(ds)[:3]]  # the ranking follows through dataset.change

    ctx.add_view([dataset, methods, intervals_plot, intervals_text], after_analysis)
