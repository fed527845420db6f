"""`semedit train JOB [--config YAML] [inputs] [key=value ...]` and `semedit config show JOB`.

Both go through the job registry (``semedit.jobs``): any registered job can be run with ``train``,
and ``config show`` prints the merged YAML a job would run with, ready to copy and edit.
"""

from __future__ import annotations

import argparse

from semedit.cli.commands import add_command
from semedit.config import to_yaml
from semedit.jobs import JOBS, get_job, run_job, split_items

__all__ = ["register"]


def cmd_train(args: argparse.Namespace) -> int:
    run_job(args.job, args.config, args.items)
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    job = get_job(args.job)
    _, overrides = split_items(job, args.overrides)
    print(to_yaml(job.load_config(args.config, overrides)), end="")
    return 0


def register(subparsers) -> None:
    jobs = ", ".join(sorted(JOBS))
    listing = "\n".join(f"  {name:<15} {job.help}" for name, job in JOBS.items())
    p = add_command(
        subparsers, "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a job. Without --config the job's packaged tiny default is used; "
                    f"`semedit config show JOB` prints it.\n\njobs:\n{listing}",
    )
    p.add_argument("job", help=f"one of: {jobs}")
    p.add_argument("--config", default=None, help="YAML config file (default: the job's tiny config)")
    p.add_argument("items", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4 trainer.devices=2 "
                                            "(and input photos for invert / eval-inversion)")
    p.set_defaults(func=cmd_train)

    c = add_command(subparsers, "config")
    sub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    s = sub.add_parser("show", help="print the merged YAML (default <- --config <- key=value overrides)")
    s.add_argument("job", help=f"one of: {jobs}")
    s.add_argument("--config", default=None, help="YAML config file (default: the job's tiny config)")
    s.add_argument("overrides", nargs="*", help="key=value overrides")
    s.set_defaults(func=cmd_config_show)
