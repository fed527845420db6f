"""Shared test fixtures. Everything runs on CPU; W&B is offline in tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from semedit.stylegan2 import build_tiny_generator
from tests.helpers import require_fixtures

# Tests use tiny networks on small, often shared CPUs: one intra-op thread per process avoids
# oversubscription (DDP tests run two processes), which otherwise makes them many times slower.
torch.set_num_threads(1)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return require_fixtures()


@pytest.fixture
def tiny_generator():
    return build_tiny_generator(resolution=32, seed=0)
