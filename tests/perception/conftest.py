"""Perception tests: every test runs against an empty weights folder and torch hub."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _every_test_has_isolated_weights(isolated_weights):
    return isolated_weights
