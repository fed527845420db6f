"""Writing output files: atomically (a kill leaves the old file or none, never half a file) and with the
permissions any other program would give them.

``safetensors.torch.save_file`` creates its file with mode 0600 whatever the umask, so results written
with it could not be read by the rest of a group sharing a run folder. ``save_safetensors`` writes to a
temporary name, sets the usual ``0666 & ~umask`` and renames the file into place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import save_file

__all__ = ["default_file_mode", "save_safetensors", "write_atomically"]


def default_file_mode() -> int:
    """0666 minus this process's umask: what open() gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """``save_file`` to ``path``, atomically and with the default file permissions."""
    return write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path`` (with the same suffix, so writers that choose the format
    by it choose the same), then rename it into place: a reader, e.g. another DDP rank, sees the old file or the
    new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
