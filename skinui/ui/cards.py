"""Model cards as the app shows them: fusion and structure names, usable inputs, headline numbers."""
from __future__ import annotations

from typing import Any

from skinui import evidence
from skinui.vocabulary import SHORT
from skinui.zoo import pixel_modalities, takes_pixels  # noqa: F401  (re-exported for the app's tabs)


def card_fusion(card: dict[str, Any]) -> str:
    """The fusion method's registry name; "none" for late structures, which have no fusion module."""
    if card_structure(card) == "late":
        return "none"
    return str(((card.get("model") or {}).get("fusion") or {}).get("name", "none"))


def card_structure(card: dict[str, Any]) -> str:
    return str(((card.get("model") or {}).get("structure") or {}).get("name", "jf"))


def usable_modalities(card: dict[str, Any]) -> list[str]:
    """What a user of the app can feed this entry: its photo modalities and its metadata."""
    return pixel_modalities(card) + [m for m in card.get("modalities", []) if m == "metadata"]


def headline_metrics(card: dict[str, Any]) -> str:
    """'BACC 0.71 [0.62–0.80] · AUC 0.91' from the card's test metrics and their 95% intervals."""
    parts = []
    for label, name in (("BACC", "balanced_accuracy"), ("AUC", "macro_auc")):
        value, ci = evidence.metric(card, name), evidence.interval(card, name)
        if value is not None:
            parts.append(f"{label} {value:.2f}" + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else ""))
    return " · ".join(parts) or "no test metrics"


def short_modalities(modalities: list[str]) -> str:
    return "+".join(SHORT.get(m, m) for m in modalities)


def entry_label(card: dict[str, Any]) -> str:
    """Dropdown label: dataset first so entries read grouped by dataset."""
    mods = short_modalities(list(card.get("modalities", []))) + ("" if takes_pixels(card) else ", concept scores")
    leaky = "LEAKY, for teaching: " if card.get("leaky") else ""
    return (f"{card.get('dataset', '?')} · {card['name']} ({leaky}{mods}, {card_fusion(card)}, "
            f"{card_structure(card)}; {headline_metrics(card)})")
