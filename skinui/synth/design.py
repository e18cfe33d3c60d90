"""SynthDerm's ground-truth design: which modality can tell which classes apart.

Every class is rendered from three *codes*, one per modality. A modality's renderer only ever
sees its own code (plus class-independent nuisances), so two classes that share a code in a
modality are identically distributed there: by construction, not by hope. The codes below give

- a pair separable only by dermoscopy (MEL vs NV: same flat brown macule, same patient profile),
- a pair separable only by the clinical close-up (AKIEC vs BKL: same keratotic dermoscopic pattern,
  same older sun-exposed profile, but erythematous scale versus a brown stuck-on plaque),
- a pair separable only by metadata (AKIEC vs SCCKA: same images, rapid growth and bleeding differ),

so the ideal ordering is C+D+M > every bimodal pair > every single modality (see `ideal_accuracy`).

That default design (`independent`) renders each modality from a code fixed by the class, so the
modalities are independent given the class and late fusion is Bayes-optimal. The `interaction`
variant (`VARIANTS`) makes two pairs separable only by a *combination* of modalities: each of their
classes is an equal mixture of two code triples arranged as an exclusive-or, so neither modality
alone says anything about the pair and the two together say everything. `late_accuracy` is the
ceiling of a fusion that adds per-modality evidence (late fusion, or one linear layer over
concatenated features); `ideal_accuracy` is the ceiling of a fusion that can model interactions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

from skinui.registry import Registry

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


Triple = tuple[str, str, str]


@dataclass(frozen=True)
class Variant:
    """A design: each class is an equal mixture of code triples (one triple: the codes are fixed by the class)."""

    name: str
    summary: str
    components: dict[str, tuple[Triple, ...]]

    @property
    def mixed(self) -> bool:
        return any(len(c) > 1 for c in self.components.values())

    def p_codes(self, label: str, modalities: tuple[str, ...] | list[str], codes: tuple[str, ...]) -> float:
        """P(the codes of `modalities` are `codes` | label)."""
        idx = [MODALITIES.index(m) for m in modalities]
        comps = self.components[label]
        return sum(all(t[i] == c for i, c in zip(idx, codes)) for t in comps) / len(comps)

    def blocks(self, modalities: tuple[str, ...] | list[str]) -> set[tuple[str, ...]]:
        """Every code combination of `modalities` that some class can show."""
        idx = [MODALITIES.index(m) for m in modalities]
        return {tuple(t[i] for i in idx) for comps in self.components.values() for t in comps}


VARIANTS: Registry[Variant] = Registry("SynthDerm design variant")
VARIANTS.register("independent")(Variant(
    "independent", "each modality rendered from a code fixed by the class: modalities independent given the class",
    {c: (t,) for c, t in CODES.items()}))
# Two exclusive-or pairs, deliberately caricatures (not clinical teaching): what each code *means*
# depends on another modality. MEL vs NV: the network type means melanoma in one patient profile
# and naevus in the other (dermoscopy x metadata). BKL vs AKIEC: the clinical look means keratosis
# in one profile and actinic keratosis in the other (clinical x metadata). No triple is shared with
# another class, so every other pair keeps its independent-design evidence.
VARIANTS.register("interaction")(Variant(
    "interaction", "MEL/NV separable only by dermoscopy x metadata, BKL/AKIEC only by clinical x metadata "
    "(exclusive-or mixtures); every other class as in the independent design",
    {**{c: (t,) for c, t in CODES.items()},
     "MEL": (("atypical_network", "pigmented_macule", "sun_exposed_elderly"),
             ("regular_network", "pigmented_macule", "young_adult")),
     "NV": (("atypical_network", "pigmented_macule", "young_adult"),
            ("regular_network", "pigmented_macule", "sun_exposed_elderly")),
     "BKL": (("keratotic", "stuck_on_plaque", "sun_exposed_elderly"),
             ("keratotic", "scaly_erythema", "young_adult")),
     "AKIEC": (("keratotic", "scaly_erythema", "sun_exposed_elderly"),
               ("keratotic", "stuck_on_plaque", "young_adult"))}))


def code(label: str, modality: str) -> str:
    return CODES[label][MODALITIES.index(modality)]


def separating_modalities(a: str, b: str) -> tuple[str, ...]:
    """Modalities whose codes differ for classes a and b (the only ones that can tell them apart)."""
    return tuple(m for m in MODALITIES if code(a, m) != code(b, m))


def confusable(label: str, modalities: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Other classes identical to `label` in every one of `modalities`."""
    return tuple(c for c in CLASSES if c != label and all(code(c, m) == code(label, m) for m in modalities))


def ideal_accuracy(modalities: tuple[str, ...] | list[str], variant: str = "independent") -> float:
    """Bayes balanced accuracy (balanced classes) if each code were perfectly readable.

    The MAP rule's balanced accuracy is sum over code blocks of max_c P(block | c), divided by the
    number of classes; with one triple per class that is blocks / classes."""
    v = VARIANTS.get(variant)
    return sum(max(v.p_codes(c, modalities, b) for c in CLASSES) for b in v.blocks(modalities)) / len(CLASSES)


def late_accuracy(modalities: tuple[str, ...] | list[str], variant: str = "independent") -> float:
    """The same ceiling for a fusion that *adds* per-modality evidence: decide by the product of each
    modality's own likelihood (late fusion of Bayes-optimal single-modality classifiers; a linear
    layer over concatenated features is no richer). Ties are split evenly. Equal to `ideal_accuracy`
    when the modalities are independent given the class."""
    v = VARIANTS.get(variant)
    total = 0.0
    for label in CLASSES:
        for t in v.components[label]:
            obs = [(m, t[MODALITIES.index(m)]) for m in modalities]
            score = [math.prod(v.p_codes(c, (m,), (x,)) for m, x in obs) for c in CLASSES]
            best = [i for i, s in enumerate(score) if s == max(score)]
            total += (CLASSES.index(label) in best) / len(best) / len(v.components[label])
    return total / len(CLASSES)


def modality_subsets() -> list[tuple[str, ...]]:
    return [s for k in (1, 2, 3) for s in combinations(MODALITIES, k)]


def evidence(label: str) -> dict[str, list[str]]:
    """Per modality, the classes that *only* this modality separates from `label`."""
    others = [m for m in MODALITIES]
    return {m: list(confusable(label, [o for o in others if o != m])) for m in MODALITIES}


SHORT = {"dermoscopic": "D", "clinical": "C", "metadata": "M"}


def separates(a: str, b: str, modalities: tuple[str, ...] | list[str], variant: str = "independent") -> bool:
    """Whether classes a and b show different code distributions in `modalities` (jointly)."""
    v = VARIANTS.get(variant)
    return any(v.p_codes(a, modalities, blk) != v.p_codes(b, modalities, blk) for blk in v.blocks(modalities))


def joint_only(a: str, b: str, variant: str = "independent") -> tuple[str, ...] | None:
    """The smallest modality set that separates a and b when no single modality does (an interaction)."""
    if any(separates(a, b, (m,), variant) for m in MODALITIES):
        return None
    return next((s for s in modality_subsets() if separates(a, b, s, variant)), None)


def case_evidence(label: str, codes: Triple, variant: str = "independent") -> dict[str, list[str]]:
    """`evidence` for one case drawn with `codes`: per modality, the classes that have a component
    equal to this case everywhere but in that modality (only that modality rules them out), and,
    under `joint`, the classes that only a combination of modalities tells apart from `label`."""
    v = VARIANTS.get(variant)
    joint = [c for c in CLASSES if c != label and joint_only(label, c, variant)]
    out = {m: [c for c in CLASSES if c != label and c not in joint and any(
        all(t[i] == codes[i] for i in range(len(MODALITIES)) if MODALITIES[i] != m) for t in v.components[c])]
        for m in MODALITIES}
    out["joint"] = joint
    return out


def pair_table(variant: str = "independent") -> str:
    """Markdown table: for every class pair, which modality carries the evidence (docs embed it)."""
    lines = ["| pair | D | C | M | separable by |", "|---|---|---|---|---|"]
    for a, b in combinations(CLASSES, 2):
        sep = tuple(m for m in MODALITIES if separates(a, b, (m,), variant))
        marks = ["yes" if m in sep else "-" for m in MODALITIES]
        joint = joint_only(a, b, variant)
        if joint:
            note = "**" + " x ".join(SHORT[m] for m in joint) + " jointly**"
        else:
            note = f"**{SHORT[sep[0]]} only**" if len(sep) == 1 else "+".join(SHORT[m] for m in sep)
        lines.append(f"| {a} vs {b} | " + " | ".join(marks) + f" | {note} |")
    return "\n".join(lines)


def accuracy_table(variant: str = "independent") -> str:
    from skinui.synth.ceilings import bayes_accuracy

    if not VARIANTS.get(variant).mixed:
        bayes = bayes_accuracy()["joint"]
        lines = ["| modalities | ideal (every code readable) | Bayes (metadata through its profiles) |", "|---|---|---|"]
        for s in modality_subsets():
            lines.append(f"| {'+'.join(SHORT[m] for m in s)} | {ideal_accuracy(s):.3f} | {bayes[s]:.3f} |")
        return "\n".join(lines)
    from skinui.synth.ceilings import additive_accuracy

    bayes = bayes_accuracy(variant=variant)
    lines = ["| modalities | product of per-modality posteriors | best additive rule | interacting (Bayes) "
             "| product, metadata through its profiles | Bayes, metadata through its profiles |",
             "|---|---|---|---|---|---|"]
    for s in modality_subsets():
        lines.append(f"| {'+'.join(SHORT[m] for m in s)} | {late_accuracy(s, variant):.3f} | "
                     f"{additive_accuracy(s, variant):.3f} | {ideal_accuracy(s, variant):.3f} | "
                     f"{bayes['late'][s]:.3f} | {bayes['joint'][s]:.3f} |")
    return "\n".join(lines)
