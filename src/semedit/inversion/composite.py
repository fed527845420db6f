"""Compositing n generator outputs with n soft masks: O(z, s) = sum_i G(z_i) * s_i (ChunkyGAN, ECCV 2022).

The masks are parametrised as n logit maps at a low resolution. They are upsampled bilinearly and then
passed through a softmax over the chunk axis: the softmax at full resolution makes the masks sum to one
exactly at every pixel (so the composite is a convex blend of the chunk images), and the low-resolution,
bilinearly interpolated logits keep them smooth, which is what lets the codes of neighbouring chunks
agree along seams instead of each chunk fitting a few pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["composite", "masks_from_logits", "logits_from_assignment"]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def masks_from_logits(logits: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Soft masks from low-resolution logits.

    Args:
        logits: [N, n, h, w] one logit map per chunk.
        size: output resolution (H, W) or an int for a square.
    Returns:
        masks [N, n, 1, H, W] in [0, 1] that sum to one over the chunk axis (dim 1) at every pixel.
    """
    _check(logits.ndim == 4, f"mask logits must be [N, n, h, w], got shape {tuple(logits.shape)}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return torch.softmax(logits, dim=1).unsqueeze(2)


def composite(chunk_images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Blend chunk images with masks.

    Args:
        chunk_images: [N, n, C, H, W] the generator output of every chunk.
        masks: [N, n, 1, H, W] (or [N, n, C, H, W]) blending weights.
    Returns:
        [N, C, H, W] = sum_i chunk_images[:, i] * masks[:, i].
    """
    _check(chunk_images.ndim == 5, f"chunk images must be [N, n, C, H, W], got {tuple(chunk_images.shape)}")
    _check(
        masks.ndim == 5 and masks.shape[:2] == chunk_images.shape[:2] and masks.shape[-2:] == chunk_images.shape[-2:],
        f"masks {tuple(masks.shape)} do not match chunk images {tuple(chunk_images.shape)} "
        "(expected [N, n, 1, H, W])",
    )
    return (chunk_images * masks).sum(dim=1)


def logits_from_assignment(probabilities: torch.Tensor, sharpness: float) -> torch.Tensor:
    """Logits whose softmax puts roughly ``softmax(sharpness * p)`` on each chunk.

    Args:
        probabilities: [N, n, h, w] hard (one-hot) or soft chunk assignments in [0, 1].
        sharpness: logit of a fully assigned chunk relative to an unassigned one; larger means harder
            initial masks (4 gives about 95 % weight to the assigned chunk for n = 4).
    Returns:
        logits [N, n, h, w].
    """
    _check(probabilities.ndim == 4, f"assignments must be [N, n, h, w], got {tuple(probabilities.shape)}")
    return probabilities * float(sharpness)
