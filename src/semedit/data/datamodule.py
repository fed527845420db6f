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

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from semedit.config import TINY_RESOLUTIONS, ConfigError, GeneratorSpec, check, check_number, validate_config
from semedit.data.samplers import FixedIndexSampler, PositionedLoader, ResumableIndexSampler, resume_position
from semedit.data.scorers import ScorerConfig, build_scorer, random_unit_vector
from semedit.data.seeding import STREAM_PAIR_K, normal_for_indices, uniform_for_indices, z_for_indices
from semedit.edits import edit_wplus, load_direction
from semedit.perception.regions import REGION_SPLITTERS, make_region_splitter
from semedit.stylegan2 import generator_from_spec

MODES = ("samples", "pairs")
K_DISTRIBUTIONS = ("uniform", "normal", "choice", "zero", "strip")
PAIR_SPACES = ("w", "z")


class DataConfigError(ConfigError):
    """The data section of a config is inconsistent (message names the key)."""


def _check(ok: bool, key: str, expected: str, value) -> None:
    check(ok, key, expected, value, DataConfigError)


@dataclass
class PairsConfig:
    """How the hair source of a pair is made: w' = w + k·n on ``layers`` (space "w"), or
    w' = mapping(z + k·n) (space "z")."""

    # Direction file n (space "w" or "wplus" for space=w, "z" for space=z), e.g. from `semedit train
    # direction` (yaw); "random" draws a unit vector from `direction_seed` (tests and tiny demos only).
    # Required in pairs mode.
    direction: Optional[str] = None
    direction_seed: int = 0
    # "w": shift the W+ code on `layers` (semedit's form). "z": shift z before the mapping network, as the
    # talk draws the pose strip z - 2k·n, z - k·n, z, z + k·n, z + 2k·n (every layer moves).
    space: str = "w"
    layers: Optional[list[int]] = None  # space=w: W+ layers to shift; None: the direction file's layers, else all
    # k ~ uniform(-k_scale, k_scale) | normal(0, k_scale) | choice(k_values) | zero (the paper's baseline)
    # | strip: one of -2·k_scale, -k_scale, +k_scale, +2·k_scale (the talk's strip positions around z)
    k_distribution: str = "uniform"
    k_scale: float = 3.0
    k_values: list[float] = field(default_factory=list)
    # region splitter for face/hair masks: "ellipse" (fixed prior; the tiny random generator makes no faces) |
    # "dlib-hull" (FG 2021's hull of 2-D 68 landmarks at 256 px, from dlib on the known face box; the official code uses FAN landmarks) | "hull" | "parsing"
    regions: str = "ellipse"
    region_weights: Optional[str] = None  # weights of the splitter's model (hull, parsing)

    def validate(self, prefix: str = "") -> None:
        _check(self.k_distribution in K_DISTRIBUTIONS, f"{prefix}k_distribution", " | ".join(K_DISTRIBUTIONS),
              self.k_distribution)
        _check(self.space in PAIR_SPACES, f"{prefix}space", " | ".join(PAIR_SPACES), self.space)
        _check(self.space == "w" or self.layers is None, f"{prefix}layers",
              "null: layers applies to space=w only (a z shift moves every layer)", self.layers)
        _check(self.layers is None or all(isinstance(i, int) and i >= 0 for i in self.layers), f"{prefix}layers",
              "null or a list of W+ layer indices >= 0", self.layers)
        check_number(self.k_scale, f"{prefix}k_scale", low=0, error=DataConfigError)
        _check(self.k_distribution != "choice" or bool(self.k_values), f"{prefix}k_values",
              "a non-empty list with k_distribution=choice, e.g. [-3, 3]", self.k_values)
        _check(self.regions in REGION_SPLITTERS, f"{prefix}regions", " | ".join(REGION_SPLITTERS), self.regions)


@dataclass
class SyntheticDataConfig:
    mode: str = "samples"  # "samples" | "pairs"
    seed: int = 0  # sample i uses StyleGAN2 seed (seed + i)
    batch_size: int = 8  # per device
    resolution: Optional[int] = None  # training resolution (area-downsampled); None: the generator's
    epoch_length: int = 1024  # training samples per epoch, all ranks together
    fresh_each_epoch: bool = True  # epoch e uses indices [e*L, (e+1)*L); false: the same L samples each epoch
    shuffle: bool = True  # order within an epoch from (seed, epoch)
    first_index: int = 0  # first training index
    val_size: int = 64  # fixed validation indices [val_first_index, val_first_index + val_size)
    val_first_index: int = 1_000_000_000  # far from the training indices
    val_batch_size: Optional[int] = None  # None: batch_size
    num_workers: int = 0  # loader workers (they only produce integers; 0 is usually right)
    synthesize_images: bool = True  # false: latents (and latent-only scores) only, no synthesis
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)

    def validate(self, prefix: str = "") -> None:
        _check(self.mode in MODES, f"{prefix}mode", " | ".join(MODES), self.mode)
        for key in ("batch_size", "epoch_length"):
            _check(getattr(self, key) >= 1, f"{prefix}{key}", "an integer >= 1", getattr(self, key))
        _check(self.val_size >= 0, f"{prefix}val_size", "an integer >= 0", self.val_size)
        _check(self.val_batch_size is None or self.val_batch_size >= 1, f"{prefix}val_batch_size",
              "null or an integer >= 1", self.val_batch_size)
        _check(self.resolution is None or self.resolution in TINY_RESOLUTIONS, f"{prefix}resolution",
              "null (the generator's) or a power of two from 8 to 1024", self.resolution)
        _check(self.num_workers >= 0, f"{prefix}num_workers", "an integer >= 0", self.num_workers)
        _check(min(self.seed, self.first_index, self.val_first_index) >= 0, f"{prefix}seed/first_index/val_first_index",
              "integers >= 0", (self.seed, self.first_index, self.val_first_index))
        _check(self.mode != "pairs" or self.synthesize_images, f"{prefix}synthesize_images",
              "true with mode=pairs", self.synthesize_images)
        _check(self.mode != "pairs" or self.pairs.direction is not None, f"{prefix}pairs.direction",
              "a direction file with mode=pairs (make a yaw direction with `semedit train direction`), "
              "or 'random' for tests", self.pairs.direction)


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
        epoch, done = self._resume_position()
        sampler = self.train_sampler(epoch, done)
        return PositionedLoader(range(2**63 - 1), batch_size=self.data.batch_size, sampler=sampler,
                                num_workers=self.data.num_workers, persistent_workers=False)

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
