"""Direction files: a unit vector, its latent space, the W+ layers it applies to, and how it was made.

Format: a safetensors file with one float32 tensor ``vector`` [dim] and string metadata
``format=semedit-direction``, ``version``, ``space``, ``layers`` (JSON list or ``null``) and ``meta`` (JSON).
safetensors never executes code, and the metadata is readable with any safetensors tool.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open

from semedit.errors import SemeditError
from semedit.files import save_safetensors

SPACES = ("z", "w", "wplus", "s")
FORMAT = "semedit-direction"
VERSION = "1"


class DirectionFileError(SemeditError, ValueError):
    """A direction file is missing, malformed, or does not fit the generator it is used with."""


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
