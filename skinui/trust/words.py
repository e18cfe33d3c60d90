"""The trust features in plain words: one wording for the app, the case report and the CLI."""
from __future__ import annotations

from typing import Any

# Above this share of validation cases, a measure is called out as high.
HIGH_RANK = 0.9

MEASURE_WORDS = {
    "test-time-augmentation spread": ("when the image is mirrored or turned, the probabilities",
                                      "barely move", "move"),
    "branch disagreement": ("the image, joint and metadata heads", "agree", "disagree"),
}


# Below this validation AUROC for spotting wrong decisions, a measure is not offered as a warning sign.
SIGNAL_MIN = 0.6


def set_sentence(prediction_set: list[str] | None, coverage: float | None, names: dict[str, str] | None = None,
                 mode: str | None = "marginal") -> str:
    """'Differential (90% prediction set): nv or mel — ...' or '' when the entry has no set."""
    if not prediction_set or coverage is None:
        return ""
    names = names or {}
    shown = " or ".join(f"**{c}**" + (f" ({names[c]})" if names.get(c) else "") for c in prediction_set)
    pct = f"{coverage:.0%}"
    if mode == "class":
        whom = f"for {pct} of the cases of each diagnosis, rare ones included,"
    elif mode == "hybrid":
        whom = f"for {pct} of the cases of each diagnosis (of the rarest, only on average),"
    else:  # marginal: an average over cases; the rare diagnoses are missed more often than that
        whom = f"for {pct} of cases on average (less often for the rarer diagnoses),"
    if len(prediction_set) == 1:
        why = f"{whom} a set built this way holds the true diagnosis; here it needs only one."
    else:
        why = f"{whom} the true diagnosis is among these; the model cannot narrow it further with that guarantee."
    return f"Differential ({pct} prediction set): {shown} — {why}"


def uncertainty_sentences(uncertainty: dict[str, dict[str, Any]] | None) -> list[str]:
    """One sentence per measure, ranked against the validation cases where the card allows. A measure
    that did not single out wrong decisions on validation is shown, but never as a warning sign."""
    out = []
    for name, v in (uncertainty or {}).items():
        subject, calm, loud = MEASURE_WORDS.get(name, (name, "are low", "are high"))
        rank, signal = v.get("rank"), v.get("error_auroc_val")
        high = rank is not None and rank >= HIGH_RANK
        where = f"; higher than {rank:.0%} of validation cases" if rank is not None else ""
        verb = loud if high else calm
        if signal is not None and signal < SIGNAL_MIN:
            tail = (f"; for this entry it did not single out wrong answers on validation cases (AUROC {signal:.2f}), "
                    f"so it is no warning sign")
        else:
            tail = " — treat this prediction as uncertain" if high else ""
        out.append(f"Second opinion: {subject} {verb} ({name} {v['value']:.2f}{where}){tail}.")
    return out


def unusual_sentence(unusual: dict[str, dict[str, Any]] | None) -> str:
    flagged = [m for m, v in (unusual or {}).items() if v.get("unusual")]
    if not flagged:
        return ""
    return (f"⚠️ The {' and '.join(flagged)} image{'s do' if len(flagged) > 1 else ' does'} not look like this "
            f"entry's training images: the prediction and its set may mean nothing.")


def trust_markdown(ex: Any, names: dict[str, str] | None = None) -> str:
    """The trust paragraph under a prediction (ex: a Prediction or CaseExplanation)."""
    lines = [unusual_sentence(getattr(ex, "unusual", None)),
             set_sentence(getattr(ex, "prediction_set", None), getattr(ex, "set_coverage", None), names,
                          getattr(ex, "set_mode", None)),
             *uncertainty_sentences(getattr(ex, "uncertainty", None))]
    return "\n\n".join(line for line in lines if line)
