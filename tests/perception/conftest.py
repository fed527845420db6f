"""Perception tests: every test runs against an empty weights folder and torch hub."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_weights(tmp_path, monkeypatch):
    """Every test sees an empty weights folder and an empty torch hub: nothing from the host leaks in."""
    weights = tmp_path / "weights"
    torch_home = tmp_path / "torch_home"
    weights.mkdir()
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(weights))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return weights


