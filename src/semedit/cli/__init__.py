"""The `semedit` command: the top layer of the package, and nothing else imports it.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its subcommands and sets
``func`` on each parser; ``func(args)`` returns an exit code. Library code raises ``SemeditError``
subclasses with messages written for users; ``main`` prints them on one line and exits with 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from semedit import __version__
from semedit.cli import demo, directions, hair, inversion, launch, perception, stylegan2, train, weights
from semedit.cli.common import CLIError
from semedit.errors import SemeditError
from semedit.runs import set_command_line
from semedit.threads import THREADS_ENV, configure_threads

__all__ = ["CLIError", "main", "build_parser"]

COMMAND_MODULES = [
    stylegan2,  # generate, convert, info
    weights,  # weights list | download | verify
    train,  # train <job>, config show <job>
    directions,  # edit, pca
    hair,  # transfer, hair-interpolate, hair-pca, hair-edit, eval-identity
    inversion,  # invert, edit-real, eval-inversion
    launch,  # launch, sweep
    perception,  # align
    demo,  # demo (the Gradio web app)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semedit",
        description="Semantic editing of face images with a frozen, pretrained StyleGAN2.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads per process (default: the CPUs this process may use, divided among "
                             "its DDP processes; OMP_NUM_THREADS when set; a job's run.threads wins)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_command_line(["semedit", *(sys.argv[1:] if argv is None else argv)])
    if args.version:
        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if args.threads is not None:
        if args.threads < 1:
            print(f"semedit: error: --threads {args.threads}: give a number >= 1", file=sys.stderr)
            return 2
        os.environ[THREADS_ENV] = str(args.threads)  # the processes a job starts inherit it
    configure_threads()
    try:
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
