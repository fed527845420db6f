"""Helpers of the ChunkyGAN tests (``from tests.inversion.helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from semedit.inversion.config import InversionConfig, inversion_job_schema


class PyramidDistance(torch.nn.Module):
    """A deterministic stand-in for LPIPS in the maths tests: mean squared error over a 3-level pyramid.

    The functions under test accept any ``fn(x, y) -> [N]``; this one is cheap and exactly reproducible.
    """

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = 0
        for _ in range(3):
            total = total + (x - y).pow(2).flatten(1).mean(dim=1)
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        return total


def small_invert_cfg(**overrides) -> InversionConfig:
    base = dict(space="wplus", n=2, steps=20, batch_size=2, lr=0.05, lr_masks=0.05, lambda_reg=0.0,
                mask_resolution=4, lpips_resolution=256, snapshots=3)
    base.update(overrides)
    return InversionConfig(**base)


def tiny_config(tmp_path, **invert_overrides):
    cfg = inversion_job_schema()()
    cfg.generator.tiny.resolution = 16
    cfg.logger.wandb = False
    cfg.trainer.enable_progress_bar = False
    cfg.run.output_dir = str(tmp_path)
    cfg.invert = small_invert_cfg(**invert_overrides)
    cfg.invert.lpips_net = "alex"
    cfg.invert.lpips_pretrained = False
    # The Optimization rows' identity term (eval.optimization_lambda_id, on by default) with a random IR-SE.
    cfg.perception.identity_loss = "random-irse:10"
    return cfg


def write_images(folder: Path, count: int, size: int = 24) -> list[str]:
    """``count`` random RGB PNGs img0.png, img1.png, ... in ``folder``; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    names = []
    for i in range(count):
        arr = (rng.rand(size, size, 3) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")
        names.append(f"img{i}")
    return names
