"""`semedit launch`: submit training runs or W&B sweep agents to SLURM (through submitit); `semedit sweep`.

    semedit launch --cluster slurm train hair --config configs/hair/ffhq1024.yaml optim.lr=1e-4
    semedit launch --cluster slurm --set nodes=2 --set gpus_per_node=8 train hair ...
    semedit launch --cluster slurm train hair --sweep configs/sweeps/hair.yaml --trials 16   # offline sweep
    semedit launch --cluster slurm agent ENTITY/PROJECT/SWEEP_ID --count 5 --agents 8        # 8 agents, array
    semedit launch --cluster slurm --dry-run train hair ...   # print the sbatch script, submit nothing
    semedit sweep check configs/sweeps/hair.yaml             # parameters are valid config keys and values

Partition, nodes, GPUs per node, time and the job-array width come from ``configs/cluster/<name>.yaml``
(``ClusterConfig``) plus ``--set key=value``. A training job runs one SLURM task per GPU (``srun`` with
``--ntasks-per-node`` = GPUs per node); Lightning's ``SLURMEnvironment`` reads ranks and the master address
from SLURM, and the launcher sets ``trainer.devices``/``trainer.num_nodes`` to match the allocation.

Preemption: the job is submitted with ``--requeue`` and ``--signal=USR2@signal_delay_s``. On that signal
submitit asks the task (a ``Checkpointable``) for a checkpoint: it saves ``last.ckpt`` and resubmits
itself; the requeued job keeps its SLURM job id, hence its run folder, and ``run.resume=auto`` continues
from the checkpoint. SIGTERM (preemption by a higher-priority job) makes Lightning stop after the current
batch and save ``last.ckpt`` on all ranks (``semedit.training``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit  # a runtime dependency: `semedit launch` submits through it

from semedit.cli.commands import add_command
from semedit.cli.common import CLIError
from semedit.cli.sweeps import check_sweep, expand_sweep, load_sweep
from semedit.config import load_config, packaged_config
from semedit.jobs import get_job, split_items
from semedit.training import REQUEUE_OWNER_ENV, SLURM_LAUNCH_ENV, FitResult, save_preemption_checkpoint

__all__ = [
    "ClusterConfig",
    "TrainTask",
    "AgentTask",
    "load_cluster_config",
    "trainer_overrides",
    "slurm_parameters",
    "render_sbatch",
    "make_executor",
    "register",
]

CLUSTER_DIR = packaged_config("cluster/slurm.yaml").parent  # the packaged cluster configs
EXECUTORS = ("slurm", "local", "debug")
# Set by the launcher; a user override would contradict the allocation SLURM grants.
ALLOCATION_KEYS = ("trainer.devices", "trainer.num_nodes", "trainer.accelerator")


@dataclass
class ClusterConfig:
    """Where and how `semedit launch` runs jobs (configs/cluster/*.yaml; change with --set key=value)."""

    executor: str = "slurm"  # "slurm" (sbatch via submitit) | "local" (subprocess) | "debug" (in-process)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None  # e.g. "a100|h100"
    nodes: int = 1
    gpus_per_node: int = 1  # 0: a CPU job with cpu_processes_per_node processes per node
    cpu_processes_per_node: int = 1
    cpus_per_task: int = 8  # CPU cores per process (data loading)
    mem_gb: int | None = None  # per node; None: the partition's default
    time_min: int = 24 * 60
    array_parallelism: int = 32  # at most this many array tasks (agents, offline trials) at once
    signal_delay_s: int = 120  # preemption warning before the time limit: time to save a checkpoint
    max_requeues: int = 10  # submitit resubmits a job that reached its time limit at most this often
    job_name: str = "semedit"
    log_dir: str = "runs/slurm"  # submitit's folder: sbatch scripts, logs, pickled tasks and results
    # Shell lines run before srun: modules, the virtual environment, offline caches.
    setup: list[str] = field(default_factory=lambda: ["source .venv/bin/activate"])
    # Environment of every task as KEY=VALUE, e.g. WANDB_MODE=offline on clusters without network.
    env: list[str] = field(default_factory=lambda: ["WANDB_MODE=offline"])
    # More #SBATCH options as option=value, or a bare option for a flag: ["exclude=node[01-02]", "exclusive"].
    additional: list[str] = field(default_factory=list)


def load_cluster_config(name_or_path: str, overrides: list[str] | None = None) -> ClusterConfig:
    """``configs/cluster/<name>.yaml`` (or a YAML path) plus ``key=value`` overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CLUSTER_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CLUSTER_DIR.glob("*.yaml"))
        raise CLIError(f"cluster config not found: {path}; known clusters: {', '.join(known)} "
                       f"(or give a YAML path)")
    cluster = load_config(ClusterConfig, path, overrides)
    if cluster.executor not in EXECUTORS:
        raise CLIError(f"cluster executor must be one of {', '.join(EXECUTORS)}, got '{cluster.executor}'")
    if cluster.nodes < 1 or cluster.gpus_per_node < 0 or cluster.cpu_processes_per_node < 1:
        raise CLIError("cluster: nodes and cpu_processes_per_node must be >= 1, gpus_per_node >= 0")
    if cluster.executor != "slurm" and cluster.nodes > 1:
        raise CLIError(f"the {cluster.executor} executor runs on this machine only; set nodes=1")
    return cluster


def processes_per_node(cluster: ClusterConfig) -> int:
    return cluster.gpus_per_node or cluster.cpu_processes_per_node


def trainer_overrides(cluster: ClusterConfig) -> list[str]:
    """Trainer settings that match the allocation (Lightning checks them against SLURM's variables)."""
    per_node = processes_per_node(cluster)
    world = per_node * cluster.nodes
    return [
        f"trainer.accelerator={'gpu' if cluster.gpus_per_node else 'cpu'}",
        f"trainer.devices={per_node}",
        f"trainer.num_nodes={cluster.nodes}",
        f"trainer.strategy={'ddp' if world > 1 else 'auto'}",
    ]


def _pairs(items: list[str], what: str, flags: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not key or (not sep and not flags):
            raise CLIError(f"cluster {what}: expected KEY=VALUE, got '{item}'")
        out[key.strip()] = value if sep else True
    return out


def _task_env(cluster: ClusterConfig) -> dict[str, str]:
    return _pairs(cluster.env, "env")


def slurm_parameters(cluster: ClusterConfig, tasks_per_node: int, comment_lines: list[str] = ()) -> dict[str, Any]:
    """sbatch options in submitit's SlurmExecutor spelling (the same dict renders --dry-run and submits)."""
    params: dict[str, Any] = {
        "job_name": cluster.job_name,
        "nodes": cluster.nodes,
        "ntasks_per_node": tasks_per_node,
        "cpus_per_task": cluster.cpus_per_task,
        "time": cluster.time_min,
        "signal_delay_s": cluster.signal_delay_s,
        "array_parallelism": cluster.array_parallelism,
        "stderr_to_stdout": True,
        # Requeued jobs keep their job id, and with it their run folder (semedit.training).
        "additional_parameters": {"requeue": True, **_pairs(cluster.additional, "additional", flags=True)},
        "setup": [*(f"# {line}" for line in comment_lines), *cluster.setup,
                  *(f"export {k}={shlex.quote(v)}" for k, v in _task_env(cluster).items())],
    }
    if cluster.gpus_per_node:
        params["gpus_per_node"] = cluster.gpus_per_node
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(cluster, key):
            params[key] = getattr(cluster, key)
    if cluster.mem_gb:
        params["mem"] = f"{cluster.mem_gb}GB"
    return params


def render_sbatch(cluster: ClusterConfig, tasks_per_node: int, array_size: int = 1,
                  comment_lines: list[str] = ()) -> str:
    """The sbatch script submitit would submit for these settings (with ``array_size`` > 1: a job array)."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(cluster.log_dir).resolve() / "%j"
    params = slurm_parameters(cluster, tasks_per_node, comment_lines)
    if array_size > 1:
        params["map_count"] = array_size
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, **params)


def make_executor(cluster: ClusterConfig, tasks_per_node: int, comment_lines: list[str] = ()):
    """A submitit executor for the cluster config (SlurmExecutor, LocalExecutor or DebugExecutor)."""
    folder = Path(cluster.log_dir) / "%j"
    if cluster.executor == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=cluster.max_requeues)
        executor.update_parameters(**slurm_parameters(cluster, tasks_per_node, comment_lines))
        return executor
    if cluster.executor == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=cluster.max_requeues)
    else:
        executor = submitit.DebugExecutor(folder=folder)
    executor.update_parameters(timeout_min=cluster.time_min, name=cluster.job_name,
                               gpus_per_node=cluster.gpus_per_node, tasks_per_node=1, nodes=1)
    return executor


# ----------------------------------------------------------------------------------------------------
# What each job runs (pickled by submitit, so plain module-level classes).


class TrainTask(submitit.helpers.Checkpointable):
    """`semedit train JOB --config CONFIG OVERRIDES` inside a submitit job, once per SLURM task (rank)."""

    def __init__(self, job: str, config: str | None, overrides: list[str], env: dict[str, str] | None = None):
        self.job = job
        self.config = config
        self.overrides = list(overrides)
        self.env = dict(env or {})

    def command_line(self) -> str:
        config = ["--config", self.config] if self.config else []
        return shlex.join(["semedit", "train", self.job, *config, *self.overrides])

    def __call__(self) -> dict:
        os.environ.update(self.env)
        os.environ[REQUEUE_OWNER_ENV] = "submitit"
        job = get_job(self.job)
        inputs, overrides = split_items(job, self.overrides)
        result = job.run(job.load_config(self.config, overrides), inputs)
        if isinstance(result, FitResult):
            return {
                "run_dir": str(result.run_dir),
                "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
                "metrics": result.metrics,
            }
        return {"job": self.job, "result": repr(result)}

    def checkpoint(self, *args: Any, **kwargs: Any):
        # Called by submitit on global rank 0 when the job is about to be preempted or time out.
        save_preemption_checkpoint()
        return super().checkpoint(*args, **kwargs)


class AgentTask(submitit.helpers.Checkpointable):
    """`wandb agent --count N SWEEP_ID` inside a submitit job (one task; trials start their own DDP)."""

    def __init__(self, sweep_id: str, count: int | None, env: dict[str, str] | None = None):
        self.sweep_id = sweep_id
        self.count = count
        self.env = dict(env or {})

    def command(self) -> list[str]:
        wandb = Path(sys.executable).with_name("wandb")
        count = ["--count", str(self.count)] if self.count else []
        return [str(wandb) if wandb.is_file() else "wandb", "agent", *count, self.sweep_id]

    def __call__(self) -> int:
        env = {**os.environ, **self.env, SLURM_LAUNCH_ENV: "lightning"}
        # Trials run `semedit ...`: make the environment's scripts findable by the agent.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(self.command(), env=env, check=True).returncode


# ----------------------------------------------------------------------------------------------------
# CLI.


def _train_tasks(args: argparse.Namespace, cluster: ClusterConfig) -> list[TrainTask]:
    job = get_job(args.job)
    inputs, overrides = split_items(job, list(args.overrides))
    clash = [o for o in overrides if o.lstrip("-").split("=", 1)[0] in ALLOCATION_KEYS]
    if clash:
        raise CLIError(f"{', '.join(clash)}: set by the cluster allocation; change nodes / gpus_per_node "
                         "with --set instead")
    trials: list[list[str]] = [[]]
    if args.sweep:
        spec = load_sweep(args.sweep)
        if args.job not in spec.command[:2]:
            raise CLIError(f"{args.sweep} sweeps `semedit {' '.join(spec.command[:2])}`, not `train {args.job}`")
        check_sweep(spec)
        trials = expand_sweep(spec, args.trials, seed=args.sweep_seed)
        group = f"logger.group={Path(args.sweep).stem}"
        trials = [[group, *trial] for trial in trials]
    tasks = []
    for trial in trials:
        task_overrides = [*overrides, *trial, *trainer_overrides(cluster)]
        job.load_config(args.config, task_overrides)  # fail here, not on the cluster
        tasks.append(TrainTask(args.job, args.config, [*inputs, *task_overrides], _task_env(cluster)))
    return tasks


def cmd_launch(args: argparse.Namespace) -> int:
    cluster = load_cluster_config(args.cluster, args.set or [])
    if args.what == "train":
        tasks = _train_tasks(args, cluster)
        tasks_per_node = processes_per_node(cluster)
        lines = [f"task {i}: {task.command_line()}" for i, task in enumerate(tasks)]
    else:
        if cluster.nodes != 1:
            raise CLIError("sweep agents run on one node each (nodes=1); use --agents for more agents")
        tasks = [AgentTask(args.sweep_id, args.count, _task_env(cluster)) for _ in range(args.agents)]
        tasks_per_node = 1  # one agent per job; its trials start one process per GPU themselves
        lines = [f"task {i}: {shlex.join(task.command())}" for i, task in enumerate(tasks)]
    if args.dry_run:
        print(render_sbatch(cluster, tasks_per_node, len(tasks), lines), end="")
        return 0
    executor = make_executor(cluster, tasks_per_node, lines)
    if len(tasks) == 1:
        jobs = [executor.submit(tasks[0])]
    else:
        with executor.batch():  # one SLURM job array
            jobs = [executor.submit(task) for task in tasks]
    for job, line in zip(jobs, lines, strict=True):
        print(f"submitted {job.job_id}: {line.split(': ', 1)[1]}")
    print(f"logs: {Path(cluster.log_dir).resolve()}/<job id>/")
    if args.wait:
        failed = 0
        for job in jobs:
            try:
                print(f"{job.job_id}: {job.result()}")
            except Exception as err:  # noqa: BLE001 - report every job, then fail
                failed += 1
                print(f"{job.job_id}: failed: {err}", file=sys.stderr)
        return 1 if failed else 0
    return 0


def cmd_sweep_check(args: argparse.Namespace) -> int:
    spec = load_sweep(args.sweep)
    checked = check_sweep(spec)
    print(f"{spec.path}: {spec.raw['method']} sweep of `semedit {' '.join(spec.command)}` "
          f"(config {spec.config_path})")
    for name, values in checked.items():
        print(f"  {name}: {spec.parameters[name]}  (checked: {', '.join(map(str, values))})")
    print(f"offline (no W&B server): {offline_expand_command(spec, args.sweep)}")
    return 0


def offline_expand_command(spec, path: str) -> str:
    """The `semedit sweep expand` command that prints this sweep's trials as plain runs: a grid expands whole,
    random and bayes sweeps need a number of draws (bayes needs W&B's server; offline its trials are random)."""
    trials = [] if spec.raw["method"] == "grid" else ["--trials", str(OFFLINE_TRIALS)]
    return shlex.join(["semedit", "sweep", "expand", str(path), *trials])


OFFLINE_TRIALS = 16  # random draws suggested for an offline random/bayes sweep (semedit's choice)


def cmd_sweep_expand(args: argparse.Namespace) -> int:
    spec = load_sweep(args.sweep)
    check_sweep(spec)
    for trial in expand_sweep(spec, args.trials, seed=args.seed):
        print(shlex.join(["semedit", *spec.command, *trial]))
    return 0


def register(subparsers) -> None:
    p = add_command(subparsers, "launch",
        description="Submit `semedit train` runs or `wandb agent`s as SLURM jobs. Resources come from "
                    "configs/cluster/<name>.yaml plus --set overrides; --dry-run prints the sbatch script.",
    )
    p.add_argument("--cluster", default="slurm", help="configs/cluster/<name>.yaml or a YAML path (default: slurm)")
    p.add_argument("--set", "-s", action="append", metavar="KEY=VALUE",
                   help="cluster config override, e.g. --set partition=a100 --set nodes=2; repeatable")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script instead of submitting")
    p.add_argument("--wait", action="store_true", help="wait for the jobs and print their results")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    def add_launch_flags(sub) -> None:
        # The same flags after the job (`launch train hair --dry-run`); SUPPRESS keeps a flag given before
        # the job from being reset by the sub-command's default.
        sub.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--wait", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    t = what.add_parser("train", help="a training run (or one run per trial of an offline sweep)")
    t.add_argument("job", help="a registered job, as in `semedit train JOB`")
    t.add_argument("--config", default=None, help="YAML config (default: the job's tiny config)")
    t.add_argument("--sweep", default=None, help="a sweep file: one array task per trial, without W&B's server")
    t.add_argument("--trials", type=int, default=None, help="trials of a random sweep (grid: all by default)")
    t.add_argument("--sweep-seed", type=int, default=0, help="seed of the random trials")
    t.add_argument("overrides", nargs="*", help="key=value overrides of the job config (and inputs of jobs that take photos)")
    add_launch_flags(t)

    a = what.add_parser("agent", help="W&B sweep agents, one per array task (needs network to W&B)")
    a.add_argument("sweep_id", help="ENTITY/PROJECT/SWEEP_ID as printed by `wandb sweep`")
    a.add_argument("--count", type=int, default=None, help="trials per agent (default: until the sweep ends)")
    a.add_argument("--agents", type=int, default=1, help="number of agents (array tasks)")
    add_launch_flags(a)
    p.set_defaults(func=cmd_launch)

    s = add_command(subparsers, "sweep",
        description="`check`: every parameter is a config key and loads with its values. `expand`: the "
                    "trials as `semedit` commands (grid: all; random: --trials draws), for running offline.",
    )
    sub = s.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a sweep file")
    c.add_argument("sweep", help="configs/sweeps/<name>.yaml")
    c.set_defaults(func=cmd_sweep_check)
    e = sub.add_parser("expand", help="print the trials as semedit commands")
    e.add_argument("sweep", help="configs/sweeps/<name>.yaml")
    e.add_argument("--trials", type=int, default=None, help="number of trials (random sweeps; grid: all)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    e.set_defaults(func=cmd_sweep_expand)
