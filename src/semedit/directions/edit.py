"""Edit operations: move latent codes along directions in Z, W, chosen W+ layers, or StyleSpace S.

All functions are pure and differentiable. Shapes: z [N, z_dim]; ws [N, num_ws, w_dim];
styles: list of [N, C_l] (``G.synthesis.ws_to_styles``); strength: a float or [N].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

from semedit.directions.io import Direction, DirectionFileError


def _strength(strength, n: int, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(strength, dtype=like.dtype, device=like.device)
    return s.expand(n) if s.ndim == 0 else s.reshape(n)


def edit_z(z: torch.Tensor, direction: Direction, strength) -> torch.Tensor:
    if direction.space != "z":
        raise DirectionFileError(f"edit_z needs a 'z' direction, got '{direction.space}'")
    if direction.dim != z.shape[1]:
        raise DirectionFileError(f"direction has {direction.dim} entries, z has {z.shape[1]}")
    return z + _strength(strength, z.shape[0], z)[:, None] * direction.vector.to(z)


def edit_ws(ws: torch.Tensor, direction: Direction, strength, layers: Optional[Sequence[int]] = None) -> torch.Tensor:
    """ws + strength · n on ``layers`` (default: the direction's layers, else all). 'w' or 'wplus' directions."""
    n, num_ws, w_dim = ws.shape
    if direction.space == "w":
        if direction.dim != w_dim:
            raise DirectionFileError(f"direction has {direction.dim} entries, w_dim is {w_dim}")
        layers = list(layers) if layers is not None else (direction.layers or list(range(num_ws)))
        step = direction.vector.to(ws).expand(len(layers), w_dim)
    elif direction.space == "wplus":
        if layers is not None and list(layers) != direction.layers:
            raise DirectionFileError(f"a W+ direction applies to its own layers {direction.layers}, not {list(layers)}")
        layers = direction.layers
        if direction.dim != len(layers) * w_dim:
            raise DirectionFileError(f"W+ direction has {direction.dim} entries, expected {len(layers)} x {w_dim}")
        step = direction.vector.to(ws).view(len(layers), w_dim)
    else:
        raise DirectionFileError(f"edit_ws needs a 'w' or 'wplus' direction, got '{direction.space}'")
    bad = [i for i in layers if not 0 <= i < num_ws]
    if bad:
        raise DirectionFileError(f"layers {list(layers)}: the generator has W+ layers 0..{num_ws - 1}")
    mask = torch.zeros(num_ws, w_dim, dtype=ws.dtype, device=ws.device)
    mask[list(layers)] = step
    return ws + _strength(strength, n, ws)[:, None, None] * mask[None]


def split_styles(vector: torch.Tensor, style_dims: Sequence[int]) -> list[torch.Tensor]:
    if vector.numel() != sum(style_dims):
        raise DirectionFileError(f"an S direction needs {sum(style_dims)} entries, got {vector.numel()}")
    return list(torch.split(vector, list(style_dims)))


def edit_styles(styles: list[torch.Tensor], direction: Direction, strength,
                layers: Optional[Sequence[int]] = None) -> list[torch.Tensor]:
    """styles + strength · n, n an 's' direction over all style layers; ``layers``: style layers to edit."""
    if direction.space != "s":
        raise DirectionFileError(f"edit_styles needs an 's' direction, got '{direction.space}'")
    parts = split_styles(direction.vector, [s.shape[1] for s in styles])
    chosen = layers if layers is not None else direction.layers
    layers = set(range(len(styles))) if chosen is None else set(chosen)
    n = styles[0].shape[0]
    k = _strength(strength, n, styles[0])[:, None]
    return [s + k * p.to(s) if i in layers else s for i, (s, p) in enumerate(zip(styles, parts))]


def w_direction_to_styles(G, direction: Direction) -> torch.Tensor:
    """The StyleSpace step of a 'w'/'wplus' direction: concat_l affine_l(w + n) - affine_l(w), [sum C_l].

    The affine layers are linear, so editing S by this step with strength k equals editing W+ with k.
    Not unit norm: it keeps the W strength scale.
    """
    base = G.mean_ws(1)
    moved = edit_ws(base, direction, 1.0)
    before = G.synthesis.ws_to_styles(base)
    after = G.synthesis.ws_to_styles(moved)
    return torch.cat([(a - b)[0] for a, b in zip(after, before)]).detach()


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
