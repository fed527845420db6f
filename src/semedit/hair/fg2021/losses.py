"""Hair-transfer losses as small pure functions; the LightningModule weights and sums them.

All image arguments are [N, 3, H, W] in [-1, 1]; masks are [N, 1, H, W] in [0, 1]. Every function
returns a scalar (mean over the batch) so that each term can be logged on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["masked", "l2_loss", "lpips_loss", "identity_loss", "wplus_l2_loss"]


def masked(images: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``images * mask`` (mask broadcast over channels); ``mask=None`` returns the images unchanged."""
    if mask is None:
        return images
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask must be [N, 1, H, W] matching images {list(images.shape)}, got {list(mask.shape)}")
    return images * mask


def l2_loss(output: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared pixel error, averaged over the mask's area when a mask is given.

    Normalising by the mask area (not by H*W) keeps the loss scale independent of how large the
    region is, so a face-region term and a hair-region term can share one weight scale.
    """
    if output.shape != target.shape:
        raise ValueError(f"output {list(output.shape)} and target {list(target.shape)} differ in shape")
    if mask is None:
        return F.mse_loss(output, target)
    sq = masked((output - target) ** 2, mask)
    area = (mask.sum(dim=(1, 2, 3)) * output.shape[1]).clamp_min(1.0)
    return (sq.sum(dim=(1, 2, 3)) / area).mean()


def lpips_loss(lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], output: torch.Tensor,
               target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LPIPS distance between output and target; with a mask both are masked first (region LPIPS)."""
    return lpips(masked(output, mask), masked(target, mask)).mean()


def identity_loss(identity: Callable[[torch.Tensor], torch.Tensor], output: torch.Tensor,
                  target: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of ArcFace embeddings of output and target (0 = same identity).

    The target's embedding is a constant: gradients flow only through the output.
    """
    with torch.no_grad():
        target_emb = identity(target)
    out_emb = identity(output)
    return (1.0 - F.cosine_similarity(out_emb, target_emb, dim=1)).mean()


def wplus_l2_loss(ws_pred: torch.Tensor, ws_true: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and true W+ codes [N, num_ws, w_dim].

    Only synthetic training data has a true code; it anchors the encoders to the generator's W+ space.
    """
    if ws_pred.shape != ws_true.shape:
        raise ValueError(f"W+ shapes differ: predicted {list(ws_pred.shape)}, true {list(ws_true.shape)}")
    return F.mse_loss(ws_pred, ws_true)
