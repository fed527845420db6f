"""How many CPU threads each semedit process uses.

PyTorch starts as many threads as the machine has cores, whatever share of them the process may use: two
jobs on a 2-core machine then fight over the cores (one ran 28x slower than alone). semedit chooses instead:

1. ``run.threads`` / ``threads`` in a job's config, or ``semedit --threads N`` (``SEMEDIT_THREADS``), if > 0;
2. else ``OMP_NUM_THREADS`` when set (the usual way to pin threads; PyTorch reads it too);
3. else the CPUs this process may run on (its affinity mask, the cgroup/taskset/SLURM binding; and
   ``SLURM_CPUS_PER_TASK`` when smaller), divided among the processes of this job on this node.

The automatic count also follows what the rest of the machine is doing (``ThreadGovernor``): a job started
next to another busy job, or joined by one, uses only the CPUs the others leave free, and takes them back
when they finish. Two default jobs on 2 cores then run 1 thread each instead of 2 + 2 fighting over the
cores (benchmarks/threads.py). Counts set by the user (1. and 2.) are never changed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import torch

__all__ = ["THREADS_ENV", "available_cpus", "default_threads", "configure_threads", "user_set_threads",
           "CpuSampler", "ThreadGovernor"]

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


def user_set_threads(requested: int = 0) -> bool:
    """Whether the thread count is the user's (config, --threads, OMP_NUM_THREADS) rather than automatic."""
    env = os.environ.get(THREADS_ENV, "").strip()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(requested or 0) > 0 or (env.isdigit() and int(env) > 0) or (omp.isdigit() and int(omp) > 0)


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


# ----------------------------------------------------------------------------------------------------
# Following the load of the machine.


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class CpuSampler:
    """Cumulative CPU time, in CPU-seconds: of this process (all its threads) and of every process on the
    CPUs it may use (``/proc/stat``, per CPU line). ``read() -> (own, everyone, wall)``; None off Linux."""

    def __init__(self, cpus: set[int] | None = None, reader: Callable[[str], str] = _read):
        try:
            self.cpus = cpus if cpus is not None else set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self.cpus = set(range(os.cpu_count() or 1))
        self.reader = reader
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def read(self) -> tuple[float, float, float] | None:
        try:
            own_fields = self.reader("/proc/self/stat").rsplit(")", 1)[1].split()
            own = (int(own_fields[11]) + int(own_fields[12])) / self.tick  # utime + stime
            busy = 0
            for line in self.reader("/proc/stat").splitlines():
                name, *values = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cpus:
                    v = [int(x) for x in values[:8]]
                    busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
            return own, busy / self.tick, time.monotonic()
        except (OSError, ValueError, IndexError):
            return None


class ThreadGovernor:
    """Keeps an automatic thread count to the CPUs the rest of the machine leaves free.

    ``tick()`` (called between steps; it acts at most every ``interval`` seconds) compares the CPU time used
    on this process's CPUs by everyone with its own: the difference is what other processes use. The thread
    count becomes the CPUs left free (at least 1, at most ``max_threads``). A small margin keeps occasional
    background activity (a shell, a logger) from taking a thread away.
    """

    MARGIN = 0.3  # CPUs of other activity that do not count (semedit's choice)

    def __init__(self, max_threads: int, interval: float = 2.0, sampler: CpuSampler | None = None):
        self.max_threads = max(1, int(max_threads))
        self.interval = float(interval)
        self.sampler = sampler or CpuSampler()
        self.last = self.sampler.read()
        self.threads = torch.get_num_threads()

    def others(self, previous, current) -> float:
        """CPUs used by other processes between two samples."""
        wall = current[2] - previous[2]
        return max(0.0, ((current[1] - previous[1]) - (current[0] - previous[0])) / wall) if wall > 0 else 0.0

    def tick(self) -> int:
        now = self.sampler.read()
        if now is None or self.last is None:
            return self.threads
        if now[2] - self.last[2] < self.interval:
            return self.threads
        free = len(self.sampler.cpus) - max(0.0, self.others(self.last, now) - self.MARGIN)
        self.last = now
        target = max(1, min(self.max_threads, int(free + 0.5)))
        if target != self.threads:
            log.info("other processes use %.1f CPUs: %d -> %d threads", len(self.sampler.cpus) - free,
                     self.threads, target)
            torch.set_num_threads(target)
            self.threads = target
        return self.threads

    def settle(self, seconds: float = 0.3) -> int:
        """Measure for ``seconds`` now and apply (a job's start: the load it finds)."""
        interval, self.interval = self.interval, min(self.interval, seconds)
        time.sleep(seconds)
        try:
            return self.tick()
        finally:
            self.interval = interval


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
