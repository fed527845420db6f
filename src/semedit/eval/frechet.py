"""Fréchet statistics (FID, FID_CLIP) that merge exactly across batches, shards, DDP ranks and SLURM tasks.

A :class:`FrechetStats` holds what torchmetrics' ``FrechetInceptionDistance`` keeps per set (torchmetrics
1.9.0 ``image/fid.py`` lines 376-382 and 401-403): the number of samples, the float64 sum of the features
[D] and the float64 sum of their outer products [D, D]. The Fréchet distance is then computed from them exactly
as torchmetrics does (:func:`frechet_distance_from_moments`, :func:`frechet_distance`).

Why not one running sum as torchmetrics keeps? Float64 addition is not associative, so a set computed in one
pass and the same set computed as two shards and added would differ in the last bits, and a result would
depend on how the job was split. Here every sample has a global index (its position in the set), and the
sums are formed in a fixed order that depends only on the indices:

* items ``[k * block_size, (k + 1) * block_size)`` form block k; a block's partial sums are computed in one
  step from its rows in index order (``rows.sum(0)`` and ``rows.T @ rows`` in float64);
* blocks are combined along a fixed binary tree over the block index: node ``(level, i)`` covers blocks
  ``[i * 2**level, (i + 1) * 2**level)`` and is always ``left + right`` of its two children. A node is formed
  as soon as both children exist, whoever computed them;
* the totals add the remaining (maximal) nodes in block order.

A node's value therefore depends only on the features of the items it covers, and the set of remaining
nodes only on which items exist: one pass, any number of shards merged in any order, and a state saved and
loaded all give bit-identical sums, provided each block's partial sums are computed on the same kind of
device with the same BLAS (thread count included; MKL does not promise identical matrix products across thread
counts or CPU generations). The only rule for the job: **a block must not be split between states**, i.e.
each shard starts at a multiple of ``block_size`` (a shard may end anywhere; the last shard of a set usually
ends inside a block). A split block is detected at merge time and refused, never silently double-counted.

Subsets (pose buckets) use the same global indices with gaps: a block's partial sums cover whichever of its
items belong to the subset, so bucket statistics merge across shards just as the full set does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from semedit.errors import SemeditError
from semedit.files import save_safetensors

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "FrechetStats",
    "FrechetStatsError",
    "frechet_distance",
    "frechet_distance_from_moments",
    "merge_stats",
]

FORMAT = "semedit-frechet-stats"
FORMAT_VERSION = "1"
# Items per block: shards must start at multiples of it. 256 keeps the buffered rows of an open block small
# (256 x 2048 float64 = 4 MiB) and the number of tree nodes alive in one pass at about log2(N / 256).
DEFAULT_BLOCK_SIZE = 256


class FrechetStatsError(SemeditError, ValueError):
    """Statistics that cannot be combined or compared (other extractor, dimension or block size, an item or
    block counted twice, too few samples), or a statistics file that is missing or damaged."""


@dataclass(frozen=True)
class _Node:
    """Partial sums of the items of some blocks: count, sum [D] float64, sum of outer products [D, D] float64."""

    count: int
    sum: torch.Tensor
    outer: torch.Tensor

    def __add__(self, other: _Node) -> _Node:
        return _Node(self.count + other.count, self.sum + other.sum, self.outer + other.outer)


def _span(key: tuple[int, int]) -> tuple[int, int]:
    """Blocks [first, stop) covered by tree node ``(level, index)``."""
    level, index = key
    return index << level, (index + 1) << level


class FrechetStats:
    """Mergeable Fréchet statistics of one set of feature vectors.

    Args:
        dim: feature dimension D (2048 for the FID Inception, 512 for CLIP ViT-B/32).
        extractor: name of the feature extractor ("inception-fid", "clip-vit-b32/hairfast", ...); statistics
            of different extractors are never merged or compared.
        block_size: items per block (see the module docstring); every state of one set must use the same one.
        device: where the partial sums are computed and kept. Bit-identity across shards needs the same device
            kind for all of them; CPU is the portable default.
    """

    def __init__(self, dim: int, extractor: str, block_size: int = DEFAULT_BLOCK_SIZE,
                 device: str | torch.device = "cpu"):
        if int(dim) < 1 or int(block_size) < 1:
            raise FrechetStatsError(f"need dim >= 1 and block_size >= 1, got dim={dim}, block_size={block_size}")
        if not extractor or not isinstance(extractor, str):
            raise FrechetStatsError("the feature extractor needs a name (e.g. 'inception-fid')")
        self.dim = int(dim)
        self.extractor = extractor
        self.block_size = int(block_size)
        self.device = torch.device(device)
        self._nodes: dict[tuple[int, int], _Node] = {}
        self._open_block: int | None = None  # block whose rows are still arriving
        self._open_rows: list[torch.Tensor] = []
        self._next_index = 0  # default index of the next item (indices must increase)

    # -- accumulation ---------------------------------------------------------------------------------
    def update(self, features: torch.Tensor, indices: int | Sequence[int] | torch.Tensor | None = None) -> None:
        """Add feature vectors.

        Args:
            features: [N, D] (or [D] for one item), any float dtype; converted to float64 as torchmetrics
                does (``fid.py`` line 396).
            indices: global item indices of the rows: None (continue after the previous item; the first call
                starts at 0), an int (first index of N consecutive items) or [N] strictly increasing ints,
                all above every index given before.
        """
        feats = features.detach()
        if feats.dim() == 1:  # torchmetrics accepts one vector as one item (fid.py lines 398-399)
            feats = feats.unsqueeze(0)
        if feats.dim() != 2 or feats.shape[1] != self.dim:
            raise FrechetStatsError(f"features must be [N, {self.dim}] for {self.extractor}, got {tuple(features.shape)}")
        if not feats.is_floating_point():
            raise FrechetStatsError(f"features must be floating point, got {feats.dtype}")
        n = feats.shape[0]
        if indices is None or isinstance(indices, int):
            first = self._next_index if indices is None else int(indices)
            idx = torch.arange(first, first + n, dtype=torch.int64)
        else:
            idx = torch.as_tensor(indices, dtype=torch.int64).flatten().cpu()
            if idx.numel() != n:
                raise FrechetStatsError(f"{n} feature rows but {idx.numel()} indices")
        if n == 0:
            return
        if idx[0] < self._next_index or (n > 1 and bool((idx[1:] <= idx[:-1]).any())):
            raise FrechetStatsError(
                f"item indices must increase strictly across updates (next allowed index {self._next_index}, "
                f"got {idx[0].item()}..{idx[-1].item()}); give each shard its own FrechetStats and merge them")
        if not torch.isfinite(feats).all():
            raise FrechetStatsError(f"features of {self.extractor} contain NaN or inf (items {idx[0].item()}.."
                                    f"{idx[-1].item()}): check the images and the extractor's dtype")
        rows = feats.to(device=self.device, dtype=torch.float64)
        blocks = idx // self.block_size
        # Rows of one block arrive together or in later updates; a later block closes the open one.
        change = torch.nonzero(blocks[1:] != blocks[:-1]).flatten() + 1
        bounds = [0, *change.tolist(), n]
        for lo in bounds[:-1]:  # checked before anything changes: e.g. a loaded state continued in a closed block
            if int(blocks[lo]) != self._open_block:
                _check_free(self._nodes, (0, int(blocks[lo])), self)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            block = int(blocks[lo])
            if self._open_block is not None and block != self._open_block:
                self._close_open_block()
            self._open_block = block
            # A copy: the caller may reuse its buffer, and a fresh tensor has the same layout and alignment
            # however the rows arrived (so the BLAS product below cannot take another code path for a view).
            self._open_rows.append(rows[lo:hi].clone())
        self._next_index = int(idx[-1]) + 1

    def _reduce_open_block(self) -> _Node | None:
        if self._open_block is None:
            return None
        rows = torch.cat(self._open_rows) if len(self._open_rows) > 1 else self._open_rows[0]
        # The same two reductions as torchmetrics' update (fid.py lines 401-402), once per block.
        return _Node(rows.shape[0], rows.sum(dim=0), rows.t().mm(rows))

    def _close_open_block(self) -> None:
        node = self._reduce_open_block()
        if node is not None:
            _insert(self._nodes, (0, self._open_block), node, self)
        self._open_block, self._open_rows = None, []

    def _closed_nodes(self) -> dict[tuple[int, int], _Node]:
        """The tree nodes with the open block reduced as a leaf; the state itself is unchanged, so more rows of
        that block may still arrive."""
        nodes = dict(self._nodes)
        node = self._reduce_open_block()
        if node is not None:
            _insert(nodes, (0, self._open_block), node, self)
        return nodes

    # -- totals -----------------------------------------------------------------------------------------
    def totals(self) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(count, sum [D] float64, sum of outer products [D, D] float64), added in block order."""
        nodes = self._closed_nodes()
        count = 0
        total_sum = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        total_outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=self.device)
        for key in sorted(nodes, key=_span):
            count += nodes[key].count
            total_sum = total_sum + nodes[key].sum
            total_outer = total_outer + nodes[key].outer
        return count, total_sum, total_outer

    @property
    def count(self) -> int:
        """Number of items added."""
        return sum(node.count for node in self._nodes.values()) + sum(r.shape[0] for r in self._open_rows)

    def mean_and_covariance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu [D], sigma [D, D]) in float64, with the unbiased (N-1) covariance computed as torchmetrics 1.9.0
        does (``fid.py`` lines 413-419: ``(outer - N mu^T mu) / (N - 1)``)."""
        n, total_sum, total_outer = self.totals()
        if n < 2:
            raise FrechetStatsError(f"{self.extractor} statistics hold {n} item(s); a covariance needs at least 2 "
                                    "(torchmetrics raises the same, fid.py lines 411-412)")
        mean = (total_sum / n).unsqueeze(0)
        cov = (total_outer - n * mean.t().mm(mean)) / (n - 1)
        return mean.squeeze(0), cov

    # -- merging, files ---------------------------------------------------------------------------------
    def _check_compatible(self, other: FrechetStats, action: str) -> None:
        # Comparing needs the same feature space; merging also the same block layout.
        ours = (self.extractor, self.dim) + ((self.block_size,) if action == "merge" else ())
        theirs = (other.extractor, other.dim) + ((other.block_size,) if action == "merge" else ())
        if ours != theirs:
            what = "extractor/dim/block_size" if action == "merge" else "extractor/dim"
            raise FrechetStatsError(
                f"cannot {action} statistics of different kinds: {what} {ours} vs {theirs}; compute every "
                "set with the same feature extractor" + (" and block size" if action == "merge" else ""))

    @classmethod
    def merge(cls, states: Iterable[FrechetStats]) -> FrechetStats:
        """One state holding the items of all ``states`` (each item once); see :func:`merge_stats`."""
        states = list(states)
        if not states:
            raise FrechetStatsError("nothing to merge: no statistics given")
        first = states[0]
        out = cls(first.dim, first.extractor, first.block_size, first.device)
        for state in states:
            first._check_compatible(state, "merge")
            for key, node in state._closed_nodes().items():
                node = _Node(node.count, node.sum.to(out.device), node.outer.to(out.device))
                _insert(out._nodes, key, node, out)
            out._next_index = max(out._next_index, state._next_index)
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state (its open block closed, in the file only) to a safetensors file, atomically."""
        tensors = {}
        for (level, index), node in self._closed_nodes().items():
            tensors[f"{level}.{index}.count"] = torch.tensor([node.count], dtype=torch.int64)
            tensors[f"{level}.{index}.sum"] = node.sum.cpu().contiguous()
            tensors[f"{level}.{index}.outer"] = node.outer.cpu().contiguous()
        metadata = {"format": FORMAT, "version": FORMAT_VERSION, "extractor": self.extractor,
                    "dim": str(self.dim), "block_size": str(self.block_size),
                    "next_index": str(self._next_index), "count": str(self.count)}
        return save_safetensors(tensors, path, metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu", *, extractor: str | None = None,
             dim: int | None = None) -> FrechetStats:
        """Read a file written by :meth:`save`. ``extractor``/``dim``, when given, must match the file's."""
        path = Path(path)
        if not path.is_file():
            raise FrechetStatsError(f"Fréchet statistics file {path} does not exist; compute it first")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                raw = {key: f.get_tensor(key) for key in f.keys()}
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise FrechetStatsError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err}); "
                                    "delete it and compute the statistics again") from None
        if meta.get("format") != FORMAT:
            raise FrechetStatsError(f"{path} is not a semedit Fréchet statistics file (format {meta.get('format')!r})")
        if meta.get("version") != FORMAT_VERSION:
            raise FrechetStatsError(f"{path} has statistics format version {meta.get('version')!r}; this semedit "
                                    f"reads version {FORMAT_VERSION}: compute the statistics again")
        try:
            state = cls(int(meta["dim"]), meta["extractor"], int(meta["block_size"]), device)
            next_index = int(meta["next_index"])
        except (KeyError, ValueError) as err:
            raise FrechetStatsError(f"{path}: damaged metadata ({err})") from None
        if extractor is not None and extractor != state.extractor:
            raise FrechetStatsError(f"{path} holds statistics of {state.extractor!r}, not {extractor!r}")
        if dim is not None and int(dim) != state.dim:
            raise FrechetStatsError(f"{path} holds {state.dim}-d statistics, not {dim}-d")
        keys = {k.rsplit(".", 1)[0] for k in raw}
        for key in sorted(keys):
            try:
                level, index = (int(p) for p in key.split("."))
                count, s, o = raw[f"{key}.count"], raw[f"{key}.sum"], raw[f"{key}.outer"]
            except (KeyError, ValueError):
                raise FrechetStatsError(f"{path}: damaged tree node {key!r}; compute the statistics again") from None
            if (level < 0 or index < 0 or count.dtype != torch.int64 or count.numel() != 1 or int(count) < 1
                    or s.dtype != torch.float64 or o.dtype != torch.float64
                    or tuple(s.shape) != (state.dim,) or tuple(o.shape) != (state.dim, state.dim)):
                raise FrechetStatsError(f"{path}: tree node {key!r} has wrong shapes or dtypes; compute the "
                                        "statistics again")
            _insert(state._nodes, (level, index), _Node(int(count), s.to(state.device), o.to(state.device)), state)
        state._next_index = next_index
        if str(state.count) != meta.get("count"):
            raise FrechetStatsError(f"{path}: item count {state.count} differs from the recorded {meta.get('count')}")
        return state

    def __repr__(self) -> str:
        return (f"FrechetStats(extractor={self.extractor!r}, dim={self.dim}, count={self.count}, "
                f"block_size={self.block_size})")


def _insert(nodes: dict[tuple[int, int], _Node], key: tuple[int, int], node: _Node, owner: FrechetStats) -> None:
    """Add tree node ``key`` to ``nodes``, combining it with its sibling (always left + right) as far up as the
    siblings exist. Refuses a node that overlaps one already present: its items would be counted twice."""
    _check_free(nodes, key, owner)
    level, index = key
    while (level, index ^ 1) in nodes:
        sibling = nodes.pop((level, index ^ 1))
        node = sibling + node if index & 1 else node + sibling
        level, index = level + 1, index >> 1
    nodes[(level, index)] = node


def _check_free(nodes: dict[tuple[int, int], _Node], key: tuple[int, int], owner: FrechetStats) -> None:
    """Raise unless no node in ``nodes`` covers a block of node ``key``."""
    first, stop = _span(key)
    for other in nodes:
        o_first, o_stop = _span(other)
        if first < o_stop and o_first < stop:
            b = owner.block_size
            raise FrechetStatsError(
                f"items {first * b}..{stop * b - 1} of {owner.extractor} statistics are present twice (blocks "
                f"{first}..{stop - 1} overlap blocks {o_first}..{o_stop - 1}): the same shard was merged twice, or "
                f"a shard does not start at a multiple of block_size={b}")


def merge_stats(states: Iterable[FrechetStats]) -> FrechetStats:
    """Merge the statistics of disjoint shards of one set; exact (the sums are re-formed in the fixed order of
    the module docstring, so any split gives bit-identical totals). Raises FrechetStatsError for different
    extractors, dimensions or block sizes, and for items present in two states."""
    return FrechetStats.merge(states)


def frechet_distance_from_moments(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                                  sigma2: torch.Tensor) -> torch.Tensor:
    """``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr(sqrt(sigma1 sigma2))`` as torchmetrics 1.9.0 computes
    it (``image/fid.py`` ``_compute_fid``, lines 190-194): the trace of the matrix square root is the sum of the
    square roots of the eigenvalues of ``sigma1 @ sigma2`` (real part). Shapes [D], [D, D]; returns a 0-d tensor
    in the inputs' dtype (float64 here).

    HairFast ran torchmetrics 0.11.4, which used ``scipy.linalg.sqrtm`` instead (with an eps retry); the two
    agree numerically on well-conditioned covariances but are not bit-identical."""
    a = (mu1 - mu2).square().sum(dim=-1)
    b = sigma1.trace() + sigma2.trace()
    c = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum(dim=-1)
    return a + b - 2 * c


def frechet_distance(real: FrechetStats, fake: FrechetStats) -> float:
    """FID (or FID_CLIP) between two sets' statistics, as a Python float computed in float64.

    The real set comes first, as torchmetrics passes it (``fid.py`` line 420). torchmetrics casts its result to
    the features' dtype (fp16 for HairFast's CLIP features on CUDA); this returns the float64 value.
    """
    real._check_compatible(fake, "compare")
    mu_real, sigma_real = real.mean_and_covariance()
    mu_fake, sigma_fake = fake.mean_and_covariance()
    return float(frechet_distance_from_moments(mu_real, sigma_real, mu_fake.to(real.device), sigma_fake.to(real.device)))
