"""ChunkyGAN real-image inversion via segments (Šubrtová et al., ECCV 2022).

A photo is modelled as O(z, s) = sum_i G(z_i) * s_i: n latent codes (W, W+ or S) blended by n soft
masks, optimised jointly to minimise LPIPS(I, O) + lambda_reg * sum_i ||z_i - z_mu||^2.

- composite.py  compositing and the mask parametrisation (softmax over low-resolution logits)
- masks.py      mask initialisation: face parsing groups, k-means over colour + position, uniform + noise
- latents.py    code sets in W / W+ / S, one batched generator call, the regulariser
- optimize.py   the optimisation of a batch of images (projector learning-rate ramp, Adam)
- projector.py  classic single-code projection (the n = 1 baseline) and the NVlabs projector recipe
- encoders.py   pSp / e4e encoders from their released checkpoints (the encoder rows of the tables)
- pti.py        Pivotal Tuning (pivot W + generator fine-tuning), the PTI row of the tables
- module.py     ChunkyGANModule: Lightning predict-time optimisation, DDP, resume
- edit.py       editing inverted images along directions, recompositing with the same masks
- io.py, data.py, run.py, commands.py, config.py
"""

from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.edit import apply_direction, edit_codes_images, render_composite
from semedit.inversion.latents import init_codes, latent_mean, latent_regulariser, render_chunks
from semedit.inversion.optimize import InversionResult, invert_batch, projector_lr
from semedit.inversion.projector import project_single_code

__all__ = [
    "InversionResult",
    "apply_direction",
    "composite",
    "edit_codes_images",
    "init_codes",
    "invert_batch",
    "latent_mean",
    "latent_regulariser",
    "masks_from_logits",
    "project_single_code",
    "projector_lr",
    "render_chunks",
    "render_composite",
]
