"""semedit.allocator: the semedit command keeps freed memory for reuse (no page faults on large tensors)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from semedit import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _in_a_fresh_process(code: str, env_value: str) -> str:
    env = {"SEMEDIT_MALLOC": env_value, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                          timeout=60).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_reuse_takes_effect_on_glibc_and_can_be_turned_off():
    code = "from semedit import allocator; print(allocator.reuse_freed_memory(), allocator.reuse_freed_memory(False))"
    assert _in_a_fresh_process(code, "") == "True True"
    assert _in_a_fresh_process(code, "default") == "False True"  # respect_env=False: benchmarks set it anyway


def test_without_glibc_nothing_is_set(monkeypatch):
    monkeypatch.setenv("SEMEDIT_MALLOC", "reuse")
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)  # macOS, musl: no mallopt
    assert allocator.reuse_freed_memory() is False


def test_a_bad_setting_is_refused(monkeypatch):
    monkeypatch.setenv("SEMEDIT_MALLOC", "jemalloc")
    with pytest.raises(ValueError, match="SEMEDIT_MALLOC"):
        allocator.reuse_freed_memory()
    monkeypatch.setenv("SEMEDIT_MALLOC", "default")
    assert allocator.reuse_freed_memory() is False
