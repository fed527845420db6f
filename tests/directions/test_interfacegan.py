"""classifier=interfacegan reproduces InterFaceGAN's train_boundary (SVC(kernel='linear') on raw codes)."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from semedit.config import GeneratorSpec
from semedit.data.datamodule import StyleGAN2DataModule
from semedit.data.scorers import random_unit_vector
from semedit.directions.module import (
    DirectionClassifierModule,
    DirectionConfig,
    ScoredLatentsDataModule,
    features,
    fit_interfacegan_svm,
    interfacegan_boundary,
)
from tests.directions.interfacegan_reference import train_boundary

try:  # the data config class is being renamed by the layout refactor
    from semedit.data.config import SyntheticDataConfig as DataConfig
except ImportError:  # pragma: no cover
    from semedit.data import DataConfig


def _planted(n=400, dim=6, seed=0):
    rng = np.random.RandomState(seed)
    codes = rng.randn(n, dim) * np.linspace(0.5, 2.0, dim) + 0.3  # anisotropic and off-centre: raw codes matter
    normal = rng.randn(dim)
    scores = codes @ normal + 0.3 * rng.randn(n)
    return codes, scores, normal / np.linalg.norm(normal)


@pytest.mark.parametrize("ratio,seed", [(0.1, 0), (0.25, 3), (30, 7)])
def test_boundary_equals_the_published_train_boundary(ratio, seed):
    codes, scores, _ = _planted()
    np.random.seed(seed)  # train_boundary shuffles with the global generator
    want, want_acc = train_boundary(codes, scores[:, None], chosen_num_or_ratio=ratio, split_ratio=0.7)
    got, info = interfacegan_boundary(codes, scores, chosen_num_or_ratio=ratio, split_ratio=0.7, seed=seed)
    assert got.shape == (1, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert info["val_accuracy"] == pytest.approx(want_acc)


def test_invalid_scores_are_dropped_like_invalid_value():
    codes, scores, _ = _planted()
    scores[::7] = np.nan
    np.random.seed(1)
    kept = np.isfinite(scores)
    want, _ = train_boundary(codes[kept], scores[kept][:, None], 0.2)
    got, _ = interfacegan_boundary(codes, scores, 0.2, seed=1)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_module_fits_the_same_svm_as_scikit_learn_on_the_pool(tmp_path):
    """The Lightning path with classifier=interfacegan: same samples, same split, same SVM, raw codes."""
    data = DataConfig(synthesize_images=False, seed=0)
    data.scorer.name, data.scorer.vector_seed = "projection", 5
    source = StyleGAN2DataModule(GeneratorSpec(), data)
    cfg = DirectionConfig(space="w", num_samples=600, fraction=0.1, score_batch_size=600, classifier="interfacegan")
    dm = ScoredLatentsDataModule(source, cfg)
    module = DirectionClassifierModule(dm.dim, cfg)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    from semedit.edits import load_direction

    d = load_direction(tmp_path / cfg.output)
    assert d.meta["method"] == "interfacegan-svm"
    # 1) scikit-learn directly on the pool's training split (raw features, labels 1 = high score)
    pool = dm.pool
    svm = fit_interfacegan_svm(pool["x"][pool["train"]].double().numpy(), (pool["y"][pool["train"]] > 0).long().numpy())
    sk = svm.coef_.reshape(-1) / np.linalg.norm(svm.coef_)
    np.testing.assert_allclose(d.vector.numpy(), sk, atol=1e-5)
    # 2) InterFaceGAN's function on all drawn codes and scores gives the same boundary
    batch = source.synthesize(torch.arange(cfg.num_samples), mode="samples")
    boundary, info = interfacegan_boundary(features(batch, "w").double().numpy(), batch["score"].double().numpy(),
                                           cfg.fraction, 0.7, seed=data.seed)
    np.testing.assert_allclose(d.vector.numpy(), boundary[0], atol=1e-5)
    assert len(pool["train"]) == 2 * int(int(600 * 0.1) * 0.7)
    # oriented like the planted projection (positive = higher score); with 42 training codes per class in
    # 64 dimensions the SVM's normal is only loosely aligned with it (InterFaceGAN draws far more samples)
    cos = float(d.vector @ random_unit_vector(source.generator.w_dim, 5))
    assert cos > 0.3, cos
    assert module.val_accuracy == pytest.approx(info["val_accuracy"])
