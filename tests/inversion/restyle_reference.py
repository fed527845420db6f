"""An independent, functional re-statement of ReStyle's public inference, on raw state dicts.

Written from yuval-alaluf/restyle-encoder (5e80276) directly, with ``torch.nn.functional`` only and no code of
``semedit.inversion.restyle`` or of semedit's generator:

- ``encoder_forward``: BackboneEncoder (models/encoders/restyle_psp_encoders.py lines 43-50) and
  ProgressiveBackboneEncoder (models/encoders/restyle_e4e_encoders.py lines 76-89, stage Inference = 18) on the
  ``encoder.``-stripped state dict; the IR-SE units and GradualStyleBlocks are psp_reference's;
- ``run_on_batch``: utils/inference_utils.py get_average_image (lines 4-13) + run_on_batch (lines 16-50) with
  models/psp.py forward (lines 55-95), rendering through hyperstyle_reference.decoder_forward (rosinality's
  Generator for W+ codes, randomize_noise=False) on the ``decoder.``-stripped state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.inversion.hyperstyle_reference import decoder_forward
from tests.inversion.psp_reference import _bn, _style_block, _unit

INFERENCE = 18  # ProgressiveStage.Inference


def encoder_forward(kind: str, sd: dict, x: torch.Tensor, units=(3, 4, 14, 3)) -> torch.Tensor:
    """[N, n_styles, w_dim] of the public encoder on a 6-channel input."""
    x = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
    x = F.prelu(_bn(x, sd, "input_layer.1."), sd["input_layer.2.weight"])
    starts = {sum(units[:k]) for k in range(len(units))}
    for i in range(sum(units)):
        x = _unit(x, sd, f"body.{i}.", 2 if i in starts else 1)
    n_styles = len({k.split(".")[1] for k in sd if k.startswith("styles.")})
    if kind == "psp":
        return torch.stack([_style_block(x, sd, f"styles.{j}.") for j in range(n_styles)], dim=1)
    w0 = _style_block(x, sd, "styles.0.")
    w = w0.repeat(n_styles, 1, 1).permute(1, 0, 2)
    for i in range(1, min(INFERENCE + 1, n_styles)):
        w[:, i] += _style_block(x, sd, f"styles.{i}.")
    return w


def run_on_batch(kind, inputs, encoder_sd, decoder_sd, latent_avg, n_iters, pool, units=(3, 4, 14, 3)):
    """(codes of every iteration, full-resolution images of every iteration) for ``inputs`` at the encoder's
    size; ``pool`` is the face_pool size (256 upstream)."""
    avg_image = F.adaptive_avg_pool2d(decoder_forward(decoder_sd, latent_avg.unsqueeze(0)), pool)[0]
    y_hat, latent = None, None
    all_codes, images = [], []
    for it in range(n_iters):
        if it == 0:
            x_input = torch.cat([inputs, avg_image.unsqueeze(0).repeat(inputs.shape[0], 1, 1, 1)], dim=1)
        else:
            x_input = torch.cat([inputs, y_hat], dim=1)
        codes = encoder_forward(kind, encoder_sd, x_input, units)
        if x_input.shape[1] == 6 and latent is not None:
            codes = codes + latent
        else:
            codes = codes + latent_avg.repeat(codes.shape[0], 1, 1)
        y_hat = decoder_forward(decoder_sd, codes)
        latent = codes
        all_codes.append(codes)
        images.append(y_hat)
        y_hat = F.adaptive_avg_pool2d(y_hat, pool)
    return all_codes, images
