"""The thread count of a semedit process: never more threads than the CPUs it may use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from semedit import threads
from semedit.config import ConfigError, TrainerConfig, load_config, packaged_config
from semedit.directions.config import DirectionJobConfig


@pytest.fixture(autouse=True)
def _keep_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "SLURM_NTASKS", threads.THREADS_ENV):
        monkeypatch.delenv(var, raising=False)
    yield
    torch.set_num_threads(before)


def test_default_follows_affinity_slurm_and_local_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))  # e.g. taskset / cgroup: 8 of 64
    assert threads.default_threads() == 8
    assert threads.default_threads(local_processes=2) == 4  # two DDP processes share the 8
    assert threads.default_threads(local_processes=16) == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert threads.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # set by the user: it wins
    assert threads.default_threads(local_processes=4) == 2


def test_configure_threads_applies_config_then_flag_then_default(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert threads.configure_threads(0) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv(threads.THREADS_ENV, "1")  # semedit --threads 1
    assert threads.configure_threads(0) == 1 and torch.get_num_threads() == 1
    assert threads.configure_threads(3) == 3 and torch.get_num_threads() == 3  # run.threads wins


def test_local_processes_of_a_trainer_config(monkeypatch):
    assert threads.local_processes(TrainerConfig(devices=4)) == 4
    assert threads.local_processes(TrainerConfig(devices=[0, 1])) == 2
    assert threads.local_processes(TrainerConfig(devices="0,1,2")) == 3
    monkeypatch.setenv("SLURM_NTASKS", "8")  # srun: one task per device, each with its own CPUs
    assert threads.local_processes(TrainerConfig(devices=4)) == 1


def test_threads_in_config_and_on_the_command_line():
    cfg = load_config(DirectionJobConfig, packaged_config("direction/tiny.yaml"), ["run.threads=2"])
    assert cfg.run.threads == 2
    with pytest.raises(ConfigError, match="run.threads"):
        load_config(DirectionJobConfig, packaged_config("direction/tiny.yaml"), ["run.threads=-1"])
    code = ("import torch, sys; from semedit.cli import main; main(['--threads', '1', 'config', 'show', 'direction']);"
            " print('threads', torch.get_num_threads(), file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "threads 1" in out.stderr


@pytest.mark.parametrize("name", ["hair/tiny.yaml", "direction/tiny.yaml", "chunkygan/tiny.yaml",
                                  "hair/eval_identity_tiny.yaml", "hair/direction_tiny.yaml"])
def test_tiny_configs_show_progress_bars(name):
    text = yaml.safe_load(packaged_config(name).read_text())
    assert text["trainer"]["enable_progress_bar"] is True


class _FakeProc:
    """/proc/self/stat and /proc/stat of a 2-CPU machine, advanced by hand (clock ticks of 1/100 s)."""

    def __init__(self):
        self.own = 0  # this process's utime + stime, ticks
        self.busy = [0, 0]  # busy ticks of cpu0 and cpu1 (every process)

    def advance(self, own_cpus: float, other_cpus: float, seconds: float = 1.0) -> None:
        self.own += int(own_cpus * seconds * 100)
        for i, share in enumerate([(own_cpus + other_cpus) / 2] * 2):
            self.busy[i] += int(share * seconds * 100)

    def read(self, path: str) -> str:
        if path == "/proc/self/stat":
            return "42 (python3 x) R " + " ".join(["0"] * 10) + f" {self.own} 0 0 0"
        lines = ["cpu  0 0 0 0 0 0 0 0"] + [f"cpu{i} {b} 0 0 1000 0 0 0 0" for i, b in enumerate(self.busy)]
        return "\n".join(lines) + "\nintr 0\n"


def test_the_automatic_thread_count_follows_the_load_of_the_machine(monkeypatch):
    proc, clock = _FakeProc(), [100.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    sampler = threads.CpuSampler(cpus={0, 1}, reader=proc.read)
    sampler.tick = 100
    torch.set_num_threads(2)
    governor = threads.ThreadGovernor(max_threads=2, interval=2.0, sampler=sampler)

    def wait(seconds: float, own: float, others: float) -> int:
        proc.advance(own, others, seconds)
        clock[0] += seconds
        return governor.tick()

    assert wait(2.5, own=2.0, others=0.0) == 2  # alone: every CPU
    assert wait(1.0, own=1.0, others=1.0) == 2  # not yet: it looks at most every 2 s
    assert wait(1.5, own=1.0, others=2.0) == 1 and torch.get_num_threads() == 1  # another job took the CPUs
    assert wait(2.5, own=1.0, others=1.0) == 1  # sharing: one CPU each
    assert wait(2.5, own=1.0, others=0.2) == 2 and torch.get_num_threads() == 2  # the other job ended
    assert wait(2.5, own=2.0, others=0.25) == 2  # background activity below the margin changes nothing


def test_the_load_is_followed_only_where_the_thread_count_is_automatic(monkeypatch):
    from semedit.config import TrainerConfig
    from semedit.training import FollowMachineLoad, machine_share_callbacks

    monkeypatch.setattr(threads.ThreadGovernor, "settle", lambda self, seconds=0.3: self.threads)
    single = TrainerConfig(devices=1)
    assert [type(c) for c in machine_share_callbacks(0, single)] == [FollowMachineLoad]
    assert machine_share_callbacks(2, single) == []  # run.threads=2
    assert machine_share_callbacks(0, TrainerConfig(devices=2)) == []  # DDP processes share by division
    monkeypatch.setenv(threads.THREADS_ENV, "1")  # semedit --threads 1
    assert machine_share_callbacks(0, single) == []
    monkeypatch.delenv(threads.THREADS_ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert machine_share_callbacks(0, single) == []
