"""Embeddings on disk in fixed-size shards, so that a gallery never has to fit in memory.

A store is a folder of ``shard_<k>.safetensors`` files; shard k holds the items
``[k * shard_size, min((k + 1) * shard_size, total))`` as ``embeddings`` [n, D] float32 and
``indices`` [n] int64. A shard is written to a temporary name and renamed into place, so a file that
exists is complete; an interrupted run therefore resumes by computing only the missing shards. The
store's ``manifest.json`` records what the embeddings were computed from (a fingerprint of the
settings); reusing a folder with different settings is refused instead of silently mixing results.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file

from semedit.errors import SemeditError
from semedit.files import save_safetensors, write_atomically

__all__ = ["ShardStore", "ShardStoreError"]


class ShardStoreError(SemeditError, ValueError):
    """A shard folder does not belong to the current settings, or a shard file is damaged."""


class ShardStore:
    """Fixed-size shards of embeddings for items ``0 .. total-1`` under ``root``.

    Args:
        root: folder of the store (created on first write).
        total: number of items.
        shard_size: items per shard (the last one may be shorter).
        fingerprint: JSON-serialisable description of how the embeddings are made; must match the
            one stored in ``manifest.json`` when the folder already exists.
    """

    def __init__(self, root: str | os.PathLike, total: int, shard_size: int, fingerprint: dict | None = None):
        if total < 0 or shard_size < 1:
            raise ValueError(f"need total >= 0 and shard_size >= 1, got {total}, {shard_size}")
        self.root = Path(root)
        self.total = int(total)
        self.shard_size = int(shard_size)
        self.fingerprint = dict(fingerprint or {})

    # -- layout -------------------------------------------------------------------------------------
    @property
    def num_shards(self) -> int:
        return (self.total + self.shard_size - 1) // self.shard_size

    def shard_range(self, k: int) -> tuple[int, int]:
        if not 0 <= k < self.num_shards:
            raise IndexError(f"shard {k} out of range 0..{self.num_shards - 1}")
        start = k * self.shard_size
        return start, min(start + self.shard_size, self.total)

    def path(self, k: int) -> Path:
        return self.root / f"shard_{k:06d}.safetensors"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    # -- manifest -----------------------------------------------------------------------------------
    def _manifest(self) -> dict:
        return {"total": self.total, "shard_size": self.shard_size, "fingerprint": self.fingerprint}

    def prepare(self) -> None:
        """Create the folder and manifest, or check that an existing one matches these settings."""
        wanted = json.loads(json.dumps(self._manifest()))  # normalise tuples etc. like the file
        if self.manifest_path.is_file():
            found = json.loads(self.manifest_path.read_text())
            if found != wanted:
                raise ShardStoreError(
                    f"{self.root} holds embeddings made with other settings:\n  found:  {found}\n  wanted: "
                    f"{wanted}\nUse a new output folder, or delete {self.root} to recompute."
                )
            return
        text = json.dumps(wanted, indent=2, sort_keys=True)
        write_atomically(self.manifest_path, lambda tmp: tmp.write_text(text))

    # -- shards -------------------------------------------------------------------------------------
    def is_complete(self, k: int) -> bool:
        return self.path(k).is_file()

    def missing(self) -> list[int]:
        return [k for k in range(self.num_shards) if not self.is_complete(k)]

    def write(self, k: int, embeddings: torch.Tensor, indices: torch.Tensor) -> Path:
        """Write shard ``k`` atomically. ``embeddings`` [n, D], ``indices`` [n] must be its items in order."""
        start, stop = self.shard_range(k)
        indices = indices.detach().to("cpu", torch.int64)
        if not torch.equal(indices, torch.arange(start, stop)):
            raise ShardStoreError(f"shard {k} must hold items {start}..{stop - 1}, got {indices.tolist()[:8]}...")
        if embeddings.ndim != 2 or embeddings.shape[0] != stop - start:
            raise ShardStoreError(f"shard {k} needs embeddings [{stop - start}, D], got {list(embeddings.shape)}")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(k)
        # Atomic: a shard file that exists is complete.
        save_safetensors({"embeddings": embeddings.detach().to("cpu", torch.float32).contiguous(),
                          "indices": indices}, path)
        return path

    def read(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices [n], embeddings [n, D]) of shard ``k``."""
        try:
            data = load_file(str(self.path(k)))
        except FileNotFoundError:
            raise ShardStoreError(f"shard {k} ({self.path(k)}) has not been computed") from None
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file
            raise ShardStoreError(f"shard file {self.path(k)} is damaged ({err}); delete it to recompute") from err
        start, stop = self.shard_range(k)
        if not torch.equal(data["indices"], torch.arange(start, stop)):
            raise ShardStoreError(f"shard file {self.path(k)} does not hold items {start}..{stop - 1}")
        return data["indices"], data["embeddings"]

    def iter_shards(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (indices, embeddings) shard by shard; only one shard is in memory at a time."""
        for k in range(self.num_shards):
            yield self.read(k)

    def gather(self, items: torch.Tensor) -> torch.Tensor:
        """Embeddings [len(items), D] of the given item indices, reading only the shards they live in."""
        items = items.to(torch.int64).cpu()
        out: torch.Tensor | None = None
        for k in torch.unique(items // self.shard_size).tolist():
            idx, emb = self.read(int(k))
            if out is None:
                out = torch.empty(len(items), emb.shape[1])
            sel = (items // self.shard_size) == k
            out[sel] = emb[items[sel] - idx[0]]
        if out is None:
            raise ShardStoreError("gather() needs at least one item")
        return out

    def load_all(self) -> torch.Tensor:
        """All embeddings [total, D] (only for stores known to be small, such as the queries)."""
        return torch.cat([emb for _, emb in self.iter_shards()], dim=0)
