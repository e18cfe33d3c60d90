"""`python -m training.explain_truth`: explanations scored against SynthDerm's known truth.

    python -m training.explain_truth relevance --weights weights/NAME --data-root DIR [--split test|val]
        [--max-cases N] [--out FILE.json]
    python -m training.explain_truth reliance --weights weights/NAME --data-root DIR [--split ...] [--out ...]
    python -m training.explain_truth --table docs/explanations [--write docs/EXPLANATIONS.md] [--update-cards]

Every case is read as a class pair: its true class and its **rival**, the class the model finds most
probable after the true one (the runner-up of a correct prediction; the wrong prediction otherwise).
The truth for that pair comes from the generator's design (`skinui.synth.truth`), never from a model.

- relevance: per case, Spearman's rank correlation between |relevance| per metadata field and the
  design's informativeness of the field for the pair (total-variation distance of its profiles).
  Relevance is taken for two targets: the true class's calibrated probability (the app's bars, with
  the class picked) and the log-odds true vs rival (the question the pair truth answers). Cases
  whose pair shares a metadata code (the truth is all zeros) are left out and counted. A method
  whose bars are all zero ranks nothing and scores 0; a random relevance is the floor.
- reliance (JI-ADF entries): per case, JI-ADF's branch weights alpha against where the evidence for
  the true class against its rival lies by design (images, metadata, both; within the entry's
  modalities): AUROC and point-biserial correlation of alpha_metadata, per class pair a table.

Intervals: 95% percentile bootstrap over lesions (`skinui.stats.group_weights`, 2000 replicates).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from itertools import product
from math import factorial
from pathlib import Path
from typing import Any

import numpy as np

from skinui.views import decision

N_BOOT = 2000
TARGETS = ("true_class", "log_odds")  # relevance of P(true) / of log P(true) - log P(rival)
REFERENCES = {"shapley_exact": "*exact Shapley (256 coalitions)*",
              "feature_ablation_width_summed": "*feature ablation before the fix*",
              "random": "*random bars*", "bayes_llr": "*design's log-likelihood ratio*"}


# -- statistics (numpy only; the tests check them on constructed data) ---------------------------------

def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho with average ranks for ties; NaN when either side is constant (no ranking)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.asarray(a, dtype=float)), rankdata(np.asarray(b, dtype=float))
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def weighted_mean(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[B] weighted means of `values` [N] under bootstrap weights w [B, N]."""
    return (w @ values) / w.sum(axis=1)


def auroc_w(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[B] AUROC of `score` for y == 1 (Mann-Whitney, ties 1/2) under weights w [B, N]."""
    from skinui.stats import macro_auc_w

    # two-class macro AUC = the AUC of either class: class 1 scored by s, class 0 by -s
    return macro_auc_w(np.asarray(y, dtype=np.int64), np.c_[-score, score], w)


def point_biserial_w(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[B] weighted Pearson correlation of `score` with the 0/1 variable y (NaN where one is constant)."""
    y, s = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    total = w.sum(axis=1, keepdims=True)
    my, ms = (w @ y)[:, None] / total, (w @ s)[:, None] / total
    cov = (w * (y - my) * (s - ms)).sum(axis=1)
    var = (w * (y - my) ** 2).sum(axis=1) * (w * (s - ms) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, cov / np.sqrt(var), np.nan)


def estimate(stat: Callable[[np.ndarray], np.ndarray], groups: Sequence[Any], n_boot: int = N_BOOT,
             seed: int = 0) -> dict[str, Any]:
    """{"estimate", "ci"}: `stat(weights [B, N]) -> [B]` on all-ones weights and on lesion-bootstrap weights."""
    from skinui.stats import _json, group_weights, percentile_interval

    point = stat(np.ones((1, len(groups))))[0]
    lo, hi = percentile_interval(stat(group_weights(groups, n_boot, seed)))
    return {"estimate": _json(point), "ci": [_json(lo), _json(hi)]}


# -- relevance ------------------------------------------------------------------------------------------

def rival_of(probs: np.ndarray, true: int) -> int:
    """The most probable class other than the true one."""
    others = np.asarray(probs, dtype=float).copy()
    others[true] = -np.inf
    return int(others.argmax())


def pair_outputs(enc: Any, t: int, r: int) -> dict[str, Callable[[Any], Any]]:
    """Encoded metadata [R, D] -> [R] for each target: P(t), and log P(t) - log P(r) (image features fixed)."""
    from skinui.explain.attribution import metadata_forward

    probs = metadata_forward(enc)
    return {"true_class": lambda m: probs(m)[:, t],
            "log_odds": lambda m: probs(m).clamp_min(1e-12)[:, t].log() - probs(m).clamp_min(1e-12)[:, r].log()}


def log_odds_relevance(enc: Any, method: str, t: int, r: int) -> dict[str, float]:
    """Per field, the method's attribution of log P(t) - log P(r) (grouped like `relevance`, unscaled)."""
    from skinui.explain.attribution import RELEVANCE_METHODS

    log_odds = pair_outputs(enc, t, r)["log_odds"]
    attr = RELEVANCE_METHODS.get(method)(lambda m: log_odds(m)[:, None], enc.batch["metadata"].detach().float(), 0, enc)
    column = attr.detach()[0].numpy().astype(np.float64)
    return {name: float(column[cols].sum()) for name, cols in enc.entry.encoder.groups}


def exact_shapley(value: Callable[[Any], Any], x: Any, baseline: Any, groups: list[tuple[str, list[int]]]) -> dict[str, float]:
    """Exact Shapley value of each field group for `value` ([R, D] -> [R]), fields absent = `baseline`
    columns: all 2^G coalitions in one batch (256 rows for 8 fields), the reference for the sampling."""
    import torch

    n = len(groups)
    coalitions = np.array(list(product((False, True), repeat=n)))  # row k: binary digits of k, field 0 first
    rows = baseline.expand(len(coalitions), -1).clone()
    for g, (_, cols) in enumerate(groups):
        rows[:, cols] = torch.where(torch.from_numpy(coalitions[:, g])[:, None], x[0, cols], rows[:, cols])
    with torch.no_grad():
        v = value(rows).double().numpy()
    size = coalitions.sum(1)
    weight = np.array([factorial(k) * factorial(n - k - 1) / factorial(n) for k in range(n)])
    out = {}
    for g, (name, _) in enumerate(groups):
        without = np.flatnonzero(~coalitions[:, g])
        out[name] = float((weight[size[without]] * (v[without + 2 ** (n - 1 - g)] - v[without])).sum())
    return out


def _exact_both(enc: Any, t: int, r: int) -> dict[str, dict[str, float]]:
    """Exact Shapley per field for both targets, from the all-unknown row (feature ablation's baseline)."""
    import torch

    x = enc.batch["metadata"].detach().float()
    baseline = torch.as_tensor(enc.entry.encoder.transform([{}]), dtype=x.dtype)
    return {k: exact_shapley(f, x, baseline, enc.entry.encoder.groups) for k, f in pair_outputs(enc, t, r).items()}


def _metadata_present(enc: Any) -> bool:
    mask = enc.mask or {}
    return enc.batch.get("metadata") is not None and bool(mask.get("metadata", np.array([True])).all())


def case_rhos(scores: dict[str, float], fields: list[str], truths: dict[str, dict[str, float]]) -> dict[str, float]:
    """Spearman of |scores| against each truth; a constant (e.g. all-zero) relevance ranks nothing: 0."""
    rel = [abs(scores[f]) for f in fields]
    return {k: (0.0 if np.isnan(rho := spearman(rel, [t[f] for f in fields])) else rho) for k, t in truths.items()}


def relevance_case(entry: Any, case: Any, methods: list[str], rng: np.random.Generator) -> dict[str, Any] | None:
    """One case's row: pair, truths and each method's rho per target (None: no metadata evidence or input)."""
    from skinui.explain import relevance
    from skinui.synth import truth

    enc = entry.encode(case)
    classes, fields = entry.classes, entry.encoder.field_names
    t = classes.index(case.label)
    r = rival_of(enc.probabilities()[0], t)
    pair = truth.field_informativeness(classes[t], classes[r])
    if not any(pair.values()) or not _metadata_present(enc):
        return None
    truths = {"design": pair, "case": truth.case_field_informativeness(classes[t], classes[r], case.metadata or {})}
    row: dict[str, Any] = {"case_id": case.case_id, "lesion_id": case.lesion_id, "true": classes[t],
                           "rival": classes[r], "predicted": classes[int(enc.decisions()[0])], "rho": {}}
    width = {name: len(cols) for name, cols in entry.encoder.groups}
    row["rho"]["shapley_exact"] = {k: case_rhos(v, fields, truths) for k, v in _exact_both(enc, t, r).items()}
    for m in methods:
        scores = {"true_class": relevance(enc, m, t, scaled=False), "log_odds": log_odds_relevance(enc, m, t, r)}
        row["rho"][m] = {k: case_rhos(v, fields, truths) for k, v in scores.items()}
        if m == "feature_ablation":  # as shipped before the per-column fix: each field counted once per column
            row["rho"]["feature_ablation_width_summed"] = {
                k: case_rhos({f: v[f] * width[f] for f in fields}, fields, truths) for k, v in scores.items()}
    # references without a model: random bars (the floor), and the design's own per-case |log-likelihood
    # ratio| (what a perfectly faithful explanation of a Bayes model would show for this case's values)
    for name, scores in (("random", dict(zip(fields, rng.random(len(fields))))), ("bayes_llr", truths["case"])):
        row["rho"][name] = {target: case_rhos(scores, fields, truths) for target in TARGETS}
    return row


def summarise_relevance(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method, target and truth: mean rho over cases with its lesion-bootstrap interval."""
    groups = [r["lesion_id"] for r in rows]
    out: dict[str, Any] = {}
    for method in rows[0]["rho"]:
        for target in TARGETS:
            for kind in ("design", "case"):
                values = np.array([r["rho"][method][target][kind] for r in rows])
                out.setdefault(method, {}).setdefault(target, {})[kind] = estimate(
                    lambda w, v=values: weighted_mean(v, w), groups)
    return out


PAIRED = (("integrated_gradients", "feature_ablation"), ("integrated_gradients", "shapley_value_sampling"),
          ("shapley_value_sampling", "feature_ablation"))


def paired_differences(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Method a minus method b in mean rho (design truth) on the same bootstrap replicates, per target."""
    groups = [r["lesion_id"] for r in rows]
    out: dict[str, Any] = {}
    for a, b in PAIRED:
        if a not in rows[0]["rho"] or b not in rows[0]["rho"]:
            continue
        for target in TARGETS:
            diff = np.array([r["rho"][a][target]["design"] - r["rho"][b][target]["design"] for r in rows])
            out.setdefault(f"{a} - {b}", {})[target] = estimate(lambda w, d=diff: weighted_mean(d, w), groups)
    return out


def by_pair(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by unordered class pair ("AKIEC vs SCCKA"), pairs sorted."""
    pairs: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        pairs.setdefault(" vs ".join(sorted((r["true"], r["rival"]))), []).append(r)
    return dict(sorted(pairs.items()))


def per_pair_relevance(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per unordered class pair: cases and each method's mean rho (log-odds target, design truth)."""
    return {p: {"n": len(rs), **{m: float(np.mean([r["rho"][m]["log_odds"]["design"] for r in rs]))
                                 for m in rs[0]["rho"]}} for p, rs in by_pair(rows).items()}


def measure_relevance(entry: Any, cases: list[Any], seed: int = 0) -> dict[str, Any]:
    from skinui.explain import RELEVANCE_METHODS

    if entry.encoder is None or "metadata" not in entry.modalities:
        raise ValueError(f"{entry.name} takes no metadata, so it has no field relevance to score.")
    methods, rng = list(RELEVANCE_METHODS.names()), np.random.default_rng(seed)
    rows = [row for c in cases if (row := relevance_case(entry, c, methods, rng)) is not None]
    if not rows:
        raise ValueError("No case of the split has a rival with a different metadata profile.")
    return {"cases_scored": len(rows), "cases_left_out": len(cases) - len(rows),
            "summary": summarise_relevance(rows), "differences": paired_differences(rows),
            "per_pair": per_pair_relevance(rows), "rows": rows}


# -- reliance -------------------------------------------------------------------------------------------

def reliance_rows(entry: Any, cases: list[Any], batch: int = 32) -> list[dict[str, Any]]:
    """Per case: true class, rival, where the pair's evidence lies (within the entry's modalities), alpha."""
    from skinui.synth import truth
    from skinui.vocabulary import BRANCHES

    classes, rows = entry.classes, []
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        enc = entry.encode(chunk)
        if enc.alpha is None:
            raise ValueError(f"{entry.name} has no branch weights alpha (a JI-ADF entry has).")
        probs, alpha = enc.probabilities(), enc.alpha.detach().numpy().astype(float)
        for i, case in enumerate(chunk):
            t = classes.index(case.label)
            r = rival_of(probs[i], t)
            rows.append({"case_id": case.case_id, "lesion_id": case.lesion_id, "true": classes[t], "rival": classes[r],
                         "evidence": truth.evidence_side(classes[t], classes[r], entry.modalities),
                         "alpha": dict(zip(BRANCHES, alpha[i].round(6).tolist()))})
    return rows


def metadata_share(alpha: dict[str, float]) -> float:
    """alpha_M / (alpha_I + alpha_M): the metadata branch's weight against the image branch, the joint
    branch set aside (it sees both, so it cannot say which modality is relied on)."""
    total = alpha["image"] + alpha["metadata"]
    return alpha["metadata"] / total if total > 0 else 0.5


SCORES: dict[str, Callable[[dict[str, float]], float]] = {
    "alpha_metadata": lambda a: a["metadata"], "metadata_share": metadata_share}


def association(rows: list[dict[str, Any]], positive: set[str], negative: set[str]) -> dict[str, Any] | None:
    """Per score (alpha_M, and its share against alpha_I): AUROC and point-biserial r for evidence on a
    `positive` side against a `negative` one (None when one of the two groups is empty)."""
    chosen = [r for r in rows if r["evidence"] in positive | negative]
    y = np.array([r["evidence"] in positive for r in chosen], dtype=np.int64)
    if y.size == 0 or y.min() == y.max():
        return None
    groups = [r["lesion_id"] for r in chosen]
    out: dict[str, Any] = {"n_positive": int(y.sum()), "n_negative": int(y.size - y.sum())}
    for name, score in SCORES.items():
        s = np.array([score(r["alpha"]) for r in chosen])
        out[name] = {"auroc": estimate(lambda w, s=s: auroc_w(y, s, w), groups),
                     "point_biserial": estimate(lambda w, s=s: point_biserial_w(y, s, w), groups)}
    return out


def _mean_alpha(rows: list[dict[str, Any]]) -> dict[str, float]:
    means = {b: float(np.mean([r["alpha"][b] for r in rows])) for b in rows[0]["alpha"]}
    return {**means, "metadata_share": float(np.mean([metadata_share(r["alpha"]) for r in rows]))}


def per_pair_alpha(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per unordered class pair: where its evidence lies (entry's modalities), cases, mean alpha per branch."""
    return {p: {"evidence": rs[0]["evidence"], "n": len(rs), "alpha": _mean_alpha(rs)} for p, rs in by_pair(rows).items()}


def measure_reliance(entry: Any, cases: list[Any]) -> dict[str, Any]:
    rows = reliance_rows(entry, cases)
    sides = sorted({r["evidence"] for r in rows})
    joint = np.array([r["alpha"]["joint"] for r in rows])
    return {"alpha_joint": {"min": float(joint.min()), "q05": float(np.quantile(joint, 0.05)),
                            "median": float(np.median(joint)), "mean": float(joint.mean())},
            "sides": {s: {"n": sum(r["evidence"] == s for r in rows),
                          "alpha": _mean_alpha([r for r in rows if r["evidence"] == s])} for s in sides},
            "metadata_can_help": association(rows, {"metadata", "both"}, {"images"}),
            "metadata_only_vs_images_only": association(rows, {"metadata"}, {"images"}),
            "per_pair": per_pair_alpha(rows), "rows": rows}


# -- tables ---------------------------------------------------------------------------------------------

def _ci(block: dict[str, Any] | None) -> str:
    if not block or block["estimate"] is None:
        return "n/a"
    lo, hi = block["ci"]
    return f"{block['estimate']:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{block['estimate']:.2f}"


RELEVANCE_VIEWS = (("true_class", "design", "target P(true class), the app's bars with the true class picked; "
                   "against the design's pair truth"),
                   ("log_odds", "design", "target log P(true) - log P(rival); against the design's pair truth"),
                   ("log_odds", "case", "target log-odds; against the case-level truth (|log-likelihood ratio| of "
                   "the values this case shows)"))


def relevance_table(folder: Path) -> str:
    """Per view (target, truth): one row per entry, mean Spearman rho [95% CI] per method and reference."""
    from skinui.explain.methods import METHOD_LABELS

    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.truth-relevance.*.json"))]
    columns = [*METHOD_LABELS, *REFERENCES]
    labels = {**METHOD_LABELS, **REFERENCES}
    out = []
    for target, kind, title in RELEVANCE_VIEWS:
        out += [f"Mean ρ, {title}:", "", "| entry | cases (left out) | " + " | ".join(labels[c] for c in columns) + " |",
                "|---|---:|" + "---:|" * len(columns)]
        for res in results:
            cells = [_ci(res["summary"][c][target][kind]) if c in res["summary"] else "n/a" for c in columns]
            out.append(f"| `{res['entry']}` | {res['cases_scored']} ({res['cases_left_out']}) | " + " | ".join(cells) + " |")
        out.append("")
    short = {"integrated_gradients": "IG", "feature_ablation": "FA", "shapley_value_sampling": "Shapley sampling"}
    names = [k for k in (results[0].get("differences") or {})] if results else []
    if names:
        heads = [" − ".join(short[m] for m in n.split(" - ")) for n in names]
        out += ["Paired differences in mean ρ (same bootstrap replicates), design truth, target P(true) | log-odds:", "",
                "| entry | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(names)]
        for res in results:
            d = res.get("differences") or {}
            out.append(f"| `{res['entry']}` | " + " | ".join(
                f"{_ci(d[n]['true_class'])} · {_ci(d[n]['log_odds'])}" if n in d else "n/a" for n in names) + " |")
        out.append("")
    return "\n".join(out)


def reliance_table(folder: Path) -> str:
    """Summary per entry, then per class pair each entry's mean metadata share of alpha and its cases."""
    from skinui.synth.truth import evidence_side

    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.truth-reliance.*.json"))]
    lines = ["| entry | cases: images / both / metadata / none | mean α_joint (min) | AUROC α_M: metadata only vs images only | "
             "AUROC α_M: metadata helps vs images only | AUROC α_M/(α_I+α_M): metadata only vs images only | "
             "point-biserial r, α_M: metadata only vs images only |", "|---|---|---:|---:|---:|---:|---:|"]
    for res in results:
        sides, joint = res["sides"], res["alpha_joint"]
        count = " / ".join(str(sides.get(s, {}).get("n", 0)) for s in ("images", "both", "metadata", "none"))
        only, helps = res["metadata_only_vs_images_only"] or {}, res["metadata_can_help"] or {}
        cells = [_ci((only.get("alpha_metadata") or {}).get("auroc")), _ci((helps.get("alpha_metadata") or {}).get("auroc")),
                 _ci((only.get("metadata_share") or {}).get("auroc")),
                 _ci((only.get("alpha_metadata") or {}).get("point_biserial"))]
        lines.append(f"| `{res['entry']}` | {count} | {joint['mean']:.4f} ({joint['min']:.3f}) | " + " | ".join(cells) + " |")
    pairs = sorted({p for res in results for p in res["per_pair"]}, key=lambda p: (evidence_side(*p.split(" vs ")), p))
    head = " | ".join(f"`{res['entry']}`" for res in results)
    lines += ["", "Per class pair (true class and its rival, either order): mean α_M/(α_I+α_M) (cases); where an "
              "entry's own inputs move the evidence, its side is named.", "",
              f"| pair | evidence (D+C+M) | {head} |", "|---|---|" + "---:|" * len(results)]
    for p in pairs:
        side = evidence_side(*p.split(" vs "))
        cells = []
        for res in results:
            c = res["per_pair"].get(p)
            own = f" · {c['evidence']}" if c and c["evidence"] != side else ""
            cells.append(f"{c['alpha']['metadata_share']:.2f} ({c['n']}){own}" if c else "-")
        lines.append(f"| {p} | {side} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def card_block(result: dict[str, Any]) -> dict[str, Any]:
    """The card's `explain_relevance`: per relevance method, mean Spearman rho against the design's pair
    truth with its 95% interval, for the app's bars (target P(true class)) and for the log-odds target,
    beside the random-bars floor and the design's own ceiling (what the relevance tab quotes)."""
    from skinui.explain.methods import METHOD_LABELS

    def pick(method: str) -> dict[str, Any]:
        return {t: result["summary"][method][t]["design"] for t in TARGETS}

    return {"split": result["split"], "cases_scored": result["cases_scored"], "cases_left_out": result["cases_left_out"],
            "truth": "SynthDerm's design: how well each field separates the true class from its rival "
                     "(python -m training.explain_truth; docs/EXPLANATIONS.md)",
            "score": "mean Spearman rho between |relevance| per field and the truth; 0 = chance, 1 = the design's order",
            "methods": {m: pick(m) for m in METHOD_LABELS if m in result["summary"]},
            "random": pick("random") if "random" in result["summary"] else None,
            "ceiling": pick("bayes_llr") if "bayes_llr" in result["summary"] else None}


def update_cards(folder: Path, weights_dir: str) -> list[str]:
    """Write `explain_relevance` into each measured entry's card (test split; `write_blocks`: and out of the others)."""
    from training.measure_cli import write_blocks

    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.truth-relevance.test.json"))]
    return write_blocks(weights_dir, "explain_relevance", {r["entry"]: card_block(r) for r in results})


# -- command line ---------------------------------------------------------------------------------------

def _run(kind: str, args: argparse.Namespace) -> int:
    from skinui.zoo import load_entry
    from training.evaluate import EvaluationError, select_cases

    path = Path(args.weights)
    entry = load_entry(path.name.removesuffix(".json"), path.parent)
    try:
        cases, _, note = select_cases(entry.card, "synthderm", Path(args.data_root).resolve(), args.split)
        cases = cases[: args.max_cases] if args.max_cases else cases
        body = measure_relevance(entry, cases) if kind == "relevance" else measure_reliance(entry, cases)
    except (EvaluationError, ValueError) as err:
        print(str(err), file=sys.stderr)
        return 2
    result = {"entry": entry.name, "split": args.split, "note": note, "views": decision(entry.card), "cases": len(cases),
              "max_cases": args.max_cases, **body}
    if not args.keep_rows:  # per-case rows are large; the summaries and per-pair tables are what docs read
        result.pop("rows")
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "per_pair")}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.explain_truth", description=__doc__.splitlines()[0])
    ap.add_argument("kind", nargs="?", choices=["relevance", "reliance"])
    ap.add_argument("--table", type=Path, default=None, help="render the tables of a folder of *.truth-*.json files")
    ap.add_argument("--write", type=Path, default=None, help="with --table: replace its blocks in this markdown file")
    ap.add_argument("--weights", help="weights/NAME")
    ap.add_argument("--data-root")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--max-cases", type=int, default=None, help="the first N cases of the split")
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep-rows", action="store_true", help="also write every case's row to --out")
    ap.add_argument("--update-cards", action="store_true",
                    help="with --table: write each entry's explain_relevance (test split) into its card")
    ap.add_argument("--weights-dir", default="weights")
    args = ap.parse_args(argv)
    if args.table is not None:
        blocks = {"relevance-truth": relevance_table(args.table), "alpha-reliance": reliance_table(args.table)}
        if args.write:
            from training.markdown import write_section

            command = f"python -m training.explain_truth --table {args.table} --write {args.write}"
            for key, body in blocks.items():
                write_section(args.write, key, body, command)
        else:
            print("\n".join(blocks.values()))
        if args.update_cards:
            print("cards updated: " + ", ".join(update_cards(args.table, args.weights_dir)), file=sys.stderr)
        return 0
    if not args.kind or not args.weights or not args.data_root:
        ap.error("give relevance|reliance with --weights and --data-root (or --table DIR)")
    return _run(args.kind, args)


if __name__ == "__main__":
    sys.exit(main())
