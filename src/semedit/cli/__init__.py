"""The `semedit` command: the top layer of the package, and nothing else imports it.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its subcommands and sets
``func`` on each parser; ``func(args)`` returns an exit code. Library code raises ``SemeditError``
subclasses with messages written for users; ``main`` prints them on one line and exits with 2.
"""

from __future__ import annotations

import argparse
import sys

from semedit import __version__
from semedit.cli import directions, hair, inversion, launch, stylegan2, train, weights
from semedit.cli.common import CLIError
from semedit.errors import SemeditError

__all__ = ["CLIError", "main", "build_parser"]

COMMAND_MODULES = [
    stylegan2,  # generate, convert, info
    weights,  # weights list | download | verify
    train,  # train <job>, config show <job>
    directions,  # edit, pca
    hair,  # transfer, hair-interpolate, hair-pca, hair-edit, eval-identity
    inversion,  # invert, edit-real, eval-inversion
    launch,  # launch, sweep
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semedit",
        description="Semantic editing of face images with a frozen, pretrained StyleGAN2.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (SemeditError, FileNotFoundError) as err:
        message = " ".join(str(err).split("\n")[:1]) if isinstance(err, FileNotFoundError) else str(err)
        print(f"semedit {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
