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


def set_sentence(prediction_set: list[str] | None, coverage: float | None, names: dict[str, str] | None = None) -> str:
    """'Differential (90% prediction set): nv or mel. ...' or '' when the entry has no set."""
    if not prediction_set or coverage is None:
        return ""
    names = names or {}
    shown = " or ".join(f"**{c}**" + (f" ({names[c]})" if names.get(c) else "") for c in prediction_set)
    pct = f"{coverage:.0%}"
    if len(prediction_set) == 1:
        why = f"for {pct} of cases like this, a set built this way holds the true diagnosis, and here it needs only one."
    else:
        why = (f"for {pct} of cases like this the true diagnosis is among them; the model cannot narrow it "
               f"further with that guarantee.")
    return f"Differential ({pct} prediction set): {shown} — {why}"


def uncertainty_sentences(uncertainty: dict[str, dict[str, Any]] | None) -> list[str]:
    """One sentence per measure, ranked against the validation cases where the card allows."""
    out = []
    for name, v in (uncertainty or {}).items():
        subject, calm, loud = MEASURE_WORDS.get(name, (name, "are low", "are high"))
        rank = v.get("rank")
        high = rank is not None and rank >= HIGH_RANK
        where = f"; higher than {rank:.0%} of validation cases" if rank is not None else ""
        verb = loud if high else calm
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
             set_sentence(getattr(ex, "prediction_set", None), getattr(ex, "set_coverage", None), names),
             *uncertainty_sentences(getattr(ex, "uncertainty", None))]
    return "\n\n".join(line for line in lines if line)
