"""Latent codes of ChunkyGAN in W, W+ or StyleSpace S, one code per (image, chunk).

A code set is a list of tensors, so that W/W+ (one tensor) and S (one tensor per style layer) share the
same functions:
    space "w":     [ [N, n, w_dim] ]                 one w per chunk, broadcast to all layers
    space "wplus": [ [N, n, num_ws, w_dim] ]
    space "s":     [ [N, n, C_0], [N, n, C_1], ... ]  one style vector per modulated layer

All codes start at the mean of their space (w_avg, or the styles of w_avg), which is also z_mu, the
point the regulariser pulls toward. ``render_chunks`` runs every (image, chunk) pair through the
generator in ONE batched call, which is what makes n chunks cost about as much as n times more images.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "SPACES",
    "check_space",
    "latent_mean",
    "init_codes",
    "render_chunks",
    "latent_regulariser",
    "latent_spread",
    "REG_FORMS",
    "codes_to_wplus",
    "codes_to_styles",
    "flatten_codes",
]

SPACES = ("w", "wplus", "s")


def check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"unknown latent space '{space}'; valid: {', '.join(SPACES)}")
    return space


def latent_mean(G, space: str) -> list[torch.Tensor]:
    """z_mu of a space, shaped to broadcast against codes [N, n, ...]: w_avg or the mean styles."""
    check_space(space)
    w_avg = G.w_avg.detach()
    if space == "w":
        return [w_avg.reshape(1, 1, -1)]
    if space == "wplus":
        return [w_avg.reshape(1, 1, 1, -1).expand(1, 1, G.num_ws, -1).clone()]
    return [s.detach().reshape(1, 1, -1) for s in G.mean_styles()]


def init_codes(G, space: str, num_images: int, n: int) -> list[torch.Tensor]:
    """Fresh leaf tensors (requires_grad) at the mean of ``space``, for num_images x n chunks."""
    codes = []
    for mean in latent_mean(G, space):
        code = mean.expand(num_images, n, *mean.shape[2:]).clone().to(G.w_avg.device)
        codes.append(code.requires_grad_(True))
    return codes


def codes_to_wplus(G, space: str, codes: list[torch.Tensor]) -> torch.Tensor:
    """W or W+ codes as W+ [N, n, num_ws, w_dim]."""
    if space == "w":
        return codes[0].unsqueeze(2).expand(-1, -1, G.num_ws, -1)
    if space == "wplus":
        return codes[0]
    raise ValueError("StyleSpace codes cannot be turned back into W+ (the map W+ -> S is not invertible)")


def codes_to_styles(G, space: str, codes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Codes of any space as StyleSpace codes: list of [N, n, C_l]."""
    if space == "s":
        return list(codes)
    ws = codes_to_wplus(G, space, codes)
    num_images, n = ws.shape[:2]
    styles = G.synthesis.ws_to_styles(ws.reshape(num_images * n, *ws.shape[2:]))
    return [s.reshape(num_images, n, -1) for s in styles]


def render_chunks(G, space: str, codes: list[torch.Tensor], noise_mode: str = "const") -> torch.Tensor:
    """G(z_i) for every image and chunk in one generator call.

    Returns:
        [N, n, 3, R, R] images in about [-1, 1].
    """
    num_images, n = codes[0].shape[:2]
    if space == "s":
        styles = [c.reshape(num_images * n, -1) for c in codes]
        img = G.synthesis.synthesize_from_styles(styles, noise_mode=noise_mode)
    else:
        ws = codes_to_wplus(G, space, codes)
        img = G.synthesis(ws.reshape(num_images * n, G.num_ws, -1), noise_mode=noise_mode)
    return img.reshape(num_images, n, *img.shape[1:])


def flatten_codes(codes: list[torch.Tensor]) -> torch.Tensor:
    """[N, n, D] with all code entries of each chunk concatenated (D = w_dim, num_ws*w_dim or sum C_l)."""
    return torch.cat([c.reshape(c.shape[0], c.shape[1], -1) for c in codes], dim=2)


# How the regulariser sum_i ||z_i - z_mu||^2 is reduced (see ``latent_regulariser``).
REG_FORMS = ("sum", "mean", "wstd")


@torch.no_grad()
def latent_spread(G, space: str, num_samples: int = 10_000, seed: int = 123,
                  batch_size: int = 2_000) -> list[torch.Tensor]:
    """The spread of a latent space, one scalar per code tensor (same layout as ``latent_mean``).

    W / W+: ``w_std = sqrt(sum ||w - w_avg||^2 / N)`` over N = 10k mapped samples drawn with
    ``np.random.RandomState(123)``, exactly as the NVlabs projector (stylegan2-ada-pytorch projector.py
    lines 50-54) and Chunkmogrify (stylegan_project.py lines 98-103) compute it: one scalar, the root of
    the total variance of w (summed over the w_dim entries), not a per-entry std.
    S: the same statistic per style layer over the styles of those samples (semedit's choice; Chunkmogrify
    regularises only W / W+). Cached on ``G`` because every batch of an inversion asks for it.
    """
    check_space(space)
    cache = G.__dict__.setdefault("_semedit_latent_spread", {})
    key = (space, num_samples, seed)
    if key in cache:
        return [t.clone() for t in cache[key]]
    device = G.w_avg.device
    z_all = np.random.RandomState(seed).randn(num_samples, G.z_dim)
    parts: list[list[torch.Tensor]] = []
    for start in range(0, num_samples, batch_size):
        z = torch.from_numpy(z_all[start:start + batch_size]).to(device=device, dtype=torch.float32)
        ws = G.mapping(z)  # [B, num_ws, w_dim]
        if space == "s":
            parts.append([s.double().cpu() for s in G.synthesis.ws_to_styles(ws)])
        else:
            parts.append([ws[:, 0].double().cpu()])
    spreads = []
    for k in range(len(parts[0])):
        samples = torch.cat([p[k] for p in parts])  # [N, D]
        centred = samples - samples.mean(dim=0, keepdim=True)
        spreads.append((centred.pow(2).sum() / num_samples).sqrt().float())
    cache[key] = spreads
    return [t.clone() for t in spreads]


def latent_regulariser(codes: list[torch.Tensor], means: list[torch.Tensor], reduction: str = "mean",
                       spread: list[torch.Tensor] | None = None) -> torch.Tensor:
    """sum_i R(z_i - z_mu) per image, summed over the n chunks.

    Args:
        codes: code set [N, n, ...] (see module docstring).
        means: z_mu of the same space (broadcastable), from ``latent_mean``.
        reduction:
            "sum"  R(d) = ||d||^2, the talk's literal ``lambda_reg sum_i ||z_i - z_mu||^2`` (so lambda_reg = 1
                   means exactly that formula; in W+ the norm runs over all num_ws x w_dim entries).
            "mean" R(d) = ||d||^2 / D (D = entries of one chunk's code): the constant factor folds into lambda.
            "wstd" R(d) = mean over the D entries of (d / std)^2, std from ``latent_spread``: Chunkmogrify's
                   ``((w - w_avg) / w_std) ** 2).mean()`` (stylegan_project.py lines 447-451, called with the
                   W+-repeated w of each segment at line 516), weighted 10 in its _config.yaml line 22.
        spread: for "wstd", one scalar per code tensor (``latent_spread``).
    Returns:
        [N] regulariser per image (summed over chunks).
    """
    if reduction not in REG_FORMS:
        raise ValueError(f"unknown regulariser form '{reduction}'; valid: {', '.join(REG_FORMS)}")
    diffs = [c - m.to(c.device) for c, m in zip(codes, means, strict=True)]
    if reduction == "wstd":
        if spread is None or len(spread) != len(diffs):
            raise ValueError("the 'wstd' regulariser needs the spread of the space (latent_spread(G, space))")
        diffs = [d / s.to(d.device) for d, s in zip(diffs, spread, strict=True)]
    diff = flatten_codes(diffs)
    sq = diff.pow(2).sum(dim=2)  # [N, n]
    if reduction in ("mean", "wstd"):
        sq = sq / diff.shape[2]
    return sq.sum(dim=1)
