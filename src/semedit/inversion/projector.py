"""Classic single-code projection (one code per image, no masks): the baseline ChunkyGAN reduces to.

It follows the NVlabs StyleGAN2 projector (Adam, learning-rate ramp, LPIPS) without its noise-map
optimisation, in the same latent spaces as ChunkyGAN, and serves as the reference that ChunkyGAN with
n = 1 and frozen masks must reproduce.
"""

from __future__ import annotations

import torch

from semedit.inversion.latents import check_space, flatten_codes, latent_mean
from semedit.inversion.optimize import lpips_input, projector_lr

__all__ = ["project_single_code"]


def _render(G, space: str, codes: list[torch.Tensor], noise_mode: str) -> torch.Tensor:
    if space == "w":
        return G.synthesis(codes[0].unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode=noise_mode)
    if space == "wplus":
        return G.synthesis(codes[0], noise_mode=noise_mode)
    return G.synthesis.synthesize_from_styles(codes, noise_mode=noise_mode)


def project_single_code(G, lpips_fn, targets: torch.Tensor, cfg, noise_mode: str = "const"):
    """Project N images [N, 3, R, R] to one code each.

    Returns (codes, images): codes in the layout of ``latents.py`` without the chunk axis ([N, w_dim],
    [N, num_ws, w_dim] or a list of [N, C_l]) and the final G(code) [N, 3, R, R].
    """
    space = check_space(cfg.space)
    num = targets.shape[0]
    codes = [m[0].expand(num, *m.shape[2:]).clone().to(targets.device).requires_grad_(True)
             for m in latent_mean(G, space)]
    means = [m[0].to(targets.device) for m in latent_mean(G, space)]
    optimiser = torch.optim.Adam(codes, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    target_lp = lpips_input(targets, cfg.lpips_resolution)
    for step in range(cfg.steps):
        for group in optimiser.param_groups:
            group["lr"] = projector_lr(step, cfg.steps, cfg.lr, cfg.lr_rampup, cfg.lr_rampdown)
        img = _render(G, space, codes, noise_mode)
        loss = lpips_fn(lpips_input(img, cfg.lpips_resolution), target_lp).reshape(num)
        diff = flatten_codes([(c - m).unsqueeze(1) for c, m in zip(codes, means, strict=True)])[:, 0]
        reg = diff.pow(2).sum(dim=1)
        if cfg.reg_reduction == "mean":
            reg = reg / diff.shape[1]
        loss = loss + cfg.lambda_reg * reg
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
    with torch.no_grad():
        img = _render(G, space, codes, noise_mode)
    return [c.detach() for c in codes], img
