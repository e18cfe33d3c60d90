"""Modality dropout makes "switch a modality off" an in-distribution input.

Fast, honest stand-in for the SynthDerm experiment: a synthetic *feature-level* task generated
here. Each of 4 classes has a Gaussian mean for an 8-d "image feature" vector (fed through the
concept_mlp image encoder) and for an 8-d metadata vector (fed through the mlp metadata encoder);
each modality alone is informative but noisy, both together are best. Two identical models (same
seed, same data, same steps) are trained, one with modality dropout and one without; removing a
modality at test time must cost the dropout model less accuracy.
"""
from __future__ import annotations

import torch

from skinui.models import build_model

K, D, N_TRAIN, N_TEST = 4, 8, 800, 800


def _data(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = torch.Generator().manual_seed(123)
    mu_i, mu_m = torch.randn(K, D, generator=means) * 1.2, torch.randn(K, D, generator=means) * 1.2
    y = torch.randint(0, K, (n,), generator=g)
    image = mu_i[y] + torch.randn(n, D, generator=g) * 1.6
    meta = mu_m[y] + torch.randn(n, D, generator=g) * 1.6
    return {"dermoscopic": image, "metadata": meta}, y


def _train(modality_dropout: float, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model({
        "modalities": ["dermoscopic", "metadata"], "num_classes": K, "meta_dim": D,
        "image_encoder": {"name": "concept_mlp", "in_dim": D, "hidden": 32, "out_dim": 32, "dropout": 0.0},
        "meta_encoder": {"name": "mlp", "dims": [32], "dropout": 0.0},
        "fusion": {"name": "concat"}, "structure": {"name": "jf", "dropout": 0.0},
        "modality_dropout": modality_dropout,
    })
    x, y = _data(N_TRAIN, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(2 + seed)
    model.train()
    for _ in range(300):
        idx = torch.randint(0, N_TRAIN, (64,), generator=g)
        loss = model.loss(model({m: v[idx] for m, v in x.items()}), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def _accuracies(model: torch.nn.Module) -> dict[str, float]:
    x, y = _data(N_TEST, seed=3)
    acc = {}
    for name, batch in {"both": x, "no_metadata": {"dermoscopic": x["dermoscopic"]},
                        "no_image": {"metadata": x["metadata"]}}.items():
        acc[name] = (model(batch).probs.argmax(1) == y).float().mean().item()
    return acc


def test_modality_dropout_loses_less_when_a_modality_is_removed():
    plain, robust = _accuracies(_train(0.0)), _accuracies(_train(0.3))
    loss_plain = 2 * plain["both"] - plain["no_metadata"] - plain["no_image"]
    loss_robust = 2 * robust["both"] - robust["no_metadata"] - robust["no_image"]
    assert robust["both"] > 0.8 and plain["both"] > 0.8  # both learned the task
    assert loss_robust < loss_plain - 0.03, (plain, robust)  # seeds 0-3 give margins 0.03-0.17
    # Each single removal is also better handled, not only the sum.
    assert robust["no_metadata"] >= plain["no_metadata"] and robust["no_image"] >= plain["no_image"]


def _synthderm_features(tmp_path):
    """Per-modality feature vectors of 320 SynthDerm cases (64 px), standardised on the training split."""
    import numpy as np
    from test_synth import _image_features, _metadata_features

    from skinui.datasets import load_dataset
    from skinui.synth import generate

    cases = load_dataset("synthderm", generate(320, 0, tmp_path / "synth", size=64)).cases
    classes = sorted({c.label for c in cases})
    feats = {"dermoscopic": np.array([_image_features(c.image("dermoscopic")) for c in cases]),
             "clinical": np.array([_image_features(c.image("clinical")) for c in cases]),
             "metadata": np.array([_metadata_features(c.metadata) for c in cases])}
    train = np.array([c.extra["official_split"] != "test" for c in cases])
    out = {}
    for m, f in feats.items():
        mu, sd = f[train].mean(0), f[train].std(0) + 1e-6
        out[m] = torch.tensor((f - mu) / sd, dtype=torch.float32)
    y = torch.tensor([classes.index(c.label) for c in cases])
    return out, y, torch.from_numpy(train), len(classes)


def test_modality_dropout_on_synthderm_loses_less_when_a_modality_is_removed(tmp_path):
    """The same check on SynthDerm itself: image modalities are cheap hand-made image features
    (colour/texture statistics, as in tests/test_synth.py) fed through concept_mlp encoders."""
    x, y, train, k = _synthderm_features(tmp_path)

    def fit(p: float) -> dict[str, float]:
        torch.manual_seed(0)
        model = build_model({
            "modalities": ["dermoscopic", "clinical", "metadata"], "num_classes": k,
            "meta_dim": x["metadata"].shape[1],
            "image_encoder": {"name": "concept_mlp", "in_dim": x["dermoscopic"].shape[1], "hidden": 64,
                              "out_dim": 32, "dropout": 0.0},
            "meta_encoder": {"name": "mlp", "dims": [32], "dropout": 0.0},
            "fusion": {"name": "concat"}, "structure": {"name": "jf", "dropout": 0.0}, "modality_dropout": p,
        })
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
        idx_train = train.nonzero().ravel()
        g = torch.Generator().manual_seed(1)
        model.train()
        for _ in range(400):
            idx = idx_train[torch.randint(0, len(idx_train), (64,), generator=g)]
            loss = model.loss(model({m: v[idx] for m, v in x.items()}), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        test = (~train).nonzero().ravel()
        acc = {}
        with torch.no_grad():
            for drop in (None, "dermoscopic", "clinical", "metadata"):
                batch = {m: v[test] for m, v in x.items() if m != drop}
                acc[drop or "all"] = (model(batch).probs.argmax(1) == y[test]).float().mean().item()
        return acc

    plain, robust = fit(0.0), fit(0.3)
    lost = {name: sum(a["all"] - a[m] for m in ("dermoscopic", "clinical", "metadata"))
            for name, a in (("plain", plain), ("robust", robust))}
    assert robust["all"] > 0.5 and plain["all"] > 0.5, (plain, robust)  # both learned the task
    assert lost["robust"] < lost["plain"] - 0.03, (plain, robust)  # measured: 0.51 vs 0.56 lost in total
    assert robust["dermoscopic"] > plain["dermoscopic"] + 0.1  # removing the most informative one: 0.72 vs 0.56
