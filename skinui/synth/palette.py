"""Colours (linear-ish RGB in [0, 1]) shared by the dermoscopic and clinical renderers."""
from __future__ import annotations

LIGHT_BROWN = (0.74, 0.52, 0.34)
MID_BROWN = (0.55, 0.35, 0.21)
DARK_BROWN = (0.32, 0.19, 0.11)
BLACK = (0.11, 0.08, 0.07)
BLUE_GREY = (0.40, 0.46, 0.58)
VEIL = (0.56, 0.64, 0.78)
REGRESSION = (0.80, 0.78, 0.80)
WHITE = (0.96, 0.94, 0.91)
KERATIN = (0.96, 0.91, 0.72)
RED = (0.72, 0.10, 0.15)
DARK_RED = (0.45, 0.06, 0.12)
PURPLE = (0.40, 0.10, 0.32)
PINK = (0.90, 0.60, 0.60)
TAN = (0.82, 0.64, 0.50)
ERYTHEMA = (0.86, 0.40, 0.38)
PAPULE_PINK = (0.93, 0.60, 0.60)
PAPULE_RED = (0.62, 0.15, 0.25)
INK = (0.33, 0.20, 0.56)
HAIR_DARK = (0.09, 0.06, 0.05)
HAIR_LIGHT = (0.55, 0.44, 0.32)

# Natural skin colour by Fitzpatrick type (clinical photographs).
SKIN = {
    "I": (0.96, 0.84, 0.76),
    "II": (0.92, 0.76, 0.64),
    "III": (0.84, 0.66, 0.52),
    "IV": (0.70, 0.52, 0.38),
    "V": (0.52, 0.36, 0.25),
    "VI": (0.34, 0.23, 0.16),
}
# Polarised dermoscopy light makes skin look pinker and brighter.
DERMOSCOPE_TINT = (1.04, 0.93, 0.90)
