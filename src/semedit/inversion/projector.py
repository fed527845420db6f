"""Classic single-code projection (one code per image, no masks): the "Optimization" rows of the ChunkyGAN
projection table, in two recipes.

- ``project_single_code`` ("chunkygan" recipe): Adam with the projector's learning-rate ramp and LPIPS, in
  the same latent spaces as ChunkyGAN and without noise optimisation. It is the reference that ChunkyGAN
  with n = 1 and frozen masks must reproduce, and what Chunkmogrify does per segment (it keeps the noise
  buffers fixed: its _config.yaml line 21 sets noise_regularize_weight to 0 and only the w codes are given
  to Adam, stylegan_project.py line 481).
- ``project_nvlabs`` ("nvlabs" recipe): the NVlabs StyleGAN2-ADA projector (stylegan2-ada-pytorch
  projector.py): the per-layer noise maps are optimised too, with the noise regulariser weighted 1e5
  (lines 36, 104-114), re-normalised after every step (lines 125-128), and w gets Gaussian noise whose
  scale ramps from 0.05 w_std to 0 over the first 75 % of the steps (lines 32, 35, 82, 91-92).
  The perceptual distance is ``invert.percept``: "nvlabs-vgg16" is NVlabs' own (the squared differences of
  ``vgg16.pt``'s LPIPS features, lines 60-62, 68, 96-102, computed as LPIPS-VGG v0.1 at 256 px, see
  perception/lpips.py); "lpips" is semedit's LPIPS at ``lpips_resolution``. The projector works in W only;
  its recipe is carried to W+ (independent noise per layer) and S (noise scaled by each style layer's
  spread), which is semedit's choice.
  The result: NVlabs optimises the noise maps on a deep copy of G (line 46) and renders ``proj.png`` with the
  original G (``run_projection`` lines 177-183, 200-204): the optimised noise is thrown away. semedit does the
  same by default (``methods.projector.noise: discard``): the reconstruction, its score and its edits use the
  generator's own constant noise; ``noise: keep`` renders, saves and edits with the optimised maps instead.
- Identity term (``invert.lambda_id``, in the tables ``eval.optimization_lambda_id``): the talk defines
  optimisation inversion as perceptual loss + ArcFace identity loss; NVlabs' projector has none. Added as
  ``lambda_id * (1 - cos)`` of the differentiable IR-SE50 (pSp's identity loss) in both recipes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from semedit.config import check
from semedit.inversion.base import (
    SPACE_LABEL,
    InversionOutput,
    Inverter,
    InverterContext,
    identity_text,
    noise_buffers,
    percept_text,
    register_inverter,
    row_invert_config,
    single_code_output,
    use_noise,
)
from semedit.inversion.latents import (
    check_space,
    latent_mean,
    latent_regulariser,
    latent_spread,
    regulariser_stats,
)
from semedit.inversion.optimize import identity_term, percept_input, projector_lr

__all__ = ["project_single_code", "project_nvlabs", "noise_buffers", "use_noise", "noise_regulariser",
           "render_single", "ProjectorSettings", "NOISE_RESULTS"]

NOISE_RESULTS = ("discard", "keep")


def render_single(G, space: str, codes: list[torch.Tensor], noise_mode: str = "const") -> torch.Tensor:
    """G(code) for codes without the chunk axis ([N, w_dim], [N, num_ws, w_dim] or a list of [N, C_l])."""
    if space == "w":
        return G.synthesis(codes[0].unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode=noise_mode)
    if space == "wplus":
        return G.synthesis(codes[0], noise_mode=noise_mode)
    return G.synthesis.synthesize_from_styles(codes, noise_mode=noise_mode)


def _reg(codes, means, cfg, spread):
    """Regulariser of single codes (no chunk axis): the chunk functions with n = 1."""
    return latent_regulariser([c.unsqueeze(1) for c in codes], [m.unsqueeze(1) for m in means], cfg.reg_form, spread,
                              cfg.space)


def _target_identity(identity_fn, targets, cfg):
    if not cfg.lambda_id:
        return None
    if identity_fn is None:
        raise ValueError("invert.lambda_id > 0 needs an identity encoder (identity_fn)")
    with torch.no_grad():
        return identity_fn(targets)


def project_single_code(G, lpips_fn, targets: torch.Tensor, cfg, noise_mode: str = "const", identity_fn=None):
    """Project N images [N, 3, R, R] to one code each ("chunkygan" recipe, noise maps fixed).

    Returns (codes, images): codes in the layout of ``latents.py`` without the chunk axis ([N, w_dim],
    [N, num_ws, w_dim] or a list of [N, C_l]) and the final G(code) [N, 3, R, R].
    """
    space = check_space(cfg.space)
    num = targets.shape[0]
    codes = [m[0].expand(num, *m.shape[2:]).clone().to(targets.device).requires_grad_(True)
             for m in latent_mean(G, space)]
    reg_means, spread = regulariser_stats(G, space, cfg.reg_form)
    means = [m[0].to(targets.device) for m in reg_means]
    optimiser = torch.optim.Adam(codes, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    target_lp = percept_input(targets, cfg, target=True)
    target_id = _target_identity(identity_fn, targets, cfg)
    for step in range(cfg.steps):
        for group in optimiser.param_groups:
            group["lr"] = projector_lr(step, cfg.steps, cfg.lr, cfg.lr_rampup, cfg.lr_rampdown)
        img = render_single(G, space, codes, noise_mode)
        loss = lpips_fn(percept_input(img, cfg), target_lp).reshape(num)
        if cfg.lambda_reg:
            loss = loss + cfg.lambda_reg * _reg(codes, means, cfg, spread)
        if cfg.lambda_id:
            loss = loss + cfg.lambda_id * identity_term(identity_fn, img, target_id)
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
    with torch.no_grad():
        img = render_single(G, space, codes, noise_mode)
    return [c.detach() for c in codes], img


def noise_regulariser(maps) -> torch.Tensor:
    """Spatial autocorrelation of the noise maps at every octave (projector.py lines 105-113)."""
    reg = 0.0
    for v in maps:
        noise = v[None, None, :, :]  # [1, 1, H, W] for avg_pool2d
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


def project_nvlabs(G, lpips_fn, targets: torch.Tensor, cfg, noise_reg_weight: float = 1e5,
                   initial_noise_factor: float = 0.05, noise_ramp_length: float = 0.75,
                   optimise_noise: bool = True, seed: int = 0, keep_noise: bool = False, identity_fn=None):
    """Project N images one at a time with the NVlabs projector recipe (see the module docstring).

    ``cfg`` supplies space, steps, lr (NVlabs: 0.1, line 31), lr_rampup/lr_rampdown (0.05 / 0.25, lines
    33-34), beta1/beta2 (0.9, 0.999, line 72), the perceptual distance (percept, lpips_resolution),
    lambda_reg/reg_form (0 in NVlabs) and lambda_id (0 in NVlabs; ``identity_fn`` when > 0).
    Returns (codes, noise_maps, images): codes without the chunk axis (as ``project_single_code``), one dict
    of optimised noise maps per image ({} when ``optimise_noise`` is False), and the result G(code): rendered
    by the caller's (unmodified) G with its own constant noise, as ``run_projection`` renders proj.png with the
    original G (projector.py lines 200-201), or, with ``keep_noise``, with the optimised maps.
    """
    space = check_space(cfg.space)
    G_original = G
    # A private copy, as projector.py line 46: the noise buffers become optimisation variables.
    G = copy.deepcopy(G).eval().requires_grad_(False)
    device = targets.device
    means = [m[0].to(device) for m in latent_mean(G, space)]
    spread = latent_spread(G, space)  # w_std scales the w noise (line 82) whatever the regulariser
    reg_means, reg_spread = regulariser_stats(G, space, cfg.reg_form)
    reg_means = [m[0].to(device) for m in reg_means]
    bufs = noise_buffers(G)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    all_codes: list[list[torch.Tensor]] = []
    all_noise: list[dict[str, torch.Tensor]] = []
    images = []
    for i in range(targets.shape[0]):
        target = targets[i:i + 1]
        codes = [m.clone().requires_grad_(True) for m in means]  # [1, ...]: means keep a batch axis of 1
        params = list(codes)
        if optimise_noise:
            with torch.no_grad():
                for buf in bufs.values():  # lines 75-77: random start, then optimised
                    buf.copy_(torch.randn(buf.shape, generator=gen).to(buf))
                    buf.requires_grad_(True)
            params += list(bufs.values())
        optimiser = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        target_lp = percept_input(target, cfg, "nvlabs", target=True)
        target_id = _target_identity(identity_fn, target, cfg)
        for step in range(cfg.steps):
            t = step / cfg.steps
            noise_scale = initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2  # line 82 / w_std
            for group in optimiser.param_groups:
                group["lr"] = projector_lr(step, cfg.steps, cfg.lr, cfg.lr_rampup, cfg.lr_rampdown)
            noisy = [c + torch.randn(c.shape, generator=gen).to(c) * (s.to(c) * noise_scale)
                     for c, s in zip(codes, spread, strict=True)]
            img = render_single(G, space, noisy)
            loss = lpips_fn(percept_input(img, cfg, "nvlabs"), target_lp).sum()
            if optimise_noise:
                loss = loss + noise_reg_weight * noise_regulariser(bufs.values())
            if cfg.lambda_reg:
                loss = loss + cfg.lambda_reg * _reg(codes, reg_means, cfg, reg_spread).sum()
            if cfg.lambda_id:
                loss = loss + cfg.lambda_id * identity_term(identity_fn, img, target_id).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if optimise_noise:
                with torch.no_grad():  # lines 125-128
                    for buf in bufs.values():
                        buf -= buf.mean()
                        buf *= buf.square().mean().rsqrt()
        for buf in bufs.values():
            buf.requires_grad_(False)
        with torch.no_grad():
            images.append(render_single(G if keep_noise else G_original, space, codes))
        all_codes.append([c.detach() for c in codes])
        all_noise.append({k: v.detach().clone().cpu() for k, v in bufs.items()} if optimise_noise else {})
    codes_out = [torch.cat([c[k] for c in all_codes]) for k in range(len(means))]
    return codes_out, all_noise, torch.cat(images)


# ----------------------------------------------------------------------------------------------------
# The "Optimization" rows of the tables, as a member of the Inverter family.


@dataclass
class ProjectorSettings:
    """``methods.projector``: what the result of the NVlabs recipe is rendered with."""

    # "discard" (NVlabs): the optimised noise maps are thrown away; the reconstruction, its score and its edits
    # use the generator's own constant noise, as run_projection renders proj.png with the original G
    # (stylegan2-ada-pytorch projector.py lines 46, 200-204). "keep": they use the optimised maps (saved as
    # noise.safetensors beside the codes).
    noise: str = "discard"

    def validate(self, prefix: str = "") -> None:
        check(self.noise in NOISE_RESULTS, f"{prefix}noise", " | ".join(NOISE_RESULTS), self.noise)


class NVlabsProjector(Inverter):
    """One code per image with the NVlabs projector recipe (``project_nvlabs``), one image at a time; image
    ``index`` of the job uses the seed ``run.seed + index`` (the w noise and the noise maps' start)."""

    batch_size = 1

    def __init__(self, G, lpips_fn, inv, seed: int, noise: str = "discard", identity_fn=None):
        if noise not in NOISE_RESULTS:
            raise ValueError(f"noise must be one of {NOISE_RESULTS}, got {noise!r}")
        self.G, self.lpips, self.inv, self.seed, self.noise = G, lpips_fn, inv, seed, noise
        self.identity_fn = identity_fn

    def invert(self, images, names, indices, on_step=None, should_stop=None) -> InversionOutput:
        codes, noise, recons = [], [], []
        keep = self.noise == "keep"
        for j, index in enumerate(indices):
            with torch.inference_mode(False), torch.enable_grad():
                c, maps, img = project_nvlabs(self.G, self.lpips, images[j:j + 1].clone(), self.inv,
                                              seed=self.seed + int(index), keep_noise=keep,
                                              identity_fn=self.identity_fn)
            codes.append(c)
            noise.extend(maps)
            recons.append(img)
        merged = [torch.cat([c[k] for c in codes]) for k in range(len(codes[0]))]
        meta = [{"recipe": "nvlabs", "noise": self.noise, "lambda_id": self.inv.lambda_id, "percept": self.inv.percept}
                for _ in names]
        return single_code_output(self.inv.space, merged, torch.cat(recons), noise=noise if keep else None,
                                  steps_done=self.inv.steps, meta=meta)


def _rows(key: str, cfg) -> dict | None:
    space, _, kind = key.partition(":")
    if kind != "single" or space not in SPACE_LABEL or cfg.eval.optimization_recipe != "nvlabs":
        return None
    return {"space": space, "single": True, "reg": False}


def _settings(ctx: InverterContext) -> ProjectorSettings:
    return getattr(getattr(ctx.cfg, "methods", None), "projector", None) or ProjectorSettings()


def _describe(ctx: InverterContext) -> str:
    inv = row_invert_config(ctx.cfg, ctx.row)
    noise = ("result, score and edits rendered with the optimised noise maps (methods.projector.noise=keep)"
             if _settings(ctx).noise == "keep" else
             "result, score and edits rendered with the generator's own const noise, the optimised maps discarded "
             "(as NVlabs run_projection, projector.py lines 46, 201)")
    return ("NVlabs projector recipe: noise maps optimised (noise reg. 1e5), w noise 0.05 w_std ramped to 0 over "
            f"75 % of {inv.steps} steps, {percept_text(inv, 'nvlabs')}, {identity_text(inv, ctx)}, codes start at "
            f"the mean; {noise}")


@register_inverter("projector", group="Optimization", describe=_describe, rows=_rows, settings=ProjectorSettings,
                   label=lambda row: f"Optimization {SPACE_LABEL[row.get('space', 'w')]}")
def _build(ctx: InverterContext) -> NVlabsProjector:
    inv = row_invert_config(ctx.cfg, ctx.row)
    return NVlabsProjector(ctx.generator, ctx.tools.percept(inv), inv, ctx.cfg.run.seed, _settings(ctx).noise,
                           ctx.tools.identity_loss_for(inv))
