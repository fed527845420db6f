"""ChunkyGAN (Šubrtová et al., ECCV 2022) as a member of the Inverter family, and its table rows.

    min_{z, s}  LPIPS(I, sum_i G(z_i) * s_i) + lambda_reg * sum_i ||z_i - z_mu||^2

The optimisation itself is ``optimize.invert_batch``; this module sets it up (mask initialisation, the
row's settings) and registers it. Rows it fills: ``<space>:chunky`` ("Ours in W/W+/S"), ``<space>:chunky:reg``
("Ours ... reg.", with ``eval.lambda_reg`` x the regulariser in ``eval.reg_form``), and, with
``eval.optimization_recipe=chunkygan``, ``<space>:single`` ("Optimization ...": n = 1, masks frozen).
Its settings are the ``invert`` section of the inversion config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from semedit.inversion.base import (
    SPACE_LABEL,
    InversionOutput,
    Inverter,
    InverterContext,
    identity_text,
    percept_text,
    reg_text,
    register_inverter,
    row_invert_config,
)
from semedit.inversion.masks import (
    image_seed,
    kmeans_mask_logits,
    parse_groups,
    parsing_mask_logits,
    uniform_mask_logits,
)
from semedit.inversion.optimize import invert_batch
from semedit.perception.parsing import load_face_parser

__all__ = ["ChunkyGAN", "face_parser_fn", "initial_mask_logits"]

_ROW = re.compile(r"(w|wplus|s):(single|chunky)(:reg)?")


def face_parser_fn(weights: str | None, device):
    """``parse(images [N,3,H,W] in [-1,1]) -> labels [N,H,W]`` from the perception face parser."""

    parser = load_face_parser(weights, device=device) if weights else load_face_parser(device=device)

    def parse(images: torch.Tensor) -> torch.Tensor:
        if hasattr(parser, "labels"):
            return parser.labels(images)
        out = parser(images)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.argmax(dim=1) if out.ndim == 4 else out

    return parse


def initial_mask_logits(inv, seed: int, images: torch.Tensor, names: Sequence[str],
                        parser: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """[N, n, h, w] initial mask logits of ``inv.mask_init``, seeded per image name (so independent of the
    rank and batch an image lands in). ``parser`` (``face_parser_fn``) is needed only for mask_init=parsing."""
    seeds = [image_seed(seed, name) for name in names]
    if inv.mask_init == "uniform" or inv.n == 1:
        return uniform_mask_logits(len(names), inv.n, inv.mask_resolution, inv.mask_noise, seeds)
    if inv.mask_init == "kmeans":
        return kmeans_mask_logits(images.cpu(), inv.n, inv.mask_resolution, inv.mask_init_sharpness,
                                  inv.kmeans_position_weight, inv.kmeans_iters, seeds)
    if parser is None:
        raise ValueError("invert.mask_init=parsing needs a face parser (face_parser_fn)")
    groups = parse_groups(inv.parsing_groups, inv.n)
    return parsing_mask_logits(images, parser, groups, inv.mask_resolution, inv.mask_init_sharpness)


class ChunkyGAN(Inverter):
    """n codes and n soft masks per image, optimised jointly (see the module docstring)."""

    def __init__(self, G, lpips_fn, inv, seed: int, noise_mode: str = "const", parser_weights: str | None = None,
                 identity_fn=None):
        self.G, self.lpips, self.inv, self.seed, self.noise_mode = G, lpips_fn, inv, seed, noise_mode
        self.identity_fn = identity_fn
        self.parser_weights = parser_weights
        self.batch_size = inv.batch_size
        self._parser = None

    def mask_logits(self, images: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
        if self._parser is None and self.inv.mask_init == "parsing" and self.inv.n > 1:
            self._parser = face_parser_fn(self.parser_weights, images.device)
        return initial_mask_logits(self.inv, self.seed, images, names, self._parser)

    def invert(self, images, names, indices, on_step=None, should_stop=None) -> InversionOutput:
        logits = self.mask_logits(images, names)
        with torch.inference_mode(False), torch.enable_grad():
            # A batch fetched under inference mode holds inference tensors, which autograd refuses to save.
            result = invert_batch(self.G, self.lpips, images.clone(), logits.to(images.device), self.inv,
                                  noise_mode=self.noise_mode, on_step=on_step, should_stop=should_stop,
                                  identity_fn=self.identity_fn)
        return InversionOutput(
            space=result.space, codes=result.codes, mask_logits=result.mask_logits, masks=result.masks,
            chunk_images=result.chunk_images, reconstruction=result.reconstruction, snapshots=result.snapshots,
            snapshot_steps=result.snapshot_steps, losses=result.losses, history=result.history,
            steps_done=result.steps_done,
            meta=[{"recipe": "chunkygan", "n": self.inv.n, "lambda_reg": self.inv.lambda_reg,
                   "lambda_id": self.inv.lambda_id, "percept": self.inv.percept} for _ in names])


def _rows(key: str, cfg) -> dict | None:
    m = _ROW.fullmatch(key)
    if m is None or (m.group(2) == "single" and cfg.eval.optimization_recipe != "chunkygan"):
        return None
    return {"space": m.group(1), "single": m.group(2) == "single", "reg": m.group(3) is not None}


def _label(row: dict) -> str:
    if "space" not in row:
        return "ChunkyGAN"
    if row.get("single"):
        return f"Optimization {SPACE_LABEL[row['space']]}"
    return f"Ours in {SPACE_LABEL[row['space']]}" + (" reg." if row.get("reg") else "")


def _describe(ctx: InverterContext) -> str:
    inv = row_invert_config(ctx.cfg, ctx.row)
    noise = f"rendered with the generator's {ctx.cfg.generator.noise_mode} noise (noise maps not optimised)"
    if ctx.row.get("single"):
        return (f"ChunkyGAN optimiser with n = 1, masks frozen, {percept_text(inv)}, {identity_text(inv, ctx)}, "
                f"{inv.steps} steps; {noise}")
    return (f"ChunkyGAN, n = {inv.n}, masks from {inv.mask_init}, {inv.steps} steps, {percept_text(inv)}; "
            f"{reg_text(inv)}; {identity_text(inv, ctx)}; {noise}")


@register_inverter("chunkygan", group="Optimization", label=_label, describe=_describe, rows=_rows)
def _build(ctx: InverterContext) -> ChunkyGAN:
    cfg = ctx.cfg
    inv = row_invert_config(cfg, ctx.row)
    return ChunkyGAN(ctx.generator, ctx.tools.percept(inv), inv, cfg.run.seed, cfg.generator.noise_mode,
                     cfg.perception.parser_weights, ctx.tools.identity_loss_for(inv))
