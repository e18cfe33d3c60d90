"""Does TDBN's segmented stream matter? The shipped entry against itself with the mask switched off.

    python bench/tdbn_mask_ablation.py [--entry pad_ufes20_tdbn] [--data-root ../shared/data/pad-ufes-20]

"Mask off" makes the segmenter return an all-ones mask, so the second stream (the keys of the
cross-attention) sees the whole photo, exactly like the first; everything else is the shipped
entry (calibration and decision rule of its card). Paired group-bootstrap differences on validation
and test (`skinui.stats.paired_difference`): shipped minus mask off. No feature cache is used, so
the patched encoder can never be served the shipped one's features.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    from skinui.stats import paired_difference
    from skinui.zoo import load_entry
    from training.evaluate import shipped_scores

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entry", default="pad_ufes20_tdbn")
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "pad-ufes-20"))
    args = ap.parse_args(argv)
    shipped, off = load_entry(args.entry), load_entry(args.entry)
    for enc in off.model.image_encoders.values():
        if not hasattr(enc, "segment"):
            raise SystemExit(f"{args.entry} has no segmenter to switch off.")
        enc.segment = lambda x: torch.ones_like(x[:, :1])  # the segmented stream sees every pixel
    for split in ("val", "test"):
        _, labels, groups, a = shipped_scores(shipped, shipped.card["dataset"], args.data_root, split)
        _, _, _, b = shipped_scores(off, off.card["dataset"], args.data_root, split)
        diff = paired_difference(labels, groups, a, b)
        changed = float(np.mean(a[1] != b[1]))
        cells = "; ".join(f"{k} {v['estimate']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
                          for k, v in diff.items() if isinstance(v, dict) and "estimate" in v)
        print(f"{args.entry} shipped - mask off, {split} ({labels.size} cases, {changed:.0%} of decisions change): {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
