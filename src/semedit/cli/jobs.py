"""The job registry: every job semedit runs, by name, with its config schema, default config and entry.

``semedit train JOB``, the per-job commands (``invert``, ``eval-identity``, ``eval-inversion``),
``semedit sweep check|expand``, ``semedit launch`` and the Make targets all dispatch through ``JOBS``, so a
new job becomes runnable, sweepable and launchable on a cluster by adding one ``Job`` here.

A job's entry takes the loaded config and the positional inputs (photos, for jobs with ``takes_inputs``)
and returns a result; its ``report`` prints that result for people.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semedit.config import ConfigError, load_config, packaged_config
from semedit.devices import check_devices
from semedit.directions import train as direction_job
from semedit.eval.identity import EvalIdentityConfig, run_eval_identity
from semedit.eval.inversion import evaluate_inversion
from semedit.hair import direction_job as hair_direction_job
from semedit.hair import train as hair_job
from semedit.inversion.config import inversion_job_schema
from semedit.inversion.run import invert
from semedit.training import FitResult

__all__ = ["Job", "JOBS", "get_job", "split_items", "run_job", "load_job_config"]


@dataclass(frozen=True)
class Job:
    name: str
    help: str
    schema: type  # the config dataclass
    default_config: str  # packaged YAML, relative to semedit/configs/
    entry: Callable[[Any, list[str]], Any]  # (config, inputs) -> result
    report: Callable[[Any, Any], None]  # (config, result) -> prints a summary
    takes_inputs: bool = False  # positional photos / folders (inversion jobs)

    def config_schema(self) -> type:
        """The config dataclass (``schema`` may be a function building it, e.g. from a registry)."""
        return self.schema if dataclasses.is_dataclass(self.schema) else self.schema()

    def load_config(self, config: str | None, overrides: list[str]):
        return load_config(self.config_schema(), config or packaged_config(self.default_config), overrides)

    def run(self, cfg, inputs: list[str]):
        """Run the job here: first check that this machine has the devices the config asks for."""
        trainer = getattr(cfg, "trainer", None)
        if trainer is not None:
            check_devices(trainer)
        return self.entry(cfg, inputs)


# ----------------------------------------------------------------------------------------------------
# Reports.


def shell_quote(path) -> str:
    """Always single-quoted (a path with spaces or quotes still pastes into a shell as one word)."""
    return "'" + str(path).replace("'", "'\\''") + "'"


def report_fit(cfg, result: FitResult) -> None:
    print(f"run folder:  {result.run_dir}")
    print(f"checkpoint:  {result.last_checkpoint}")
    if result.wandb_dir:
        print(f"W&B run:     {result.wandb_dir}  (upload with: wandb sync {shell_quote(result.wandb_dir)})")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key} = {value:.6g}")


def report_invert(cfg, outcome) -> None:
    if not outcome.is_global_zero:
        return
    run_dir = outcome.run_dir
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"images": {}}
    print(f"run folder: {run_dir}")
    for name in outcome.names:
        d = run_dir / name
        row = summary["images"].get(name)
        metrics = f"LPIPS {row['lpips']:.4f}  L2 {row['l2']:.4f}" if row else "(not finished)"
        print(f"  {name}: {metrics}")
        print(f"    reconstruction: {d / 'reconstruction.png'}")
        print(f"    progress strip: {d / 'progress.png'}")
        print(f"    masks:          {d / 'masks.png'}")
        print(f"    codes:          {d / 'codes.safetensors'}")
    print(f"summary: {summary_path}")


def report_eval_identity(cfg, report) -> None:
    if report is None:  # ranks other than 0
        return
    print(report["table"])
    s = report["seconds"]
    print(f"seconds: generation {s['generation']:.2f}, transfer {s['transfer']:.2f}, embedding "
          f"{s['embedding']:.2f}, retrieval {s['retrieval']:.2f}; {len(report['computed_shards'])} shards computed")
    print(f"results: {Path(report.get('output_dir', cfg.output_dir)) / 'results.json'}")


def report_eval_inversion(cfg, result) -> None:
    print(Path(result["markdown"]).read_text())
    print(f"tables: {result['json']}\n        {result['markdown']}")


def _run_eval_inversion(cfg, inputs: list[str]):
    return evaluate_inversion(cfg, inputs, Path(cfg.eval.output_dir), list(cfg.eval.directions))


JOBS: dict[str, Job] = {job.name: job for job in (
    Job("hair", "train hair transfer on synthetic pose-misaligned pairs", hair_job.Config, hair_job.DEFAULT_CONFIG,
        lambda cfg, inputs: hair_job.train(cfg), report_fit),
    Job("direction", "train a latent direction classifier on scored samples", direction_job.Config,
        direction_job.DEFAULT_CONFIG, lambda cfg, inputs: direction_job.train(cfg), report_fit),
    Job("hair-direction", "train a hair-manipulation direction in the hair-embedding space (hair attribute "
        "scorer + direction classifier)", hair_direction_job.Config, hair_direction_job.DEFAULT_CONFIG,
        lambda cfg, inputs: hair_direction_job.train(cfg), report_fit),
    Job("invert", "inversion of real photos (ChunkyGAN, or any registered method: invert.method)",
        inversion_job_schema, "chunkygan/tiny.yaml",
        lambda cfg, inputs: invert(cfg, inputs), report_invert, takes_inputs=True),
    Job("eval-identity", "identity retrieval after hair transfer (FG 2021 protocol)", EvalIdentityConfig,
        "hair/eval_identity_tiny.yaml", lambda cfg, inputs: run_eval_identity(cfg), report_eval_identity),
    Job("eval-inversion", "the ChunkyGAN projection and identity-after-edit tables", inversion_job_schema,
        "chunkygan/tiny.yaml", _run_eval_inversion, report_eval_inversion, takes_inputs=True),
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


def load_job_config(name: str, config: str | None, overrides: list[str]):
    return get_job(name).load_config(config, overrides)


def run_job(name: str, config: str | None, items: list[str], extra_overrides: list[str] = ()) -> Any:
    """Load the job's config (default <- --config <- overrides), run it and print its report."""
    job = get_job(name)
    inputs, overrides = split_items(job, list(items))
    if job.takes_inputs and not inputs:
        raise ConfigError(f"job '{name}' needs inputs: image files, folders or skimage:<name> "
                          "(e.g. skimage:astronaut)")
    cfg = job.load_config(config, [*overrides, *extra_overrides])
    result = job.run(cfg, inputs)
    job.report(cfg, result)
    return result
