"""StyleGAN2DataModule: per-index reproducibility, sharding, exact mid-epoch resume, pairs."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from semedit.config import GeneratorSpec, LoggerConfig, TrainerConfig
from semedit.data.config import DataConfigError, PairsConfig, SyntheticDataConfig
from semedit.data.datamodule import StyleGAN2DataModule, pair_shifts
from semedit.data.samplers import ResumableIndexSampler
from semedit.data.scorers import ScorerConfig
from semedit.data.seeding import z_for_indices
from semedit.edits import Direction, save_direction
from semedit.stylegan2 import z_from_seed
from semedit.training import RUN_DIR_ENV, RunConfig, fit

TINY = GeneratorSpec()  # tiny random generator, 32 px


def test_z_depends_only_on_seed_and_index():
    z = z_for_indices(torch.tensor([5, 0, 7]), seed=10, z_dim=64)
    assert torch.equal(z[0], z_from_seed(15, 64))  # sample i is StyleGAN2 seed (seed + i)
    assert torch.equal(z[2], z_for_indices([7], 10, 64)[0])  # independent of the batch it is in
    with pytest.raises(ValueError, match="2\\^32"):
        z_for_indices([2**32], 0, 8)


def test_synthesis_is_independent_of_batching():
    dm = StyleGAN2DataModule(TINY, SyntheticDataConfig(resolution=16))
    a = dm.synthesize(torch.arange(6))
    b = torch.cat([dm.synthesize(torch.tensor([i]))["image"] for i in (3, 4, 5)])
    assert a["image"].shape == (6, 3, 16, 16) and a["ws"].shape == (6, dm.generator.num_ws, 64)
    torch.testing.assert_close(a["image"][3:], b, atol=1e-5, rtol=1e-5)
    full = dm.generator.synthesis(dm.generator.mapping(a["z"]), noise_mode="const")
    torch.testing.assert_close(a["image"], torch.nn.functional.avg_pool2d(full, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("epoch_length", [24, 25])
def test_one_and_two_ranks_cover_the_same_samples(epoch_length):
    def union(world):
        seen = []
        for rank in range(world):
            s = ResumableIndexSampler(epoch_length, 4, world, rank, seed=3, start_epoch=2)
            seen += list(s)
            assert len(list(s)) == len(s)
        return seen

    one, two = union(1), union(2)
    assert sorted(one) == list(range(2 * epoch_length, 3 * epoch_length))  # fresh indices in epoch 2
    assert set(two) == set(one) and len(two) == 2 * ((epoch_length + 1) // 2)  # padded by wrapping


def test_sampler_resumes_mid_epoch():
    full = list(ResumableIndexSampler(40, 4, 2, 1, seed=0, start_epoch=1))
    resumed = ResumableIndexSampler(40, 4, 2, 1, seed=0, start_epoch=1, start_batch=3)
    assert list(resumed) == full[12:]
    resumed.set_epoch(2)
    assert list(resumed) == list(ResumableIndexSampler(40, 4, 2, 1, seed=0, start_epoch=2))


class RecordingModule(pl.LightningModule):
    """Records the sample indices of each training batch (and checks the batch was synthesised)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        assert set(batch) >= {"index", "z", "ws"}
        self.seen.append(batch["index"].tolist())
        return (self.weight - batch["ws"].mean()).pow(2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _run(tmp_path, name, max_steps, data):
    module = RecordingModule()
    dm = StyleGAN2DataModule(TINY, data)
    trainer = TrainerConfig(max_steps=max_steps, enable_progress_bar=False, limit_val_batches=0,
                            log_every_n_steps=1)
    fit("datatest", module, dm, data, trainer, LoggerConfig(wandb=False),
        RunConfig(output_dir=str(tmp_path), name=name, checkpoint_every_n_steps=5))
    return module.seen


def test_resume_mid_epoch_continues_with_the_same_samples(tmp_path, monkeypatch):
    data = SyntheticDataConfig(batch_size=4, epoch_length=32, synthesize_images=False, val_size=0)  # 8 batches/epoch
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    reference = _run(tmp_path, "straight", 15, data)
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    first = _run(tmp_path, "stopped", 5, data)  # stops at step 5, mid-epoch 0
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    second = _run(tmp_path, "stopped", 15, data)  # resumes from last.ckpt
    assert len(first) == 5 and len(reference) == 15
    assert first + second == reference
    assert sorted(i for b in reference[:8] for i in b) == list(range(32))  # one epoch = indices 0..31


def _direction_file(tmp_path, layers=None):
    v = torch.randn(64, generator=torch.Generator().manual_seed(1))
    return str(save_direction(tmp_path / "yaw.safetensors", Direction.from_vector(v, "w", layers)))


def test_pairs_shift_only_the_chosen_layers(tmp_path):
    path = _direction_file(tmp_path)
    pairs = PairsConfig(direction=path, layers=[0, 1, 2], k_distribution="uniform", k_scale=2.0)
    dm = StyleGAN2DataModule(TINY, SyntheticDataConfig(mode="pairs", resolution=16, pairs=pairs))
    batch = dm.synthesize(torch.arange(5))
    n, _ = dm.pair_direction()
    delta = batch["ws_hair"] - batch["ws"]
    assert delta[:, 3:].abs().max() == 0  # zero outside the chosen layers
    for layer in (0, 1, 2):  # parallel to n, by k
        torch.testing.assert_close(delta[:, layer], batch["k"][:, None] * n[None], atol=1e-5, rtol=1e-5)
    assert batch["k"].abs().max() <= 2.0 and batch["k"].abs().min() > 0
    for key in ("face_mask", "hair_mask", "face_mask_hair", "hair_mask_hair"):
        assert batch[key].shape == (5, 1, 16, 16) and 0 <= batch[key].min() and batch[key].max() <= 1
    torch.testing.assert_close(batch["face_mask"] + batch["hair_mask"], torch.ones(5, 1, 16, 16))
    assert not torch.allclose(batch["image"], batch["image_hair"])


def test_pairs_baseline_and_k_distributions(tmp_path):
    idx = torch.arange(200)
    assert torch.equal(pair_shifts(idx, 0, PairsConfig(k_distribution="zero")), torch.zeros(200))
    choice = pair_shifts(idx, 0, PairsConfig(k_distribution="choice", k_values=[-3.0, 3.0]))
    assert set(choice.tolist()) == {-3.0, 3.0}
    normal = pair_shifts(idx, 0, PairsConfig(k_distribution="normal", k_scale=2.0))
    assert 1.5 < float(normal.std()) < 2.5
    assert torch.equal(pair_shifts(idx[50:60], 0, PairsConfig()), pair_shifts(idx, 0, PairsConfig())[50:60])
    dm = StyleGAN2DataModule(TINY, SyntheticDataConfig(mode="pairs", resolution=16, pairs=PairsConfig(
        direction=_direction_file(tmp_path), k_distribution="zero")))
    batch = dm.synthesize(torch.arange(2))
    assert torch.equal(batch["image"], batch["image_hair"])  # the paper's baseline


def test_bad_config_is_explained(tmp_path):
    with pytest.raises(DataConfigError, match="pairs.direction"):
        StyleGAN2DataModule(TINY, SyntheticDataConfig(mode="pairs"))
    with pytest.raises(DataConfigError, match="k_values"):
        StyleGAN2DataModule(TINY, SyntheticDataConfig(pairs=PairsConfig(k_distribution="choice")))
    dm = StyleGAN2DataModule(TINY, SyntheticDataConfig(mode="pairs", pairs=PairsConfig(direction="random", layers=[99])))
    with pytest.raises(DataConfigError, match="layers"):
        dm.synthesize(torch.arange(1))


def test_scores_are_attached():
    dm = StyleGAN2DataModule(TINY, SyntheticDataConfig(resolution=16, scorer=ScorerConfig(name="centroid_x")))
    batch = dm.synthesize(torch.arange(3))
    assert batch["score"].shape == (3,) and np.isfinite(batch["score"].numpy()).all()
