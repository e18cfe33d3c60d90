"""How good an entry's explanations are, as its card records it: numbers, ranking keys and sentences.

Reads the card blocks written by the measuring commands (docs/EXPLANATIONS.md) and computes nothing new,
so the app, the reports and the docs show the same numbers:

- `explain.localisation` (`python -m training.localisation --table ... --update-cards`): Grad-CAM energy
  inside the lesion and the pointing game on the test split, beside a centred blob;
- `explain_faithfulness` (`python -m training.faithfulness --table ... --update-cards`): by how much
  deleting / inserting the map's pixels first beats random maps;
- `explain_relevance` (`python -m training.explain_truth --table ... --update-cards`): how well each
  relevance method ranks the metadata fields against SynthDerm's known truth (Spearman rho).

Intervals are 95% bootstrap intervals over lesions/patients where the card has them. An entry without a
measure gets a reason (`why_not`), never a blank. Torch-free: the app's page builds before torch loads.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skinui.explain.methods import METHOD_LABELS

IMAGES = ("dermoscopic", "clinical")
NO_MASKS = {"ham10000": "HAM10000", "isic2019": "ISIC 2019", "derm7pt": "Derm7pt"}
DATASET_NAMES = {**NO_MASKS, "pad-ufes-20": "PAD-UFES-20", "milk10k": "MILK10k", "synthderm": "SynthDerm"}
RELEVANCE_METHOD = "integrated_gradients"  # the method the ranking uses (the best one on SynthDerm)


# -- what the card holds ------------------------------------------------------------------------------------

def _images(card: dict[str, Any]) -> list[str]:
    """The entry's photo inputs (none for concept-score entries: they have no pixels to map)."""
    concept = ((card.get("model") or {}).get("image_encoder") or {}).get("name") == "concept_mlp"
    return [] if concept else [m for m in card.get("modalities", []) if m in IMAGES]


def localisation(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{image: test-split localisation numbers, with "layer"} (empty when not measured)."""
    explain = card.get("explain") or {}
    layers = explain.get("gradcam_layer") or {}
    return {m: {**(b.get("test") or {}), "layer": layers.get(m)}
            for m, b in (explain.get("localisation") or {}).items() if b.get("test")}


def faithfulness(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{image: test-split deletion/insertion numbers, with "layer"} (empty when not measured)."""
    return {m: {**b["test"], "layer": b.get("layer")} for m, b in (card.get("explain_faithfulness") or {}).items()
            if isinstance(b, dict) and b.get("test")}


def relevance(card: dict[str, Any]) -> dict[str, Any] | None:
    """The card's `explain_relevance` block (None when not measured)."""
    block = card.get("explain_relevance")
    return block if isinstance(block, dict) and block.get("methods") else None


def why_not(card: dict[str, Any], kind: str) -> str:
    """Why an entry has no measure of `kind` ("localisation", "faithfulness", "relevance", "reliance"): a
    short reason."""
    dataset = str(card.get("dataset"))
    if kind == "reliance":
        return ("not run for this entry yet" if dataset == "synthderm" else
                f"no known truth on {DATASET_NAMES.get(dataset, dataset)}: only SynthDerm knows where the evidence lies")
    if kind == "relevance":
        if "metadata" not in card.get("modalities", []):
            return "the entry takes no metadata"
        if dataset != "synthderm":
            return f"no known truth on {DATASET_NAMES.get(dataset, dataset)}: only SynthDerm knows which fields matter"
        return "not run for this entry yet"
    if not _images(card):
        return "concept scores, no pixels" if any(m in IMAGES for m in card.get("modalities", [])) \
            else "the entry takes no image"
    if kind == "localisation" and (dataset in NO_MASKS or dataset == "milk10k"):
        return "no lesion masks"
    return "not run for this entry yet"


def not_measured(card: dict[str, Any], kind: str) -> str:
    """"not measured (no lesion masks)": the words a table cell or a report shows for a missing measure."""
    return f"not measured ({why_not(card, kind)})"


# -- formatting -----------------------------------------------------------------------------------------------

def ci_text(estimate: float | None, ci: Any = None, percent: bool = False, signed: bool = False, digits: int = 2) -> str:
    """"33% [30–36%]", "+0.04 [0.02, 0.05]" or the bare number without an interval; "n/a" for None."""
    if estimate is None:
        return "n/a"
    sign = "+" if signed else ""
    if percent:
        def one(v: float) -> str:
            return f"{round(v * 100) + 0:{sign}.0f}"  # + 0: never "-0"
        unit = " points" if signed else "%"
        text = one(estimate) + unit
        if ci and ci[0] is not None:
            text += f" [{one(ci[0])}, {one(ci[1])}]" if signed else f" [{one(ci[0])}–{one(ci[1])}%]"
        return text
    text = f"{estimate:{sign}.{digits}f}"
    if ci and ci[0] is not None:
        text += f" [{ci[0]:{sign}.{digits}f}, {ci[1]:{sign}.{digits}f}]"
    return text


def _margin(block: Any) -> tuple[float | None, Any]:
    """(estimate, ci) of a {"estimate", "ci"} block or of the older {"mean", "low", "high"} one."""
    if not isinstance(block, dict):
        return None, None
    if "estimate" in block:
        return block["estimate"], block.get("ci")
    return block.get("mean"), [block.get("low"), block.get("high")] if "low" in block else None


def interval_verdict(block: Any) -> str | None:
    """"more than", "less than" or "about as much as", by whether the 95% interval of a difference lies
    above 0, below it or around it; None without an interval (then only a point is known)."""
    est, ci = _margin(block)
    if est is None or not ci or ci[0] is None:
        return None
    return "more than" if ci[0] > 0 else "less than" if ci[1] < 0 else "about as much as"


def margins(f: dict[str, Any]) -> tuple[tuple[float, Any], tuple[float, Any]]:
    """((deletion estimate, ci), (insertion estimate, ci)) by which a map beats random (positive = better);
    from the AUCs, without an interval, where the card predates the intervals."""
    d, i = _margin(f.get("deletion_margin")), _margin(f.get("insertion_margin"))
    if d[0] is None:
        d = (f["random_deletion_auc"] - f["deletion_auc"], None)
    if i[0] is None:
        i = (f["insertion_auc"] - f["random_insertion_auc"], None)
    return d, i


def centre_margin(t: dict[str, Any]) -> tuple[float, Any]:
    """(estimate, ci) of the map's energy in the lesion minus the centre blob's (paired over cases)."""
    est, ci = _margin(t.get("energy_minus_centre"))
    return (est, ci) if est is not None else (t["energy_in_lesion"] - t["centre_energy_in_lesion"], None)


# -- ranking (Compare tab) -----------------------------------------------------------------------------------

def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _loc_key(card: dict[str, Any]) -> tuple[float | None, str]:
    loc = {m: t for m, t in localisation(card).items() if t.get("energy_in_lesion") is not None}
    values = {m: centre_margin(t) for m, t in loc.items()}
    return (_mean([v[0] for v in values.values()]),
            "; ".join(f"{m} {ci_text(*v, percent=True, signed=True)}" for m, v in values.items()))


def _faith_key(card: dict[str, Any]) -> tuple[float | None, str]:
    values = {m: margins(f) for m, f in faithfulness(card).items()}
    return (_mean([(d[0] + i[0]) / 2 for d, i in values.values()]),
            "; ".join(f"{m}: deletion {ci_text(*d, signed=True, digits=3)}, insertion {ci_text(*i, signed=True, digits=3)}"
                      for m, (d, i) in values.items()))


def _relevance_key(card: dict[str, Any]) -> tuple[float | None, str]:
    block = relevance(card)
    rho = ((block or {}).get("methods", {}).get(RELEVANCE_METHOD) or {}).get("true_class") or {}
    if rho.get("estimate") is None:
        return None, ""
    return rho["estimate"], f"ρ {ci_text(rho['estimate'], rho.get('ci'))} ({block.get('cases_scored')} cases)"


def _accuracy_key(card: dict[str, Any]) -> tuple[float | None, str]:
    from skinui import evidence

    value = evidence.metric(card, "balanced_accuracy")
    return value, evidence.with_interval(card, "balanced_accuracy") if value is not None else ""


# label -> (key function, the measure's kind for `why_not`, what the number is)
RANK_KEYS: dict[str, tuple[Callable[[dict[str, Any]], tuple[float | None, str]], str | None, str]] = {
    "test balanced accuracy": (_accuracy_key, None, "balanced accuracy on the test split (95% CI)"),
    "Grad-CAM on the lesion": (_loc_key, "localisation",
                               "the share of the map's weight on the lesion minus that of a blob in the middle, "
                               "in percentage points (test split, mean over the entry's images; 95% CI)"),
    "Grad-CAM faithfulness": (_faith_key, "faithfulness",
                              "how much faster than random maps deleting or inserting the map's pixels moves the "
                              "score (area under the probability curve; test split, mean of deletion and insertion "
                              "over the entry's images; 95% CI)"),
    "relevance bars against the truth": (_relevance_key, "relevance",
                                         "the Spearman ρ between Integrated Gradients' field ranking and SynthDerm's "
                                         "known truth (0 = chance, 1 = the design's order; test split, 95% CI)"),
}


def rank(cards: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """One row per card, best first by `key` (a RANK_KEYS label); entries without the measure come last,
    in their given order, saying "not measured (why)". Rows: rank, entry, value (None or a number), text."""
    fn, kind, _ = RANK_KEYS[key]
    scored = [(c, *fn(c)) for c in cards]
    measured = sorted((s for s in scored if s[1] is not None), key=lambda s: -s[1])
    rest = [s for s in scored if s[1] is None]
    rows = []
    for i, (card, value, text) in enumerate(measured):
        rows.append({"rank": i + 1, "entry": card["name"], "value": value, "text": text})
    for card, _, _ in rest:
        rows.append({"rank": None, "entry": card["name"], "value": None,
                     "text": not_measured(card, kind) if kind else "not measured"})
    return rows


# -- sentences (Grad-CAM and relevance tabs) -----------------------------------------------------------------

def gradcam_table(card: dict[str, Any], modalities: list[str]) -> str:
    """Markdown table of the measured numbers for these images, one column per image (empty when neither
    measure exists for any of them)."""
    loc, faith = localisation(card), faithfulness(card)
    if not any(m in loc or m in faith for m in modalities):
        return ""

    def loc_cell(m: str, fn: Callable[[dict[str, Any]], str]) -> str:
        t = loc.get(m)
        return fn(t) if t and t.get("energy_in_lesion") is not None else not_measured(card, "localisation")

    def faith_cell(m: str) -> str:
        if m not in faith:
            return not_measured(card, "faithfulness")
        d, i = margins(faith[m])
        return f"{ci_text(*d, signed=True, digits=3)} · {ci_text(*i, signed=True, digits=3)}"

    rows = [
        ("weight on the lesion (an even map · a blob in the middle)", lambda m: loc_cell(m, lambda t: (
            f"{ci_text(t['energy_in_lesion'], t.get('energy_in_lesion_ci'), percent=True)} "
            f"({t['lesion_area']:.0%} · {t['centre_energy_in_lesion']:.0%})"))),
        ("map − blob", lambda m: loc_cell(m, lambda t: ci_text(*centre_margin(t), percent=True, signed=True))),
        ("maximum on the lesion (blob)", lambda m: loc_cell(m, lambda t: (
            f"{ci_text(t['pointing_game'], t.get('pointing_game_ci'), percent=True)} ({t['centre_pointing_game']:.0%})"))),
        ("better than random maps: deletion · insertion", faith_cell),
    ]
    if not any(m in loc for m in modalities):  # one line says it, not three
        rows = [("on the lesion", lambda m: not_measured(card, "localisation")), rows[-1]]
    lines = ["| measured on held-out cases | " + " | ".join(m for m in modalities) + " |",
             "|---|" + "---|" * len(modalities)]
    lines += [f"| {label} | " + " | ".join(fn(m) for m in modalities) + " |" for label, fn in rows]
    return "\n".join(lines)


def faithfulness_clause(card: dict[str, Any], modality: str) -> str:
    """How the map fares against random maps of the same coarseness, as a clause ("" when not measured)."""
    f = faithfulness(card).get(modality)
    if not f:
        return ""
    d, i = margins(f)
    deletion, insertion = (interval_verdict({"estimate": est, "ci": ci}) or ("more than" if est > 0 else "less than")
                           for est, ci in (d, i))
    if "less than" in (deletion, insertion):
        return "on deletion or insertion they do worse than random maps, so they may not show what the model uses"
    if deletion == insertion == "more than":
        return ("removing what they highlight lowers the score faster than removing random regions of the same size "
                "(and restoring it raises the score faster), so they do point at what the model uses")
    if "more than" in (deletion, insertion):
        done, undone = ("removing", "restoring") if deletion == "more than" else ("restoring", "removing")
        return (f"{done} what they highlight moves the score faster than random regions of the same size, but "
                f"{undone} it is not clearly faster, so they point only partly at what the model uses")
    return "they do not clearly beat random maps on deletion and insertion, so they may not show what the model uses"


def relevance_sentence(card: dict[str, Any] | None, methods: list[str]) -> str:
    """The measured ranking quality of these relevance methods for this entry, or why there is none."""
    if card is None:
        return ""
    block = relevance(card)
    if block is None:
        reason = why_not(card, "relevance")
        if "metadata" not in card.get("modalities", []):
            return ""
        if card.get("dataset") != "synthderm":
            name = DATASET_NAMES.get(str(card.get("dataset")), card.get("dataset"))
            return (f"How well these bars rank the fields cannot be measured on {name}: only the synthetic SynthDerm "
                    f"benchmark knows which fields truly separate the classes (there, Integrated Gradients ranks "
                    f"them best; docs/EXPLANATIONS.md).")
        return f"How well this entry's bars rank the fields against SynthDerm's truth is not measured ({reason})."
    shown = [m for m in methods if m in block["methods"]]
    if not shown:
        return "The method shown has not been scored against SynthDerm's truth for this entry."
    parts = [f"{METHOD_LABELS.get(m, m)} ρ {ci_text(block['methods'][m]['true_class']['estimate'], block['methods'][m]['true_class'].get('ci'))}"
             for m in shown]
    floor = ((block.get("random") or {}).get("true_class") or {}).get("estimate")
    ceiling = ((block.get("ceiling") or {}).get("true_class") or {}).get("estimate")
    refs = []
    if floor is not None:
        refs.append(f"random bars {floor:.2f}")
    if ceiling is not None:
        refs.append(f"the design's own ranking {ceiling:.2f}")
    best = max(block["methods"][m]["true_class"]["estimate"] for m in shown)
    meaning = ("well above chance but short of the truth" if (floor is None or best > floor + 0.2) and
               (ceiling is None or best < ceiling - 0.1) else
               "close to the truth" if ceiling is not None and best >= ceiling - 0.1 else "little better than chance")
    return (f"**Measured quality** ({block['cases_scored']} SynthDerm test cases, against the design's known truth; "
            f"95% intervals): {' · '.join(parts)}" + (f" (against {', '.join(refs)})" if refs else "") +
            f". ρ is the rank agreement of the bars with which fields truly separate the classes (0 = a random "
            f"ranking, 1 = the truth's order), so these bars rank the fields {meaning}.")
