"""Shared pieces of the launch tests: the cheapest trainable job, shrunk further."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# `semedit train direction` at its smallest: 100 scored samples -> 32 training latents, 8 steps per epoch.
TINY_DIRECTION = [
    "direction.num_samples=100",
    "direction.fraction=0.2",
    "direction.batch_size=4",  # several steps per epoch, so runs can stop mid-epoch
    "direction.optimizer=sgd",
    "direction.lr=0.05",
    "direction.score_batch_size=50",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "logger.wandb=false",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without launcher variables (SLURM, torchrun, W&B sweep) that would change ranks or run names."""
    prefixes = ("SLURM_", "WANDB_SWEEP", "SUBMITIT_", "SEMEDIT_")
    names = {"RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "WANDB_RUN_ID",
             "TORCHELASTIC_RUN_ID", "PL_GLOBAL_SEED"}
    # The suite's own settings (tests/conftest.py: the bf16 probe, the thread count) pass through.
    keep = {"SEMEDIT_CPU_BF16", "SEMEDIT_THREADS"}
    env = {k: v for k, v in os.environ.items() if k in keep or (not k.startswith(prefixes) and k not in names)}
    env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
                "PYTHONWARNINGS": "ignore"}, **extra)
    return env
