"""Shared test fixtures. Everything runs on CPU; W&B is offline in tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
