"""`python -m training.explain_report`: the "explanations" section of every evaluation report.

    python -m training.explain_report [NAMES ...] [--reports docs/reports] [--explanations docs/explanations]
        [--weights-dir weights]

Each entry's measured explanation quality, from the per-entry measurement files in docs/explanations
(`training.localisation`, `training.faithfulness`, `training.explain_truth`; they hold the per-case
values, hence the intervals) and, where an entry has no file, from its card's `explain*` blocks:
Grad-CAM energy in the lesion and pointing game against a centred blob, deletion/insertion against
random maps, relevance against SynthDerm's truth, JI-ADF's branch weights against that truth. What
was not measured says so and why ("not measured (no lesion masks)"). `python -m training.reports`
writes the section with each report; this command refreshes it in reports written earlier (report.json
gains `explanations`, report.html its section) without scoring anything again.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Any

from skinui.explain import quality

SOURCE = ("docs/EXPLANATIONS.md: test split, Grad-CAM of the predicted class at the card's layer; "
          "95% percentile bootstrap intervals over lesions/patients (2000 replicates)")
COMMANDS = {
    "gradcam_localisation": "python -m training.localisation --weights weights/NAME --data-root DIR --split test "
                            "--layers LAYER --out docs/explanations/NAME.test.json",
    "gradcam_faithfulness": "python -m training.faithfulness --weights weights/NAME --data-root DIR --split test "
                            "--out docs/explanations/NAME.faith-test.json",
    "relevance_truth": "python -m training.explain_truth relevance --weights weights/NAME --data-root DIR "
                       "--split test --out docs/explanations/NAME.truth-relevance.test.json",
    "branch_weights_truth": "python -m training.explain_truth reliance --weights weights/NAME --data-root DIR "
                            "--split test --out docs/explanations/NAME.truth-reliance.test.json",
}
BEGIN, END = "<!-- explanations:begin -->", "<!-- explanations:end -->"


def measured_blocks(folder: Path | None) -> dict[str, dict[str, Any]]:
    """entry -> card-shaped blocks ("explain", "explain_faithfulness", "explain_relevance", "reliance")
    built from the measurement files of `folder` (nothing when it is None or absent)."""
    from training import explain_truth, faithfulness, localisation

    out: dict[str, dict[str, Any]] = {}
    if folder is None or not Path(folder).is_dir():
        return out
    folder = Path(folder)
    for name, choice in localisation.chosen(folder).items():
        out.setdefault(name, {})["explain"] = localisation.card_block(choice)
    for name, splits in faithfulness.load_results(folder).items():
        if "test" in splits:
            out.setdefault(name, {})["explain_faithfulness"] = faithfulness.card_block({"test": splits["test"]})
    for path in sorted(folder.glob("*.truth-relevance.test.json")):
        result = json.loads(path.read_text())
        out.setdefault(result["entry"], {})["explain_relevance"] = explain_truth.card_block(result)
    for path in sorted(folder.glob("*.truth-reliance.test.json")):
        result = json.loads(path.read_text())
        only = (result.get("metadata_only_vs_images_only") or {}).get("alpha_metadata") or {}
        helps = (result.get("metadata_can_help") or {}).get("alpha_metadata") or {}
        out.setdefault(result["entry"], {})["reliance"] = {
            "cases": result.get("cases"), "sides": {k: v.get("n") for k, v in (result.get("sides") or {}).items()},
            "alpha_joint": result.get("alpha_joint"),
            "auroc_alpha_metadata_only_vs_images_only": only.get("auroc"),
            "auroc_alpha_metadata_helps_vs_images_only": helps.get("auroc")}
    return out


def section(card: dict[str, Any], blocks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's `explanations`: `blocks` (this entry's measured_blocks, which hold the intervals) over
    the card's own blocks; each measure a dict per image (or the scores), or "not measured (why)"."""
    merged = {**card, **{k: v for k, v in (blocks or {}).items() if k != "reliance"}}
    loc, faith, rel = quality.localisation(merged), quality.faithfulness(merged), quality.relevance(merged)
    methods = {m: {k: b.get(k) for k in ("steps", "baseline", "random", "seeds")}
               for m, b in (merged.get("explain_faithfulness") or {}).items() if isinstance(b, dict)}
    out: dict[str, Any] = {
        "source": SOURCE,
        "gradcam_localisation": loc or quality.not_measured(card, "localisation"),
        "gradcam_faithfulness": {m: {**f, "method": methods.get(m)} for m, f in faith.items()}
        or quality.not_measured(card, "faithfulness"),
        "relevance_truth": rel or quality.not_measured(card, "relevance"),
    }
    if ((card.get("model") or {}).get("structure") or {}).get("name") == "jiadf":
        reliance = (blocks or {}).get("reliance")
        out["branch_weights_truth"] = reliance or quality.not_measured(card, "reliance")
    out["commands"] = {k: v for k, v in COMMANDS.items() if k in out and isinstance(out[k], dict)}
    return out


def _e(text: Any) -> str:
    return html.escape(str(text))


def section_html(sec: dict[str, Any] | None) -> str:
    """The section as HTML between markers (so it can be refreshed in a page written earlier)."""
    if not sec:
        return ""
    items = []
    loc = sec.get("gradcam_localisation")
    if isinstance(loc, dict):
        for m, t in loc.items():
            items.append(
                f"<li>Grad-CAM on the lesion, {_e(m)} (layer {_e(t.get('layer'))}, {t['n']} test cases): "
                f"{_e(quality.ci_text(t['energy_in_lesion'], t.get('energy_in_lesion_ci'), percent=True))} of the map's "
                f"weight inside the lesion (an even map {t['lesion_area']:.0%}, a blob in the middle "
                f"{t['centre_energy_in_lesion']:.0%}; map minus blob "
                f"{_e(quality.ci_text(*quality.centre_margin(t), percent=True, signed=True))}); its maximum on the lesion "
                f"in {_e(quality.ci_text(t['pointing_game'], t.get('pointing_game_ci'), percent=True))} of cases "
                f"(blob {t['centre_pointing_game']:.0%})</li>")
    else:
        items.append(f"<li>Grad-CAM on the lesion: {_e(loc)}</li>")
    faith = sec.get("gradcam_faithfulness")
    if isinstance(faith, dict):
        for m, f in faith.items():
            d, i = quality.margins(f)
            items.append(
                f"<li>Grad-CAM faithfulness, {_e(m)} ({f['n']} test cases): deletion AUC {f['deletion_auc']:.3f} against "
                f"{f['random_deletion_auc']:.3f} for random maps (better by {_e(quality.ci_text(*d, signed=True, digits=3))}); "
                f"insertion AUC {f['insertion_auc']:.3f} against {f['random_insertion_auc']:.3f} (better by "
                f"{_e(quality.ci_text(*i, signed=True, digits=3))})</li>")
    else:
        items.append(f"<li>Grad-CAM faithfulness (deletion and insertion): {_e(faith)}</li>")
    rel = sec.get("relevance_truth")
    if isinstance(rel, dict):
        from skinui.explain.methods import METHOD_LABELS

        scores = "; ".join(f"{_e(METHOD_LABELS.get(m, m))} {_e(quality.ci_text(v['true_class']['estimate'], v['true_class'].get('ci')))}"
                           for m, v in rel["methods"].items())
        floor = ((rel.get("random") or {}).get("true_class") or {}).get("estimate")
        items.append(f"<li>Metadata relevance against SynthDerm's truth ({rel['cases_scored']} test cases; mean Spearman "
                     f"ρ, 0 = chance, 1 = the design's order): {scores}"
                     + (f"; random bars {floor:.2f}" if floor is not None else "") + "</li>")
    else:
        items.append(f"<li>Metadata relevance against a known truth: {_e(rel)}</li>")
    rely = sec.get("branch_weights_truth")
    if isinstance(rely, dict):
        joint = rely.get("alpha_joint") or {}
        auroc = rely.get("auroc_alpha_metadata_only_vs_images_only") or {}
        items.append(f"<li>JI-ADF branch weights against SynthDerm's truth: the joint branch takes "
                     f"{joint.get('mean', float('nan')):.4f} of the weight on average; AUROC of the metadata weight, "
                     f"metadata-only against images-only evidence: "
                     f"{_e(quality.ci_text(auroc.get('estimate'), auroc.get('ci')))}</li>")
    elif rely is not None:
        items.append(f"<li>JI-ADF branch weights against a known truth: {_e(rely)}</li>")
    return (f"{BEGIN}<h2>Explanations, measured</h2><p>{_e(sec.get('source', SOURCE))}. Commands: "
            f"docs/EXPLANATIONS.md.</p><ul>{''.join(items)}</ul>{END}")


def refresh(report_dir: Path, sec: dict[str, Any]) -> bool:
    """Put the section into an entry's report.json and report.html written earlier; False when it has none."""
    path = Path(report_dir) / "report.json"
    if not path.is_file():
        return False
    rep = json.loads(path.read_text())
    path.write_text(json.dumps({**rep, "explanations": sec}, indent=1) + "\n")
    page_path = Path(report_dir) / "report.html"
    if page_path.is_file():
        page, fragment = page_path.read_text(), section_html(sec)
        if BEGIN in page and END in page:
            head, rest = page.split(BEGIN, 1)
            page = head + fragment + rest.split(END, 1)[1]
        else:
            page = page.replace("</body>", fragment + "\n</body>", 1)
        page_path.write_text(page)
    return True


def main(argv: list[str] | None = None) -> int:
    from skinui.zoo import list_entries

    ap = argparse.ArgumentParser(prog="python -m training.explain_report", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="entries (default: every entry with a report)")
    ap.add_argument("--reports", type=Path, default=Path("docs/reports"))
    ap.add_argument("--explanations", type=Path, default=Path("docs/explanations"))
    ap.add_argument("--weights-dir", default="weights")
    args = ap.parse_args(argv)
    blocks = measured_blocks(args.explanations)
    done = []
    for card in list_entries(args.weights_dir):
        if args.names and card["name"] not in args.names:
            continue
        if refresh(args.reports / card["name"], section(card, blocks.get(card["name"]))):
            done.append(card["name"])
    print(f"explanations section written into {len(done)} reports", file=sys.stderr)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
