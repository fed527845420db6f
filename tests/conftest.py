"""Shared test fixtures. Everything runs on CPU; W&B is offline in tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests use tiny networks on small, often shared CPUs: one intra-op thread per process avoids
# oversubscription (DDP tests run two processes), which otherwise makes them many times slower.
torch.set_num_threads(1)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"checkpoint-format fixtures not found at {FIXTURES} (expected ../shared/fixtures)")
    return FIXTURES


@pytest.fixture
def tiny_generator():
    from semedit.stylegan2 import build_tiny_generator

    return build_tiny_generator(resolution=32, seed=0)
