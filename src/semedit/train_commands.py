"""`semedit train JOB [--config YAML] [key=value ...]`: the training entry point of every job.

A job module exposes ``Config`` (its dataclass schema), ``DEFAULT_CONFIG`` (path of its embedded
default YAML, relative to the repository's ``configs/``) and ``train(cfg) -> semedit.training.FitResult``.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

JOBS = {
    "hair": "semedit.hair.train",
    "direction": "semedit.directions.train",
}

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


def job_module(job: str):
    if job not in JOBS:
        from semedit.cli import CLIError

        raise CLIError(f"unknown job '{job}'; valid jobs: {', '.join(sorted(JOBS))}")
    return importlib.import_module(JOBS[job])


def load_job_config(job: str, config: str | None, overrides: list[str]):
    from semedit.config import load_config

    module = job_module(job)
    path = config or (CONFIGS_DIR / module.DEFAULT_CONFIG)
    return load_config(module.Config, path, overrides)


def run(args: argparse.Namespace) -> int:
    module = job_module(args.job)
    cfg = load_job_config(args.job, args.config, args.overrides)
    result = module.train(cfg)
    print(f"run folder:  {result.run_dir}")
    print(f"checkpoint:  {result.last_checkpoint}")
    if result.wandb_dir:
        print(f"W&B run:     {result.wandb_dir}  (upload with: wandb sync {result.wandb_dir})")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key} = {value:.6g}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a job (hair, direction) from a YAML config plus key=value overrides",
        description="Train a job. Without --config the job's embedded tiny default is used.",
    )
    p.add_argument("job", help=f"one of: {', '.join(sorted(JOBS))}")
    p.add_argument("--config", default=None, help="YAML config file (default: the job's tiny config)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4 trainer.devices=2")
    p.set_defaults(func=run)
