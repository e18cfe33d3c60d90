"""Bayes' rule across modalities (structure `product`): the two experts' calibrated log-probabilities add,
the prior is divided out once, a missing input leaves the other expert alone, and an entry is built from
two shipped experts without training (training.stage2.load_experts)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.official_layouts import make_ham10000

from skinui.models.product import ProductOfExperts
from training.config import ConfigError, load_config

K = 4
PRIOR = torch.log(torch.tensor([0.5, 0.25, 0.15, 0.10]))


def _structure() -> ProductOfExperts:
    torch.manual_seed(0)
    s = ProductOfExperts(6, 3, K, experts={"image": {"temperature": 2.0, "prior_weight": 0.5},
                                           "metadata": {"temperature": 0.5, "prior_weight": 0.0}},
                         log_prior=PRIOR.tolist())
    return s.eval()


def test_the_product_is_bayes_rule_on_the_two_calibrated_experts():
    s = _structure()
    f_i, f_m = torch.randn(5, 6), torch.randn(5, 3)
    both = torch.ones(5, 3, dtype=torch.bool)
    out = s(f_i, f_m, both)
    p_i = torch.softmax(s.image_head(f_i) / 2.0 + 0.5 * PRIOR, 1)  # each expert's own calibration
    p_m = torch.softmax(s.meta_head(f_m) / 0.5, 1)
    bayes = p_i * p_m / PRIOR.exp()
    torch.testing.assert_close(out.probs, bayes / bayes.sum(1, keepdim=True))
    torch.testing.assert_close(out.branch_logits["image"].exp(), p_i)
    # one input missing: the other expert alone (no prior divided out, nothing multiplied in)
    no_meta = both.clone()
    no_meta[:, 2] = False
    torch.testing.assert_close(s(f_i, f_m, no_meta).probs, p_i)
    no_image = both.clone()
    no_image[:, 0] = False
    torch.testing.assert_close(s(f_i, f_m, no_image).probs, p_m)
    # the experts' settings are config values: an unconfigured product is the plain product of softmaxes
    plain = ProductOfExperts(6, 3, K).eval()
    plain.load_state_dict(s.state_dict())
    q = torch.softmax(plain.image_head(f_i), 1) * torch.softmax(plain.meta_head(f_m), 1)
    torch.testing.assert_close(plain(f_i, f_m, both).probs, q / q.sum(1, keepdim=True))
    with pytest.raises(ValueError, match="log class frequencies"):
        ProductOfExperts(6, 3, K, log_prior=[0.0, 0.0])


def _fit(cfg: dict, root, tmp):
    from training.loop import fit

    return fit(load_config(None, base=cfg), str(root), str(tmp / "runs" / cfg["name"]), "cpu", command="pytest",
               weights_dir=str(tmp / "weights"))


def _config(name: str, modalities: list[str], **extra) -> dict:
    return {"name": name, "dataset": "ham10000", "split": {"method": "grouped", "fractions": [0.5, 0.25, 0.25]},
            "model": {"modalities": modalities, "image_size": 32,
                      "image_encoder": {"name": "tinynet_e", "pretrained": False, "stem_blocks": 3},
                      "meta_encoder": {"name": "clinical_cnn", "dims": [8, 16]}, "structure": {"name": "late"}},
            "train": {"mode": "fastpath", "epochs": 1, "batch_size": 8, "eval_batch_size": 16, "sampler": "balanced"},
            "fastpath": {"views": 1}, "stage2": {"views": 1}, **extra}


def test_an_entry_is_two_shipped_experts_multiplied_without_training(tmp_path):
    from skinui.calibration import calibrated_logits
    from skinui.datasets import load_dataset
    from skinui.zoo import load_entry

    root = tmp_path / "ham"
    make_ham10000(root, n=40)
    _fit(_config("t_image", ["dermoscopic"], export={"shared_encoder": "t_encoder"}), root, tmp_path)
    meta = _config("t_meta", ["metadata"])
    meta["train"].update(mode="full", epochs=2)
    _fit(meta, root, tmp_path)
    cfg = _config("t_bayes", ["dermoscopic", "metadata"], stage2={"backbone": "t_image"})
    cfg["model"]["structure"] = {"name": "product", "experts": {"image": "t_image", "metadata": "t_meta"}}
    cfg["train"].update(mode="features", sampler="shuffle")
    run = _fit(cfg, root, tmp_path)
    weights = tmp_path / "weights"
    entry, image, metadata = (load_entry(n, weights) for n in ("t_bayes", "t_image", "t_meta"))
    assert entry.card["training"]["epochs_run"] == 0 and not (run / "best.safetensors").exists()
    assert entry.card["model"]["structure"]["experts"]["metadata"]["entry"] == "t_meta"
    assert entry.card["calibration"]["prior_weight"] == 0.0  # a natural-prevalence output: temperature only
    cases = load_dataset("ham10000", root).cases[:6]
    got = entry.encode(cases).logits.double().numpy()
    lp = [calibrated_logits(e.encode(cases).logits.double().numpy(), e.calibration) for e in (image, metadata)]
    lp = [z - np.logaddexp.reduce(z, axis=1, keepdims=True) for z in lp]
    prior = np.asarray(image.calibration["log_prior"])
    np.testing.assert_allclose(got, lp[0] + lp[1] - prior, atol=1e-4)  # fp16 storage of the shared encoder only
    # refusals name what to fix
    from training.stage2 import load_experts

    with pytest.raises(ConfigError, match="metadata only"):
        load_experts(entry.model, {"image": "t_image", "metadata": "t_image"}, weights, None)
    with pytest.raises(ConfigError, match=r"experts: \{image"):
        load_experts(entry.model, {"image": "t_image"}, weights, None)
    with torch.no_grad():  # an image encoder other than the image expert's own is refused, not overwritten
        next(iter(entry.model.image_encoders["dermoscopic"].parameters())).add_(1.0)
    with pytest.raises(ConfigError, match="stage2.backbone must name the image expert"):
        load_experts(entry.model, {"image": "t_image", "metadata": "t_meta"}, weights, None)
    with pytest.raises(ConfigError, match="train it first"):
        load_experts(entry.model, {"image": "t_image", "metadata": "absent"}, weights, None)
