"""StyleGAN2DataModule: a frozen StyleGAN2 as an unlimited, reproducible, shardable dataset.

The loaders carry only integer sample indices; ``on_after_batch_transfer`` synthesises the batch on the
training device with the frozen generator (eval mode, no grad). See ``semedit.data.seeding`` for how an
index becomes a latent and ``semedit.data.samplers`` for how indices are sharded and resumed.

Batches (images [-1, 1] NCHW at ``data.resolution``; masks [0, 1] N1HW):
- ``samples``: {"index" [N], "z" [N, z_dim], "ws" [N, num_ws, w_dim], "image" [N, 3, R, R],
  "score" [N] when ``data.scorer.name`` is set}
- ``pairs``: {"index", "z", "ws", "ws_hair" = ws + k·n on ``pairs.layers`` (``pairs.space=w``) or
  mapping(z + k·n) (``pairs.space=z``, with "z_hair"), "k" [N], "image" = G(ws),
  "image_hair" = G(ws_hair), "face_mask", "hair_mask" (of image), "face_mask_hair", "hair_mask_hair"}
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from semedit.config import GeneratorSpec, validate_config
from semedit.data.config import DataConfigError, PairsConfig, SyntheticDataConfig
from semedit.data.samplers import FixedIndexSampler, PositionedLoader, ResumableIndexSampler, resume_position
from semedit.data.scorers import build_scorer, random_unit_vector
from semedit.data.seeding import STREAM_PAIR_K, normal_for_indices, uniform_for_indices, z_for_indices
from semedit.edits import edit_wplus, load_direction
from semedit.perception.regions import make_region_splitter
from semedit.stylegan2 import expect_calls, generator_from_spec


def downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, resolution, resolution] by area averaging (the generator's size is a multiple)."""
    if images.shape[-1] == resolution:
        return images
    if images.shape[-1] % resolution:
        raise DataConfigError(f"data.resolution={resolution} must divide the generator's resolution "
                              f"{images.shape[-1]}")
    return F.avg_pool2d(images, kernel_size=images.shape[-1] // resolution)


def pair_shifts(indices: torch.Tensor, seed: int, pairs: PairsConfig) -> torch.Tensor:
    """k of each sample, float32 [N] on the CPU, a function of (seed, index) only."""
    n = indices.numel()
    if pairs.k_distribution == "zero":
        return torch.zeros(n)
    if pairs.k_distribution == "uniform":
        k = (2 * uniform_for_indices(indices, seed, STREAM_PAIR_K) - 1) * pairs.k_scale
    elif pairs.k_distribution == "normal":
        k = normal_for_indices(indices, seed, STREAM_PAIR_K) * pairs.k_scale
    else:
        values = np.asarray(pairs.k_values, dtype=np.float64)
        if pairs.k_distribution == "strip":
            values = pairs.k_scale * np.array([-2.0, -1.0, 1.0, 2.0])
        u = uniform_for_indices(indices, seed, STREAM_PAIR_K)
        k = values[np.minimum((u * len(values)).astype(np.int64), len(values) - 1)]
    return torch.from_numpy(np.asarray(k)).to(torch.float32)


class StyleGAN2DataModule(pl.LightningDataModule):
    """Samples or pose-misaligned pairs from a frozen StyleGAN2, synthesised on the training device."""

    def __init__(self, generator: GeneratorSpec, data: SyntheticDataConfig):
        super().__init__()
        validate_config(data, "data.")  # also when built in code rather than from a loaded config
        self.generator_spec = generator
        self.data = data
        self._generator = None
        self._scorer = None
        self._scorer_built = False
        self._direction = None  # [w_dim] or [len(layers), w_dim]
        self._layers: Optional[list[int]] = None
        self._splitter = None

    # -- the frozen generator ------------------------------------------------------------------------
    @property
    def generator(self):
        """The frozen generator (eval, requires_grad False), on the device of the last batch."""
        if self._generator is None:
            self._generator = generator_from_spec(self.generator_spec, device="cpu")
        return self._generator

    @property
    def resolution(self) -> int:
        return self.data.resolution or self.generator.img_resolution

    def _device_generator(self, device: torch.device):
        G = self.generator
        if G.w_avg.device != device:
            G.to(device)
        return G

    # -- pairs: direction and layers -----------------------------------------------------------------
    def pair_direction(self) -> tuple[torch.Tensor, list[int]]:
        """(n, layers): n [w_dim] or [len(layers), w_dim], unit norm per W vector; the W+ layers it shifts."""
        if self._direction is None:
            G, pairs = self.generator, self.data.pairs
            if pairs.space == "z":
                self._direction, self._layers = self._z_direction(G, pairs), list(range(G.num_ws))
                return self._direction, self._layers
            if pairs.direction == "random":
                vector, space, file_layers = random_unit_vector(G.w_dim, pairs.direction_seed), "w", None
            else:
                d = load_direction(pairs.direction)
                vector, space, file_layers = d.vector, d.space, d.layers
            layers = list(pairs.layers) if pairs.layers is not None else (file_layers or list(range(G.num_ws)))
            bad = [i for i in layers if not 0 <= i < G.num_ws]
            if bad:
                raise DataConfigError(f"data.pairs.layers {layers}: the generator has W+ layers 0..{G.num_ws - 1}")
            if space == "w":
                if vector.numel() != G.w_dim:
                    raise DataConfigError(f"direction {pairs.direction} has {vector.numel()} entries; "
                                          f"the generator's w_dim is {G.w_dim}")
            elif space == "wplus":
                if file_layers != layers:
                    raise DataConfigError(f"direction {pairs.direction} is a W+ direction for layers {file_layers}; "
                                          f"data.pairs.layers must be left unset or equal to it")
                vector = vector.view(len(layers), G.w_dim)
            else:
                raise DataConfigError(f"pairs need a direction in 'w' or 'wplus', {pairs.direction} is in '{space}'")
            self._direction, self._layers = vector, layers
        return self._direction, self._layers

    @staticmethod
    def _z_direction(G, pairs: PairsConfig) -> torch.Tensor:
        """n [z_dim] for space=z: a 'z' direction file (e.g. `semedit train direction direction.space=z`)."""
        if pairs.direction == "random":
            return random_unit_vector(G.z_dim, pairs.direction_seed)
        d = load_direction(pairs.direction)
        if d.space != "z" or d.dim != G.z_dim:
            raise DataConfigError(f"data.pairs.space=z needs a 'z' direction with {G.z_dim} entries; "
                                  f"{pairs.direction} is a '{d.space}' direction with {d.dim}")
        return d.vector

    # -- loaders: integers only -----------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _resume_position(self) -> tuple[int, int]:
        """(epoch, batches already done in it) from the restored trainer state (0, 0 on a fresh run)."""
        return resume_position(self.trainer, self.data.epoch_length, self.data.batch_size)

    def train_sampler(self, start_epoch: int = 0, start_batch: int = 0) -> ResumableIndexSampler:
        rank, world = self._rank_world()
        d = self.data
        return ResumableIndexSampler(d.epoch_length, d.batch_size, world, rank, d.seed, d.shuffle,
                                     d.fresh_each_epoch, d.first_index, start_epoch, start_batch)

    def train_dataloader(self) -> DataLoader:
        expect_calls(self.generator, self._planned_steps(), "training-data")  # one synthesis per batch
        epoch, done = self._resume_position()
        sampler = self.train_sampler(epoch, done)
        return PositionedLoader(range(2**63 - 1), batch_size=self.data.batch_size, sampler=sampler,
                                num_workers=self.data.num_workers, persistent_workers=False)

    def _planned_steps(self) -> float:
        """Training batches the trainer plans (its max_steps, else max_epochs epochs; -1: unknown)."""
        trainer = self.trainer
        if trainer is None:
            return -1
        if trainer.max_steps > 0:
            return trainer.max_steps
        return (trainer.max_epochs or 1) * -(-self.data.epoch_length // self.data.batch_size)

    def val_indices(self) -> np.ndarray:
        return np.arange(self.data.val_first_index, self.data.val_first_index + self.data.val_size, dtype=np.int64)

    def val_dataloader(self):
        if self.data.val_size <= 0:
            return []
        rank, world = self._rank_world()
        sampler = FixedIndexSampler(self.val_indices(), world, rank)
        return DataLoader(range(2**63 - 1), batch_size=self.data.val_batch_size or self.data.batch_size,
                          sampler=sampler, num_workers=self.data.num_workers)

    # -- synthesis on the device ----------------------------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        if isinstance(batch, dict):  # already synthesised (e.g. a batch passed in by hand)
            return batch
        return self.synthesize(batch)

    @torch.no_grad()
    def synthesize(self, indices: torch.Tensor, mode: Optional[str] = None) -> dict:
        """Batch dict for sample ``indices`` (Long [N], on the target device); see the module docstring."""
        mode = mode or self.data.mode
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        device = indices.device
        G = self._device_generator(device)
        spec = self.generator_spec
        z = z_for_indices(indices, self.data.seed, G.z_dim).to(device)
        ws = G.mapping(z, truncation_psi=spec.truncation_psi)
        batch = {"index": indices, "z": z, "ws": ws}
        if mode == "pairs":
            n, layers = self.pair_direction()
            k = pair_shifts(indices, self.data.seed, self.data.pairs).to(device)
            batch["k"] = k
            if self.data.pairs.space == "z":
                batch["z_hair"] = z + k[:, None] * n.to(z)
                batch["ws_hair"] = G.mapping(batch["z_hair"], truncation_psi=spec.truncation_psi)
            else:
                batch["ws_hair"] = edit_wplus(ws, n, k, layers)
            images = self._render(torch.cat([ws, batch["ws_hair"]]))
            batch["image"], batch["image_hair"] = images.chunk(2)
            masks = self._split(images)
            for name, value in masks.items():
                target, hair_source = value.chunk(2)
                batch[f"{name}_mask"], batch[f"{name}_mask_hair"] = target, hair_source
        elif self.data.synthesize_images:
            batch["image"] = self._render(ws)
        scorer = self.scorer(device)
        if scorer is not None:
            if scorer.needs_images and "image" not in batch:
                batch["image"] = self._render(ws)
            batch["score"] = scorer(batch).float()
        return batch

    def _render(self, ws: torch.Tensor) -> torch.Tensor:
        images = self.generator.synthesis(ws, noise_mode=self.generator_spec.noise_mode)
        return downsample(images.float(), self.resolution)

    def _split(self, images: torch.Tensor) -> dict:
        if self._splitter is None:
            pairs = self.data.pairs
            kwargs = {"device": images.device}
            if pairs.region_weights:
                kwargs["weights"] = pairs.region_weights
            self._splitter = make_region_splitter(pairs.regions, **kwargs)
        masks = self._splitter(images)
        return {"face": masks["face"].float(), "hair": masks["hair"].float()}

    def scorer(self, device=None):
        """The configured scorer (built once), or None."""
        if not self._scorer_built:
            self._scorer = build_scorer(self.data.scorer, device=device or "cpu")
            self._scorer_built = True
        return self._scorer

    def state_dict(self) -> dict:
        # The position in the stream comes from the trainer's own counters; nothing else to save.
        return {}
