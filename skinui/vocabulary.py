"""The words every part of SkinUI shares: modalities, branches, their labels, modality subsets.

Torch-free and dependency-free, so models, explanations, the app and training all import the same
tuples instead of keeping copies in step by hand.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

MODALITIES = ("dermoscopic", "clinical", "metadata")
IMAGE_MODALITIES = ("dermoscopic", "clinical")
SHORT = {"dermoscopic": "D", "clinical": "C", "metadata": "M"}
# In sentences ("No clinical image given; ...") and on controls ("Clinical close-up").
MODALITY_LABELS = {"dermoscopic": "dermoscopic image", "clinical": "clinical image", "metadata": "metadata"}
MODALITY_TITLES = {"dermoscopic": "Dermoscopic image", "clinical": "Clinical close-up", "metadata": "Metadata"}

# The three heads of the joint-individual structures (JIF, JI-ADF), in the order of their weights alpha.
BRANCHES = ("image", "joint", "metadata")
BRANCH_LABELS = {"image": "image", "joint": "joint (image + metadata)", "metadata": "metadata"}


def subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, largest first: 7 for trimodal, 3 for bimodal."""
    mods = list(modalities)
    return [c for r in range(len(mods), 0, -1) for c in combinations(mods, r)]


def subset_name(subset: Sequence[str]) -> str:
    """("dermoscopic", "metadata") -> "D+M"."""
    return "+".join(SHORT[m] for m in subset)


# Datasets name the same patient facts differently; the form carries a typed value over when the
# user switches dataset, and the batch CLI reads another dataset's column names, through this map.
CONCEPTS = {"age_approx": "age", "gender": "sex", "localization": "site", "region": "site",
            "anatom_site_general": "site", "fitspatrick": "fitzpatrick"}


def concept(field_name: str) -> str:
    """The patient fact a dataset's field records ("gender" -> "sex", "region" -> "site")."""
    return CONCEPTS.get(field_name, field_name)
