"""The `semedit` command. Each area of the package registers its own subcommands.

Every module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its subcommands
and sets ``func`` on each parser; ``func(args)`` returns an exit code. Keeping the subcommands next to
the code they drive keeps this file small and lets each area evolve its options on its own.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "semedit.stylegan2.commands",  # generate, convert, info
    "semedit.weights_commands",  # weights list | download | verify
    "semedit.train_commands",  # train <job>
    "semedit.directions.commands",  # edit, pca
    "semedit.hair.commands",  # transfer, interpolate, hair-edit, eval-identity
    "semedit.inversion.commands",  # invert, edit-real, eval-inversion
    "semedit.launch",  # launch
]


class CLIError(Exception):
    """A user error on the command line: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semedit",
        description="Semantic editing of face images with a frozen, pretrained StyleGAN2.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # an area that is not part of this build
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from semedit import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from semedit.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (CLIError, ConfigError, FileNotFoundError) as err:
        print(f"semedit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        # Errors that semedit raises on purpose carry a message meant for users; show it plainly.
        if type(err).__module__.startswith("semedit"):
            print(f"semedit {args.command}: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
