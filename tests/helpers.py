"""Helpers shared by the whole test suite (imported as ``from tests.helpers import ...``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


def require_fixtures(path: Path = FIXTURES) -> Path:
    """``path`` inside ../shared/fixtures. Absent: a skip on a developer's machine, a failure in CI
    (``CI`` set), where a missing fixture would otherwise hide every format test."""
    if not path.exists():
        message = f"format fixture {path} is absent (expected ../shared/fixtures next to the repository)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must provide it", pytrace=False)
        pytest.skip(message)
    return path
