"""Deletion and insertion curves on constructed cases with a known answer, and their CLI's bookkeeping.

The toy model's class score depends only on a known square of the image, so the map that names
that square must delete the score fastest and restore it fastest; the map on the rest of the
image must be the slowest, and random must sit between.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from skinui.cases import Case
from skinui.demo import make_demo_entry
from skinui.explain.faithfulness import (
    area,
    baseline_image,
    case_faithfulness,
    deletion_insertion,
    feature_grid,
    fractions,
    random_reference,
    saliency_rank,
    step_masks,
    summarise,
)
from skinui.inference import Encoded
from skinui.zoo import list_entries, load_entry

SIDE = 16
REGION = (slice(2, 8), slice(3, 9))  # 36 of 256 pixels: the only pixels the toy model reads


class RegionEncoder(nn.Module):
    """feature = mean of channel 0 inside REGION (the rest of the image is ignored)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, REGION[0], REGION[1]].mean(dim=(-2, -1))[:, None]


def _toy_encoded() -> Encoded:
    """One case: the square is bright (3.0), the rest is noise around 0; two classes, p(A) = sigmoid(2 f)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, SIDE, SIDE) * 0.5
    x[:, :, REGION[0], REGION[1]] = 3.0

    def head(feats: dict[str, torch.Tensor], mask: object) -> SimpleNamespace:
        f = feats["dermoscopic"] * 2.0
        return SimpleNamespace(logits=torch.cat([f, -f], dim=1) / 2)

    model = SimpleNamespace(image_encoders={"dermoscopic": RegionEncoder()}, head=head)
    entry = SimpleNamespace(name="toy", model=model, classes=["A", "B"],
                            calibrated_probabilities=lambda logits: torch.softmax(logits, dim=-1),
                            decide=lambda p: np.asarray(p).argmax(1), averages_views=False)
    feats = {"dermoscopic": model.image_encoders["dermoscopic"](x)}
    return Encoded(entry, [None], {"dermoscopic": x}, feats, head(feats, None).logits)


def _region_map() -> np.ndarray:
    cam = np.zeros((SIDE, SIDE), np.float32)
    cam[REGION] = 1.0
    return cam


def test_area_and_steps_on_a_hand_made_curve():
    assert fractions(4).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert area([0.0, 1.0]) == pytest.approx(0.5)
    assert area([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert area([0.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert area([1.0, 0.0, 0.0, 0.0, 0.0]) == pytest.approx(0.125)
    with pytest.raises(ValueError):
        fractions(0)


def test_steps_take_the_most_salient_pixels_first_in_equal_nested_shares():
    cam = np.arange(64, dtype=np.float32).reshape(8, 8)  # the last pixels are the most salient
    masks = step_masks(saliency_rank(cam, (8, 8)), 4, (8, 8))[:, 0].numpy()
    assert [int(m.sum()) for m in masks] == [0, 16, 32, 48, 64]
    assert masks[1].ravel()[48:].all() and not masks[1].ravel()[:48].any()
    assert all((masks[k] <= masks[k + 1]).all() for k in range(4))


def test_ties_are_broken_at_random_not_in_raster_order():
    masks = step_masks(saliency_rank(np.zeros((16, 16)), (16, 16)), 4, (16, 16))[:, 0].numpy()
    top_rows = masks[1][:4].mean()  # a raster order would fill exactly the first 4 rows first
    assert 0.1 < top_rows < 0.5


def test_the_map_on_the_region_the_model_reads_beats_random_and_the_complement_loses():
    enc = _toy_encoded()
    cam = _region_map()
    region = deletion_insertion(enc, "dermoscopic", cam, target=0, steps=16, baseline="mean")
    outside = deletion_insertion(enc, "dermoscopic", 1.0 - cam, target=0, steps=16, baseline="mean")
    rand = random_reference(enc, "dermoscopic", target=0, steps=16, baseline="mean", seeds=(0, 1, 2))
    assert region["deletion_auc"] < rand["deletion_auc"] < outside["deletion_auc"]
    assert region["insertion_auc"] > rand["insertion_auc"] > outside["insertion_auc"]
    # the region is 36/256 = 14% of the image: deleting the first 2 of 16 steps (12.5%) nearly ends it
    assert region["deletion"][3] == pytest.approx(region["deletion"][-1], abs=1e-6)
    assert outside["deletion"][13] == pytest.approx(region["deletion"][0], abs=1e-6)


def test_summary_over_cases_counts_who_beats_random():
    enc = _toy_encoded()
    good = [case_faithfulness(enc, "dermoscopic", _region_map(), 0, 8, "mean", (0, 1)) for _ in range(2)]
    bad = [case_faithfulness(enc, "dermoscopic", 1.0 - _region_map(), 0, 8, "mean", (0, 1))]
    s = summarise(good + bad)
    assert s["n"] == 3 and s["beats_random_deletion"] == pytest.approx(2 / 3)
    assert s["beats_random_insertion"] == pytest.approx(2 / 3)
    assert s["deletion_auc"] == pytest.approx(np.mean([r["map"]["deletion_auc"] for r in good + bad]))
    assert s["deletion_margin"]["mean"] == pytest.approx(s["random_deletion_auc"] - s["deletion_auc"])
    assert len(s["mean_curves"]["map_deletion"]) == 9 and summarise([]) == {"n": 0}


def test_baselines_keep_the_colour_and_remove_the_detail():
    x = torch.randn(1, 3, 32, 32)
    blurred, flat = baseline_image(x, "blur"), baseline_image(x, "mean")
    assert blurred.shape == x.shape and blurred.std() < 0.3 * x.std()
    assert torch.allclose(blurred.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), atol=0.05)
    assert torch.allclose(flat, x.mean(dim=(-2, -1), keepdim=True).expand_as(x))
    with pytest.raises(ValueError, match="baseline"):
        baseline_image(x, "black")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    make_demo_entry(folder, "tri_jiadf", image_size=32)
    return folder, load_entry("tri_jiadf", folder)


def _case(seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    return Case(f"c{seed}", dermoscopic=rng.integers(0, 255, (40, 40, 3), dtype=np.uint8),
                clinical=rng.integers(0, 255, (36, 36, 3), dtype=np.uint8),
                metadata={"age": 50, "sex": "male", "site": "back"})


@torch.no_grad()
def test_curve_endpoints_are_the_full_image_and_the_baseline_with_other_inputs_held(demo):
    """Checked against the whole model run afresh (both images and the metadata through model.forward)."""
    _, entry = demo
    enc = entry.encode(_case())
    cam = np.random.default_rng(1).random((32, 32))
    curves = deletion_insertion(enc, "clinical", cam, target=2, steps=4)
    batch = {**enc.batch, "clinical": baseline_image(enc.batch["clinical"], "blur")}
    p_base = float(entry.calibrated_probabilities(entry.model(batch).logits)[0, 2])
    p_full = float(enc.probabilities()[0, 2])
    assert curves["deletion"][0] == pytest.approx(p_full, abs=1e-5) == curves["insertion"][-1]
    assert curves["deletion"][-1] == pytest.approx(p_base, abs=1e-5)
    assert curves["insertion"][0] == pytest.approx(p_base, abs=1e-5)
    assert len(curves["deletion"]) == 5 and feature_grid(enc, "clinical") == 1  # bn2 of a 32-px input


def test_cli_measures_writes_the_table_and_only_its_own_card_key(demo, tmp_path):
    from training.faithfulness import measure, table, update_cards

    folder, entry = demo
    images = measure(entry, [_case(0), _case(1)], steps=4, seeds=2)
    assert set(images) == {"dermoscopic", "clinical"} and images["clinical"]["summary"]["n"] == 2
    assert images["clinical"]["layer"] == "bn2" and len(images["clinical"]["cases"]) == 2
    method = {"steps": 4, "baseline": "blur", "random": "map", "seeds": 2}
    for split in ("val", "test"):
        (tmp_path / f"tri_jiadf.faith-{split}.json").write_text(json.dumps(
            {"entry": "tri_jiadf", "split": split, "method": method, "images": images}))
    assert "| `tri_jiadf` · clinical | bn2 | 2 |" in table(tmp_path)
    before = next(c for c in list_entries(folder) if c["name"] == "tri_jiadf")
    assert update_cards(tmp_path, str(folder)) == ["tri_jiadf"]
    after = next(c for c in list_entries(folder) if c["name"] == "tri_jiadf")
    block = after.pop("explain_faithfulness")
    assert after == before and block["clinical"]["test"]["n"] == 2 and block["clinical"]["baseline"] == "blur"
