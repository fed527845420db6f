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

import torch

__all__ = [
    "SPACES",
    "check_space",
    "latent_mean",
    "init_codes",
    "render_chunks",
    "latent_regulariser",
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


def latent_regulariser(codes: list[torch.Tensor], means: list[torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """sum_i ||z_i - z_mu||^2 per image.

    Args:
        codes: code set [N, n, ...] (see module docstring).
        means: z_mu of the same space (broadcastable), from ``latent_mean``.
        reduction: "sum" is the paper's formula; "mean" divides the squared norm by the code dimension D,
            a constant factor that folds into lambda_reg and makes one lambda_reg mean the same in W,
            W+ and S and at every resolution.
    Returns:
        [N] regulariser per image (summed over chunks).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown regulariser reduction '{reduction}'; valid: sum, mean")
    diff = flatten_codes([c - m.to(c.device) for c, m in zip(codes, means, strict=True)])
    sq = diff.pow(2).sum(dim=2)  # [N, n]
    if reduction == "mean":
        sq = sq / diff.shape[2]
    return sq.sum(dim=1)
