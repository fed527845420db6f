"""`semedit train hair`: train the hair-transfer encoders on synthetic pose-misaligned pairs.

The embedded default (``configs/hair/tiny.yaml``) trains on a tiny random generator on the CPU in a
few minutes; ``configs/hair/ffhq1024.yaml`` is the paper-scale run (FFHQ 1024, IR-SE50, ArcFace,
multi-GPU with ``trainer.devices=N``).
"""

from __future__ import annotations

import torch

from semedit.config import ConfigError, as_dict
from semedit.data.datamodule import StyleGAN2DataModule
from semedit.hair.fg2021.config import HairJobConfig
from semedit.hair.fg2021.module import HairTransferModule
from semedit.stylegan2 import expect_calls
from semedit.training import FitResult, fit

__all__ = ["build", "train", "run"]


def build(cfg: HairJobConfig) -> tuple[HairTransferModule, StyleGAN2DataModule]:
    """The LightningModule and datamodule of a config (the generator is built once, by the datamodule)."""
    if cfg.data.mode != "pairs":
        raise ConfigError(f"data.mode must be 'pairs' for hair transfer, got '{cfg.data.mode}'")
    datamodule = StyleGAN2DataModule(cfg.generator, cfg.data)
    G = datamodule.generator
    expect_calls(G, cfg.trainer.max_steps, "train")  # one synthesis with gradients per step (-1: open-ended)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)  # the encoders' initial weights come from run.seed alone
        module = HairTransferModule(
            encoder=cfg.encoder, loss=cfg.loss, optim=cfg.optim, num_ws=G.num_ws, w_dim=G.w_dim, generator=G,
            generator_spec=as_dict(cfg.generator), noise_mode=cfg.generator.noise_mode,
            log_images_every_n_steps=cfg.logger.log_images_every_n_steps, grid_samples=cfg.grid_samples,
            regions=cfg.data.pairs.regions,
        )
    return module, datamodule


def train(cfg: HairJobConfig) -> FitResult:
    """Train (or resume) a hair-transfer run; returns where its checkpoint, logs and samples are."""
    module, datamodule = build(cfg)
    result = fit("hair", module, datamodule, cfg, cfg.trainer, cfg.logger, cfg.run)
    samples = result.run_dir / "samples"
    if samples.is_dir() and module.trainer.is_global_zero:
        grids = sorted(samples.glob("*.png"))
        print(f"sample grids: {samples}  ({len(grids)} images, face input | hair input | output | target"
              + (f"; latest {grids[-1].name})" if grids else ")"))
    return result


def run(cfg: HairJobConfig, inputs: list[str]) -> FitResult:
    """The `hair` job's entry (semedit.jobs)."""
    return train(cfg)
