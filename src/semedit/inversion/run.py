"""Running an inversion: config -> images -> Trainer.predict(ChunkyGANModule) -> per-image folders."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl

from semedit.config import save_config
from semedit.inversion.config import Config, validate
from semedit.inversion.data import RealImageDataset, list_images
from semedit.inversion.module import ChunkyGANModule
from semedit.stylegan2 import generator_from_spec
from semedit.training import build_logger, is_global_zero, run_folder

log = logging.getLogger(__name__)

__all__ = ["InvertOutcome", "invert", "build_predict_trainer"]


@dataclass
class InvertOutcome:
    run_dir: Path  # the run folder (config.yaml, summary.json, one sub-folder per image)
    names: list[str]  # all images of the run, in order
    is_global_zero: bool


def build_predict_trainer(cfg: Config, run_dir: Path):


    t = cfg.trainer
    logger = build_logger(cfg.logger, run_dir, run_dir.name, cfg) if cfg.logger.wandb else False
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        logger=logger,
        enable_progress_bar=t.enable_progress_bar,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
        # The optimisation needs autograd inside predict_step, and each rank's share of the images is
        # chosen by ShardSampler (Lightning's distributed sampler would pad shards with repeated images).
        inference_mode=False,
        use_distributed_sampler=False,
        deterministic=t.deterministic,
    )


def invert(cfg: Config, inputs: list[str], generator=None, lpips_fn=None, job: str = "invert",
           run_dir: Path | None = None) -> InvertOutcome:
    """Invert ``inputs`` (files, folders, ``skimage:<name>``) into ``cfg.run.output_dir/<run name>/``.

    ``run_dir`` overrides the run folder (used by eval-inversion, which runs several inversions in one
    process). Re-running into the same folder skips the images that are already finished.
    """



    validate(cfg)
    with run_folder(job, cfg.run, run_dir=run_dir) as run_dir:
        if generator is None:

            generator = generator_from_spec(cfg.generator)
        sources = list_images(inputs, cfg.data.extensions, cfg.data.max_images)
        dataset = RealImageDataset(sources, generator.img_resolution, cfg.data.align, cfg.data.align_fallback,
                                   cfg.perception.landmark_weights)
        if is_global_zero():
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
        pl.seed_everything(cfg.run.seed, verbose=False)
        module = ChunkyGANModule(cfg, dataset, run_dir, generator=generator, lpips_fn=lpips_fn)
        trainer = build_predict_trainer(cfg, run_dir)
        with warnings.catch_warnings():
            # predict_step writes its results to disk and returns nothing on purpose.
            warnings.filterwarnings("ignore", message=".*predict returned None.*")
            trainer.predict(module, return_predictions=False)
    return InvertOutcome(run_dir=run_dir, names=[s.name for s in sources], is_global_zero=trainer.is_global_zero)
