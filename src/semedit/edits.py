"""Latent edits, below every method: the direction file format and THE offset of a direction.

A direction is a file holding a unit vector, its latent space ("z", "w", "wplus" or "s"), the layers it
applies to and how it was made (``Direction``, ``save_direction``, ``load_direction``: safetensors plus JSON
metadata ``format=semedit-direction``, ``version``, ``space``, ``layers``, ``meta``; nothing in it executes).

Moving codes along a direction goes through two functions, the same for every command, the datamodule's
pose-shifted pairs, the hair tools, editing after inversion and the demo:

- ``wplus_offset(direction, num_ws, w_dim, layers)``: a W or W+ direction as an offset [num_ws, w_dim] of a
  W+-shaped code (a generator's W+, or the FG 2021 hair embedding), zero outside its layers. A "w" direction
  repeats its vector on each of its layers (all, when it names none); a "wplus" direction holds one block
  per listed layer, in order. ``layers`` narrows the edit to some of the direction's own layers.
- ``style_offsets(synthesis, direction, layers)``: a direction as StyleSpace offsets [C_l] per style layer.
  S directions give their own blocks; W/W+ directions are mapped exactly (every style is an affine function
  of its w, so A_l(w + k d) = A_l(w) + (A_l(k d) - A_l(0))).

``edit_z``, ``edit_wplus`` and ``edit_styles`` add ``strength`` x the offset (strength: a float or [N]).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open

from semedit.errors import SemeditError
from semedit.files import save_safetensors

__all__ = ["SPACES", "Direction", "DirectionFileError", "EditError", "save_direction", "load_direction",
           "wplus_offset", "style_offsets", "edit_z", "edit_wplus", "edit_styles", "condition"]

SPACES = ("z", "w", "wplus", "s")
FORMAT = "semedit-direction"
VERSION = "1"


class DirectionFileError(SemeditError, ValueError):
    """A direction file is missing, malformed, or does not fit the generator it is used with."""


class EditError(SemeditError, ValueError):
    """A direction that cannot be applied to these codes; the message says why and what fits."""


@dataclass
class Direction:
    """A unit vector in a latent space.

    - ``vector``: float32 [dim], unit norm. dim is z_dim ("z"), w_dim ("w"), len(layers) * w_dim
      ("wplus": one w_dim block per listed layer, in order) or sum(style dims) ("s").
    - ``space``: "z" | "w" | "wplus" | "s".
    - ``layers``: the W+ layers (or, for "s", the style layers) it applies to; None means all.
    - ``meta``: how it was made (method, scorer, samples, accuracy, ...); JSON-serialisable.
    """

    vector: torch.Tensor
    space: str = "w"
    layers: Optional[list[int]] = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.space not in SPACES:
            raise DirectionFileError(f"direction space must be one of {SPACES}, got '{self.space}'")
        vector = torch.as_tensor(self.vector).detach().to("cpu", torch.float32)
        if vector.ndim != 1 or vector.numel() == 0:
            raise DirectionFileError(f"a direction vector must be 1-D and non-empty, got shape {tuple(vector.shape)}")
        if not torch.isfinite(vector).all():
            raise DirectionFileError("a direction vector must be finite")
        norm = float(vector.norm())
        if abs(norm - 1.0) > 1e-3:
            raise DirectionFileError(f"a direction vector must have unit norm, got {norm:.6g} (normalise it first)")
        self.vector = vector / norm
        if self.layers is not None:
            self.layers = [int(i) for i in self.layers]
            if len(set(self.layers)) != len(self.layers) or any(i < 0 for i in self.layers):
                raise DirectionFileError(f"direction layers must be distinct non-negative integers, got {self.layers}")
        if self.space == "wplus":
            if not self.layers:
                raise DirectionFileError("a 'wplus' direction needs its list of layers")
            if self.vector.numel() % len(self.layers):
                raise DirectionFileError(
                    f"a 'wplus' direction over {len(self.layers)} layers needs a vector of a multiple of "
                    f"{len(self.layers)} entries, got {self.vector.numel()}")

    @property
    def dim(self) -> int:
        return self.vector.numel()

    @classmethod
    def from_vector(cls, vector: torch.Tensor, space: str = "w", layers=None, meta: Optional[dict] = None):
        """Normalise ``vector`` and wrap it (raises for a zero vector)."""
        vector = torch.as_tensor(vector).detach().to("cpu", torch.float32).flatten()
        norm = float(vector.norm())
        if not norm > 0:
            raise DirectionFileError("cannot make a direction from a zero vector")
        return cls(vector / norm, space, None if layers is None else list(layers), dict(meta or {}))


def save_direction(path: str | os.PathLike, direction: Direction) -> Path:
    """Write ``direction`` to ``path`` (safetensors + JSON metadata). Returns the path."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "space": direction.space,
        "layers": json.dumps(direction.layers),
        "meta": json.dumps(direction.meta, sort_keys=True, default=_json_default),
    }
    save_safetensors({"vector": direction.vector.contiguous()}, path, metadata=metadata)
    return path


def load_direction(path: str | os.PathLike) -> Direction:
    """Read a direction file written by ``save_direction``; clear errors for anything else."""

    path = Path(path)
    if not path.is_file():
        raise DirectionFileError(
            f"direction file not found: {path} (make one with `semedit train direction` or `semedit pca`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            keys = list(f.keys())
            vector = f.get_tensor("vector") if "vector" in keys else None
    except Exception as err:  # safetensors raises several types for non-safetensors files
        raise DirectionFileError(f"{path} is not a safetensors direction file: {err}") from err
    if metadata.get("format") != FORMAT or vector is None:
        raise DirectionFileError(
            f"{path} is not a semedit direction file (expected metadata format={FORMAT} and a 'vector' tensor, "
            f"found keys {keys} and format={metadata.get('format')!r})")
    if metadata.get("version") != VERSION:
        raise DirectionFileError(f"{path}: unsupported direction file version {metadata.get('version')!r}")
    try:
        layers = json.loads(metadata.get("layers", "null"))
        meta = json.loads(metadata.get("meta", "{}"))
    except json.JSONDecodeError as err:
        raise DirectionFileError(f"{path}: corrupt metadata: {err}") from err
    return Direction(vector=vector, space=metadata.get("space", ""), layers=layers, meta=meta)


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"direction meta value of type {type(value).__name__} is not JSON-serialisable")


# ----------------------------------------------------------------------------------------------------
# THE offsets of a direction.


def _check_range(indices: Sequence[int], size: int, what: str) -> list[int]:
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise EditError(f"{what} {bad} out of range: this generator has {size} (0..{size - 1})")
    return list(indices)


def _restrict(own: list[int], requested: Sequence[int] | None, size: int, what: str) -> list[int]:
    """The layers an edit touches: the direction's own layers, narrowed to ``requested``."""
    if requested is None:
        return own
    requested = _check_range(requested, size, what)
    outside = [i for i in requested if i not in own]
    if outside:
        raise EditError(f"{what} {outside} are not among the direction's layers {own}")
    return requested


def wplus_offset(direction: Direction | torch.Tensor, num_ws: int, w_dim: int, layers: Sequence[int] | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """A W or W+ direction as an offset [num_ws, w_dim], zero outside its (chosen) layers.

    ``direction`` is a ``Direction`` ("w" or "wplus"), or a bare vector: [w_dim] (a "w" direction on every
    layer) or [L, w_dim] / [L * w_dim] with ``layers`` naming its L layers (a "wplus" block).
    """
    if isinstance(direction, Direction):
        if direction.space not in ("w", "wplus"):
            raise EditError(f"expected a W or W+ direction, got space '{direction.space}'")
        vector, space, own = direction.vector, direction.space, direction.layers
    else:
        vector = torch.as_tensor(direction, dtype=torch.float32)
        space = "w" if vector.numel() == w_dim else "wplus"
        own, layers = (list(layers) if layers is not None else None), None
    vec = vector.detach().float().to(device if device is not None else vector.device).flatten()
    own = _check_range(own, num_ws, "W+ layers") if own is not None else list(range(num_ws))
    if space == "w":
        if vec.numel() != w_dim:
            raise EditError(f"W direction has {vec.numel()} entries but this code has w_dim={w_dim}")
        blocks = {i: vec for i in own}
    else:
        if vec.numel() != len(own) * w_dim:
            raise EditError(f"W+ direction over layers {own} has {vec.numel()} entries; this code needs "
                            f"{len(own)} x w_dim={w_dim} = {len(own) * w_dim}")
        blocks = dict(zip(own, vec.reshape(len(own), w_dim), strict=True))
    offset = torch.zeros(num_ws, w_dim, device=vec.device)
    for i in _restrict(own, layers, num_ws, "W+ layers"):
        offset[i] = blocks[i]
    return offset


def style_offsets(synthesis, direction: Direction, layers: Sequence[int] | None = None) -> list[torch.Tensor]:
    """A direction as StyleSpace offsets, list of [C_l].

    For an S direction, its ``layers`` and ``layers`` here are style-layer indices, and the vector holds
    either all style layers (sum C_l entries) or only the listed ones, in order. For a W/W+ direction,
    ``layers`` are W+ layers and the offset is mapped into S exactly (styles are affine in w).
    """
    syn = synthesis
    device = next(iter(syn.parameters())).device
    if direction.space != "s":
        delta = wplus_offset(direction, syn.num_ws, syn.w_dim, layers, device=device)[None]
        zero = torch.zeros_like(delta)
        return [(a - b)[0] for a, b in zip(syn.ws_to_styles(delta), syn.ws_to_styles(zero), strict=True)]
    vec = direction.vector.detach().float().to(device).flatten()
    num_layers = len(syn.style_dims)
    own = _check_range(direction.layers, num_layers, "style layers") if direction.layers is not None else list(range(num_layers))
    if vec.numel() == sum(syn.style_dims):
        parts = dict(enumerate(torch.split(vec, syn.style_dims)))
    elif vec.numel() == sum(syn.style_dims[i] for i in own):
        parts = dict(zip(own, torch.split(vec, [syn.style_dims[i] for i in own]), strict=True))
    else:
        raise EditError(f"S direction has {vec.numel()} entries; this generator's StyleSpace has "
                        f"{sum(syn.style_dims)} (style dims {syn.style_dims})")
    keep = set(_restrict(own, layers, num_layers, "style layers"))
    return [parts[i] if i in keep and i in parts else torch.zeros(d, device=vec.device)
            for i, d in enumerate(syn.style_dims)]


# ----------------------------------------------------------------------------------------------------
# Edits.


def _strength(strength, n: int, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(strength, dtype=like.dtype, device=like.device)
    return s.expand(n) if s.ndim == 0 else s.reshape(n)


def edit_z(z: torch.Tensor, direction: Direction, strength) -> torch.Tensor:
    """z [N, z_dim] + strength x a 'z' direction."""
    if direction.space != "z":
        raise EditError(f"a Z edit needs a 'z' direction, got '{direction.space}'")
    if direction.dim != z.shape[1]:
        raise EditError(f"direction has {direction.dim} entries, z has {z.shape[1]}")
    return z + _strength(strength, z.shape[0], z)[:, None] * direction.vector.to(z)


def edit_wplus(ws: torch.Tensor, direction: Direction | torch.Tensor, strength,
               layers: Sequence[int] | None = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] + strength x ``wplus_offset`` (see there for ``direction`` and ``layers``)."""
    n, num_ws, w_dim = ws.shape
    offset = wplus_offset(direction, num_ws, w_dim, layers, device=ws.device).to(ws.dtype)
    return ws + _strength(strength, n, ws)[:, None, None] * offset[None]


def edit_styles(synthesis, styles: list[torch.Tensor], direction: Direction, strength,
                layers: Sequence[int] | None = None) -> list[torch.Tensor]:
    """styles (list of [N, C_l]) + strength x ``style_offsets``."""
    k = _strength(strength, styles[0].shape[0], styles[0])[:, None]
    return [s + k * o.to(s) for s, o in zip(styles, style_offsets(synthesis, direction, layers), strict=True)]


def condition(primary: Direction, others: Sequence[Direction]) -> Direction:
    """Conditional direction (InterFaceGAN): ``primary`` with the span of ``others`` projected out, renormalised."""
    basis: list[torch.Tensor] = []
    for d in others:
        if d.space != primary.space or d.dim != primary.dim:
            raise DirectionFileError(f"cannot condition a '{primary.space}' direction [{primary.dim}] on a "
                                     f"'{d.space}' direction [{d.dim}]")
        v = d.vector.double().clone()
        for b in basis:  # Gram-Schmidt: orthonormal basis of the others
            v -= (v @ b) * b
        if v.norm() > 1e-6:
            basis.append(v / v.norm())
    result = primary.vector.double().clone()
    for b in basis:
        result -= (result @ b) * b
    if result.norm() < 1e-6:
        raise DirectionFileError("the primary direction lies in the span of the conditioning directions")
    meta = dict(primary.meta, conditioned_on=[d.meta.get("name", d.meta.get("method", "?")) for d in others])
    return Direction.from_vector(result.float(), primary.space, primary.layers, meta)
