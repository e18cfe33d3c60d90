"""Paired comparisons behind the training-lever readings (docs/BENCHMARKS.md "Training levers", RESULTS):

    python bench/paired_levers.py

Each pair is scored on the same validation and test cases with its card's calibration and decision
rule; the difference carries a 95% group-bootstrap interval (`skinui.stats.paired_difference`,
2,000 replicates over lesions or patients).

`pad_ufes20_image` (the CPU fast-path encoder the GPU one replaced) is no longer shipped: it made room
for `ham10000_dermiresnet` under the 150 MB weights budget. It is read from `runs/retired`: restore it
there with `git show 0ceff25:weights/pad_ufes20_image.json > runs/retired/pad_ufes20_image.json` (and the
same for its `.safetensors` and `shared/pad_ufes20_clinical_lite0.safetensors`), or retrain it with
`python -m training fit --config training/configs/pad_ufes20_image.yaml --weights-dir runs/retired`.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAIRS = [  # (entry a, its folder), (entry b, its folder), dataset, data folder: a minus b
    (("pad_ufes20_image_gpu", "weights"), ("pad_ufes20_image", "runs/retired"), "pad-ufes-20", "../shared/data/pad-ufes-20"),
    (("ham10000_ens_image", "weights"), ("ham10000_image", "weights"), "ham10000", "../shared/data/ham10000"),
]


def scored(name: str, folder: str, dataset: str, root: str, split: str, cache):
    """(calibrated probabilities, decisions), labels, groups of one entry on a split (`training.evaluate.shipped_scores`)."""
    from skinui.zoo import load_entry
    from training.evaluate import shipped_scores

    _, labels, groups, scores = shipped_scores(load_entry(name, REPO / folder), dataset, REPO / root, split, cache)
    return scores, labels, groups


def main() -> int:
    from skinui.stats import paired_difference
    from training.evaluate import EncodeCache

    cache = EncodeCache()
    for (a, folder_a), (b, folder_b), dataset, root in PAIRS:
        for split in ("val", "test"):
            sa, labels, groups = scored(a, folder_a, dataset, root, split, cache)
            sb, _, _ = scored(b, folder_b, dataset, root, split, cache)
            diff = paired_difference(labels, groups, sa, sb)
            cells = [f"{k} {v['estimate']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]" for k, v in diff.items()
                     if isinstance(v, dict) and "estimate" in v]
            print(f"{a} - {b}, {split}: " + "; ".join(cells))
    cache.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
