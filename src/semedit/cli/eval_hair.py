"""CLI: `semedit eval-hair` (HairFastGAN's table for a hair-transfer model; semedit.eval.hair)."""

from __future__ import annotations

from semedit.cli.commands import add_command
from semedit.jobs import run_job

__all__ = ["register"]


def cmd_eval_hair(args) -> int:
    run_job("eval-hair", args.config, args.overrides)
    return 0


def register(subparsers) -> None:
    p = add_command(subparsers, "eval-hair")
    p.add_argument("--config", default=None, help="YAML config (default: configs/hair/eval_hair_tiny.yaml; the "
                                                  "paper's: configs/hair/eval_hair_celebahq.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. hair_model=runs/x/checkpoints/last.ckpt "
                                                "real_dir=/data/celebahq/test")
    p.set_defaults(func=cmd_eval_hair)
