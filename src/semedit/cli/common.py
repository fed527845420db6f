"""What the command modules share: the CLI's own error, flag spellings, lists of numbers, output checks."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from semedit.errors import SemeditError
from semedit.stylegan2.compile import COMPILE_SETTINGS, PRECISION_SETTINGS

__all__ = ["CLIError", "add_out_argument", "add_strengths_argument", "parse_floats", "check_output_dir",
           "check_output_file"]


class CLIError(SemeditError):
    """A user error on the command line: printed without a traceback, exit code 2."""


def add_out_argument(p: argparse.ArgumentParser, default: str | None, help: str) -> None:
    """``--out`` is the one spelling of an output path in every subcommand."""
    p.add_argument("--out", default=default, help=help)


def parse_floats(values: list[str] | str, flag: str) -> list[float]:
    """Repeated numbers (``--strengths -3 0 3``)."""
    items = [values] if isinstance(values, str) else list(values)
    try:
        numbers = [float(x) for x in items]
    except ValueError:
        raise CLIError(f"{flag} takes numbers, e.g. {flag} -3 0 3; got {' '.join(items)}") from None
    if not numbers:
        raise CLIError(f"{flag} is empty")
    return numbers


def add_strengths_argument(p: argparse.ArgumentParser, default: list[float] | None, help: str) -> None:
    p.add_argument("--strengths", nargs="+", default=default, metavar="K", help=help)


def check_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (a folder) now and make sure it is writable, before any work starts."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"--out {path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create output folder {path}: {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK) or not _can_create_files_in(path):
        raise CLIError(f"output folder {path} is not writable; choose another --out")
    return path


def _can_create_files_in(folder: Path) -> bool:
    """Try it: os.access says yes to root even on a read-only mount or an immutable folder."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".semedit-write-test-"):
            return True
    except OSError:
        return False


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")) -> Path:
    """Check an output image path before any work: not a folder, a known image suffix, a writable parent."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"--out {path} is a folder; give a file name such as {path / 'result.png'}")
    if path.suffix.lower() not in suffixes:
        raise CLIError(f"--out {path}: the file name must end in one of {', '.join(suffixes)}")
    check_output_dir(path.parent if str(path.parent) else ".")
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(f"--out {path} exists and is not writable")
    return path


def add_speed_arguments(p: argparse.ArgumentParser) -> None:
    """--precision and --compile of the generator, for the inference commands (generate, transfer, demo)."""
    p.add_argument("--precision", default="auto", choices=PRECISION_SETTINGS,
                   help="reduced precision of the 4 highest-resolution synthesis blocks, as NVlabs runs them. "
                        "auto (default): a long job (many seeds or rows) times bf16 against fp32 on this machine "
                        "and keeps the faster within the error budget (decision cached in ~/.cache/semedit); a short "
                        "one takes bf16 on a GPU or a CPU with bf16 matrix units (AMX-BF16/AVX512-BF16), fp32 "
                        "elsewhere; none forces fp32; bf16 forces bf16 (slow on CPUs without those units)")
    p.add_argument("--compile", default="auto", choices=COMPILE_SETTINGS,
                   help="torch.compile the generator. auto (default): a job long enough to win back the compile "
                        "time measures compiled against eager and keeps the faster; otherwise on with CUDA, off on "
                        "a CPU; on / off force it")


def apply_speed_arguments(G, args: argparse.Namespace) -> None:
    """Apply --precision/--compile to generator ``G`` (NVlabs' 4 reduced-precision resolutions)."""
    G.set_reduced_precision(args.precision, 4)
    G.set_compile(args.compile)
