"""Running an inversion: config -> images -> an Inverter -> Trainer.predict(InversionModule) -> per-image folders."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from semedit.config import as_dict
from semedit.errors import ConfigError
from semedit.inversion.base import INVERTERS, InversionTools, InverterContext, Row
from semedit.inversion.config import validate
from semedit.inversion.data import RealImageDataset, check_sources, list_images
from semedit.inversion.module import EditRequest, InversionModule
from semedit.lightning_output import quiet_lightning
from semedit.stylegan2 import expect_calls, generator_from_spec
from semedit.threads import configure_threads, local_processes
from semedit.training import build_logger, build_predict_trainer, job_run_folder

log = logging.getLogger(__name__)

__all__ = ["InvertOutcome", "invert", "method_row", "run"]


@dataclass
class InvertOutcome:
    run_dir: Path  # the run folder (config.yaml, summary.json, one sub-folder per image)
    names: list[str]  # all images of the run, in order
    is_global_zero: bool


def method_row(cfg) -> Row:
    """The row of a plain `semedit invert`: the method ``invert.method`` with its own settings."""
    name = cfg.invert.method
    if name not in INVERTERS:
        raise ConfigError(f"invert.method={name!r} is not a registered inversion method; choose one of "
                          f"{', '.join(sorted(INVERTERS))}")
    return Row(name, INVERTERS[name], (("method", name),))


def invert(cfg, inputs: list[str], generator=None, tools: InversionTools | None = None, job: str = "invert",
           run_dir: Path | None = None, row: Row | None = None, edits: EditRequest | None = None,
           record: Any = None) -> InvertOutcome:
    """Invert ``inputs`` (files, folders, samples such as ``skimage:astronaut``) with the method of ``row``
    (default: ``invert.method``) into ``cfg.run.output_dir/<run name>/``.

    ``run_dir`` overrides the run folder and ``record`` what its config.yaml holds (eval-inversion runs one
    folder per table row, each recording what makes that row's numbers). Re-running into the same folder
    skips the images that are already finished.
    """
    validate(cfg)
    configure_threads(cfg.run.threads, local_processes(cfg.trainer))
    row = row or method_row(cfg)
    with job_run_folder(job, record if record is not None else cfg, cfg.run, cfg.trainer, run_dir=run_dir) as folder:
        run_dir = folder.path
        if generator is None:
            generator = generator_from_spec(cfg.generator)
        sources = list_images(inputs, cfg.data.extensions, cfg.data.max_images)
        check_sources(sources)  # a bad file stops the run here, before the folder is kept
        expect_calls(generator, len(sources) / cfg.invert.batch_size * cfg.invert.steps, "invert")  # optimising methods
        dataset = RealImageDataset(sources, generator.img_resolution, cfg.data.align, cfg.data.align_fallback,
                                   cfg.perception.landmark_weights, cfg.perception.landmarker)
        pl.seed_everything(cfg.run.seed, verbose=False)
        tools = tools or InversionTools(cfg)
        inverter = row.entry.build(InverterContext(generator, cfg, row.settings_dict, tools))
        # The generator's spec travels with the codes: `semedit edit-real` renders them with it.
        meta = {"resolution": int(generator.img_resolution), "num_ws": int(generator.num_ws),
                "generator_ckpt": cfg.generator.ckpt, "generator": as_dict(cfg.generator),
                "method": row.entry.name, "row": row.key}
        module = InversionModule(inverter, generator, dataset, run_dir, tools, meta, edits,
                                 progress=cfg.trainer.enable_progress_bar, num_workers=cfg.data.num_workers)
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


def run(cfg, inputs: list[str]) -> InvertOutcome:
    """The `invert` job's entry (semedit.jobs)."""
    return invert(cfg, inputs)
