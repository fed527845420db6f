"""Generate tab: images from seeds, with truncation and direction sliders over W, chosen W+ layers, or S.

Seeds follow the package convention (``semedit.stylegan2.seeds``), so seed 3 here is seed 3 of
`semedit generate`. Directions are applied with the offsets of ``semedit.inversion.edit``: a W/W+
direction becomes a W+ offset (on all layers in "W", on the chosen layers in "W+ layers") or, in "S", its
exact StyleSpace image; an S direction works in "S" only; a Z direction moves z before the mapping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from semedit.demo.models import DemoModels
from semedit.edits import EditError, edit_z, style_offsets, wplus_offset
from semedit.images import to_uint8
from semedit.stylegan2 import parse_seeds, zs_from_seeds

__all__ = ["GENERATE_SPACES", "MAX_SEEDS", "parse_layers", "generate"]

GENERATE_SPACES = ("W", "W+ layers", "S")
MAX_SEEDS = 16  # semedit's choice: one page of results; more is `semedit generate`'s job


def parse_layers(text: str | None, count: int, what: str) -> list[int] | None:
    """'' -> None (all); '0-3,6' -> [0, 1, 2, 3, 6], each in 0..count-1."""
    if text is None or not str(text).strip():
        return None
    try:
        layers = parse_seeds(text)
    except ValueError:
        raise ValueError(f"cannot parse {what} '{text}': use a list like 0,1,7 or a range like 0-3") from None
    bad = [i for i in layers if i >= count]
    if bad:
        raise ValueError(f"{what} {bad} out of range: this generator has {count} (0..{count - 1})")
    return sorted(set(layers))


@torch.no_grad()
def generate(models: DemoModels, seeds_text: str, truncation_psi: float, space: str, layers_text: str = "",
             strengths: Sequence[float] = ()) -> list[tuple[np.ndarray, str]]:
    """[(uint8 image, caption)] for each seed, edited by ``strengths[k]`` along latent direction k."""
    G, dev = models.generator, models.device
    if space not in GENERATE_SPACES:
        raise ValueError(f"space must be one of {', '.join(GENERATE_SPACES)}, got {space!r}")
    if not 0.0 <= float(truncation_psi) <= 1.0:
        raise ValueError(f"truncation psi must be in [0, 1], got {truncation_psi}")
    seeds = parse_seeds(seeds_text)
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"{len(seeds)} seeds asked; the demo shows at most {MAX_SEEDS} at a time")
    syn = G.synthesis
    layers = parse_layers(layers_text, G.num_ws if space == "W+ layers" else len(syn.style_dims),
                          "W+ layers" if space == "W+ layers" else "style layers") if space != "W" else None
    active = [(d, float(s) * d.scale) for d, s in zip(models.latent_directions, strengths) if s]
    z = zs_from_seeds(seeds, G.z_dim).to(dev)
    for d, k in active:
        if d.direction.space == "z":
            z = edit_z(z, d.direction, k)
    ws = G.mapping(z, truncation_psi=float(truncation_psi))
    noise_mode = models.invert_config.generator.noise_mode
    if space in ("W", "W+ layers"):
        delta = torch.zeros(G.num_ws, G.w_dim, device=dev)
        for d, k in active:
            if d.direction.space == "s":
                raise EditError(f"'{d.name}' is a StyleSpace direction; choose the space S to use it")
            if d.direction.space != "z":
                delta = delta + k * wplus_offset(d.direction, G.num_ws, G.w_dim, layers, device=dev)
        images = syn(ws + delta[None], noise_mode=noise_mode)
    else:
        styles = syn.ws_to_styles(ws)
        for d, k in active:
            if d.direction.space == "z":
                continue
            if d.direction.space == "s":
                deltas = style_offsets(syn, d.direction, layers)
            else:  # a W direction mapped into S, kept on the chosen style layers
                keep = set(range(len(styles))) if layers is None else set(layers)
                deltas = [x if i in keep else torch.zeros_like(x)
                          for i, x in enumerate(style_offsets(syn, d.direction))]
            styles = [s + k * x.to(dev)[None] for s, x in zip(styles, deltas, strict=True)]
        images = syn.synthesize_from_styles(styles, noise_mode=noise_mode)
    images = to_uint8(images.float().clamp(-1, 1))
    return [(img, f"seed {s}") for img, s in zip(images, seeds, strict=True)]
