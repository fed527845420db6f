"""Index samplers: which global sample indices a rank sees, per epoch, from any resume point.

The training stream is a sequence of epochs of ``epoch_length`` samples each. Epoch ``e`` covers the
global indices ``first_index + (e * epoch_length if fresh_each_epoch else 0) + [0, epoch_length)`` in an
order fixed by (seed, e). Rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of that order (the
epoch is padded by wrapping around to a multiple of W, as torch's DistributedSampler does), so the union
over ranks is the whole epoch for any W, and the order depends on neither workers nor batch size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Optional

import numpy as np
from torch.utils.data import DataLoader, DistributedSampler

from semedit.data.seeding import epoch_permutation


class ResumableIndexSampler(DistributedSampler):
    """Yields this rank's global sample indices for one epoch, starting at ``start_batch`` of ``start_epoch``.

    It subclasses ``DistributedSampler`` only so that Lightning recognises it as already sharded and does
    not wrap it in its own distributed sampler; it calls none of the parent's code (and needs no process
    group: rank and world size are given).

    ``__len__`` is the full per-rank epoch length even when it starts mid-epoch: Lightning's training loop
    counts batches from the restored position (``fetched += batches already done``) and needs the full
    length to find the last batch of the epoch.
    """

    def __init__(self, epoch_length: int, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, fresh_each_epoch: bool = True, first_index: int = 0,
                 start_epoch: int = 0, start_batch: int = 0):
        if epoch_length < 1:
            raise ValueError(f"epoch_length must be >= 1, got {epoch_length}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.epoch_length = int(epoch_length)
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.fresh_each_epoch = fresh_each_epoch
        self.first_index = int(first_index)
        self.epoch = int(start_epoch)
        self.num_samples = math.ceil(self.epoch_length / self.num_replicas)  # per rank
        self.total_size = self.num_samples * self.num_replicas
        self._resume_epoch: Optional[int] = int(start_epoch) if start_batch > 0 else None
        self._resume_batch = int(start_batch)
        self.drop_last = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """All global indices of ``epoch`` in order (all ranks), int64 [epoch_length]."""
        order = epoch_permutation(self.epoch_length, self.seed, epoch) if self.shuffle else np.arange(self.epoch_length)
        base = self.first_index + (epoch * self.epoch_length if self.fresh_each_epoch else 0)
        return (base + order).astype(np.int64)

    def rank_indices(self, epoch: int) -> np.ndarray:
        """This rank's global indices of ``epoch``, int64 [num_samples]."""
        indices = self.epoch_indices(epoch)
        if self.total_size > len(indices):
            indices = np.concatenate([indices, indices[: self.total_size - len(indices)]])
        return indices[self.rank: self.total_size: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        indices = self.rank_indices(self.epoch)
        if self._resume_epoch is not None:
            if self.epoch == self._resume_epoch:
                indices = indices[self._resume_batch * self.batch_size:]
            # The resume offset applies to the first pass over the resumed epoch only.
            self._resume_epoch = None
        return iter(indices.tolist())

    def __len__(self) -> int:
        return self.num_samples


class PositionedLoader(DataLoader):
    """The training loader: it starts where the restored run left off, so Lightning may count it resumable.

    Its sampler is built from the restored loop counters (``resume_position``), so the loader has no state of
    its own to save or load: both methods below are empty on purpose. Lightning looks for them to decide
    whether a mid-epoch resume is exact, and without them warns on every such resume that "your dataloader
    is not resumable", which is false here (the resume tests check that it is bit-exact).
    """

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        del state_dict


def resume_position(trainer, epoch_length: int, batch_size: int) -> tuple[int, int]:
    """(epoch, batches already done in it) from a trainer's restored loop state; (0, 0) on a fresh run.

    Lightning restores the loops before it asks for the train loader, so the progress counters hold the
    checkpoint's position then. ``processed`` counts the batch whose on_train_batch_end saved the
    checkpoint, which has been trained on.
    """
    if trainer is None:
        return 0, 0
    epoch = trainer.fit_loop.epoch_progress.current.processed
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    batches_per_epoch = math.ceil(math.ceil(epoch_length / trainer.world_size) / batch_size)
    if done >= batches_per_epoch:  # the checkpoint was taken at the very end of the epoch
        return epoch + 1, 0
    return epoch, done


class FixedIndexSampler(DistributedSampler):
    """This rank's share of a fixed list of indices (validation), in order; pads by wrapping like DDP does."""

    def __init__(self, indices, num_replicas: int = 1, rank: int = 0):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.num_samples = math.ceil(len(self.indices) / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch, self.shuffle, self.drop_last, self.seed = 0, False, False, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        indices = self.indices
        if self.total_size > len(indices) and len(indices):
            indices = np.resize(indices, self.total_size)
        return iter(indices[self.rank: self.total_size: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
