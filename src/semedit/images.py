"""Image files <-> tensors. Inside semedit images are float [-1, 1], NCHW, RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] or [3, H, W] in [-1, 1] -> uint8 [N, H, W, 3] or [H, W, 3] (NVlabs' rounding)."""
    x = (images.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write one image [3, H, W] (or [1, 3, H, W]) in [-1, 1] as PNG/JPEG (by suffix)."""

    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"save_image takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [-1, 1]."""
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image of shape [H, W, 3], got {list(array.shape)}")
    array = array[..., :3]
    # np.array copies: a read-only buffer (PIL's, or a read-only view) makes torch.from_numpy warn.
    return torch.from_numpy(np.array(array, copy=True, order="C")).permute(2, 0, 1)[None].float() / 127.5 - 1


def image_grid(images: torch.Tensor, ncols: int) -> torch.Tensor:
    """[N, 3, H, W] -> one [3, rows*H, ncols*W] image, row-major, padded with black."""
    n, c, h, w = images.shape
    rows = (n + ncols - 1) // ncols
    grid = images.new_full((c, rows * h, ncols * w), -1.0)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[:, r * h:(r + 1) * h, col * w:(col + 1) * w] = images[i]
    return grid
