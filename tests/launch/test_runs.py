"""Runs of the cheapest trainable job (`semedit train direction`, shrunk) the way launchers start them:
a W&B agent's key=value arguments, submitit's local executor, two simulated SLURM nodes, and a
training process killed mid-epoch and started again with the same command."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from semedit.cli import main
from semedit.config import load_config
from semedit.directions.config import DirectionJobConfig
from semedit.edits import load_direction
from semedit.training import find_resume_checkpoint
from tests.launch.helpers import PYTHON, REPO, TINY_DIRECTION, clean_env, free_port


def _ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_agent_style_invocation_trains_the_tiny_config(tmp_path, monkeypatch, capsys):
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    # The arguments exactly as `wandb agent` renders ${args_no_hyphens} for one trial of the sweep file.
    trial = {"direction.loss": {"value": "logistic"}, "direction.weight_decay": {"value": 0.01},
             "direction.space": {"value": "z"}}
    args = create_sweep_command_args({"args": trial})["args_no_hyphens"]
    assert args == ["direction.loss=logistic", "direction.weight_decay=0.01", "direction.space=z"]
    for key, value in clean_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep42")
    monkeypatch.setenv("WANDB_RUN_ID", "trial7")
    argv = ["train", "direction", *TINY_DIRECTION, "trainer.max_epochs=1", f"run.output_dir={tmp_path}",
            "logger.wandb=true", *args]
    assert main(argv) == 0
    run_dir = tmp_path / "direction-trial7"  # named after the agent's run id: one folder per trial
    saved = load_config(DirectionJobConfig, run_dir / "config.yaml")
    assert (saved.direction.loss, saved.direction.weight_decay, saved.direction.space) == ("logistic", 0.01, "z")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "direction.safetensors").is_file()
    offline_runs = list((run_dir / "wandb").glob("offline-run-*-trial7"))
    assert offline_runs, "the W&B run must use the id the agent assigned"
    assert f"wandb sync '{offline_runs[0]}'" in capsys.readouterr().out  # quoted: pastes as one word


def test_submitit_local_executor_runs_a_tiny_training_job(tmp_path, monkeypatch, capsys):
    for key, value in clean_env().items():
        monkeypatch.setenv(key, value)
    rc = main(["launch", "--cluster", "local", "--set", f"log_dir={tmp_path / 'submitit'}", "--wait",
               "train", "direction", *TINY_DIRECTION, "trainer.max_epochs=1", f"run.output_dir={tmp_path}",
               "run.name=local"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "submitted" in out and "'last_checkpoint':" in out
    assert (tmp_path / "local" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "local" / "config.yaml").is_file()
    logs = list((tmp_path / "submitit").glob("*/*_log.out"))
    assert logs, "submitit keeps the job's log"


def _slurm_env(rank: int, nodes: int, port: int, weights_dir: Path) -> dict[str, str]:
    """What srun exports to task `rank` of a job with one task on each of `nodes` nodes."""
    return clean_env(
        SLURM_JOB_ID="4242", SLURM_JOB_NAME="semedit", SLURM_NTASKS=str(nodes), SLURM_NTASKS_PER_NODE="1",
        SLURM_NNODES=str(nodes), SLURM_NODEID=str(rank), SLURM_PROCID=str(rank), SLURM_LOCALID="0",
        SLURM_NODELIST="127.0.0.1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        RANK_WEIGHTS_DIR=str(weights_dir),
    )


@pytest.mark.multiprocess
def test_two_simulated_slurm_nodes_finish_with_identical_weights(tmp_path):
    nodes, port = 2, free_port()
    argv = [PYTHON, str(REPO / "tests" / "launch" / "rank_driver.py"), "train", "direction", *TINY_DIRECTION,
            "trainer.accelerator=cpu", "trainer.devices=1", f"trainer.num_nodes={nodes}", "trainer.strategy=ddp",
            f"run.output_dir={tmp_path}", "run.checkpoint_every_n_steps=4"]
    procs = [subprocess.Popen(argv, env=_slurm_env(rank, nodes, port, tmp_path / "weights"), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(nodes)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"rank {rank}:\n{out[-3000:]}"
    ranks = [torch.load(tmp_path / "weights" / f"rank{r}.pt", weights_only=True) for r in range(nodes)]
    assert all(r["world_size"] == nodes for r in ranks), "Lightning did not pick up the SLURM world"
    assert ranks[0]["global_step"] == ranks[1]["global_step"] > 0
    assert ranks[0]["state"].keys() == ranks[1]["state"].keys() and ranks[0]["state"]
    for key, value in ranks[0]["state"].items():
        torch.testing.assert_close(ranks[1]["state"][key], value, rtol=0, atol=0, msg=key)
    # One run folder (named after the SLURM job), written by rank 0: config, checkpoints, the direction.
    run_dir = tmp_path / "direction-slurm4242"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direction-slurm4242", "weights"]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "direction.safetensors").is_file()
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == ranks[0]["global_step"]
    for key, value in ranks[0]["state"].items():
        torch.testing.assert_close(saved["state_dict"][key], value, rtol=0, atol=0, msg=key)


def _start(argv, cwd, log):
    return subprocess.Popen(argv, env=clean_env(), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


@pytest.mark.multiprocess
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_killed_mid_epoch_run_resumes_from_its_checkpoint(tmp_path, sig):
    # 8 steps per epoch; checkpoints every 2 steps; killed as soon as a complete checkpoint exists.
    argv = [PYTHON, "-m", "semedit.cli", "train", "direction", *TINY_DIRECTION, "trainer.max_epochs=3",
            "run.checkpoint_every_n_steps=2", f"run.output_dir={tmp_path}",
            "run.name=preempt"]
    ckpts = tmp_path / "preempt" / "checkpoints"
    with open(tmp_path / "first.log", "w") as log:
        first = _start(argv, tmp_path, log)
        deadline = time.monotonic() + 240
        while find_resume_checkpoint(tmp_path / "preempt") is None:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        os.killpg(first.pid, sig)
        first.wait(timeout=120)
    first_log = (tmp_path / "first.log").read_text()
    if sig == signal.SIGKILL:
        assert first.returncode == -signal.SIGKILL
    else:  # Lightning stops after the batch, SaveOnPreemption writes last.ckpt, fit exits with 143
        assert first.returncode == 143, first_log[-3000:]
        assert "preempted at step" in first_log
    # SIGKILL: the newest complete periodic checkpoint; SIGTERM: last.ckpt written at the preemption.
    resume_from = find_resume_checkpoint(tmp_path / "preempt")
    if sig == signal.SIGTERM:
        assert resume_from == ckpts / "last.ckpt"
    killed_at = _ckpt_step(resume_from)
    assert 2 <= killed_at < 24, f"killed at step {killed_at}: not mid-run"
    assert not (tmp_path / "preempt" / "direction.safetensors").exists()

    second = subprocess.run(argv, env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"resuming {tmp_path / 'preempt'} from {resume_from}" in second.stdout
    assert _ckpt_step(ckpts / "last.ckpt") == 24  # 3 epochs x 8 steps, counted across both processes
    assert (tmp_path / "preempt" / "direction.safetensors").is_file()
    # The periodic checkpoints continue from where the first process stopped, in the same folder.
    steps = sorted(int(p.stem[4:]) for p in ckpts.glob("step*.ckpt"))
    assert steps[-1] == 24 and 2 in steps
    # Resuming is exact: the same direction as a run that was never interrupted.
    full = [a if not a.startswith("run.name=") else "run.name=uninterrupted" for a in argv]
    subprocess.run(full, env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300, check=True)
    resumed = load_direction(tmp_path / "preempt" / "direction.safetensors").vector
    reference = load_direction(tmp_path / "uninterrupted" / "direction.safetensors").vector
    torch.testing.assert_close(resumed, reference, rtol=0, atol=1e-6)
