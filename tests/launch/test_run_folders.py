"""Run-folder naming and checkpoint discovery of semedit.training (no training)."""

from __future__ import annotations

import os

import pytest
import torch

from semedit.config import ConfigError, TrainerConfig
from semedit.training import RUN_DIR_ENV, RunConfig, find_resume_checkpoint, is_global_zero, resolve_run_dir

LAUNCH_VARS = ["SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "WANDB_SWEEP_ID",
               "WANDB_RUN_ID", "RANK", "NODE_RANK", "LOCAL_RANK", RUN_DIR_ENV, "SEMEDIT_SLURM_LAUNCH"]


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch):
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    yield


def test_run_names_from_config_sweep_slurm_and_fresh(tmp_path, monkeypatch):
    run = RunConfig(output_dir=str(tmp_path))
    a = resolve_run_dir("hair", run)
    b = resolve_run_dir("hair", run)
    assert a != b and a.name.startswith("hair-")  # fresh runs never share a folder
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert resolve_run_dir("hair", run).name == "hair-slurm77"  # a requeued job finds its folder again
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert resolve_run_dir("hair", run).name == "hair-slurm70_3"
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw")
    monkeypatch.setenv("WANDB_RUN_ID", "r1")
    assert resolve_run_dir("hair", run).name == "hair-r1"  # each sweep trial of an agent job: its own folder
    assert resolve_run_dir("hair", RunConfig(output_dir=str(tmp_path), name="pinned")).name == "pinned"


def test_multi_node_outside_slurm_needs_a_pinned_name(tmp_path):
    with pytest.raises(ConfigError, match="run.name is required"):
        resolve_run_dir("hair", RunConfig(output_dir=str(tmp_path)), TrainerConfig(num_nodes=2))


def test_rank_zero_detection(monkeypatch):
    assert is_global_zero()
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert not is_global_zero()
    monkeypatch.setenv("SEMEDIT_SLURM_LAUNCH", "lightning")  # agent jobs: SLURM tasks are not ranks
    assert is_global_zero()
    monkeypatch.setenv("NODE_RANK", "1")
    assert not is_global_zero()


def test_resume_picks_the_newest_complete_checkpoint(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    assert find_resume_checkpoint(tmp_path) is None
    torch.save({"global_step": 4}, ckpts / "step00000004.ckpt")
    torch.save({"global_step": 2}, ckpts / "last.ckpt")
    torch.save({"global_step": 6}, tmp_path / "hpc_ckpt_1.ckpt")  # Lightning's SLURM requeue checkpoint
    for age, name in [(30, "checkpoints/last.ckpt"), (20, "checkpoints/step00000004.ckpt"), (10, "hpc_ckpt_1.ckpt")]:
        t = os.stat(tmp_path / name).st_mtime - age
        os.utime(tmp_path / name, (t, t))
    assert find_resume_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"
    # A checkpoint cut short by a kill (newest, but truncated) is skipped.
    data = (ckpts / "step00000004.ckpt").read_bytes()
    (ckpts / "step00000008.ckpt").write_bytes(data[: len(data) // 2])
    assert find_resume_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"
