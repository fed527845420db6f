"""Run folders cannot be mixed up: safe names, an exclusive lock, resume only with the same
settings, corrupt last.ckpt set aside, weights-only resume whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from semedit.cli import main
from semedit.config import ConfigError, load_config, packaged_config
from semedit.directions.config import DirectionJobConfig
from semedit.errors import RunFolderError
from semedit.runs import RUN_LOCK_ENV, RunLock
from semedit.training import RUN_DIR_ENV, RunConfig, resolve_run_dir
from tests.launch.helpers import PYTHON, TINY_DIRECTION, clean_env

# Steps, not epochs, so that a resumed run can raise the limit (one epoch = 8 steps).
FAST = [a for a in TINY_DIRECTION if not a.startswith("trainer.max_epochs")] + ["trainer.max_epochs=-1"]


@pytest.fixture(autouse=True)
def _clean_launcher_env(monkeypatch):
    for key, value in clean_env().items():
        monkeypatch.setenv(key, value)
    for var in (RUN_DIR_ENV, RUN_LOCK_ENV, "SLURM_JOB_ID", "WANDB_SWEEP_ID", "WANDB_RUN_ID", "RANK", "LOCAL_RANK",
                "NODE_RANK", "SLURM_PROCID", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        monkeypatch.delenv(var, raising=False)


def _train(tmp_path, *extra):
    return main(["train", "direction", *FAST, f"run.output_dir={tmp_path}", "run.name=r", *extra])


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


# ----------------------------------------------------------------------------------------------------
# Names.


@pytest.mark.parametrize("name", ["../../../x", "/tmp/abs", "a/b", "..", ".", "''", "' '"])
def test_run_name_must_be_one_path_component(tmp_path, name, capsys):
    with pytest.raises(ConfigError, match="run.name"):
        load_config(DirectionJobConfig, packaged_config("direction/tiny.yaml"), [f"run.name={name}"])
    assert main(["train", "direction", f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}"]) == 2
    assert "single folder name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_names_from_sweeps_are_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SWEEP_ID", "s")
    monkeypatch.setenv("WANDB_RUN_ID", "../../escape")
    with pytest.raises(ConfigError, match="WANDB_RUN_ID"):
        resolve_run_dir("hair", RunConfig(output_dir=str(tmp_path)))


def test_invalid_trainer_values_stop_before_a_run_folder_exists(tmp_path, capsys):
    for bad, key in [("trainer.max_steps=-5", "trainer.max_steps"), ("trainer.log_every_n_steps=0",
                     "trainer.log_every_n_steps"), ("trainer.precision=17", "trainer.precision")]:
        assert _train(tmp_path, bad) == 2
        err = capsys.readouterr().err
        assert key in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------------------------------
# The lock.

_HOLD = """
import sys, time
from semedit.runs import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(300)
"""


def test_lock_names_its_holder_and_dies_with_it(tmp_path):
    holder = subprocess.Popen([PYTHON, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=clean_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=f"in use by pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: nobody cleans up
        holder.wait(timeout=30)
    lock = RunLock(tmp_path).acquire()  # the kernel dropped the dead process's lock
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


@pytest.mark.multiprocess
def test_two_concurrent_runs_with_one_name(tmp_path):
    common = [PYTHON, "-m", "semedit.cli", "train", "direction", *FAST, f"run.output_dir={tmp_path}", "run.name=twin"]
    with open(tmp_path / "a.log", "w") as log:
        a = subprocess.Popen([*common, "direction.lr=0.001"], env=clean_env(), cwd=tmp_path, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not (tmp_path / "twin" / "config.yaml").is_file():  # written once A holds the lock
                assert a.poll() is None, (tmp_path / "a.log").read_text()[-3000:]
                assert time.monotonic() < deadline
                time.sleep(0.1)
            b = subprocess.run([*common, "direction.lr=0.01"], env=clean_env(), cwd=tmp_path, capture_output=True,
                               text=True, timeout=240)
            assert a.poll() is None, "A must still be running while B starts"
        finally:
            os.killpg(a.pid, signal.SIGKILL)
            a.wait(timeout=60)
    assert b.returncode == 2, b.stdout[-2000:] + b.stderr[-2000:]
    assert f"in use by pid {a.pid}" in b.stderr and "run.name" in b.stderr
    assert "Traceback" not in b.stderr
    assert yaml.safe_load((tmp_path / "twin" / "config.yaml").read_text())["direction"]["lr"] == 0.001
    assert not list((tmp_path / "twin").rglob("*-v1.ckpt"))


# ----------------------------------------------------------------------------------------------------
# Changed config, history, starting over.


def test_resume_refuses_a_changed_config_and_records_harmless_changes(tmp_path, capsys):
    assert _train(tmp_path, "trainer.max_steps=2") == 0
    run = tmp_path / "r"
    stored = (run / "config.yaml").read_bytes()
    capsys.readouterr()

    # Result-affecting changes: refused with the diff, nothing written.
    assert _train(tmp_path, "trainer.max_steps=4", "direction.lr=0.5", "direction.batch_size=2") == 2
    err = capsys.readouterr().err
    assert "direction.lr: 0.05 -> 0.5" in err and "direction.batch_size: 4 -> 2" in err
    assert "run.resume=never" in err and "run.name" in err
    assert _train(tmp_path, "trainer.max_steps=1") == 2  # lowering max_steps is not continuing
    assert "may only be raised" in capsys.readouterr().err
    assert (run / "config.yaml").read_bytes() == stored and _step(run / "checkpoints" / "last.ckpt") == 2

    # Harmless changes: resumed, config.yaml untouched, the change recorded.
    assert _train(tmp_path, "trainer.max_steps=4", "trainer.log_every_n_steps=2") == 0
    out = capsys.readouterr().out
    assert f"resuming {run}" in out
    assert (run / "config.yaml").read_bytes() == stored
    assert _step(run / "checkpoints" / "last.ckpt") == 4
    history = yaml.safe_load((run / "resumes.yaml").read_text())
    assert history[-1]["changed"] == {"trainer.max_steps": [2, 4], "trainer.log_every_n_steps": [1, 2]}
    assert "train direction" in history[-1]["command"]

    # Starting over keeps the old run, inside the folder.
    assert _train(tmp_path, "trainer.max_steps=2", "direction.lr=0.5", "run.resume=never") == 0
    replaced = list(run.glob("replaced-*"))
    assert len(replaced) == 1 and (replaced[0] / "config.yaml").read_bytes() == stored
    assert yaml.safe_load((run / "config.yaml").read_text())["direction"]["lr"] == 0.5
    assert _step(run / "checkpoints" / "last.ckpt") == 2


# ----------------------------------------------------------------------------------------------------
# Corrupt and malicious checkpoints.


def test_corrupt_last_ckpt_is_set_aside_and_last_points_at_the_real_state(tmp_path, capsys):
    assert _train(tmp_path, "trainer.max_steps=2", "run.checkpoint_every_n_steps=1") == 0
    ckpts = tmp_path / "r" / "checkpoints"
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[: len(data) // 2])  # cut short, and the newest file
    capsys.readouterr()
    assert _train(tmp_path, "trainer.max_steps=4", "run.checkpoint_every_n_steps=1") == 0
    captured = capsys.readouterr()
    out = captured.out
    assert f"from {ckpts / 'step00000002.ckpt'}" in out
    assert f"checkpoint:  {ckpts / 'last.ckpt'}" in out
    assert (captured.out + captured.err).count("moved it to") == 1  # said once, not once per log handler
    history = yaml.safe_load((tmp_path / "r" / "resumes.yaml").read_text())
    assert history[-1]["checkpoint"] == str(ckpts / "step00000002.ckpt")  # where the resume started
    assert len(list(ckpts.glob("last.ckpt.corrupt-*"))) == 1
    assert not list(ckpts.glob("*-v*.ckpt")), sorted(p.name for p in ckpts.iterdir())
    assert _step(ckpts / "last.ckpt") == 4
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == ["last.ckpt", "step00000001.ckpt", "step00000002.ckpt",
                                                            "step00000003.ckpt", "step00000004.ckpt"]


def test_a_run_whose_checkpoints_are_all_corrupt_says_it_starts_again(tmp_path, capsys):
    assert _train(tmp_path, "trainer.max_steps=2", "run.checkpoint_every_n_steps=1") == 0
    ckpts = tmp_path / "r" / "checkpoints"
    for path in ckpts.glob("*.ckpt"):
        path.write_bytes(path.read_bytes()[:100])
    capsys.readouterr()
    assert _train(tmp_path, "trainer.max_steps=2", "run.checkpoint_every_n_steps=1") == 0
    out = capsys.readouterr().out
    assert out.count("moved it to") == 3 and "starts again from step 0" in out
    history = yaml.safe_load((tmp_path / "r" / "resumes.yaml").read_text())
    assert history[-1]["checkpoint"] is None
    assert _step(ckpts / "last.ckpt") == 2


class _Planted:
    """Unpickling this calls open(marker, "w"): a file appears if the checkpoint's code ever runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_runs_a_planted_checkpoint_even_when_torch_is_told_to(tmp_path, monkeypatch, capsys):
    assert _train(tmp_path, "trainer.max_steps=2") == 0
    marker = tmp_path / "PWNED"
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    torch.save({"global_step": 9, "payload": _Planted(marker)}, last)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    capsys.readouterr()
    assert _train(tmp_path, "trainer.max_steps=4") == 2
    err = capsys.readouterr().err
    assert not marker.exists(), "code from the checkpoint ran"
    assert "refusing to load checkpoint" in err and "nothing from it was run" in err


def test_safetensors_outputs_have_normal_permissions(tmp_path):
    from semedit.edits import Direction, save_direction

    old = os.umask(0o022)
    try:
        path = save_direction(tmp_path / "d.safetensors", Direction(torch.ones(4) / 2, "w", None, {}))
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert not list(tmp_path.glob(".*tmp*"))
