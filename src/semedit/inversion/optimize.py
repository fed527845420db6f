"""The ChunkyGAN optimisation of a batch of images (pure PyTorch; the LightningModule only wires it).

    min_{z, s}  LPIPS(I, O(z, s)) + lambda_reg * sum_i ||z_i - z_mu||^2,   O(z, s) = sum_i G(z_i) * s_i
                [+ lambda_id * (1 - cos ArcFace(I, O(z, s)))   when invert.lambda_id > 0]

The perceptual term (``invert.percept``): "lpips" = semedit's LPIPS (``invert.lpips_net``) on images area-
downsampled to ``invert.lpips_resolution``; "nvlabs-vgg16" = the distance of NVlabs' ``vgg16.pt`` (LPIPS-VGG
v0.1, perception/lpips.py) with the preprocessing of the authors' code: images to [0, 255] by
``(x + 1) * (255 / 2)`` and area-downsampled to ``int(R * invert.percept_downsample)`` (Chunkmogrify
stylegan_project.py lines 423-436, ``percept_downsample: 0.5`` in its _config.yaml line 23: 512 px at 1024),
or to 256 px in the NVlabs projector recipe (projector.py lines 66-67, 96-98).

Every image has its own codes and mask logits and its own loss; the batch loss is the *sum* of the
per-image losses, so each image's gradients (and, with Adam, its whole trajectory) are the same as if it
were optimised alone: batching only changes speed, not results.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.latents import (
    check_space,
    init_codes,
    latent_regulariser,
    regulariser_stats,
    render_chunks,
)

__all__ = ["projector_lr", "lpips_input", "PERCEPTS", "NVLABS_PERCEPT_RESOLUTION", "percept_input", "identity_term",
           "inversion_loss", "InversionResult", "invert_batch", "snapshot_steps"]


def projector_lr(step: int, steps: int, base_lr: float, rampup: float, rampdown: float) -> float:
    """Learning rate of the NVlabs StyleGAN2 projector: linear ramp-up, constant, cosine ramp-down.

    ``rampup`` and ``rampdown`` are fractions of ``steps``. At step 0 the rate is 0, as in the projector.
    """
    t = step / steps
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / rampup)
    return base_lr * ramp


LPIPS_MIN_RESOLUTION = 32  # LPIPS-Alex's strided convolutions and pools need at least this many pixels


def lpips_input(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Area-downsample images larger than ``resolution`` (LPIPS nets are trained around 64-256 px), and
    upsample tiny test images to the smallest size the LPIPS backbones accept."""
    if images.shape[-1] > resolution:
        images = F.interpolate(images, size=(resolution, resolution), mode="area")
    elif images.shape[-1] < LPIPS_MIN_RESOLUTION:
        images = F.interpolate(images, size=(LPIPS_MIN_RESOLUTION,) * 2, mode="bilinear", align_corners=False)
    return images


# The perceptual distances of invert.percept (see the module docstring).
PERCEPTS = ("lpips", "nvlabs-vgg16")
NVLABS_PERCEPT_RESOLUTION = 256  # stylegan2-ada-pytorch projector.py lines 66-67 and 97-98
RECIPES = ("chunkygan", "nvlabs")


def percept_input(images: torch.Tensor, cfg, recipe: str = "chunkygan", target: bool = False) -> torch.Tensor:
    """What the perceptual distance of ``cfg.percept`` is given for images [N, 3, R, R] in [-1, 1].

    "lpips": ``lpips_input(images, cfg.lpips_resolution)``, in [-1, 1].
    "nvlabs-vgg16": ``(x + 1) * (255 / 2)`` in [0, 255], then, in the "chunkygan" recipe (Chunkmogrify's
    ``_calc_loss``), area-resized to ``int(R * cfg.percept_downsample)``: the synthesized images always
    (stylegan_project.py lines 435-436), the ``target`` only when it is larger (lines 426-429); in the "nvlabs"
    recipe area-downsampled to 256 px when larger, target and synthesized alike (projector.py lines 66-67,
    96-98). Images still under 32 px (tiny test generators only) are then upsampled as ``lpips_input`` does.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    if cfg.percept == "lpips":
        return lpips_input(images, cfg.lpips_resolution)
    if cfg.percept != "nvlabs-vgg16":
        raise ValueError(f"unknown perceptual distance {cfg.percept!r}; valid: {', '.join(PERCEPTS)}")
    res = images.shape[-1]
    x = (images + 1) * (255 / 2)
    if recipe == "nvlabs":
        size = NVLABS_PERCEPT_RESOLUTION
        if res > size:
            x = F.interpolate(x, size=(size, size), mode="area")
    else:
        size = int(res * cfg.percept_downsample)
        if not target or res > size:
            x = F.interpolate(x, size=(size, size), mode="area")
    if x.shape[-1] < LPIPS_MIN_RESOLUTION:
        x = F.interpolate(x, size=(LPIPS_MIN_RESOLUTION,) * 2, mode="bilinear", align_corners=False)
    return x


def identity_term(identity_fn, images: torch.Tensor, target_embedding: torch.Tensor) -> torch.Tensor:
    """1 - cos(ArcFace(images), target embedding) per image [N]: pSp's identity loss (criteria/id_loss.py
    lines 33 and 39, target features detached at line 27; the encoder takes pSp's crop, line 17)."""
    emb = identity_fn(images)
    return 1.0 - F.cosine_similarity(emb, target_embedding.detach().to(emb), dim=1, eps=1e-8)


def inversion_loss(lpips_value: torch.Tensor, reg: torch.Tensor, lambda_reg: float,
                   identity: torch.Tensor | None = None, lambda_id: float = 0.0) -> dict[str, torch.Tensor]:
    """Per-image loss terms ([N] each): lpips (the perceptual term), reg, id (only when ``identity`` is given)
    and total = lpips + lambda_reg * reg [+ lambda_id * id]."""
    terms = {"lpips": lpips_value, "reg": reg, "total": lpips_value + lambda_reg * reg}
    if identity is not None:
        terms["id"] = identity
        terms["total"] = terms["total"] + lambda_id * identity
    return terms


def snapshot_steps(steps: int, count: int) -> list[int]:
    """Evenly spaced steps in [0, steps] for the progress strip; ``steps`` means the final result."""
    count = max(2, count)
    return sorted({round(i * steps / (count - 1)) for i in range(count)})


@dataclass
class InversionResult:
    """What the optimisation of N images with n chunks produced (all tensors detached, on CPU)."""

    space: str
    codes: list[torch.Tensor]  # code set [N, n, ...] (see latents.py)
    mask_logits: torch.Tensor  # [N, n, h, w]
    masks: torch.Tensor  # [N, n, 1, R, R]
    chunk_images: torch.Tensor  # [N, n, 3, R, R]
    reconstruction: torch.Tensor  # [N, 3, R, R]
    losses: dict[str, torch.Tensor]  # final per-image terms [N]
    history: dict[str, torch.Tensor]  # per-step terms [steps, N] (before each update)
    snapshots: torch.Tensor  # [N, S, 3, R, R] reconstructions at ``snapshot_steps``
    snapshot_steps: list[int] = field(default_factory=list)
    steps_done: int = 0  # optimisation steps taken: all of them, or fewer when ``should_stop`` ended it early


def invert_batch(
    G,
    lpips_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    mask_logits: torch.Tensor,
    cfg,
    noise_mode: str = "const",
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    identity_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> InversionResult:
    """Optimise codes (and masks) of N images jointly.

    Args:
        G: frozen generator (see semedit.stylegan2).
        lpips_fn: the perceptual distance of ``cfg.percept``, ``lpips_fn(x [N,3,h,w], y) -> [N]`` on what
            ``percept_input`` makes of the images ([-1, 1] for LPIPS, [0, 255] for nvlabs-vgg16).
        targets: [N, 3, R, R] in [-1, 1], R = G.img_resolution.
        mask_logits: [N, n, h, w] initial logits (see masks.py); n is the number of chunks.
        cfg: an ``InversionConfig`` (space, steps, lr, lr_masks, lr_rampup, lr_rampdown, beta1, beta2,
            lambda_reg, reg_form, freeze_masks, lpips_resolution, percept, percept_downsample, lambda_id,
            snapshots).
        on_step: called as ``on_step(step, composite [N,3,R,R] detached)`` before each update, for live
            previews (``semedit demo``); an exception it raises stops the optimisation (cancellation).
        should_stop: asked before each step; True ends the optimisation there and returns what it has so
            far (``steps_done`` says how far it got): the demo's Stop button.
        identity_fn: a differentiable identity encoder (images in [-1, 1] -> unit embeddings), needed when
            ``cfg.lambda_id > 0``.
    """
    space = check_space(cfg.space)
    num_images, n = mask_logits.shape[:2]
    res = G.img_resolution
    if targets.shape[1:] != (3, res, res) or targets.shape[0] != num_images:
        raise ValueError(f"targets must be [{num_images}, 3, {res}, {res}], got {tuple(targets.shape)}")
    device = targets.device
    codes = init_codes(G, space, num_images, n)
    means, spread = regulariser_stats(G, space, cfg.reg_form)
    means = [m.to(device) for m in means]
    if cfg.lambda_id and identity_fn is None:
        raise ValueError("invert.lambda_id > 0 needs an identity encoder (identity_fn)")
    logits = mask_logits.detach().to(device).clone().requires_grad_(not cfg.freeze_masks)
    groups = [{"params": codes, "lr": cfg.lr, "base_lr": cfg.lr}]
    if not cfg.freeze_masks:
        groups.append({"params": [logits], "lr": cfg.lr_masks, "base_lr": cfg.lr_masks})
    optimiser = torch.optim.Adam(groups, betas=(cfg.beta1, cfg.beta2))
    target_lp = percept_input(targets, cfg, target=True)
    target_id = identity_fn(targets).detach() if cfg.lambda_id else None
    frames_at = snapshot_steps(cfg.steps, cfg.snapshots)
    frames: list[torch.Tensor] = []
    history: dict[str, list[torch.Tensor]] = {"lpips": [], "reg": [], "total": [], **({"id": []} if cfg.lambda_id else {})}

    initial = [c.detach().clone() for c in codes]

    def evaluate(masks_learn: bool = True):
        chunks = render_chunks(G, space, codes, noise_mode)
        masks = masks_from_logits(logits if masks_learn else logits.detach(), res)
        out = composite(chunks, masks)
        lp = lpips_fn(percept_input(out, cfg), target_lp).reshape(num_images)
        reg = latent_regulariser(codes, means, cfg.reg_form, spread, space)
        ident = identity_term(identity_fn, out, target_id) if cfg.lambda_id else None
        return chunks, masks, out, inversion_loss(lp, reg, cfg.lambda_reg, ident, cfg.lambda_id)

    steps_done = cfg.steps
    for step in range(cfg.steps):
        if should_stop is not None and should_stop():
            steps_done = step
            break
        for group in optimiser.param_groups:
            group["lr"] = projector_lr(step, cfg.steps, group["base_lr"], cfg.lr_rampup, cfg.lr_rampdown)
        # While every chunk still has its initial code (the mean), all chunk images are equal and the
        # exact mask gradient is zero; what autograd returns is rounding noise, which Adam would
        # normalise into full-size random steps. The masks join once the codes have moved.
        still_symmetric = all(torch.equal(c, c0) for c, c0 in zip(codes, initial, strict=True))
        _, _, out, terms = evaluate(masks_learn=not still_symmetric)
        if step in frames_at:
            frames.append(out.detach().cpu())
        if on_step is not None:
            on_step(step, out.detach())
        for key in history:
            history[key].append(terms[key].detach().cpu())
        optimiser.zero_grad(set_to_none=True)
        terms["total"].sum().backward()
        optimiser.step()

    with torch.no_grad():
        chunks, masks, out, terms = evaluate()
    frames.append(out.cpu())
    return InversionResult(
        space=space,
        codes=[c.detach().cpu() for c in codes],
        mask_logits=logits.detach().cpu(),
        masks=masks.cpu(),
        chunk_images=chunks.cpu(),
        reconstruction=out.cpu(),
        losses={k: v.detach().cpu() for k, v in terms.items()},
        history={k: torch.stack(v) for k, v in history.items()},
        snapshots=torch.stack(frames, dim=1),
        snapshot_steps=[s for s in frames_at if s < steps_done] + [steps_done],
        steps_done=steps_done,
    )
