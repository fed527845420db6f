"""Latent codes of ChunkyGAN in W, W+ or StyleSpace S, one code per (image, chunk).

A code set is a list of tensors, so that W/W+ (one tensor) and S (one tensor per style layer) share the
same functions:
    space "w":     [ [N, n, w_dim] ]                 one w per chunk, broadcast to all layers
    space "wplus": [ [N, n, num_ws, w_dim] ]
    space "s":     [ [N, n, C_0], [N, n, C_1], ... ]  one style vector per modulated layer

All codes start at the mean of their space (G's w_avg, or the styles of w_avg), which is also z_mu, the
point the "sum"/"mean" regularisers pull toward; the "wstd" form is centred, as Chunkmogrify's, on the mean
of 10k sampled w (``latent_stats``). ``render_chunks`` runs every (image, chunk) pair through the
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
    "latent_stats",
    "regulariser_stats",
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
def latent_stats(G, space: str, num_samples: int = 10_000, seed: int = 123,
                 batch_size: int = 2_000) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(means, spreads) of a latent space from sampled codes, one entry per code tensor.

    W / W+: over N = 10k mapped samples drawn with ``np.random.RandomState(123)``, first W row, exactly as the
    NVlabs projector (stylegan2-ada-pytorch projector.py lines 50-54) and Chunkmogrify (stylegan_project.py
    lines 97-105, its ``mean_latent`` and ``std_latent``) compute them: ``w_avg`` the sample mean [1, 1, w_dim]
    (broadcast over the chunks, and in W+ over the layers, as Chunkmogrify's [1, 1, 512]) and
    ``w_std = sqrt(sum ||w - w_avg||^2 / N)``, one scalar, the root of the total variance of w (summed over the
    w_dim entries), not a per-entry std.
    S: the same statistics per style layer over the styles of those samples (semedit's choice: Chunkmogrify has
    no S statistics and no S regulariser; only the NVlabs recipe's w noise in S uses them, projector.py).
    Cached on ``G`` because every batch of an inversion asks for them.
    """
    check_space(space)
    cache = G.__dict__.setdefault("_semedit_latent_stats", {})
    key = ("s" if space == "s" else "w", num_samples, seed)
    if key not in cache:
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
        means, spreads = [], []
        for k in range(len(parts[0])):
            samples = torch.cat([p[k] for p in parts])  # [N, D]
            mean = samples.mean(dim=0, keepdim=True)
            means.append(mean.float())
            spreads.append(((samples - mean).pow(2).sum() / num_samples).sqrt().float())
        cache[key] = (means, spreads)
    means, spreads = cache[key]
    shaped = [m.reshape(1, 1, 1, -1) if space == "wplus" else m.reshape(1, 1, -1) for m in means]
    return [m.clone().to(G.w_avg.device) for m in shaped], [t.clone() for t in spreads]


def latent_spread(G, space: str, num_samples: int = 10_000, seed: int = 123,
                  batch_size: int = 2_000) -> list[torch.Tensor]:
    """The spreads of ``latent_stats`` (W / W+: the projectors' scalar ``w_std``)."""
    return latent_stats(G, space, num_samples, seed, batch_size)[1]


def regulariser_stats(G, space: str, reg_form: str) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """(z_mu, spread) the regulariser of ``reg_form`` needs: "wstd" is centred, as Chunkmogrify's, on the 10k
    sample mean with its w_std (``latent_stats``; none in S); the other forms on ``latent_mean`` (G's w_avg)."""
    if reg_form == "wstd" and space != "s":
        return latent_stats(G, space)
    return latent_mean(G, space), None


def _infer_space(codes: list[torch.Tensor]) -> str:
    """The space of a code set from its layout (see the module docstring)."""
    if len(codes) > 1:
        return "s"
    return "wplus" if codes[0].ndim == 4 else "w"


def latent_regulariser(codes: list[torch.Tensor], means: list[torch.Tensor], reduction: str = "mean",
                       spread: list[torch.Tensor] | None = None, space: str | None = None) -> torch.Tensor:
    """The latent regulariser of each image: [N].

    Args:
        codes: code set [N, n, ...] (see module docstring).
        means: z_mu of the same space (broadcastable), from ``latent_mean``.
        reduction:
            "sum"  sum_i ||z_i - z_mu||^2 over the n chunks: the talk's literal ``lambda_reg sum_i ||z_i - z_mu||^2``
                   (so lambda_reg = 1 means exactly that formula; in W+ the norm runs over all num_ws x w_dim
                   entries).
            "mean" sum_i ||z_i - z_mu||^2 / D (D = entries of one chunk's code): the constant factor folds into
                   lambda.
            "wstd" Chunkmogrify's mean-latent term as its ``_calc_loss`` computes it for each projection mode
                   (futscdav/Chunkmogrify @ efdfdf3, stylegan_project.py lines 447-457), with w_avg and the scalar
                   w_std of ``latent_stats`` (lines 97-105; ``regulariser_stats`` gives both):
                   W:  ``((w - w_avg) / w_std) ** 2).mean()`` of each code (lines 447-451), called with the code
                       repeated to [1, num_ws, 512] (lines 498-499, 516), so the mean over the w_dim entries;
                       one term per code, summed over the chunks, because the W projector optimises every
                       segment with its own loss and its own Adam (lines 481, 489-519).
                   W+: the same ``.mean()`` over all segments, layers and entries of ``wplus`` [n, num_ws, 512],
                       divided again by ``wplus.shape[1]`` = num_ws (lines 453-457, from the authors' commit
                       f89bf12 "Fix mean latent regularization for W+"; called once for all segments, line 648).
                       So 1 / (n * num_ws) of the W form's sum over the chunks.
                   S:  no term: the S projector calls ``_calc_loss(res)`` without a latent (line 724), so
                       Chunkmogrify has no S regulariser and this form is 0 in S.
        spread: for "wstd", one scalar per code tensor (``latent_stats``).
        space: "w" | "wplus" | "s"; None infers it from the layout (one [N, n, D] tensor: W, one [N, n, L, D]
            tensor: W+, a list: S). Only "wstd" depends on it.
    Returns:
        [N] regulariser per image.
    """
    if reduction not in REG_FORMS:
        raise ValueError(f"unknown regulariser form '{reduction}'; valid: {', '.join(REG_FORMS)}")
    diffs = [c - m.to(c.device) for c, m in zip(codes, means, strict=True)]
    if reduction == "wstd":
        space = check_space(space) if space is not None else _infer_space(codes)
        if space == "s":  # stylegan_project.py line 724: no latent, no term
            return codes[0].new_zeros(codes[0].shape[0])
        if spread is None or len(spread) != len(diffs):
            raise ValueError("the 'wstd' regulariser needs the statistics of the space (regulariser_stats)")
        (d,) = diffs
        sq = (d / spread[0].to(d.device)).pow(2)
        if space == "w":  # [N, n, w_dim]: mean over the entries of each code, summed over the chunks
            return sq.mean(dim=2).sum(dim=1)
        # [N, n, num_ws, w_dim]: mean over chunks, layers and entries, / num_ws
        return sq.flatten(1).mean(dim=1) / d.shape[2]
    diff = flatten_codes(diffs)
    sq = diff.pow(2).sum(dim=2)  # [N, n]
    if reduction == "mean":
        sq = sq / diff.shape[2]
    return sq.sum(dim=1)
