"""Teaching example: a planted shortcut, measured (`python -m training.shortcut`; docs/EXPLANATIONS.md).

Reads the experiment's JSON and its example picture from docs/reports and computes nothing, so the
About tab opens as fast without it; when the files are absent (or unreadable) it says so in a sentence.
Every sentence is worded from the numbers and their intervals, so it stays true if the experiment is rerun.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skinui.paths import REPO

# The recipe that reads metadata as well: SCCKA has a real cue there, so the experiment shows both halves,
# the heatmap drawn to the mark and the accuracy lost on cases without it (docs/EXPLANATIONS.md).
RESULT = REPO / "docs" / "reports" / "shortcut-synthderm-dm.json"
COMMAND = ("python -m training.shortcut --config training/configs/synthderm_shortcut_dm.yaml --work runs/shortcut-dm "
           "--out docs/reports/shortcut-synthderm-dm.json --figure docs/reports/shortcut-synthderm-dm.png")
MISSING = (f"The shortcut experiment has not been run in this installation (no {RESULT.name}); "
           f"`{COMMAND}` runs it in about a quarter of an hour on one CPU thread.")
TAKEAWAY = ("**What to take from it:** a model can score as well as its clean twin on the usual test split "
            "and still decide by an artefact. Test a model with the suspect artefact added and removed, and "
            "look at where its heatmap goes on cases that carry it, before trusting its accuracy.")


def load(path: Path | None = None) -> dict[str, Any] | None:
    """The experiment's result, or None when the file is absent or not a result of this experiment."""
    try:
        result = json.loads(Path(path or RESULT).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("experiment") == "shortcut" else None


def _ci(block: dict[str, Any] | None, signed: bool = False, pct: bool = False) -> str:
    if not block or block.get("estimate") is None:
        return "n/a"
    scale, unit = (100, " pp" if signed else "%") if pct else (1, "")
    f = ("{:+.1f}" if signed else "{:.1f}") if pct else ("{:+.3f}" if signed else "{:.3f}")
    lo, hi = block.get("ci") or (None, None)
    text = f.format(block["estimate"] * scale) + unit
    return text + (f" [{f.format(lo * scale)}, {f.format(hi * scale)}]" if lo is not None and hi is not None else "")


def _direction(block: dict[str, Any] | None, up: str, down: str, same: str) -> str:
    """`up`/`down` where the interval excludes 0, `same` where it does not."""
    lo, hi = (block or {}).get("ci") or (None, None)
    if lo is None or hi is None:
        return same
    return up if lo > 0 else down if hi < 0 else same


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, clean model, shortcut model, shortcut - clean) rows, as shown."""
    label = result["shortcut"]["label"]
    scores, contrasts = result["accuracy"]["scores"], result["accuracy"]["contrasts"]
    cam = result["gradcam"]["measures"]
    rows = []
    for cond, words in (("natural", "test split as generated"), ("artefact_none", "pen removed from every image"),
                        ("artefact_all", "pen drawn on every image")):
        diff = contrasts[f"shortcut_minus_clean@{cond}"]
        rows.append((f"balanced accuracy, {words}", _ci(scores["clean"][cond]["balanced_accuracy"]),
                     _ci(scores["shortcut"][cond]["balanced_accuracy"]), _ci(diff["balanced_accuracy"], True)))
        rows.append((f"{label} recall, {words}", _ci(scores["clean"][cond]["target_recall"], pct=True),
                     _ci(scores["shortcut"][cond]["target_recall"], pct=True),
                     _ci(diff["target_recall"], True, pct=True)))
        rows.append((f"other classes called {label}, {words}", _ci(scores["clean"][cond]["target_false_rate"], pct=True),
                     _ci(scores["shortcut"][cond]["target_false_rate"], pct=True),
                     _ci(diff["target_false_rate"], True, pct=True)))
    for key, words in (("artefact_band", "Grad-CAM share on the pen (pen drawn)"),
                       ("artefact_band_absent", "Grad-CAM share on the same place, pen absent")):
        b = cam[key]
        rows.append((words, _ci(b["clean"]), _ci(b["shortcut"]), _ci(b["shortcut_minus_clean"], True)))
    return rows


def sentences(result: dict[str, Any]) -> str:
    """Three sentences on what was measured, each worded by its interval."""
    label, artefact = result["shortcut"]["label"], result["shortcut"]["artefact"]
    c = result["accuracy"]["contrasts"]
    band = result["gradcam"]["measures"]["artefact_band"]["shortcut_minus_clean"]
    natural = c["shortcut_minus_clean@natural"]["balanced_accuracy"]
    recall = c["shortcut_minus_clean@artefact_none"]["target_recall"]
    lure = c["shortcut_minus_clean@artefact_all"]["target_false_rate"]
    return " ".join([
        f"The shortcut model's Grad-CAM puts {_direction(band, 'more', 'less', 'no more')} of its weight on the "
        f"{artefact} than the clean twin's does ({_ci(band, True)} of the map).",
        f"With a {artefact} drawn on every test image, it calls "
        f"{_direction(lure, 'more', 'fewer', 'about as many')} of the other classes {label} "
        f"({_ci(lure, True, pct=True)}); with the {artefact} removed from every image, its {label} recall is "
        f"{_direction(recall, 'higher than', 'lower than', 'not clearly different from')} the twin's "
        f"({_ci(recall, True, pct=True)}).",
        f"On the test split as generated, where the {artefact} is rare and unrelated to the class, its balanced "
        f"accuracy is {_direction(natural, 'higher than', 'lower than', 'indistinguishable from')} the twin's "
        f"({_ci(natural, True)}).",
    ])


def why(result: dict[str, Any]) -> str:
    """Where the shortcut's class shares its image pattern with others: whether the recipe had another cue
    to lose (metadata), or none, so accuracy can hardly move."""
    s = result["shortcut"]
    others = s.get("same_pattern_as") or []
    if not others:
        return ""
    if "metadata" in (result.get("modalities") or []):
        clean = result["accuracy"]["scores"]["clean"]["natural"]["target_recall"]
        return (f"SynthDerm draws {s['label']}'s {s['modality']} pattern for {' and '.join(others)} too, so the "
                f"{s['modality']} image alone cannot tell {s['label']} apart; its real cue is in the metadata, which "
                f"the clean twin learned ({s['label']} recall {_ci(clean, pct=True)}). In training the "
                f"{s['artefact']} was an easier cue that always agreed, and the shortcut model leaned on it instead.")
    return (f"SynthDerm draws {s['label']}'s {s['modality']} pattern for {' and '.join(others)} too, so in training the "
            f"{s['artefact']} was the only {s['modality']} cue that told {s['label']} apart, and no model of these images "
            f"can separate the {len(others) + 1} classes: the {s['artefact']} mostly moves calls among them, which "
            f"balanced accuracy barely registers.")


def _inputs(result: dict[str, Any]) -> str:
    mods = result.get("modalities") or []
    return f" ({' + '.join(m if m == 'metadata' else m + ' image' for m in mods)})" if mods else ""


def markdown(result: dict[str, Any] | None) -> str:
    if result is None:
        return MISSING
    try:
        rows = summary_rows(result)
        lines = ["| measured on the test cases (95% CI over lesions) | clean twin | shortcut model | shortcut − twin |",
                 "|---|---:|---:|---:|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
        text, reason = sentences(result), why(result)
        s = result["shortcut"]
        names = {m: (result.get("entries") or {}).get(m, {}).get("name", m) for m in ("shortcut", "clean")}
    except (KeyError, TypeError, IndexError, AttributeError):
        return f"The shortcut experiment's result file is from another version of SkinUI; rerun `{COMMAND}`."
    return "\n".join([
        f"SynthDerm generated with `{s['text']}`: in the training split only, every {s['label']} image has a "
        f"{s['artefact']} mark and no other image has one; validation and test images are left as they were. "
        f"One recipe{_inputs(result)} trained `{names['shortcut']}` on it (deliberately broken) and its clean twin "
        f"`{names['clean']}` "
        f"on the unmarked data; neither is in the zoo. Both are scored on the same test cases: as generated, and "
        f"re-rendered with the {s['artefact']} forced on or off.",
        "", text + (f" {reason}" if reason else ""), "", *lines, "", TAKEAWAY, "",
        f"Reproduce: `{result.get('command', COMMAND)}` (docs/EXPLANATIONS.md, \"A planted shortcut\")."])


def picture_path(result: dict[str, Any] | None) -> Path | None:
    """The example strip's file named by the result, when it exists."""
    name = ((result or {}).get("example") or {}).get("figure")
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else REPO / name
    return path if path.is_file() else None


def picture_html(result: dict[str, Any] | None) -> str:
    """The example strip inline (a data URI: gradio keeps no copy of it on disk) with its caption; "" without."""
    import base64
    import html

    path = picture_path(result)
    if path is None:
        return ""
    try:
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return ""
    text = html.escape(caption(result))
    return (f"<figure style='margin:0'><img src='data:image/png;base64,{data}' alt='{text}' style='max-width:100%'>"
            f"<figcaption>{text}</figcaption></figure>")


def caption(result: dict[str, Any] | None) -> str:
    ex = (result or {}).get("example") or {}
    if not ex:
        return ""
    s, c = ex.get("shortcut") or {}, ex.get("clean") or {}
    return (f"Test case {ex.get('case_id')} (a {ex.get('label')}), without and with the mark, then Grad-CAM of each "
            f"model's prediction on the marked image: the clean twin says {c.get('predicted_with')} with or without "
            f"the mark; the shortcut model says {s.get('predicted_without')} without it and {s.get('predicted_with')} "
            f"with it" + (f" (the clearest of {ex['n_crisp']} test cases that only the shortcut model calls "
                          f"{result['shortcut']['label']}, and only with the mark)." if ex.get("n_crisp") else "."))


def build(path: Path | None = None) -> None:
    """An accordion with the measured result; the example picture is inlined when it is first opened, so
    the page does not carry it until then (a sentence instead of both when the result is absent)."""
    import gradio as gr

    result = load(path)
    with gr.Accordion("Teaching example: a planted shortcut, measured", open=False) as box:
        gr.Markdown(markdown(result), elem_id="teaching-shortcut")
        strip = gr.HTML("", elem_id="teaching-shortcut-image")
    if picture_path(result) is not None:
        box.expand(lambda: picture_html(result), None, [strip], api_visibility="private")
