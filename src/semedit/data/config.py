"""The configuration of the synthetic data: samples or pose-misaligned pairs, and the scorer that labels them.

Kept apart from the datamodule (which imports Lightning), so that loading a config needs only these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from semedit.config import TINY_RESOLUTIONS, ConfigError, check, check_number
from semedit.data.scorers import ScorerConfig
from semedit.perception.regions import REGION_SPLITTERS

__all__ = ["MODES", "K_DISTRIBUTIONS", "PAIR_SPACES", "DataConfigError", "PairsConfig", "SyntheticDataConfig"]

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
