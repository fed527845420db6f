"""Running an inversion: config -> images -> Trainer.predict(ChunkyGANModule) -> per-image folders."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl

from semedit.inversion.config import Config, validate
from semedit.inversion.data import RealImageDataset, check_sources, list_images
from semedit.inversion.module import ChunkyGANModule
from semedit.lightning_output import quiet_lightning
from semedit.stylegan2 import generator_from_spec
from semedit.threads import configure_threads, local_processes
from semedit.training import build_logger, build_predict_trainer, job_run_folder

log = logging.getLogger(__name__)

__all__ = ["InvertOutcome", "invert"]


@dataclass
class InvertOutcome:
    run_dir: Path  # the run folder (config.yaml, summary.json, one sub-folder per image)
    names: list[str]  # all images of the run, in order
    is_global_zero: bool


def invert(cfg: Config, inputs: list[str], generator=None, lpips_fn=None, job: str = "invert",
           run_dir: Path | None = None) -> InvertOutcome:
    """Invert ``inputs`` (files, folders, ``skimage:<name>``) into ``cfg.run.output_dir/<run name>/``.

    ``run_dir`` overrides the run folder (used by eval-inversion, which runs several inversions in one
    process). Re-running into the same folder skips the images that are already finished.
    """

    validate(cfg)
    configure_threads(cfg.run.threads, local_processes(cfg.trainer))
    with job_run_folder(job, cfg, cfg.run, cfg.trainer, run_dir=run_dir) as folder:
        run_dir = folder.path
        if generator is None:
            generator = generator_from_spec(cfg.generator)
        sources = list_images(inputs, cfg.data.extensions, cfg.data.max_images)
        check_sources(sources)  # a bad file stops the run here, before the folder is kept
        dataset = RealImageDataset(sources, generator.img_resolution, cfg.data.align, cfg.data.align_fallback,
                                   cfg.perception.landmark_weights, cfg.perception.landmarker)
        pl.seed_everything(cfg.run.seed, verbose=False)
        module = ChunkyGANModule(cfg, dataset, run_dir, generator=generator, lpips_fn=lpips_fn)
        logger = build_logger(cfg.logger, run_dir, run_dir.name, cfg) if cfg.logger.wandb else False
        # The optimisation needs autograd inside predict_step, and each rank's share of the images is chosen
        # by ShardSampler (Lightning's distributed sampler would pad shards with repeated images). The module
        # shows its own bar over the optimisation steps; Lightning's would only count batches.
        trainer = build_predict_trainer(cfg.trainer, run_dir, cfg.run.threads, logger, progress_bar=False,
                                        inference_mode=False, use_distributed_sampler=False)
        folder.keep()
        with quiet_lightning():  # predict_step writes its results to disk and returns nothing on purpose
            trainer.predict(module, return_predictions=False)
    return InvertOutcome(run_dir=run_dir, names=[s.name for s in sources], is_global_zero=trainer.is_global_zero)
