"""The one place where a LightningModule meets a Trainer: run folders, checkpoints, resume, W&B.

Every trainable job (hair transfer, direction classifier) calls ``fit(...)`` so that they all share:

- a unique run folder per run (``run.output_dir/run.name``), with the resolved config saved in it;
  under SLURM the default name comes from the job id, so a requeued job finds its own folder again;
- checkpoints every ``run.checkpoint_every_n_steps`` steps plus ``last.ckpt``; with ``run.resume=auto``
  a run whose folder already holds ``last.ckpt`` continues from it (preemption, requeue, re-running
  the same command with the same ``run.name``);
- W&B logging from rank 0 only (Lightning's logger already guards rank 0), offline by default.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from semedit.config import LoggerConfig, TrainerConfig, as_dict, save_config

# Set by the launching process so that processes started later by Lightning's DDP launcher (which
# re-runs the same command line) or by a requeue use the same run folder instead of inventing a new one.
RUN_DIR_ENV = "SEMEDIT_RUN_DIR"


@dataclass
class RunConfig:
    """Where a run writes and how it resumes."""

    output_dir: str = "runs"
    name: Optional[str] = None  # None: "<job>-<date>-<time>-<random>" (or "<job>-slurm<jobid>" under SLURM)
    seed: int = 0
    resume: str = "auto"  # "auto": continue from <run>/checkpoints/last.ckpt if it exists | "never" | a .ckpt path
    checkpoint_every_n_steps: int = 100


@dataclass
class FitResult:
    run_dir: Path
    last_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]
    wandb_dir: Optional[Path]
    metrics: dict


def _slurm_run_name(job: str) -> Optional[str]:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{job}-slurm{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    job_id = os.environ.get("SLURM_JOB_ID")
    return f"{job}-slurm{job_id}" if job_id else None


def resolve_run_dir(job: str, run: RunConfig) -> Path:
    """The run folder: from the environment (DDP children, requeues), the config, SLURM, or a fresh name."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited)
    name = run.name or _slurm_run_name(job)
    if name is None:
        name = f"{job}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    run_dir = Path(run.output_dir) / name
    os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
    return run_dir


def resume_checkpoint(run_dir: Path, run: RunConfig) -> Optional[str]:
    if run.resume == "never":
        return None
    if run.resume == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    path = Path(run.resume)
    if not path.is_file():
        raise FileNotFoundError(f"run.resume={run.resume}: no such checkpoint file")
    return str(path)


def _is_global_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0 and int(
        os.environ.get("LOCAL_RANK", "0")
    ) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def build_logger(logger_cfg: LoggerConfig, run_dir: Path, run_name: str, config: Any):
    if not logger_cfg.wandb or logger_cfg.mode == "disabled":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    os.environ.setdefault("WANDB_MODE", logger_cfg.mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    from pytorch_lightning.loggers import WandbLogger

    return WandbLogger(
        project=logger_cfg.project,
        entity=logger_cfg.entity,
        group=logger_cfg.group,
        tags=list(logger_cfg.tags),
        name=run_name,
        # A stable id per run folder: a resumed run appends to the same W&B run.
        id=run_name.replace("/", "-"),
        resume="allow",
        save_dir=str(run_dir),
        offline=logger_cfg.mode == "offline",
        config=as_dict(config),
    )


def build_trainer(trainer_cfg: TrainerConfig, run_dir: Path, logger, run: RunConfig, callbacks: list | None = None):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    checkpointing = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"),
        filename="step{step:08d}",
        auto_insert_metric_name=False,
        every_n_train_steps=run.checkpoint_every_n_steps,
        save_last=True,
        save_top_k=-1 if run.checkpoint_every_n_steps else 1,
    )
    kwargs = dict(vars(trainer_cfg)) if not hasattr(trainer_cfg, "__dataclass_fields__") else {
        k: getattr(trainer_cfg, k) for k in trainer_cfg.__dataclass_fields__
    }
    return pl.Trainer(
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=[checkpointing, *(callbacks or [])],
        **kwargs,
    )


def fit(job: str, module, datamodule, config: Any, trainer_cfg: TrainerConfig, logger_cfg: LoggerConfig,
        run: RunConfig, callbacks: list | None = None) -> FitResult:
    """Train ``module`` on ``datamodule`` in a run folder, resuming it when it already has a checkpoint."""
    import pytorch_lightning as pl

    run_dir = resolve_run_dir(job, run)
    ckpt = resume_checkpoint(run_dir, run)
    if _is_global_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    pl.seed_everything(run.seed, workers=True, verbose=False)
    logger = build_logger(logger_cfg, run_dir, run_dir.name, config)
    trainer = build_trainer(trainer_cfg, run_dir, logger, run, callbacks)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    last = run_dir / "checkpoints" / "last.ckpt"
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    wandb_dir = None
    if logger_cfg.wandb and logger_cfg.mode != "disabled":
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and getattr(experiment, "dir", None):
            wandb_dir = Path(experiment.dir).parent
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    return FitResult(
        run_dir=run_dir,
        last_checkpoint=last if last.is_file() else None,
        best_checkpoint=Path(best) if best else None,
        wandb_dir=wandb_dir,
        metrics=metrics,
    )
