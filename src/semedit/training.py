"""The one place where a LightningModule meets a Trainer: run folders, checkpoints, resume, W&B, preemption.

Every trainable job (hair transfer, direction classifier) calls ``fit(...)`` so that they all share:

- a unique run folder per run (``run.output_dir/run.name``), with the resolved config saved in it.
  Without ``run.name`` the folder is named after the W&B sweep run (agents), the SLURM job (so a
  requeued job finds its own folder again), or the date plus a random suffix. The folder is locked by
  the one process that writes it, and its config.yaml is never rewritten (``semedit.runs``);
- checkpoints every ``run.checkpoint_every_n_steps`` steps plus ``last.ckpt``; with ``run.resume=auto``
  a run whose folder already holds a checkpoint continues from the newest complete one (preemption,
  requeue, re-running the same command with the same ``run.name``), provided its result-affecting
  settings equal the stored config.yaml. Unreadable checkpoints are moved aside (``*.corrupt-<time>``),
  and every checkpoint is loaded with ``weights_only=True`` whatever the environment says;
- preemption safety: SIGTERM (what SLURM and most schedulers send first) makes Lightning stop after the
  current batch, and the ``SaveOnPreemption`` callback then writes ``last.ckpt`` from that consistent
  state on every rank; SLURM's early-warning signal (``#SBATCH --signal=USR1@90``) is handled by
  Lightning's ``SLURMEnvironment(auto_requeue=True)``, which saves an ``hpc_ckpt_<n>.ckpt`` and requeues;
  under submitit (``semedit launch``) submitit owns the requeue and calls ``save_preemption_checkpoint``;
- files shared by all ranks (run folder, config.yaml, W&B run) are written by global rank 0 only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from semedit.config import ConfigError, LoggerConfig, RunConfig, TrainerConfig, as_dict, validate_run_name
from semedit.errors import UnsafePickleError
from semedit.lightning_output import HistoryCSVLogger, ParameterSummary, progress_bar, quiet_lightning
from semedit.runs import RunFolder, open_run_folder
from semedit.threads import (
    ThreadGovernor,
    available_cpus,
    configure_threads,
    local_processes,
    user_set_threads,
)
from semedit.weights import load_weights_only

log = logging.getLogger(__name__)

# Set while ``fit`` runs so that the processes Lightning's DDP launcher starts (it re-runs the same command
# line) use the same run folder instead of inventing a new one. A user may also set it by hand.
RUN_DIR_ENV = "SEMEDIT_RUN_DIR"
# Set by `semedit launch` inside submitit jobs: "submitit" means submitit requeues the job, so Lightning's
# own SLURM auto-requeue is switched off (two requeues of one job would fight).
REQUEUE_OWNER_ENV = "SEMEDIT_REQUEUE_OWNER"
# Set by `semedit launch` for sweep-agent jobs: one SLURM task per node runs the agent, and Lightning starts
# the per-GPU processes itself (instead of expecting one SLURM task per GPU).
SLURM_LAUNCH_ENV = "SEMEDIT_SLURM_LAUNCH"

PREEMPTION_EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


@dataclass
class FitResult:
    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    wandb_dir: Path | None
    metrics: dict


# ----------------------------------------------------------------------------------------------------
# Run folders and ranks.


def _slurm_run_name(job: str) -> str | None:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{job}-slurm{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    job_id = os.environ.get("SLURM_JOB_ID")
    return f"{job}-slurm{job_id}" if job_id else None


def _sweep_run_id() -> str | None:
    """The W&B run id a sweep agent assigned to this process (the agent exports it), else None."""
    if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
        return os.environ["WANDB_RUN_ID"]
    return None


def is_global_zero() -> bool:
    """Whether this process is global rank 0, as the launcher (torchrun, SLURM, Lightning) announced it.

    Decided from the environment because it is needed before the Trainer (which knows the rank) exists.
    """
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun
        return False
    # In an agent job one SLURM task per node runs Lightning's launcher, so SLURM_PROCID is not the rank.
    if os.environ.get(SLURM_LAUNCH_ENV) != "lightning" and int(os.environ.get("SLURM_PROCID", "0")) != 0:
        return False
    # Lightning's own launcher (and hand-set multi-node runs) set NODE_RANK and LOCAL_RANK.
    return int(os.environ.get("NODE_RANK", "0")) == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


def resolve_run_dir(job: str, run: RunConfig, trainer_cfg: TrainerConfig | None = None) -> Path:
    """The run folder: from the environment (DDP children), the config, a W&B sweep, SLURM, or a fresh name.

    A fresh random name cannot be shared between separately started processes, so a multi-node run outside
    SLURM must pin ``run.name``.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited)
    sweep_run = _sweep_run_id()
    if run.name is not None:
        name = validate_run_name(run.name)
    elif sweep_run:
        name = validate_run_name(f"{job}-{sweep_run}", "the W&B run id (WANDB_RUN_ID)")
    else:
        name = _slurm_run_name(job)
        if name is not None:
            name = validate_run_name(name, "the SLURM job id")
    if name is None:
        if trainer_cfg is not None and int(trainer_cfg.num_nodes) > 1:
            raise ConfigError(
                "run.name is required for a multi-node run outside SLURM (trainer.num_nodes="
                f"{trainer_cfg.num_nodes}): every node must write to the same run folder, e.g. run.name=my-run"
            )
        name = f"{job}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return Path(run.output_dir) / name


@contextlib.contextmanager
def run_folder(job: str, run: RunConfig, trainer_cfg: TrainerConfig | None = None,
               run_dir: str | Path | None = None):
    """Resolve (or take) the run folder and export it in ``SEMEDIT_RUN_DIR`` for the processes Lightning
    starts; on exit the variable is restored, so a later run in this process picks its own folder."""
    previous = os.environ.get(RUN_DIR_ENV)
    try:
        run_dir = Path(run_dir) if run_dir is not None else resolve_run_dir(job, run, trainer_cfg)
        # Processes started later by Lightning's DDP launcher re-run the command line: they must find this folder.
        os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
        yield run_dir
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous


@contextlib.contextmanager
def job_run_folder(job: str, config: Any, run: RunConfig, trainer_cfg: TrainerConfig | None = None,
                   run_dir: str | Path | None = None):
    """``run_folder`` plus the folder rules of ``semedit.runs``: global rank 0 locks the folder, checks its
    config.yaml against ``config`` (or writes it), and the other ranks check only. Yields a ``RunFolder``."""
    with run_folder(job, run, trainer_cfg, run_dir) as path:
        with open_run_folder(path, job, config, resume=run.resume, lead=is_global_zero()) as folder:
            yield folder


def _is_readable_checkpoint(path: Path) -> bool:
    """torch.save writes a zip archive whose index is at the end: a file cut short by a kill has none."""
    try:
        with zipfile.ZipFile(path) as archive:
            return len(archive.namelist()) > 0
    except (OSError, zipfile.BadZipFile):
        return False


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, or None.

    Candidates: ``checkpoints/last.ckpt`` (periodic or written at SIGTERM/preemption), ``hpc_ckpt_<n>.ckpt``
    (Lightning's SLURM requeue signal) and the periodic ``checkpoints/step*.ckpt``; a file left incomplete
    by a kill is skipped in favour of the next newest.
    """
    candidates = [
        *(run_dir / "checkpoints").glob("*.ckpt"),
        *run_dir.glob("hpc_ckpt_*.ckpt"),
    ]
    candidates = [p for p in candidates if p.is_file()]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        if _is_readable_checkpoint(path):
            return path
        log.warning("skipping incomplete checkpoint %s", path)
    return None


def set_aside_unreadable_checkpoints(run_dir: Path) -> list[Path]:
    """Rename every checkpoint of ``run_dir`` that is not a complete archive to ``<name>.corrupt-<UTC time>``.

    Nothing is deleted, and neither the resume search nor ``make eval-identity`` picks such a file again.
    """
    moved = []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for path in [*(run_dir / "checkpoints").glob("*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]:
        if path.is_file() and not _is_readable_checkpoint(path):
            target = path.with_name(f"{path.name}.corrupt-{stamp}")
            os.replace(path, target)
            print(f"checkpoint {path} is incomplete or corrupt: moved it to {target.name}", flush=True)
            moved.append(target)
    return moved


def _restore_last(run_dir: Path, found: Path) -> None:
    """Make ``checkpoints/last.ckpt`` a copy of ``found`` (the real last state) when it is missing.

    A copy, not a link: Lightning later rewrites last.ckpt in place, which must not change ``found``.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.exists() or found == last:
        return
    tmp = last.with_name(f".last.ckpt.{os.getpid()}.tmp")
    shutil.copy2(found, tmp)
    os.replace(tmp, last)


def resume_checkpoint(run_dir: Path, run: RunConfig, lead: bool = True) -> str | None:
    if run.resume == "never":
        return None
    if run.resume == "auto":
        moved = set_aside_unreadable_checkpoints(run_dir) if lead else []
        found = find_resume_checkpoint(run_dir)
        if found is not None and lead:
            _restore_last(run_dir, found)
        if found is None and moved:
            print(f"no complete checkpoint is left in {run_dir}: training starts again from step 0 (the unreadable "
                  "files stay beside it as *.corrupt-<time>)", flush=True)
        return str(found) if found else None
    path = Path(run.resume)
    if not path.is_file():
        raise FileNotFoundError(f"run.resume={run.resume}: no such checkpoint file")
    return str(path)


class WeightsOnlyCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, but every load is ``torch.load(..., weights_only=True)``.

    The explicit ``True`` is what ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot override (torch/serialization.py
    overrides only a call that leaves ``weights_only`` unset, which Lightning's own loader does). semedit's
    checkpoints hold tensors, numbers, strings and plain containers only (hyper-parameters are saved as dicts),
    which the weights-only unpickler accepts. A file that asks for anything else is refused before any of
    it runs.
    """

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None):
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        try:
            return load_weights_only(path, "checkpoint", allowed_globals=(), map_location=map_location)
        except UnsafePickleError as err:
            raise UnsafePickleError(
                f"{err} semedit writes only weights-only checkpoints, so this file comes from elsewhere: delete "
                "it, or start over with run.resume=never") from None


# ----------------------------------------------------------------------------------------------------
# Logger, cluster environment, trainer.


def build_logger(logger_cfg: LoggerConfig, run_dir: Path, run_name: str, config: Any):
    if not logger_cfg.wandb or logger_cfg.mode == "disabled":
        return HistoryCSVLogger(save_dir=str(run_dir), name="csv", version="")
    os.environ.setdefault("WANDB_MODE", logger_cfg.mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    # A run an earlier job of this process left open (it failed or was interrupted before closing it) would be
    # reused by WandbLogger: this job's metrics would land in the other run's folder. Close it first.
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()

    # A stable id per run folder, so that a resumed run appends to the same W&B run. In a sweep the agent
    # has chosen the id already; using another one would detach the run from its sweep.
    # After run.resume=never replaced a folder's run, the new run gets its own id (-r<n>).
    replaced = sum(1 for p in run_dir.glob("replaced-*") if p.is_dir())
    run_id = _sweep_run_id() or run_name.replace("/", "-") + (f"-r{replaced}" if replaced else "")
    logger = WandbLogger(
        project=logger_cfg.project,
        entity=logger_cfg.entity,
        group=logger_cfg.group,
        tags=list(logger_cfg.tags),
        name=run_name,
        id=run_id,
        resume="allow",
        save_dir=str(run_dir),
        offline=logger_cfg.mode == "offline",
        config=as_dict(config),
    )
    # Lightning always passes anonymous=None to wandb.init (loggers/wandb.py), which makes W&B warn that "the
    # anonymous setting has no effect" on every run; None means "not set", so leave the key out.
    if getattr(logger, "_wandb_init", {}).get("anonymous", "set") is None:
        del logger._wandb_init["anonymous"]
    return logger


def cluster_environment_plugins() -> list:
    """Lightning cluster-environment plugins for this process (empty: let Lightning detect it).

    Under SLURM (srun with one task per device), Lightning's ``SLURMEnvironment`` reads ranks and the
    master address from SLURM's variables; its auto-requeue on ``SIGUSR1`` stays on unless submitit owns the
    requeue. Agent jobs run one task per node, so there Lightning's own launcher starts the processes.
    """

    if os.environ.get(SLURM_LAUNCH_ENV) == "lightning":
        return [LightningEnvironment()]
    if SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=os.environ.get(REQUEUE_OWNER_ENV) != "submitit")]
    return []


class FollowMachineLoad(Callback):
    """Between steps, an automatic thread count follows the load of the machine (``threads.ThreadGovernor``)."""

    def __init__(self, governor: ThreadGovernor):
        self.governor = governor

    def on_train_batch_start(self, *args) -> None:
        self.governor.tick()

    def on_predict_batch_start(self, *args) -> None:
        self.governor.tick()


def machine_share_callbacks(requested_threads: int, trainer_cfg: TrainerConfig) -> list[Callback]:
    """``FollowMachineLoad`` for a one-process job whose thread count is automatic, set to the CPUs the rest
    of the machine leaves free now; nothing when the user chose the count or Lightning starts several
    processes here (they share the CPUs by ``threads.local_processes``)."""
    if user_set_threads(requested_threads) or local_processes(trainer_cfg) > 1:
        return []
    governor = ThreadGovernor(available_cpus())
    governor.settle()
    return [FollowMachineLoad(governor)]


def build_predict_trainer(trainer_cfg: TrainerConfig, run_dir: Path | None, threads: int = 0, logger=False,
                          progress_bar: bool | None = None, inference_mode: bool = True,
                          use_distributed_sampler: bool = True):
    """The Trainer of a predict job (inversion, embedding shards): no checkpoints, no model summary, the
    machine-load callback. ``progress_bar`` None: the config's choice."""
    t = trainer_cfg
    return pl.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=t.precision, deterministic=t.deterministic, logger=logger,
        enable_progress_bar=t.enable_progress_bar if progress_bar is None else progress_bar,
        enable_checkpointing=False, enable_model_summary=False,
        default_root_dir=str(run_dir) if run_dir is not None else None,
        inference_mode=inference_mode, use_distributed_sampler=use_distributed_sampler,
        callbacks=machine_share_callbacks(threads, t),
    )


class _WorkIds(torch.utils.data.Dataset):
    """Work item ids (ints or tuples of ints), one per predict step, as tensors."""

    def __init__(self, ids: list):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(self.ids[i])


def predict_to_disk(trainer: pl.Trainer, module: pl.LightningModule, ids: list) -> bool:
    """``module.predict_step`` once per id of ``ids`` (in order; the trainer's sampler shares them among ranks),
    for a module that writes its results to disk and returns None. Waits until every rank's results are on
    disk; returns True on global rank zero, which then reads them."""
    loader = torch.utils.data.DataLoader(_WorkIds(ids), batch_size=1, shuffle=False)
    with quiet_lightning():  # predict_step returns None on purpose
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return trainer.is_global_zero


def build_trainer(trainer_cfg: TrainerConfig, run_dir: Path, logger, run: RunConfig, callbacks: list | None = None):
    checkpointing = ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"),
        filename="step{step:08d}",
        auto_insert_metric_name=False,
        every_n_train_steps=run.checkpoint_every_n_steps,
        save_last=True,
        save_top_k=-1 if run.checkpoint_every_n_steps else 1,
        # One file per name: a run folder belongs to one run (it is locked), so an existing last.ckpt is this
        # run's own and is replaced, never joined by last-v1.ckpt.
        enable_version_counter=False,
    )
    kwargs = dict(vars(trainer_cfg)) if not hasattr(trainer_cfg, "__dataclass_fields__") else {
        k: getattr(trainer_cfg, k) for k in trainer_cfg.__dataclass_fields__
    }
    shown = [progress_bar()] if kwargs.get("enable_progress_bar", True) else []
    return pl.Trainer(
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=[checkpointing, save_on_preemption_callback(run_dir), ParameterSummary(), *shown,
                   *machine_share_callbacks(run.threads, trainer_cfg), *(callbacks or [])],
        plugins=[*cluster_environment_plugins(), WeightsOnlyCheckpointIO()],
        enable_model_summary=False,  # Lightning's table; ParameterSummary prints one line instead
        **kwargs,
    )


# ----------------------------------------------------------------------------------------------------
# Preemption.

_ACTIVE_TRAINER = None  # the Trainer inside fit(), for save_preemption_checkpoint()


def _atomic_save(trainer, path: Path) -> None:
    """Write the trainer's checkpoint next to ``path`` and rename it into place (a kill leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
    trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, tmp)
    os.replace(tmp, path)


def save_preemption_checkpoint() -> Path | None:
    """Save ``last.ckpt`` of the running fit from this process only (no collective calls), or return None.

    For signal handlers that run on one rank only (submitit's preemption handler on global rank 0). The
    state is taken wherever the main thread was interrupted, as Lightning's own SLURM handler does; at worst
    one batch is repeated after the resume. A pure data-parallel model is identical on every rank, so rank
    0's copy is the whole state.
    """
    trainer = _ACTIVE_TRAINER
    if trainer is None or not trainer.is_global_zero:
        return None
    path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
    _atomic_save(trainer, path)
    log.warning("preemption: saved %s", path)
    return path


def _mark_wandb_preempting(trainer) -> None:
    """Tell W&B the run was preempted, not crashed: a sweep then hands its parameters to the next agent."""

    for logger in trainer.loggers:
        experiment = getattr(logger, "_experiment", None) if isinstance(logger, WandbLogger) else None
        if experiment is not None and hasattr(experiment, "mark_preempting"):
            with contextlib.suppress(Exception):  # best effort: offline runs may not support it
                experiment.mark_preempting()


class SaveOnPreemption(Callback):
    """Writes ``<run>/checkpoints/last.ckpt`` when Lightning stops the fit because of SIGTERM.

    Lightning turns SIGTERM into ``SIGTERMException`` at the end of the current batch, after telling all
    ranks, so every rank is here at the same step and the collective ``save_checkpoint`` is safe.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        path = self.run_dir / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(str(path), weights_only=False)  # the whole state: optimizer and loops too
        if trainer.is_global_zero:
            _mark_wandb_preempting(trainer)
            log.info("stopped at step %d: saved %s", trainer.global_step, path)



def save_on_preemption_callback(run_dir: Path):
    """A Lightning callback that saves ``last.ckpt`` of ``run_dir`` when SIGTERM stops the fit."""
    return SaveOnPreemption(run_dir)


class Preempted(SystemExit):
    """The fit stopped because of SIGTERM; ``last.ckpt`` holds its state. Exits with status 143."""

    def __init__(self, run_dir: Path, step: int):
        super().__init__(PREEMPTION_EXIT_CODE)
        self.run_dir = run_dir
        self.step = step

    def __str__(self) -> str:
        return (f"preempted at step {self.step}; state saved in {self.run_dir}/checkpoints/last.ckpt. "
                "Run the same command (same run.name) to resume.")


INTERRUPT_EXIT_CODE = 130  # what a shell reports for a process ended by Ctrl-C (128 + SIGINT)


class Interrupted(SystemExit):
    """The user stopped the fit with Ctrl-C (exit status 130); the message says where it resumes from."""

    def __init__(self, run_dir: Path, step: int, checkpoint: Path | None):
        super().__init__(INTERRUPT_EXIT_CODE)
        self.run_dir, self.step, self.checkpoint = run_dir, step, checkpoint

    def __str__(self) -> str:
        name = self.run_dir.name
        if self.checkpoint is None:
            return (f"interrupted at step {self.step} before any checkpoint was written: running the same command "
                    f"(run.name={name}) starts {self.run_dir} again from step 0")
        return (f"interrupted at step {self.step}; run the same command (run.name={name}) to resume {self.run_dir} "
                f"from {self.checkpoint}")


@contextlib.contextmanager
def stop_at_ctrl_c(trainer):
    """The first Ctrl-C asks Lightning to stop after the current step, exactly as SIGTERM does (all ranks stop
    at the same step and ``SaveOnPreemption`` writes ``last.ckpt``, so nothing is lost); a second Ctrl-C
    stops at once, and the run then resumes from its newest periodic checkpoint. Yields a dict whose
    "pressed" says whether Ctrl-C was pressed."""
    state = {"pressed": False}
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield state
        return

    def on_ctrl_c(signum, frame):
        if state["pressed"]:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        state["pressed"] = True
        trainer._signal_connector.received_sigterm = True  # what Lightning's own SIGTERM handler sets
        if trainer.is_global_zero:
            print("\nCtrl-C: stopping after this step and saving checkpoints/last.ckpt (Ctrl-C again stops at once)",
                  file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------------------------------------------
# fit.


def _fit_in(folder: RunFolder, module, datamodule, config: Any, trainer_cfg: TrainerConfig,
            logger_cfg: LoggerConfig, run: RunConfig, callbacks: list | None):
    global _ACTIVE_TRAINER

    run_dir = folder.path
    ckpt = resume_checkpoint(run_dir, run, lead=folder.lead)
    if folder.lead and ckpt:
        print(f"resuming {run_dir} from {ckpt}", flush=True)
    if folder.resume_entry is not None:
        folder.resume_entry["checkpoint"] = ckpt  # None: it started again from step 0
    pl.seed_everything(run.seed, workers=True, verbose=False)
    logger = build_logger(logger_cfg, run_dir, run_dir.name, config)
    trainer = build_trainer(trainer_cfg, run_dir, logger, run, callbacks)
    _ACTIVE_TRAINER = trainer
    folder.keep()  # from here on the folder holds this run's work
    ctrl_c = {"pressed": False}
    try:
        with quiet_lightning(), stop_at_ctrl_c(trainer) as ctrl_c:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    except SIGTERMException as exc:
        stop = (Interrupted(run_dir, trainer.global_step, run_dir / "checkpoints" / "last.ckpt") if ctrl_c["pressed"]
                else Preempted(run_dir, trainer.global_step))
        if trainer.is_global_zero:
            print(str(stop), file=sys.stderr if ctrl_c["pressed"] else sys.stdout, flush=True)
        raise stop from exc
    except SystemExit as exc:
        if not trainer.interrupted:
            raise
        # Lightning exits with status 1 after a KeyboardInterrupt (a second Ctrl-C, or one outside a step).
        stop = Interrupted(run_dir, trainer.global_step, find_resume_checkpoint(run_dir))
        if trainer.is_global_zero:
            print(str(stop), file=sys.stderr, flush=True)
        raise stop from exc
    return trainer, logger


def fit(job: str, module, datamodule, config: Any, trainer_cfg: TrainerConfig, logger_cfg: LoggerConfig,
        run: RunConfig, callbacks: list | None = None) -> FitResult:
    """Train ``module`` on ``datamodule`` in a run folder, resuming it when it already has a checkpoint.

    Raises ``Preempted`` (a ``SystemExit`` with status 143) when SIGTERM stopped the fit after saving.
    """
    global _ACTIVE_TRAINER
    configure_threads(run.threads, local_processes(trainer_cfg))
    try:
        with job_run_folder(job, config, run, trainer_cfg) as folder:
            run_dir = folder.path
            trainer, logger = _fit_in(folder, module, datamodule, config, trainer_cfg, logger_cfg, run, callbacks)
    finally:
        _ACTIVE_TRAINER = None
    last = run_dir / "checkpoints" / "last.ckpt"
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    wandb_dir = None
    if logger_cfg.wandb and logger_cfg.mode != "disabled":
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and getattr(experiment, "dir", None):
            wandb_dir = Path(experiment.dir).parent
            # Close the run so that its file is complete when fit() returns, not only at process exit.
            experiment.finish()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    return FitResult(
        run_dir=run_dir,
        last_checkpoint=last if last.is_file() else None,
        best_checkpoint=Path(best) if best else None,
        wandb_dir=wandb_dir,
        metrics=metrics,
    )
