"""Synthetic training data from a frozen StyleGAN2: loaders of integer indices, synthesis on the device."""

from semedit.data.datamodule import (
    DataConfigError,
    PairsConfig,
    StyleGAN2DataModule,
    SyntheticDataConfig,
    downsample,
    pair_shifts,
)
from semedit.data.samplers import FixedIndexSampler, ResumableIndexSampler
from semedit.data.seeding import sample_seeds, z_for_indices

__all__ = [
    "DataConfigError",
    "FixedIndexSampler",
    "PairsConfig",
    "ResumableIndexSampler",
    "StyleGAN2DataModule",
    "SyntheticDataConfig",
    "downsample",
    "pair_shifts",
    "sample_seeds",
    "z_for_indices",
]
