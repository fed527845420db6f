"""Ctrl-C during training: the run stops after its current step, saves, says how to resume; the resume loses
nothing (the metric history is kept) and prints no false or meaningless warnings."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import threading
import time

import pytest
import torch

from semedit.lightning_output import _epoch_text
from tests.launch.helpers import PYTHON, clean_env

pytestmark = pytest.mark.multiprocess

NOISE = ("dataloader is not resumable", "Total FLOPs", "exists and is not empty", "Previous log files",
         "smaller than the logging interval", "weights_only` was not set", "Traceback")


def _command(tmp_path, steps: int) -> list[str]:
    return [PYTHON, "-m", "semedit", "train", "hair", "run.name=r", f"run.output_dir={tmp_path}",
            f"trainer.max_steps={steps}", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
            "run.checkpoint_every_n_steps=1000", "logger.wandb=false", "data.val_size=0"]


def _rows(tmp_path) -> list[dict]:
    with open(tmp_path / "r" / "csv" / "metrics.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("train/loss")]


def test_ctrl_c_saves_and_the_resume_keeps_every_metric(tmp_path):
    proc = subprocess.Popen(_command(tmp_path, 120), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(SEMEDIT_THREADS="1"))
    started = threading.Event()
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("model: "):  # printed when the fit starts
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(120), "".join(lines)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    proc.wait(timeout=120)
    reader.join(timeout=10)
    assert proc.returncode == 130, err
    match = re.search(r"interrupted at step (\d+); run the same command \(run\.name=r\) to resume", err)
    assert match, err
    step = int(match.group(1))
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == step  # saved at Ctrl-C
    before = _rows(tmp_path)
    assert [int(r["step"]) for r in before] == list(range(step))

    resumed = subprocess.run(_command(tmp_path, 120), capture_output=True, text=True, env=clean_env(SEMEDIT_THREADS="1"),
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from {last}" in resumed.stdout
    for noise in NOISE:
        assert noise not in resumed.stdout + resumed.stderr, noise
    after = _rows(tmp_path)
    assert [int(r["step"]) for r in after] == list(range(120))  # the history before the Ctrl-C is kept
    assert after[:step] == before


def test_the_progress_bar_text_is_true_for_runs_bounded_by_steps():
    class Trainer:
        max_epochs = -1

    assert _epoch_text(Trainer, 4) == "Epoch 4"
    Trainer.max_epochs = 10
    assert _epoch_text(Trainer, 4) == "Epoch 4/9"
