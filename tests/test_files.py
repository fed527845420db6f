"""Output files: written atomically (a failed write leaves the old file, no temporary behind) and with the
permissions any other program would give them (safetensors alone writes 0600)."""

from __future__ import annotations

import os

import pytest
import torch

from semedit.files import save_safetensors, write_atomically


def test_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_safetensors({"x": torch.zeros(2)}, tmp_path / "a.safetensors")
        text = write_atomically(tmp_path / "b.txt", lambda tmp: tmp.write_text("hi"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644 and text.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "result.png"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.png"]
