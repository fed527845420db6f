"""Editing after inversion: move the codes of all (or chosen) chunks along a direction, recomposite.

The masks stay as inverted, so an edit changes the picture exactly where the edited chunks show.
Directions in W or W+ are applied in W+ (to the direction's layers, or the ones asked for); on an
inversion in S they are mapped into S exactly (``semedit.edits.style_offsets``). Directions in S apply to
codes of any space (W/W+ codes are first turned into their styles). Directions in Z cannot be applied to inverted codes (the mapping
network is not invertible) and are rejected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from semedit.edits import EditError, style_offsets, wplus_offset
from semedit.inversion.composite import composite
from semedit.inversion.latents import codes_to_styles, codes_to_wplus, render_chunks

__all__ = ["apply_direction", "render_composite", "edit_codes_images"]


def _chunk_mask(n: int, chunks: Sequence[int] | None, device) -> torch.Tensor:
    if chunks is None:
        return torch.ones(n, device=device)
    bad = [c for c in chunks if not 0 <= c < n]
    if bad:
        raise EditError(f"chunks {bad} out of range: this inversion has n={n} chunks (0..{n - 1})")
    sel = torch.zeros(n, device=device)
    sel[list(chunks)] = 1
    return sel


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
            delta = wplus_offset(direction, G.num_ws, G.w_dim, layers, device=ws.device)
            return "wplus", [ws + strength * sel[None, :, None, None] * delta[None, None]]
        styles = codes_to_styles(G, space, codes)
        deltas = style_offsets(G.synthesis, direction, layers)
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
