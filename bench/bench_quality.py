"""Image-quality checks (`skinui.trust.quality`): thresholds, false alarms and detection rates.

    PYTHONPATH=. .venv/bin/python bench/bench_quality.py [--data ../shared/data] [--derive]
                                                         [--write docs/BENCHMARKS.md]

(a) Derives each modality's thresholds from the TRAINING split of a real dataset (HAM10000 for
dermoscopic, PAD-UFES-20 for clinical; the split is the one recorded in the shipped model cards
`weights/ham10000_image.json` / `weights/pad_ufes20_image_gpu.json`, re-derived and checked against
their test SHA-256) and prints them; the constants in the module must equal them (`--derive`
prints them and stops). (b) False alarms: share of normal images that get any warning, on the
held-out part (val + test, never used for the thresholds) and on SynthDerm. (c) Detection: share
of degraded copies of the held-out images that get the intended warning (and any warning).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from skinui.trust import quality  # noqa: E402
from training.markdown import replace_section  # noqa: E402

SECTION = "## Image-quality checks"
REAL = {  # modality -> (dataset, folder under --data, model card that records the split)
    "dermoscopic": ("ham10000", "ham10000", "ham10000_image.json"),
    "clinical": ("pad-ufes-20", "pad-ufes-20", "pad_ufes20_image_gpu.json"),
}
NAMES = {"ham10000": "HAM10000", "pad-ufes-20": "PAD-UFES-20"}
WARNINGS = ("blurred", "too dark", "over-exposed", "lesion fills very little", "too small")
SHORT = {"blurred": "blur", "too dark": "dark", "over-exposed": "over-exposed",
         "lesion fills very little": "tiny lesion", "too small": "too small"}
FITZPATRICK = ("I", "II", "III", "IV", "V", "VI")
PERCENTILE = 0.5  # each threshold cuts this share (in %) of the training images on its side
# Floors on the clipped-pixel shares: their training percentile can be ~0 (most pictures have no
# clipped pixel at all), and a handful of clipped pixels is no reason to warn.
SHARE_FLOOR = 0.02


# -- data -----------------------------------------------------------------------------------------
def split_images(modality: str, data: Path) -> tuple[list, list]:
    """(train cases, held-out cases = val + test) of the modality's real dataset, split as its card records."""
    from training.data import case_ids_sha256, load_cases, make_split  # torch: only this script needs it

    dataset, folder, card_file = REAL[modality]
    record = json.loads((REPO / "weights" / card_file).read_text())["training"]["split"]
    cases, _, _ = load_cases(dataset, data / folder)
    parts, _ = make_split(dataset, cases, record)
    if case_ids_sha256(cases, parts["test"]) != record["test_sha256"]:
        sys.exit(f"{data / folder} is not the folder {card_file} was trained on (its test split differs); "
                 "pass --data the development data folder.")
    return [cases[i] for i in parts["train"]], [cases[i] for i in parts["val"] + parts["test"]]


def synthderm_images(root: Path, modality: str, limit: int) -> list[tuple[np.ndarray, str]]:
    """(image, Fitzpatrick type drawn by the generator) per SynthDerm case."""
    from skinui.cases import load_image

    truth = [json.loads(line) for line in (root / "ground_truth.jsonl").read_text().splitlines() if line]
    fitzpatrick = {t["case_id"]: t["truth_metadata"]["fitzpatrick"] for t in truth}
    files = sorted((root / modality).glob("*.png"))
    return [(load_image(p), fitzpatrick[p.stem]) for p in _subsample(files, limit)]


def _subsample(items: list, limit: int) -> list:
    if limit <= 0 or len(items) <= limit:
        return list(items)
    keep = np.random.default_rng(0).choice(len(items), limit, replace=False)
    return [items[i] for i in sorted(keep)]


# -- degradations (applied at the image's own resolution) ----------------------------------------
def blur(fraction: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (0, 0), fraction * min(img.shape[:2]))
    return apply


def stops(n: float) -> Callable[[np.ndarray], np.ndarray]:
    """Exposure changed by `n` photographic stops: sRGB decoded to linear light, times 2**n, clipped."""
    x = np.arange(256) / 255.0
    linear = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4) * 2.0**n
    linear = np.clip(linear, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    lut = np.clip(np.round(255.0 * srgb), 0, 255).astype(np.uint8)
    return lambda img: lut[img]


def gamma(g: float) -> Callable[[np.ndarray], np.ndarray]:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
    return lambda img: lut[img]


def tiny(fraction: float) -> Callable[[np.ndarray], np.ndarray]:
    """The picture shrunk to `fraction` of its side, centred on a canvas of its own border colour."""
    def apply(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        r = max(1, min(h, w) // 20)
        ring = np.concatenate([img[:r].reshape(-1, 3), img[-r:].reshape(-1, 3),
                               img[:, :r].reshape(-1, 3), img[:, -r:].reshape(-1, 3)])
        out = np.empty_like(img)
        out[:] = np.median(ring, axis=0).astype(np.uint8)
        sw, sh = max(1, round(w * fraction)), max(1, round(h * fraction))
        top, left = (h - sh) // 2, (w - sw) // 2
        out[top:top + sh, left:left + sw] = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
        return out
    return apply


DEGRADATIONS = [  # (label, transform, the warning it should raise)
    ("Gaussian blur, sigma 0.5% of the side", blur(0.005), "blurred"),
    ("Gaussian blur, sigma 1% of the side", blur(0.01), "blurred"),
    ("under-exposed by 2 stops (linear light x 1/4)", stops(-2), "too dark"),
    ("under-exposed by 3 stops (linear light x 1/8)", stops(-3), "too dark"),
    ("mid-tones darkened, gamma 3 (highlights kept)", gamma(3.0), "too dark"),
    ("over-exposed by 1 stop (linear light x 2, clipped)", stops(1), "over-exposed"),
    ("over-exposed by 2 stops (linear light x 4, clipped)", stops(2), "over-exposed"),
    ("lesion made tiny: picture at 15% of its side on a skin-coloured canvas", tiny(0.15), "lesion fills very little"),
]


# -- thresholds -----------------------------------------------------------------------------------
def _round(x: float) -> float:
    return float(f"{x:.4g}")


def derive(measures: list[dict[str, float]]) -> tuple[dict[str, float], float]:
    """Each measure's 0.5th / 99.5th percentile over normal training images (shares floored, exposure
    bounded by the module's skin-tone guards), and the highlights percentile before its guard."""
    col = {k: np.array([m[k] for m in measures]) for k in measures[0]}
    lo, hi = PERCENTILE, 100 - PERCENTILE
    highlights = _round(np.percentile(col["highlights"], lo))
    return {
        "sharpness_min": _round(np.percentile(col["sharpness"], lo)),
        "highlights_min": min(highlights, quality.DARK_SKIN_GUARD),
        "luminance_max": max(_round(np.percentile(col["mean_luminance"], hi)), quality.LIGHT_SKIN_GUARD),
        "dark_share_max": _round(max(np.percentile(col["dark_share"], hi), SHARE_FLOOR)),
        "bright_share_max": _round(max(np.percentile(col["bright_share"], hi), SHARE_FLOOR)),
        "lesion_share_min": _round(np.percentile(col["lesion_share"], lo)),
    }, highlights


# -- rates ----------------------------------------------------------------------------------------
def rates(measures: list[dict[str, float]], modality: str, thresholds: dict[str, float]) -> dict[str, float]:
    """Share of images with any warning and with each kind of warning."""
    found = [quality.warnings_for(m, modality, thresholds) for m in measures]
    out = {"n": len(found), "any": float(np.mean([bool(w) for w in found]))}
    for key in WARNINGS:
        out[key] = float(np.mean([any(key in s for s in w) for w in found]))
    return out


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def false_alarm_table(rows: list[tuple[str, dict[str, float]]], first: str = "normal images") -> str:
    head = f"| {first} | n | any warning | " + " | ".join(SHORT[k] for k in WARNINGS) + " |\n"
    head += "|---|---:|---:|" + "---:|" * len(WARNINGS) + "\n"
    return head + "".join(f"| {name} | {r['n']} | {pct(r['any'])} | " + " | ".join(pct(r[k]) for k in WARNINGS)
                          + " |\n" for name, r in rows)


def detection_table(rows: list[tuple[str, str, dict[str, dict[str, float]]]]) -> str:
    names = list(rows[0][2])
    head = ("| degraded copies of held-out images | expected warning | "
            + " | ".join(f"{NAMES[d]}: expected / any" for d in names) + " |\n")
    head += "|---|---|" + "---:|" * len(names) + "\n"
    return head + "".join(f"| {label} | {SHORT[key]} | "
                          + " | ".join(f"{pct(r[key])} / {pct(r['any'])}" for r in per.values()) + " |\n"
                          for label, key, per in rows)


def thresholds_literal(derived: dict[str, dict[str, float]]) -> str:
    lines = ["THRESHOLDS: dict[str, dict[str, float]] = {"]
    for modality, t in derived.items():
        lines.append(f'    "{modality}": {{')
        lines += [f'        "{k}": {v!r},' for k, v in t.items()]
        lines.append("    },")
    return "\n".join(lines + ["}"])


def measure_all(images: list[np.ndarray], transform: Callable[[np.ndarray], np.ndarray] | None = None) -> list[dict]:
    return [quality.measure(transform(i) if transform else i) for i in images]


def synthderm_rows(root: Path, limit: int, used: dict[str, dict[str, float]]) -> tuple[list, list]:
    """(all-images rows, per-Fitzpatrick rows) of SynthDerm false alarms."""
    overall, by_type = [], []
    for modality in quality.MODALITIES:
        pairs = synthderm_images(root, modality, limit)
        measures = measure_all([img for img, _ in pairs])
        overall.append((f"SynthDerm, {modality}", rates(measures, modality, used[modality])))
        for ftype in [f for f in FITZPATRICK if any(f == g for _, g in pairs)]:
            subset = [m for m, (_, f) in zip(measures, pairs) if f == ftype]
            by_type.append((f"{modality}, Fitzpatrick {ftype}", rates(subset, modality, used[modality])))
    return overall, by_type


def report(sizes: dict, raw_highlights: dict, alarms: list, by_type: list, detections: list, seconds: float) -> str:
    n_synth = sorted({r["n"] for name, r in alarms if name.startswith("SynthDerm")})
    return (
        f"{SECTION}\n\n"
        "`skinui.trust.quality.check_image(image, modality)` warns, one plain sentence per problem, when an upload "
        "looks blurred, is too dark, is over-exposed, when the lesion fills very little of it, or when it is under "
        f"{quality.MIN_SIDE} px on its shorter side (that last one is not measured here).\n\n"
        f"- Thresholds: the {PERCENTILE}th / {100 - PERCENTILE}th percentile of each measure over the training "
        "split recorded in `weights/ham10000_image.json` (HAM10000, dermoscopic, "
        f"{sizes['dermoscopic'][0]} images) and `weights/pad_ufes20_image_gpu.json` (PAD-UFES-20, clinical, "
        f"{sizes['clinical'][0]} images); clipped-pixel shares at least {SHARE_FLOOR}.\n"
        "- Skin-tone guards: these datasets are almost all light skin, so 'too dark' is judged on the highlights "
        "(99th-percentile grey level), not the mean, and that threshold is capped at "
        f"{quality.DARK_SKIN_GUARD:g} (the data alone would put it at {raw_highlights['dermoscopic']:g} "
        f"dermoscopic, {raw_highlights['clinical']:g} clinical); a mean luminance only counts as washed out above "
        f"{quality.LIGHT_SKIN_GUARD:g}.\n"
        f"- Held-out: the val + test parts of the same splits ({sizes['dermoscopic'][1]} HAM10000 and "
        f"{sizes['clinical'][1]} PAD-UFES-20 images, all of them), never used for the thresholds. SynthDerm: "
        f"{' / '.join(str(n) for n in n_synth)} images per modality from `runs/data/synthderm` (128 px, synthetic, "
        "a different look from both real sets; its clinical renders of the lightest skin types are often near-white "
        "and soft, which is where most of its clinical warnings come from).\n"
        "- Tiny lesion: the copy at 15% of the side covers 2.25% of the view, and the dermoscopic threshold "
        f"({quality.THRESHOLDS['dermoscopic']['lesion_share_min']:.2%} of the view: no HAM10000 training lesion is "
        "estimated smaller) lies above that, so the dermoscopic row tests the threshold more than the lesion "
        "estimate; the flat canvas also trips the blur warning ('any' column).\n"
        "- Gamma 3 darkens the mid-tones but keeps the highlights, which is also how a well-lit photo of dark skin "
        "looks, so the check is meant to miss part of it.\n\n"
        "Command: `PYTHONPATH=. .venv/bin/python bench/bench_quality.py --write docs/BENCHMARKS.md` "
        f"({seconds:.0f} s on {os.cpu_count()} CPU cores)\n\n"
        "False alarms (share of normal images with a warning):\n\n"
        f"{false_alarm_table(alarms)}\n"
        "Detection (share of degraded copies with the expected warning / with any warning):\n\n"
        f"{detection_table(detections)}\n"
        "SynthDerm false alarms by the Fitzpatrick skin type the generator drew (a synthetic palette, the only "
        "skin-tone range available here):\n\n"
        f"{false_alarm_table(by_type, 'SynthDerm images')}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench/bench_quality.py", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--synthderm", type=Path, default=REPO / "runs" / "data" / "synthderm")
    ap.add_argument("--limit-train", type=int, default=0, help="subsample the training images (0: all)")
    ap.add_argument("--limit-heldout", type=int, default=0, help="subsample the held-out images (0: all)")
    ap.add_argument("--limit-synth", type=int, default=0, help="SynthDerm images per modality (0: all)")
    ap.add_argument("--derive", action="store_true", help="print the derived thresholds and stop")
    ap.add_argument("--use-derived", action="store_true",
                    help="score with the derived thresholds even where the module's differ (development)")
    ap.add_argument("--write", type=Path, default=None, help="append (or replace) the section in this markdown file")
    args = ap.parse_args(argv)
    start = time.perf_counter()

    derived, raw_highlights, heldout, sizes = {}, {}, {}, {}
    for modality in quality.MODALITIES:
        if not (args.data / REAL[modality][1]).is_dir():
            sys.exit(f"{args.data / REAL[modality][1]} was not found; pass --data the folder with the real datasets.")
        train, held = split_images(modality, args.data)
        train, held = _subsample(train, args.limit_train), _subsample(held, args.limit_heldout)
        sizes[modality] = (len(train), len(held))
        derived[modality], raw_highlights[modality] = derive(measure_all([c.image(modality) for c in train]))
        heldout[modality] = [c.image(modality) for c in held]
    print(f"# derived from the training splits ({', '.join(f'{m}: {n[0]}' for m, n in sizes.items())} images); "
          f"highlights before the skin-tone guard: {raw_highlights}")
    print(thresholds_literal(derived))
    if args.derive:
        return
    if derived != quality.THRESHOLDS:
        print("\nThe module's THRESHOLDS differ from the derived ones above; paste them into skinui/trust/quality.py.")
        if not args.use_derived or args.write:
            sys.exit(1)  # a written table must describe the shipped thresholds
    used = derived if args.use_derived else quality.THRESHOLDS

    alarms = [(f"{NAMES[REAL[m][0]]} held-out (val + test), {m}", rates(measure_all(imgs), m, used[m]))
              for m, imgs in heldout.items()]
    synth, by_type = synthderm_rows(args.synthderm, args.limit_synth, used)
    detections = [(label, key, {REAL[m][0]: rates(measure_all(imgs, transform), m, used[m])
                                for m, imgs in heldout.items()})
                  for label, transform, key in DEGRADATIONS]
    text = report(sizes, raw_highlights, alarms + synth, by_type, detections, time.perf_counter() - start)
    print("\n" + text)
    if args.write:
        replace_section(args.write, SECTION, text)


if __name__ == "__main__":
    main()
