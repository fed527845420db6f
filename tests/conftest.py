"""Shared test fixtures. Everything runs on CPU; W&B is offline in tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from semedit.stylegan2 import build_tiny_generator
from tests.helpers import require_fixtures

# Tests use tiny networks on small, often shared CPUs: one intra-op thread per process avoids
# oversubscription (DDP tests run two processes), which otherwise makes them many times slower. Jobs started
# by tests read SEMEDIT_THREADS (what `semedit --threads 1` sets): a fixed count, so numbers never depend on
# the machine's core count or load (the automatic count follows the load: tests/test_threads.py covers it).
torch.set_num_threads(1)
os.environ["SEMEDIT_THREADS"] = "1"

# `auto` precision takes bf16 on CPUs with bf16 units and fp32 elsewhere. Every test sees the fp32 branch
# unless it asks for the other (tests/cli/test_bf16_branch.py runs the CLI with the probe set to "1"), so no
# expectation depends on the CPU the suite runs on.
os.environ["SEMEDIT_CPU_BF16"] = "0"
# `auto` compile/precision is decided by measurement for jobs that declare their calls (stylegan2/autotune.py):
# the suite pins the static rules instead (no timing, no decision cache), and tests/stylegan2/test_autotune.py
# forces each branch of the measured decision with fake timings.
os.environ["SEMEDIT_AUTOTUNE"] = "0"
# The semedit command keeps freed memory for reuse (semedit.allocator); the suite's long-lived process keeps
# glibc's defaults (tests/test_allocator.py checks the setting in a process of its own).
os.environ["SEMEDIT_MALLOC"] = "default"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return require_fixtures()


@pytest.fixture
def tiny_generator():
    return build_tiny_generator(resolution=32, seed=0)


@pytest.fixture
def isolated_weights(tmp_path, monkeypatch):
    """An empty weights folder and an empty torch hub: nothing from the host leaks in."""
    weights = tmp_path / "weights"
    torch_home = tmp_path / "torch_home"
    weights.mkdir()
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(weights))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return weights
