"""Training pairs in Z (the talk's z ± k·n, z ± 2k·n) next to semedit's W+ layer shift."""

from __future__ import annotations

import pytest
import torch

from semedit.config import GeneratorSpec
from semedit.data.config import DataConfigError, PairsConfig
from semedit.data.datamodule import StyleGAN2DataModule, pair_shifts
from semedit.data.scorers import random_unit_vector
from semedit.edits import Direction, save_direction

try:  # renamed by the layout refactor
    from semedit.data.config import SyntheticDataConfig as DataConfig
except ImportError:  # pragma: no cover
    from semedit.data import DataConfig


def _dm(**pairs):
    spec = GeneratorSpec()
    spec.tiny.resolution = 16
    return StyleGAN2DataModule(spec, DataConfig(mode="pairs", pairs=PairsConfig(**pairs)))


def test_strip_draws_plus_minus_k_and_2k():
    k = pair_shifts(torch.arange(400), 0, PairsConfig(direction="random", k_distribution="strip", k_scale=1.5))
    assert set(k.tolist()) == {-3.0, -1.5, 1.5, 3.0}
    assert min((k == v).sum() for v in (-3.0, -1.5, 1.5, 3.0)) > 60  # all four positions are used


def test_z_pairs_shift_z_before_the_mapping():
    dm = _dm(direction="random", space="z", k_distribution="strip", k_scale=2.0)
    G = dm.generator
    batch = dm.synthesize(torch.arange(6))
    n = random_unit_vector(G.z_dim, 0)
    torch.testing.assert_close(batch["z_hair"], batch["z"] + batch["k"][:, None] * n)
    torch.testing.assert_close(batch["ws_hair"], G.mapping(batch["z_hair"], truncation_psi=1.0))
    assert set(batch["k"].abs().tolist()) <= {2.0, 4.0}
    # every layer moves (unlike the W+ layer form), and the hair source really differs from the target
    assert (batch["ws_hair"] - batch["ws"]).abs().amax(dim=2).min() > 0
    assert batch["image_hair"].shape == batch["image"].shape and (batch["image_hair"] - batch["image"]).abs().max() > 0


def test_w_pairs_are_unchanged_and_z_needs_a_z_direction(tmp_path):
    dm = _dm(direction="random", layers=[0, 1], k_distribution="uniform", k_scale=3.0)
    batch = dm.synthesize(torch.arange(4))
    assert "z_hair" not in batch
    delta = batch["ws_hair"] - batch["ws"]
    assert delta[:, 2:].abs().max() == 0 and delta[:, :2].abs().max() > 0
    w_file = save_direction(tmp_path / "w.safetensors", Direction.from_vector(torch.randn(dm.generator.w_dim), "w"))
    with pytest.raises(DataConfigError, match="needs a 'z' direction"):
        _dm(direction=str(w_file), space="z").synthesize(torch.arange(2))
    z_file = save_direction(tmp_path / "z.safetensors", Direction.from_vector(torch.randn(dm.generator.z_dim), "z"))
    assert "z_hair" in _dm(direction=str(z_file), space="z").synthesize(torch.arange(2))
    with pytest.raises(DataConfigError, match="space=w only"):
        _dm(direction="random", space="z", layers=[0])
    with pytest.raises(DataConfigError, match="data.pairs.space"):
        _dm(direction="random", space="s")
