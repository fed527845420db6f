"""Editing after inversion: move the codes of all (or chosen) chunks along a direction, recomposite.

The masks stay as inverted, so an edit changes the picture exactly where the edited chunks show.
Directions in W or W+ are applied in W+ (to the direction's layers, or the ones asked for); on an
inversion in S they are mapped into S exactly, because every style is an affine function of its w:
A_l(w + k d) = A_l(w) + (A_l(k d) - A_l(0)). Directions in S apply to codes of any space (W/W+ codes are
first turned into their styles). Directions in Z cannot be applied to inverted codes (the mapping
network is not invertible) and are rejected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from semedit.errors import SemeditError
from semedit.inversion.composite import composite
from semedit.inversion.latents import codes_to_styles, codes_to_wplus, render_chunks

__all__ = ["EditError", "direction_delta_wplus", "direction_delta_styles", "apply_direction", "render_composite",
           "edit_codes_images"]


class EditError(SemeditError, ValueError):
    """A direction that cannot be applied to these codes; the message says why and what fits."""


def _chunk_mask(n: int, chunks: Sequence[int] | None, device) -> torch.Tensor:
    if chunks is None:
        return torch.ones(n, device=device)
    bad = [c for c in chunks if not 0 <= c < n]
    if bad:
        raise EditError(f"chunks {bad} out of range: this inversion has n={n} chunks (0..{n - 1})")
    sel = torch.zeros(n, device=device)
    sel[list(chunks)] = 1
    return sel


def _check_range(indices: Sequence[int], size: int, what: str) -> list[int]:
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise EditError(f"{what} {bad} out of range: this generator has {size} (0..{size - 1})")
    return list(indices)


def _restrict(available: Sequence[int] | None, requested: Sequence[int] | None, size: int,
              what: str) -> list[int]:
    """The layers an edit touches: the direction's own layers (None = all), narrowed to ``requested``."""
    own = _check_range(available, size, what) if available is not None else list(range(size))
    if requested is None:
        return own
    requested = _check_range(requested, size, what)
    outside = [i for i in requested if i not in own]
    if outside:
        raise EditError(f"{what} {outside} are not among the direction's layers {own}")
    return requested


def direction_delta_wplus(G, direction, layers: Sequence[int] | None = None) -> torch.Tensor:
    """A W or W+ direction as a W+ offset [num_ws, w_dim], zero outside its (chosen) W+ layers.

    "w": one w_dim vector for every listed layer; "wplus": one w_dim block per listed layer, in order
    (the direction-file contract). ``layers`` narrows the edit to some of those W+ layers.
    """
    if direction.space not in ("w", "wplus"):
        raise EditError(f"expected a W or W+ direction, got space '{direction.space}'")
    vec = direction.vector.detach().float().to(G.w_avg.device).flatten()
    num_ws, w_dim = G.num_ws, G.w_dim
    own = _check_range(direction.layers, num_ws, "W+ layers") if direction.layers is not None else list(range(num_ws))
    if direction.space == "w":
        if vec.numel() != w_dim:
            raise EditError(f"W direction has {vec.numel()} entries but this generator has w_dim={w_dim}")
        blocks = {i: vec for i in own}
    else:
        if vec.numel() != len(own) * w_dim:
            raise EditError(f"W+ direction over layers {own} has {vec.numel()} entries; this generator needs "
                            f"{len(own)} x w_dim={w_dim} = {len(own) * w_dim}")
        blocks = dict(zip(own, vec.reshape(len(own), w_dim), strict=True))
    delta = torch.zeros(num_ws, w_dim, device=vec.device)
    for i in _restrict(direction.layers, layers, num_ws, "W+ layers"):
        delta[i] = blocks[i]
    return delta


def direction_delta_styles(G, direction, layers: Sequence[int] | None = None) -> list[torch.Tensor]:
    """A direction as StyleSpace offsets, list of [C_l].

    For an S direction, its ``layers`` and ``layers`` here are style-layer indices, and the vector holds
    either all style layers (sum C_l entries) or only the listed ones, in order. For a W/W+ direction,
    ``layers`` are W+ layers and the offset is mapped into S exactly (styles are affine in w).
    """
    syn = G.synthesis
    if direction.space != "s":
        delta = direction_delta_wplus(G, direction, layers)[None]
        zero = torch.zeros_like(delta)
        return [(a - b)[0] for a, b in zip(syn.ws_to_styles(delta), syn.ws_to_styles(zero), strict=True)]
    vec = direction.vector.detach().float().to(G.w_avg.device).flatten()
    num_layers = len(syn.style_dims)
    own = _check_range(direction.layers, num_layers, "style layers") if direction.layers is not None else list(range(num_layers))
    if vec.numel() == sum(syn.style_dims):
        parts = dict(enumerate(torch.split(vec, syn.style_dims)))
    elif vec.numel() == sum(syn.style_dims[i] for i in own):
        parts = dict(zip(own, torch.split(vec, [syn.style_dims[i] for i in own]), strict=True))
    else:
        raise EditError(f"S direction has {vec.numel()} entries; this generator's StyleSpace has "
                        f"{sum(syn.style_dims)} (style dims {syn.style_dims})")
    keep = set(_restrict(direction.layers, layers, num_layers, "style layers"))
    return [parts[i] if i in keep and i in parts else torch.zeros(d, device=vec.device)
            for i, d in enumerate(syn.style_dims)]


def apply_direction(G, space: str, codes: list[torch.Tensor], direction, strength: float,
                    chunks: Sequence[int] | None = None, layers: Sequence[int] | None = None):
    """Codes [N, n, ...] of ``space`` moved by ``strength`` along ``direction`` in the chosen chunks.

    Returns (new_space, new_codes): "wplus" for W/W+ codes and a W/W+ direction, "s" otherwise.
    """
    if direction.space == "z":
        raise EditError("a Z-space direction cannot edit inverted codes (the mapping network cannot be inverted); "
                        "use a direction found in W, W+ or S")
    if direction.space not in ("w", "wplus", "s"):
        raise EditError(f"unknown direction space '{direction.space}'")
    n = codes[0].shape[1]
    sel = _chunk_mask(n, chunks, codes[0].device)
    with torch.no_grad():
        if direction.space in ("w", "wplus") and space in ("w", "wplus"):
            ws = codes_to_wplus(G, space, codes)
            delta = direction_delta_wplus(G, direction, layers).to(ws.device)
            return "wplus", [ws + strength * sel[None, :, None, None] * delta[None, None]]
        styles = codes_to_styles(G, space, codes)
        deltas = direction_delta_styles(G, direction, layers)
        return "s", [s + strength * sel[None, :, None] * d.to(s.device)[None, None] for s, d in zip(styles, deltas, strict=True)]


def render_composite(G, space: str, codes: list[torch.Tensor], masks: torch.Tensor,
                     noise_mode: str = "const") -> torch.Tensor:
    """sum_i G(z_i) * s_i for codes [N, n, ...] and masks [N, n, 1, R, R] -> [N, 3, R, R]."""
    with torch.no_grad():
        return composite(render_chunks(G, space, codes, noise_mode), masks.to(codes[0].device))


def edit_codes_images(G, space: str, codes: list[torch.Tensor], masks: torch.Tensor, direction,
                      strengths: Sequence[float], chunks: Sequence[int] | None = None,
                      layers: Sequence[int] | None = None, noise_mode: str = "const") -> torch.Tensor:
    """Edited composites for each strength: [len(strengths), N, 3, R, R]."""
    out = []
    for k in strengths:
        new_space, new_codes = apply_direction(G, space, codes, direction, float(k), chunks, layers)
        out.append(render_composite(G, new_space, new_codes, masks, noise_mode))
    return torch.stack(out)
