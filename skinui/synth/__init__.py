"""SynthDerm: a synthetic trimodal (dermoscopic + clinical + metadata) benchmark with known truth.

`generate(n, seed, out)` writes the dataset (`python -m skinui.synth`); `design` holds which
modality carries the evidence for every class pair. Layout and design: docs/SYNTHDERM.md.
"""
from skinui.synth.artefacts import Shortcut
from skinui.synth.design import CLASSES, CODES
from skinui.synth.generate import plan, render
from skinui.synth.writer import generate

__all__ = ["CLASSES", "CODES", "Shortcut", "generate", "plan", "render"]
