"""Fixtures of the ChunkyGAN tests: a 16 px random generator and a cheap perceptual distance."""

from __future__ import annotations

import pytest

from semedit.stylegan2 import build_tiny_generator
from tests.inversion.helpers import PyramidDistance


@pytest.fixture(scope="session")
def G():
    return build_tiny_generator(resolution=16, seed=0).eval().requires_grad_(False)


@pytest.fixture()
def distance():
    return PyramidDistance()
