"""The downloadable case report: one self-contained HTML file of an analysed case.

Everything is inline (images as base64 PNG, bars as plain HTML), so the file opens offline and
carries no script. It holds only what the user gave (images, typed metadata) and what the model
said; no file name, upload path or session id. A pure function of the session and the card, so
it is tested without a browser.
"""
from __future__ import annotations

import base64
import html
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from skinui import evidence
from skinui.trust.words import trust_markdown
from skinui.ui import figures, texts
from skinui.ui.cards import card_fusion, card_structure
from skinui.vocabulary import IMAGE_MODALITIES, MODALITY_TITLES

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 8px;border-bottom:1px solid #ddd;"
          "text-align:left}.bar{background:#2c7fb8;height:12px;display:inline-block}.neg{background:#c92a2a}"
          ".pos{background:#2b8a3e}.pick{background:#c0392b}.note{color:#a00}img{max-width:100%}")


def _png(image: np.ndarray, side: int = 320) -> str:
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    img.thumbnail((side * 3, side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _bars(values: dict[str, float], highlight: str | None = None, signed: bool = False) -> str:
    rows = []
    for k, v in sorted(values.items(), key=lambda kv: -abs(kv[1])):
        cls = "pick" if k == highlight else ("pos" if v >= 0 else "neg") if signed else ""
        width = 200 * min(abs(float(v)), 1.0)
        shown = f"{v:+.2f}" if signed else f"{v:.1%}"
        rows.append(f"<tr><td>{html.escape(str(k))}</td><td><span class='bar {cls}' style='width:{width:.0f}px'>"
                    f"</span> {shown}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def case_report_html(session: Any, card: dict[str, Any]) -> str:
    """The report of the session's last analysis with the entry whose card is `card`."""
    ex = session.explanation
    if ex is None:
        raise ValueError("Analyse a case first; the report describes an analysed case.")
    esc = html.escape
    inputs = "".join(f"<figure><img alt='{m}' src='{_png(session.images[m])}'><figcaption>{MODALITY_TITLES[m]}"
                     f"</figcaption></figure>" for m in IMAGE_MODALITIES if session.images.get(m) is not None)
    typed = {k: v for k, v in (session.metadata or {}).items() if v not in (None, "", "unknown")}
    meta = ("<table>" + "".join(f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in typed.items())
            + "</table>") if typed else "<p>No metadata given.</p>"
    why = texts.decision_words(ex.probabilities, ex.prediction)
    cams = "".join(f"<figure><img alt='Grad-CAM {m}' src='{_png(figures.cam_panel(session.images[m], cam), 280)}'>"
                   f"<figcaption>{MODALITY_TITLES[m]}: where the model looked for {esc(ex.target)}</figcaption></figure>"
                   for m, cam in (session.cams or ex.cams).items() if session.images.get(m) is not None)
    relevance = "".join(f"<h3>{esc(method.replace('_', ' '))}</h3>{_bars(scores, signed=True)}"
                        for method, scores in ex.relevance.items() if any(scores.values()))
    ablation = "<table><tr><th>inputs</th><th>prediction</th><th>P(prediction)</th></tr>" + "".join(
        f"<tr><td>{esc(r['subset'])}</td><td>{esc(r['prediction'])}</td><td>{r['confidence']:.1%}</td></tr>"
        for r in ex.ablation) + "</table>"
    warnings = "".join(f"<li>{esc(w)}</li>" for w in session.warnings)
    trust = "".join(f"<p>{esc(line.replace('**', ''))}</p>" for line in trust_markdown(ex).split("\n\n") if line)
    tasks = "".join(f"<h3>{esc(t.replace('_', ' '))} (further head, uncalibrated)</h3>"
                    f"{_bars(p, highlight=max(p, key=p.get))}" for t, p in (getattr(ex, 'tasks', None) or {}).items())
    decision = ("prevalence-adjusted (the class most probable relative to how common it is, fitted on validation)"
                if (card.get("calibration") or {}).get("decision") == "prevalence_adjusted" else "most probable class")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>SkinUI case report</title>
<style>{_STYLE}</style></head><body>
<h1>SkinUI case report</h1>
<p><b>{esc(texts.NOTICE_SHORT)}</b></p>
<p>Generated {time.strftime('%Y-%m-%d %H:%M')} by SkinUI from the inputs below; nothing else about the patient is recorded.</p>
<h2>Inputs</h2>{inputs or '<p>No images given.</p>'}{meta}
<h2>Model</h2>
<p><b>{esc(card.get('title') or card['name'])}</b> (<code>{esc(card['name'])}</code>): {esc(card.get('dataset', '?'))},
inputs {esc(', '.join(card.get('modalities', [])))}, fusion {esc(card_fusion(card))}, structure {esc(card_structure(card))}.
Test balanced accuracy {esc(evidence.with_interval(card, 'balanced_accuracy'))}, macro AUC
{esc(evidence.with_interval(card, 'macro_auc'))} (95% intervals). Licence: {esc(card.get('licence', 'not recorded'))}.
{'<p class=note>This entry is LEAKY: trained with label-leaking fields, for teaching only.</p>' if card.get('leaky') else ''}</p>
<h2>Prediction</h2>
<p><b>{esc(ex.prediction)}</b>, probability {ex.confidence:.1%} (calibrated). Decision rule: {esc(decision)}.</p>
{f'<p class=note>{esc(why)}</p>' if why else ''}
{_bars(ex.probabilities, highlight=ex.prediction)}
{tasks}
<h2>How far to trust it</h2>{trust or '<p>This entry has no prediction set or uncertainty measures.</p>'}
<h2>Grad-CAM</h2>{cams or '<p>No image to explain.</p>'}
<h2>Metadata relevance (scaled; sign: towards or against {esc(ex.target)})</h2>{relevance or '<p>No metadata relevance.</p>'}
<h2>Modality ablation</h2>{ablation}
<h2>Warnings</h2>{f'<ul>{warnings}</ul>' if warnings else '<p>None.</p>'}
</body></html>"""


def _folder() -> Path:
    """Inside the app's private upload folder when it has one (app.py removes it on exit, signals
    included), so a report written just before a stop is not left behind."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "skinui-reports"


KEEP_S = 120  # gradio copies the file into its own cache when serving it; ours is removed soon after


def write_case_report(session: Any, card: dict[str, Any]) -> str:
    """Write the report to a fresh temp file (older ones removed) and return its path."""
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in folder.glob("*.html"):
        if now - old.stat().st_mtime > KEEP_S:
            old.unlink(missing_ok=True)
    fd, path = tempfile.mkstemp(prefix="skinui-case-report-", suffix=".html", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(case_report_html(session, card))
    return path
