"""How many CPU threads each semedit process uses.

PyTorch starts as many threads as the machine has cores, whatever share of them the process may use: two
jobs on a 2-core machine then fight over the cores (one ran 28x slower than alone). semedit chooses instead:

1. ``run.threads`` / ``threads`` in a job's config, or ``semedit --threads N`` (``SEMEDIT_THREADS``), if > 0;
2. else ``OMP_NUM_THREADS`` when set (the usual way to pin threads; PyTorch reads it too);
3. else the CPUs this process may run on (its affinity mask, the cgroup/taskset/SLURM binding; and
   ``SLURM_CPUS_PER_TASK`` when smaller), divided among the processes of this job on this node.
"""

from __future__ import annotations

import logging
import os

import torch

__all__ = ["THREADS_ENV", "available_cpus", "default_threads", "configure_threads"]

log = logging.getLogger(__name__)

THREADS_ENV = "SEMEDIT_THREADS"  # set by `semedit --threads N`; inherited by the processes a job starts


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by SLURM_CPUS_PER_TASK when set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.strip().isdigit() and int(slurm) > 0:
        cpus = min(cpus, int(slurm))
    return max(1, cpus)


def default_threads(local_processes: int = 1) -> int:
    """The automatic thread count: OMP_NUM_THREADS if set, else available CPUs / local processes (>= 1)."""
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    return max(1, available_cpus() // max(1, int(local_processes)))


def configure_threads(requested: int = 0, local_processes: int = 1) -> int:
    """Apply the thread count (``requested`` > 0, else ``SEMEDIT_THREADS``, else automatic); returns it."""
    n = int(requested or 0)
    if n <= 0:
        env = os.environ.get(THREADS_ENV, "").strip()
        n = int(env) if env.isdigit() and int(env) > 0 else default_threads(local_processes)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    log.debug("using %d CPU threads", n)
    return n


def local_processes(trainer_cfg) -> int:
    """Processes one node runs for a Trainer config: Lightning's launcher starts one per device.

    Under SLURM with one task per device each task is one process with its own CPU share (SLURM_CPUS_PER_TASK),
    so nothing is divided there.
    """
    if os.environ.get("SLURM_NTASKS") and os.environ.get("SEMEDIT_SLURM_LAUNCH") != "lightning":
        return 1
    devices = getattr(trainer_cfg, "devices", 1)
    if isinstance(devices, (list, tuple)):
        return max(1, len(devices))
    if isinstance(devices, str):
        text = devices.strip()
        if text.isdigit():
            return max(1, int(text))
        if "," in text:
            return max(1, len([p for p in text.split(",") if p.strip()]))
        if text in ("auto", "-1"):
            devices = -1
    if isinstance(devices, int) and devices > 0:
        return devices
    accelerator = str(getattr(trainer_cfg, "accelerator", "cpu"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 1
