"""The `semedit` command: the top layer of the package, and nothing else imports it.

The command table (``semedit.cli.commands``) names each command's module; ``main`` imports only the
module of the command being run, so ``semedit --help`` and ``--version`` import no torch. Each command
module exposes ``register(subparsers)``, which adds its commands and sets ``func`` on each parser;
``func(args)`` returns an exit code. Library code raises ``SemeditError`` subclasses with messages written
for users; ``main`` prints them on one line and exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from semedit import __version__
from semedit.cli.commands import COMMANDS
from semedit.errors import SemeditError

__all__ = ["main", "build_parser"]


def _command_in(argv: list[str]) -> str | None:
    """The command named on a command line (the first word that is not a global option or its value)."""
    words = iter(argv)
    for word in words:
        if word == "--threads":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (the others appear by name and help only)."""
    parser = argparse.ArgumentParser(
        prog="semedit",
        description="Semantic editing of face images with a frozen, pretrained StyleGAN2.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads per process (default: the CPUs this process may use, divided among "
                             "its DDP processes; OMP_NUM_THREADS when set; a job's run.threads wins)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    loaded = None
    if command is not None:
        loaded = COMMANDS[command].module
        importlib.import_module(f"semedit.cli.{loaded}").register(subparsers)
    for name, entry in COMMANDS.items():
        if entry.module != loaded:
            subparsers.add_parser(name, help=entry.help)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if args.threads is not None and args.threads < 1:
        print(f"semedit: error: --threads {args.threads}: give a number >= 1", file=sys.stderr)
        return 2
    # Only a command that runs needs these (torch comes with them).
    runs, threads = importlib.import_module("semedit.runs"), importlib.import_module("semedit.threads")
    runs.set_command_line(["semedit", *argv])
    if args.threads is not None:
        os.environ[threads.THREADS_ENV] = str(args.threads)  # the processes a job starts inherit it
    threads.configure_threads()
    try:
        importlib.import_module("semedit.allocator").reuse_freed_memory()  # large tensors without page faults
        importlib.import_module("semedit.stylegan2.autotune").autotune_enabled()  # a bad setting stops before any work
        return int(args.func(args) or 0)
    except (SemeditError, FileNotFoundError) as err:
        message = " ".join(str(err).split("\n")[:1]) if isinstance(err, FileNotFoundError) else str(err)
        print(f"semedit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Jobs that write run folders say themselves where they resume from (semedit.training.Interrupted).
        print(f"semedit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`semedit sweep expand ... | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
