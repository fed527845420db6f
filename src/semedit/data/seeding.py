"""Per-sample randomness that depends only on (seed, global sample index).

Sample ``i`` of a datamodule with ``data.seed = s`` uses the StyleGAN2 seed ``s + i``:
``z_i = np.random.RandomState(s + i).randn(z_dim)`` (the NVlabs convention of `semedit generate --seeds`). So a sample
is reproducible from its index alone, whatever the batch it lands in, the number of loader workers,
DDP ranks or the resume point, and sample ``i`` is exactly ``semedit generate --seeds {s+i}``.
Two datamodules with seeds ``s`` and ``s' = s + d`` share samples when their index ranges overlap by
``d``; pick seeds further apart than the number of samples you draw when the streams must be disjoint.

Other per-sample draws (the pair shift ``k``, ...) use ``np.random.default_rng([stream, s, i])``:
independent of z and of each other, still a function of (seed, index) only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

MAX_SEED = 2**32  # np.random.RandomState accepts seeds in [0, 2**32)

# Stream ids for per-sample draws other than z.
STREAM_PAIR_K = 1
STREAM_SHUFFLE = 2


def _as_index_list(indices) -> list[int]:
    if isinstance(indices, torch.Tensor):
        return [int(i) for i in indices.detach().cpu().reshape(-1).tolist()]
    return [int(i) for i in np.asarray(indices).reshape(-1).tolist()]


def sample_seeds(indices, seed: int) -> list[int]:
    """StyleGAN2 seeds of samples ``indices`` (seed + index), checked to be valid RandomState seeds."""
    seeds = [seed + i for i in _as_index_list(indices)]
    bad = [s for s in seeds if not 0 <= s < MAX_SEED]
    if bad:
        raise ValueError(f"data.seed + sample index must lie in [0, 2^32); got {bad[0]} (data.seed={seed}). "
                         "Use a smaller data.seed or fewer samples.")
    return seeds


def z_for_indices(indices: torch.Tensor | Sequence[int], seed: int, z_dim: int) -> torch.Tensor:
    """Latents of samples ``indices``: float32 [N, z_dim] on the CPU, row n = RandomState(seed + indices[n])."""
    seeds = sample_seeds(indices, seed)
    if not seeds:
        return torch.zeros(0, z_dim)
    z = np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])
    return torch.from_numpy(z).to(torch.float32)


def per_index_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """A generator that depends only on (stream, seed, index)."""
    return np.random.default_rng([int(stream), int(seed), int(index)])


def uniform_for_indices(indices, seed: int, stream: int) -> np.ndarray:
    """One U[0, 1) draw per sample, float64 [N]."""
    return np.array([per_index_rng(seed, i, stream).random() for i in _as_index_list(indices)], dtype=np.float64)


def normal_for_indices(indices, seed: int, stream: int) -> np.ndarray:
    """One N(0, 1) draw per sample, float64 [N]."""
    return np.array([per_index_rng(seed, i, stream).standard_normal() for i in _as_index_list(indices)],
                    dtype=np.float64)


def epoch_permutation(length: int, seed: int, epoch: int) -> np.ndarray:
    """The order of an epoch's positions: a permutation of range(length) from (seed, epoch)."""
    return np.random.default_rng([STREAM_SHUFFLE, int(seed), int(epoch)]).permutation(length)
