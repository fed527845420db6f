"""Pivotal Tuning Inversion (Roich et al., danielroich/PTI): the "Generator parameters modification" row.

Per image (PTI training/coaches/single_id_coach.py):
1. pivot: a W code from the NVlabs-style projector (training/projectors/w_projector.py, first_inv_type 'w',
   configs/hyperparameters.py line 3) with noise-map optimisation and ramped w noise; the projector's own
   noise maps are discarded afterwards, as PTI's projector works on a deep copy of G (w_projector.py
   line 47) and tuning renders with G's constant noise (base_coach.py line 130);
2. a fresh copy of the generator (``restart_training``, single_id_coach.py line 25) is fine-tuned with
   Adam(lr 3e-4) (base_coach.py line 104, hyperparameters.py line 25) for up to 350 steps (line 20) on
   pt_l2_lambda * MSE + pt_lpips_lambda * LPIPS-Alex (base_coach.py lines 108-121, hyperparameters.py
   lines 2, 15-16), stopping early once LPIPS <= 0.06 (single_id_coach.py line 56, hyperparameters.py
   line 19);
3. optionally the locality regulariser (criteria/localitly_regulizer.py): sample w = mapping(z) with
   truncation 0.5 (lines 30-32), move it to pivot + alpha * (w - pivot) / ||w - pivot|| with alpha = 30
   (lines 15-22, hyperparameters.py line 12), and penalise 0.1 * MSE + 0.1 * LPIPS between the original
   and the tuned generator there (lines 35-55, hyperparameters.py lines 10-11), at every step (line 8).
   PTI ships it switched off (``use_locality_regularization = False``, hyperparameters.py line 9); semedit
   keeps that default and the switch.

Edits move the pivot along a direction and render with the image's tuned generator.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from semedit.config import check, check_number
from semedit.inversion.base import (
    InversionOutput,
    Inverter,
    InverterContext,
    percept_text,
    register_inverter,
    single_code_output,
)
from semedit.inversion.optimize import lpips_input
from semedit.inversion.projector import project_nvlabs

__all__ = ["PTIConfig", "PivotConfig", "pivotal_tuning", "locality_regulariser", "tune_generator"]


@dataclass
class PivotConfig:
    """The projector settings of PTI's pivot (w_projector.py), in the fields ``project_nvlabs`` reads."""

    space: str = "w"  # first_inv_type = 'w' (hyperparameters.py line 3)
    steps: int = 450  # first_inv_steps (hyperparameters.py line 21)
    lr: float = 0.01  # initial_learning_rate of the ramp (w_projector.py lines 28, 92)
    lr_rampup: float = 0.05  # w_projector.py line 31
    lr_rampdown: float = 0.25  # w_projector.py line 30
    beta1: float = 0.9  # w_projector.py line 76
    beta2: float = 0.999
    lambda_reg: float = 0.0
    reg_form: str = "sum"
    lpips_resolution: int = 256  # the VGG features are taken at 256 px (w_projector.py lines 70-71, 103-104)
    percept: str = "lpips"  # semedit's LPIPS (invert.percept=nvlabs-vgg16 is the w_projector's vgg16.pt distance)
    percept_downsample: float = 0.5  # unused by the NVlabs recipe (it works at 256 px)
    lambda_id: float = 0.0  # PTI's pivot has no identity term


@dataclass
class PTIConfig:
    pivot_steps: int = 450
    steps: int = 350  # max_pti_steps
    lr: float = 3e-4  # pti_learning_rate
    l2_lambda: float = 1.0  # pt_l2_lambda
    lpips_lambda: float = 1.0  # pt_lpips_lambda
    lpips_threshold: float = 0.06  # LPIPS_value_threshold
    locality_regularization: bool = False  # use_locality_regularization (off in PTI's release)
    locality_samples: int = 1  # latent_ball_num_of_samples
    locality_alpha: float = 30.0  # regulizer_alpha
    locality_l2_lambda: float = 0.1  # regulizer_l2_lambda
    locality_lpips_lambda: float = 0.1  # regulizer_lpips_lambda
    # PTI applies LPIPS to the full-resolution images (base_coach.py line 117); None keeps that.
    lpips_resolution: int | None = None

    def validate(self, prefix: str = "") -> None:
        for key in ("pivot_steps", "steps", "locality_samples"):
            check(getattr(self, key) >= 1, f"{prefix}{key}", "an integer >= 1", getattr(self, key))
        check_number(self.lr, f"{prefix}lr", low=0, low_open=True)
        for key in ("l2_lambda", "lpips_lambda", "lpips_threshold", "locality_alpha", "locality_l2_lambda",
                    "locality_lpips_lambda"):
            check_number(getattr(self, key), f"{prefix}{key}", low=0)
        check(self.lpips_resolution is None or 16 <= self.lpips_resolution <= 1024, f"{prefix}lpips_resolution",
              "null or an integer from 16 to 1024", self.lpips_resolution)


def _lp(fn, x, y, resolution):
    res = resolution or max(x.shape[-1], 32)
    return fn(lpips_input(x, res), lpips_input(y, res))


def locality_regulariser(G_orig, G_new, w_pivot: torch.Tensor, lpips_fn, cfg: PTIConfig,
                         rng: np.random.RandomState) -> torch.Tensor:
    """PTI's ``Space_Regulizer.ball_holder_loss_lazy`` (criteria/localitly_regulizer.py lines 27-55)."""
    z = torch.from_numpy(rng.randn(cfg.locality_samples, G_orig.z_dim)).float().to(w_pivot.device)
    with torch.no_grad():
        w_samples = G_orig.mapping(z, truncation_psi=0.5)
    loss = 0.0
    for w in w_samples:
        direction = w.unsqueeze(0) - w_pivot
        w_code = w_pivot + cfg.locality_alpha * direction / direction.norm(p=2)
        new_img = G_new.synthesis(w_code, noise_mode="none")
        with torch.no_grad():
            old_img = G_orig.synthesis(w_code, noise_mode="none")
        if cfg.locality_l2_lambda > 0:
            loss = loss + cfg.locality_l2_lambda * torch.nn.functional.mse_loss(old_img, new_img)
        if cfg.locality_lpips_lambda > 0:
            loss = loss + cfg.locality_lpips_lambda * _lp(lpips_fn, old_img, new_img, cfg.lpips_resolution).mean()
    return loss / len(w_samples)


def tune_generator(G, w_pivot: torch.Tensor, target: torch.Tensor, lpips_fn, cfg: PTIConfig, seed: int = 0):
    """Fine-tune a copy of G so that G(w_pivot) reproduces ``target`` [1, 3, R, R]. Returns (G_tuned, steps)."""
    G_orig = G
    # Only parameters are tuned, as Adam(G.parameters()); noise_const and w_avg are buffers.
    G_new = copy.deepcopy(G).eval().requires_grad_(True)
    optimiser = torch.optim.Adam(G_new.parameters(), lr=cfg.lr)
    rng = np.random.RandomState(seed)
    steps_done = 0
    for _ in range(cfg.steps):
        img = G_new.synthesis(w_pivot, noise_mode="const")
        l2 = torch.nn.functional.mse_loss(img, target)
        lp = _lp(lpips_fn, img, target, cfg.lpips_resolution).mean()
        loss = cfg.l2_lambda * l2 + cfg.lpips_lambda * lp
        if float(lp.detach()) <= cfg.lpips_threshold:  # single_id_coach.py line 56: stop before stepping
            break
        if cfg.locality_regularization:
            loss = loss + locality_regulariser(G_orig, G_new, w_pivot, lpips_fn, cfg, rng)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        steps_done += 1
    return G_new.requires_grad_(False).eval(), steps_done


def pivotal_tuning(G, targets: torch.Tensor, projector_lpips, tuning_lpips, cfg: PTIConfig,
                   pivot_cfg: PivotConfig | None = None, seed: int = 0):
    """Yield (index, w_pivot [1, num_ws, w_dim], tuned generator, reconstruction [1, 3, R, R], steps) per image.

    ``projector_lpips`` drives the pivot projection; ``tuning_lpips`` is PTI's LPIPS-Alex.
    """
    pivot_cfg = pivot_cfg or PivotConfig(steps=cfg.pivot_steps)
    for i in range(targets.shape[0]):
        target = targets[i:i + 1]
        codes, _, _ = project_nvlabs(G, projector_lpips, target, pivot_cfg, seed=seed + i)
        w_pivot = codes[0].unsqueeze(1).expand(-1, G.num_ws, -1).contiguous()  # W repeated: [1, num_ws, w_dim]
        G_tuned, steps = tune_generator(G, w_pivot, target, tuning_lpips, cfg, seed=seed + i)
        with torch.no_grad():
            recon = G_tuned.synthesis(w_pivot, noise_mode="const")
        yield i, w_pivot, G_tuned, recon, steps


# ----------------------------------------------------------------------------------------------------
# The PTI row of the tables, as a member of the Inverter family.


class PivotalTuning(Inverter):
    """A W pivot (NVlabs recipe) and a generator tuned to it, per image: the tuned synthesis parameters are
    the output's ``generator_params`` (edits render with them). Image ``index`` uses seed ``run.seed + index``."""

    batch_size = 1

    def __init__(self, G, projector_lpips, tuning_lpips, cfg: PTIConfig, pivot_cfg: PivotConfig, seed: int):
        self.G, self.projector_lpips, self.tuning_lpips = G, projector_lpips, tuning_lpips
        self.cfg, self.pivot_cfg, self.seed = cfg, pivot_cfg, seed

    def invert(self, images, names, indices, on_step=None, should_stop=None) -> InversionOutput:
        pivots, recons, params, meta = [], [], [], []
        for j, index in enumerate(indices):
            with torch.inference_mode(False), torch.enable_grad():
                (_, w_pivot, G_tuned, recon, steps), = pivotal_tuning(
                    self.G, images[j:j + 1].clone(), self.projector_lpips, self.tuning_lpips, self.cfg,
                    self.pivot_cfg, seed=self.seed + int(index))
            pivots.append(w_pivot[0].detach().cpu())
            recons.append(recon.detach().cpu())
            params.append({k: v.detach().cpu().clone() for k, v in G_tuned.synthesis.named_parameters()})
            meta.append({"recipe": "pti", "tuning_steps": steps})
            del G_tuned
        return single_code_output("wplus", [torch.stack(pivots)], torch.cat(recons), generator_params=params,
                                  meta=meta)


def _describe(ctx: InverterContext) -> str:
    p = ctx.settings
    return (f"W pivot from the NVlabs recipe ({p.pivot_steps} steps, {percept_text(ctx.cfg.invert, 'nvlabs')}), then {p.steps} generator steps "
            f"(Adam {p.lr:g}, {p.l2_lambda:g} L2 + {p.lpips_lambda:g} LPIPS-Alex, stop at LPIPS <= "
            f"{p.lpips_threshold:g}), locality regulariser {'on' if p.locality_regularization else 'off (PTI default)'}")


@register_inverter("pti", group="Generator parameters modification", label="Pivotal Tuning", describe=_describe,
                   settings=PTIConfig, modifies_generator=True)
def _build(ctx: InverterContext) -> PivotalTuning:
    # The pivot's perceptual distance follows invert.percept: nvlabs-vgg16 is PTI's own (its w_projector.py
    # loads the same vgg16.pt, line 64, at 256 px, lines 70-71 and 103-104, danielroich/PTI @ da94d59).
    pivot = PivotConfig(steps=ctx.settings.pivot_steps, lpips_resolution=ctx.cfg.invert.lpips_resolution,
                        percept=ctx.cfg.invert.percept)
    return PivotalTuning(ctx.generator, ctx.tools.percept(), ctx.tools.metric_lpips(), ctx.settings, pivot,
                         ctx.cfg.run.seed)
