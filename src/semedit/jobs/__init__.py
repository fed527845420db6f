"""The job registry: every job semedit runs, by name, with its config schema, default config and entry.

``semedit train JOB``, the per-job commands (``invert``, ``eval-identity``, ``eval-inversion``, ...),
``semedit config show``, ``semedit sweep check|expand``, ``semedit launch`` and the Make targets all
dispatch through ``JOBS``, so a new job becomes runnable, sweepable and launchable on a cluster by adding
one ``Job`` here. Jobs name their schema, entry and report as ``"module:attribute"`` and are imported only
when used: ``config show`` imports a job's config module (no Lightning), ``train`` its training module.

A job's entry takes the loaded config and the positional inputs (photos, for jobs with ``takes_inputs``)
and returns a result; its report prints that result for people (``semedit.jobs.reports``).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semedit.config import ConfigError, load_config, packaged_config

__all__ = ["Job", "JOBS", "get_job", "split_items", "run_job"]


def _resolve(reference: str) -> Any:
    """``"package.module:attribute"`` -> the attribute (the module is imported now)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Job:
    name: str
    help: str
    schema: str  # "module:attribute" of the config dataclass (or of a function that builds it)
    default_config: str  # packaged YAML, relative to semedit/configs/
    entry: str  # "module:attribute" of run(config, inputs) -> result
    report: str  # "module:attribute" of report(config, result), which prints a summary
    takes_inputs: bool = False  # positional photos / folders (inversion jobs)

    def config_schema(self) -> type:
        """The config dataclass (``schema`` may name a function building it, e.g. from a registry)."""
        schema = _resolve(self.schema)
        return schema if dataclasses.is_dataclass(schema) else schema()

    def load_config(self, config: str | None, overrides: list[str]):
        return load_config(self.config_schema(), config or packaged_config(self.default_config), overrides)

    def run(self, cfg, inputs: list[str]):
        """Run the job here: first check that this machine has the devices the config asks for."""
        trainer = getattr(cfg, "trainer", None)
        if trainer is not None:
            _resolve("semedit.devices:check_devices")(trainer)
        return _resolve(self.entry)(cfg, inputs)

    def print_report(self, cfg, result) -> None:
        _resolve(self.report)(cfg, result)


_REPORTS = "semedit.jobs.reports"

JOBS: dict[str, Job] = {job.name: job for job in (
    Job("hair", "train hair transfer on synthetic pose-misaligned pairs (FG 2021)",
        "semedit.hair.fg2021.config:HairJobConfig", "hair/tiny.yaml",
        "semedit.hair.fg2021.train:run", f"{_REPORTS}:report_fit"),
    Job("direction", "train a latent direction classifier on scored samples",
        "semedit.directions.config:DirectionJobConfig", "direction/tiny.yaml",
        "semedit.directions.train:run", f"{_REPORTS}:report_fit"),
    Job("hair-direction", "train a hair-manipulation direction in the hair-embedding space (hair attribute "
        "scorer + direction classifier)", "semedit.jobs.hair_direction_config:HairDirectionJobConfig",
        "hair/direction_tiny.yaml", "semedit.jobs.hair_direction:run", f"{_REPORTS}:report_fit"),
    Job("invert", "inversion of real photos (ChunkyGAN, or any registered method: invert.method)",
        "semedit.inversion.config:inversion_job_schema", "chunkygan/tiny.yaml",
        "semedit.inversion.run:run", f"{_REPORTS}:report_invert", takes_inputs=True),
    Job("eval-identity", "identity retrieval after hair transfer (FG 2021 protocol)",
        "semedit.eval.identity_config:EvalIdentityConfig", "hair/eval_identity_tiny.yaml",
        "semedit.eval.identity:run", f"{_REPORTS}:report_eval_identity"),
    Job("eval-hair", "hair-transfer realism (FID, FID_CLIP, by pose), reconstruction, identity and time "
        "(HairFastGAN's table)", "semedit.eval.hair_config:EvalHairConfig", "hair/eval_hair_tiny.yaml",
        "semedit.eval.hair:run", f"{_REPORTS}:report_eval_hair"),
    Job("eval-inversion", "the inversion tables: projection and identity after edits, one row per method",
        "semedit.inversion.config:inversion_job_schema", "chunkygan/tiny.yaml",
        "semedit.eval.inversion:run", f"{_REPORTS}:report_eval_inversion", takes_inputs=True),
)}


def get_job(name: str) -> Job:
    if name not in JOBS:
        raise ConfigError(f"unknown job '{name}'; valid jobs: {', '.join(sorted(JOBS))}")
    return JOBS[name]


def split_items(job: Job, items: list[str]) -> tuple[list[str], list[str]]:
    """Positional items -> (inputs, overrides): ``key=value`` is an override unless it names an existing file."""
    overrides = [x for x in items if "=" in x and not Path(x).exists()]
    inputs = [x for x in items if x not in overrides]
    if inputs and not job.takes_inputs:
        raise ConfigError(f"job '{job.name}' takes no inputs, only key=value overrides; got: {' '.join(inputs)}")
    return inputs, overrides


def run_job(name: str, config: str | None, items: list[str], extra_overrides: list[str] = ()) -> Any:
    """Load the job's config (default <- --config <- overrides), run it and print its report."""
    job = get_job(name)
    inputs, overrides = split_items(job, list(items))
    if job.takes_inputs and not inputs:
        raise ConfigError(f"job '{name}' needs inputs: image files, folders or skimage:<name> "
                          "(e.g. skimage:astronaut)")
    cfg = job.load_config(config, [*overrides, *extra_overrides])
    result = job.run(cfg, inputs)
    job.print_report(cfg, result)
    return result
