"""SynthDerm's ground-truth design: which modality can tell which classes apart.

Every class is rendered from three *codes*, one per modality. A modality's renderer only ever
sees its own code (plus class-independent nuisances), so two classes that share a code in a
modality are identically distributed there: by construction, not by hope. The codes below give

- a pair separable only by dermoscopy (MEL vs NV: same flat brown macule, same patient profile),
- a pair separable only by the clinical close-up (AKIEC vs BKL: same keratotic dermoscopic pattern,
  same older sun-exposed profile, but erythematous scale versus a brown stuck-on plaque),
- a pair separable only by metadata (AKIEC vs SCCKA: same images, rapid growth and bleeding differ),

so the ideal ordering is C+D+M > every bimodal pair > every single modality (see `ideal_accuracy`).
"""
from __future__ import annotations

from itertools import combinations

CLASSES = ("MEL", "NV", "BCC", "BKL", "AKIEC", "SCCKA", "DF", "VASC")
CLASS_NAMES = {
    "MEL": "Melanoma",
    "NV": "Melanocytic nevus",
    "BCC": "Basal cell carcinoma",
    "BKL": "Benign keratosis (seborrhoeic keratosis, solar lentigo)",
    "AKIEC": "Actinic keratosis / intraepidermal carcinoma",
    "SCCKA": "Squamous cell carcinoma / keratoacanthoma",
    "DF": "Dermatofibroma",
    "VASC": "Vascular lesion (angioma)",
}
MODALITIES = ("dermoscopic", "clinical", "metadata")

# class -> (dermoscopic code, clinical code, metadata code)
CODES: dict[str, tuple[str, str, str]] = {
    "MEL": ("atypical_network", "pigmented_macule", "young_adult"),
    "NV": ("regular_network", "pigmented_macule", "young_adult"),
    "BCC": ("arborizing_vessels", "shiny_red_papule", "sun_exposed_elderly"),
    "BKL": ("keratotic", "stuck_on_plaque", "sun_exposed_elderly"),
    "AKIEC": ("keratotic", "scaly_erythema", "sun_exposed_elderly"),
    "SCCKA": ("keratotic", "scaly_erythema", "rapid_growth_elderly"),
    "DF": ("central_white_patch", "pigmented_macule", "young_female_leg"),
    "VASC": ("red_lacunae", "shiny_red_papule", "young_adult"),
}

# What each code draws, in clinical words (docs and ground-truth files read this).
CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "dermoscopic": {
        "regular_network": ("symmetric pigment", "regular thin pigment network", "1-2 colours", "regular globules"),
        "atypical_network": ("asymmetric pigment", "thick irregular network", "3-5 colours", "blue-white veil",
                             "peripheral irregular dots", "irregular border"),
        "keratotic": ("tan-pink structureless background", "central white-yellow keratin", "white circles",
                      "glomerular (dotted) vessels"),
        "arborizing_vessels": ("translucent pink-white background", "arborizing vessels", "blue-grey ovoid nests"),
        "central_white_patch": ("central white scar-like patch", "delicate peripheral network"),
        "red_lacunae": ("red-purple lacunae", "whitish septa"),
    },
    "clinical": {
        "pigmented_macule": ("flat", "brown", "smooth surface"),
        "scaly_erythema": ("erythema", "white-yellow scale", "rough surface", "ill-defined border", "slight elevation"),
        "stuck_on_plaque": ("brown", "elevation (stuck-on plaque)", "verrucous surface", "sharp border"),
        "shiny_red_papule": ("red-pink dome", "elevation (dome)", "shine (specular highlight)"),
    },
    "metadata": {
        "young_adult": ("age ~42", "trunk/limbs", "mostly stable"),
        "sun_exposed_elderly": ("age ~68", "face/scalp/hands", "slow growth (months)"),
        "rapid_growth_elderly": ("age ~75", "scalp/hands/face", "growth over weeks", "bleeding"),
        "young_female_leg": ("age ~36", "mostly female", "lower extremity", "stable, itchy"),
    },
}


def code(label: str, modality: str) -> str:
    return CODES[label][MODALITIES.index(modality)]


def separating_modalities(a: str, b: str) -> tuple[str, ...]:
    """Modalities whose codes differ for classes a and b (the only ones that can tell them apart)."""
    return tuple(m for m in MODALITIES if code(a, m) != code(b, m))


def confusable(label: str, modalities: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Other classes identical to `label` in every one of `modalities`."""
    return tuple(c for c in CLASSES if c != label and all(code(c, m) == code(label, m) for m in modalities))


def ideal_accuracy(modalities: tuple[str, ...] | list[str]) -> float:
    """Bayes accuracy with balanced classes if each code were perfectly readable: blocks / classes."""
    blocks = {tuple(code(c, m) for m in modalities) for c in CLASSES}
    return len(blocks) / len(CLASSES)


def modality_subsets() -> list[tuple[str, ...]]:
    return [s for k in (1, 2, 3) for s in combinations(MODALITIES, k)]


def evidence(label: str) -> dict[str, list[str]]:
    """Per modality, the classes that *only* this modality separates from `label`."""
    others = [m for m in MODALITIES]
    return {m: list(confusable(label, [o for o in others if o != m])) for m in MODALITIES}


def pair_table() -> str:
    """Markdown table: for every class pair, which modality carries the evidence (docs embed it)."""
    short = {"dermoscopic": "D", "clinical": "C", "metadata": "M"}
    lines = ["| pair | D | C | M | separable by |", "|---|---|---|---|---|"]
    for a, b in combinations(CLASSES, 2):
        sep = separating_modalities(a, b)
        marks = ["yes" if m in sep else "-" for m in MODALITIES]
        note = f"**{short[sep[0]]} only**" if len(sep) == 1 else "+".join(short[m] for m in sep)
        lines.append(f"| {a} vs {b} | " + " | ".join(marks) + f" | {note} |")
    return "\n".join(lines)


def accuracy_table() -> str:
    from skinui.synth.ceilings import bayes_accuracy

    short = {"dermoscopic": "D", "clinical": "C", "metadata": "M"}
    bayes = bayes_accuracy()
    lines = ["| modalities | ideal (every code readable) | Bayes (metadata through its profiles) |", "|---|---|---|"]
    for s in modality_subsets():
        lines.append(f"| {'+'.join(short[m] for m in s)} | {ideal_accuracy(s):.3f} | {bayes[s]:.3f} |")
    return "\n".join(lines)
