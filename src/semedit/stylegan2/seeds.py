"""Seed conventions shared by every command: seed s means z = np.random.RandomState(s).randn(z_dim)."""

from __future__ import annotations

import numpy as np
import torch


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """The latent of seed ``seed`` (NVlabs' convention), float32 [z_dim]."""
    return torch.from_numpy(np.random.RandomState(int(seed)).randn(z_dim)).to(torch.float32)


def zs_from_seeds(seeds, z_dim: int) -> torch.Tensor:
    """[len(seeds), z_dim]"""
    return torch.stack([z_from_seed(s, z_dim) for s in seeds]) if len(seeds) else torch.zeros(0, z_dim)


def parse_seeds(text: str) -> list[int]:
    """'0,1,7' -> [0, 1, 7]; '0-3' -> [0, 1, 2, 3]; '0-2,9' -> [0, 1, 2, 9]."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (None, None)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                seeds.extend(range(lo_i, hi_i + 1))
            else:
                seeds.append(int(part))
        except (TypeError, ValueError):
            raise ValueError(f"cannot parse seeds '{text}': use a list like 0,1,7 or a range like 0-99") from None
    if any(s < 0 or s >= 2**32 for s in seeds):
        raise ValueError(f"seeds must be in [0, 2^32), got '{text}'")
    if not seeds:
        raise ValueError(f"no seeds in '{text}'")
    return seeds
