"""The thread count of a semedit process (issue 12): never more threads than the CPUs it may use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from semedit import threads
from semedit.config import ConfigError, TrainerConfig, load_config, packaged_config
from semedit.directions.train import Config


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
    cfg = load_config(Config, packaged_config("direction/tiny.yaml"), ["run.threads=2"])
    assert cfg.run.threads == 2
    with pytest.raises(ConfigError, match="run.threads"):
        load_config(Config, packaged_config("direction/tiny.yaml"), ["run.threads=-1"])
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
