"""The evaluation report as one HTML page: a metrics table and the shared plotly figures."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from skinui import plots
from skinui.evidence import signed_interval
from skinui.metrics import METRIC_KEYS
from training.explain_report import section_html


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("–" if value is None else html.escape(str(value)))


def _row(label: str, values: dict[str, Any]) -> str:
    cells = "".join(f"<td>{_fmt(values[k])}</td>" for k in METRIC_KEYS)
    return f"<tr><th>{html.escape(label)}</th>{cells}</tr>"


def _table(rep: dict[str, Any]) -> str:
    head = "".join(f"<th>{k}</th>" for k in METRIC_KEYS)
    rows = [_row("macro", rep["macro"])] + [_row(label, row) for label, row in rep["per_class"].items()]
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _diff(d: dict[str, Any]) -> str:
    ba, auc = d["balanced_accuracy"], d["macro_auc"]
    verdict = "differs" if ba["excludes_zero"] else "indistinguishable"
    return f"{signed_interval(ba)} ({verdict}) · macro AUC {signed_interval(auc)}"


def _trust(rep: dict[str, Any]) -> str:
    """Intervals, validation scores, paired differences and the collection check, where the report has them."""
    parts = []
    for split, block in (rep.get("intervals") or {}).items():
        ba, auc = block["balanced_accuracy"], block["macro_auc"]
        parts.append(f"<li>{split}: balanced accuracy {ba['estimate']:.3f} (95% CI {ba['ci'][0]:.3f}–{ba['ci'][1]:.3f}), "
                     f"macro AUC {auc['estimate']:.3f} ({auc['ci'][0]:.3f}–{auc['ci'][1]:.3f}), "
                     f"{block['n_groups']} groups</li>")
    for role, diffs in (rep.get("comparisons") or {}).items():
        for other, d in diffs.items():
            parts.append(f"<li>minus {html.escape(other)} ({html.escape(role.removeprefix('vs_').replace('_', '-'))}): "
                         f"balanced accuracy {_diff(d)}</li>")
    if rep.get("metadata_adds"):
        parts.append(f"<li>what metadata adds (shipped minus {html.escape(rep['metadata_adds']['without_metadata'])}): "
                     f"balanced accuracy {_diff(rep['metadata_adds'])}</li>")
    check = rep.get("collection_check")
    if check:
        parts.append(f"<li>blanking {len(check['block'])} collection-confounded fields on {check['n_complete']} complete "
                     f"cases moves P({'+'.join(check['cancer_classes'])}) by {check['mean_shift_p_cancer']:+.3f} on average; "
                     f"on complete cases balanced accuracy {check['complete_cases']['balanced_accuracy']['estimate']:.3f}</li>")
    if not parts:
        return ""
    return ("<h2>Uncertainty and comparisons</h2><p>95% percentile bootstrap over lesions/patients; differences are "
            "paired (same cases, same replicates).</p><ul>" + "".join(parts) + "</ul>")


TRUST_BEGIN, TRUST_END = "<!-- trust-features:begin -->", "<!-- trust-features:end -->"


def trust_features(blocks: dict[str, Any]) -> str:
    """Prediction sets, unusual-image detector and uncertainty (training.trust), between markers so
    `python -m training.trust --reports DIR` can refresh them in a page written earlier."""
    parts = []
    conf = blocks.get("conformal")
    if conf:
        t = conf["test"]
        per = ", ".join(f"{html.escape(c)} {v['coverage']:.2f} (n={v['n']})" for c, v in t["per_class"].items()
                        if v["coverage"] is not None)
        parts.append(f"<li>{conf['alpha']:.0%}-error prediction sets ({conf['score']}/{conf['mode']}, calibrated on "
                     f"{conf['n_calibration']} validation cases): test coverage {t['coverage']:.3f} (target band "
                     f"{t['band'][0]:.2f}–{t['band'][1]:.2f}), mean size {t['mean_size']:.2f}, singletons "
                     f"{t['singletons']:.0%}; per class: {per}</li>")
    for m, b in (blocks.get("ood") or {}).items():
        sets = ", ".join(f"{html.escape(k)} {v['auroc']:.3f}" for k, v in b["auroc_vs_test"].items())
        parts.append(f"<li>unusual-{html.escape(m)}-image detector: threshold keeps {b['retention_val']:.0%} of "
                     f"validation, {b['test_retention']:.0%} of test; AUROC against test lesions: {sets}</li>")
    unc = blocks.get("uncertainty")
    if unc:
        aurocs = ", ".join(f"{html.escape(k)} {v:.3f}" for k, v in unc["error_auroc"].items() if v is not None)
        parts.append(f"<li>detecting the {unc['test_errors']} wrong decisions among {unc['n_test']} test cases "
                     f"(AUROC): {aurocs}</li>")
    if not parts:
        return ""
    return (f"{TRUST_BEGIN}<h2>When not to believe it</h2><p>See docs/TRUST.md for the methods.</p><ul>"
            + "".join(parts) + f"</ul>{TRUST_END}")


def refresh_trust(path: Path, blocks: dict[str, Any]) -> None:
    """Replace (or add, before the figures) the trust section of a report page written earlier."""
    page, fragment = Path(path).read_text(), trust_features(blocks)
    if TRUST_BEGIN in page and TRUST_END in page:
        head, rest = page.split(TRUST_BEGIN, 1)
        page = head + fragment + rest.split(TRUST_END, 1)[1]
    else:
        page = page.replace("</body>", fragment + "\n</body>", 1)
    Path(path).write_text(page)


def write_html(path: Path, rep: dict[str, Any], extras: dict[str, Any], card: dict[str, Any], inline_js: bool = False,
               js_src: str | None = None) -> None:
    """Write the report. plotly.js: embedded with `inline_js` (self-contained, ~4 MB), from a local
    file at the relative URL `js_src` (many reports, one copy), else from its CDN."""
    figures = [
        plots.confusion_matrix_figure(rep["confusion_matrix"], list(rep["per_class"])),
        plots.roc_figure(extras["roc"], {k: v["auc"] for k, v in rep["per_class"].items()}),
        plots.reliability_figure(extras["bins"], extras["bins_calibrated"], rep["ece"], rep["ece_calibrated"],
                                 title=f"Reliability (temperature {rep['temperature']:.2f})"),
        plots.ablation_figure(rep["modality_ablation"]),
    ]
    first_js: bool | str = True if inline_js else False if js_src else "cdn"  # plotly.js once, with the first figure
    parts = [fig.to_html(full_html=False, include_plotlyjs=first_js if i == 0 else False) for i, fig in enumerate(figures)]
    head_js = f'<script src="{html.escape(js_src)}"></script>' if js_src and not inline_js else ""
    summary = (f"balanced accuracy <b>{_fmt(rep['balanced_accuracy'])}</b> · accuracy {_fmt(rep['accuracy'])} · "
               f"macro F1 {_fmt(rep['macro_f1'])} · macro AUC {_fmt(rep['macro']['auc'])} · "
               f"ECE {_fmt(rep['ece'])} → {_fmt(rep['ece_calibrated'])} after temperature · {rep['n_cases']} cases")
    leaky = "<p class=warn>This entry uses label-leaking metadata (leaky: true); its scores overstate real use.</p>" \
        if card.get("leaky") else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(rep['entry'])} evaluation</title>{head_js}
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}.warn{{color:#a00}}</style></head><body>
<h1>{html.escape(card.get('title') or rep['entry'])}</h1>
<p>{html.escape(rep['dataset'])}, {html.escape(rep['split_note'])}. Research and teaching tool, not a medical device.</p>
{leaky}<p>{summary}</p>{_table(rep)}{_trust(rep)}{trust_features(card)}{section_html(rep.get("explanations"))}
{''.join(f'<div>{p}</div>' for p in parts)}
</body></html>"""
    Path(path).write_text(page)
