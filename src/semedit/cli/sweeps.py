"""W&B sweep files whose parameter names are semedit config keys: checking and offline expansion.

A sweep file (``configs/sweeps/*.yaml``) is a plain W&B sweep configuration. Its ``command`` runs a
semedit command with ``${args_no_hyphens}``, so every trial receives its parameters as ``key=value``
overrides, which ``semedit.config.load_config`` validates against the job's schema::
    command: [${env}, semedit, train, hair, --config, configs/hair/ffhq1024.yaml, ${args_no_hyphens}]

W&B registers and schedules the sweep (``wandb sweep FILE``, ``wandb agent ID``). This module adds what W&B
cannot know: ``check_sweep`` loads the job's config with the parameters' values before anything is
registered (a misspelt key fails here, not in the 50th trial), and ``expand_sweep`` turns the grid or
random parameters into override lists for clusters without network, where agents cannot reach W&B.
"""

from __future__ import annotations

import difflib
import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from semedit.config import ConfigError, load_config, packaged_config, resolve_config_path, valid_keys
from semedit.errors import SemeditError
from semedit.jobs import JOBS

__all__ = ["SweepError", "SweepSpec", "load_sweep", "check_sweep", "expand_sweep", "format_override"]

METHODS = ("grid", "random", "bayes")
ARGS_MACROS = ("${args_no_hyphens}", "${args}")
# Distributions that `expand_sweep` samples (W&B's names); bayes-only or exotic ones are refused offline.
_CONTINUOUS = {"uniform", "log_uniform_values", "q_uniform", "q_log_uniform_values", "normal", "log_normal"}


class SweepError(SemeditError, ValueError):
    """A sweep file is invalid; the message names the parameter or section and what is expected."""


@dataclass
class SweepSpec:
    """A parsed sweep file and the semedit command its trials run."""

    path: Path
    raw: dict  # the sweep configuration as W&B reads it
    command: list[str]  # the semedit subcommand and its fixed arguments, e.g. ["train", "hair", "--config", ...]
    schema: type  # the config dataclass of that command
    config_path: Path | None  # the YAML the trials start from (--config or the command's default)

    @property
    def parameters(self) -> dict[str, dict]:
        return self.raw.get("parameters", {})

    @property
    def fixed_overrides(self) -> list[str]:
        """The ``key=value`` arguments written into the command itself (the same for every trial)."""
        return [a for a in self.command if "=" in a and not a.startswith("-")]


def load_sweep(path: str | Path) -> SweepSpec:
    """Parse a sweep file and find the semedit command (and so the config schema) its trials run."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepError(f"cannot parse sweep file {path}: {err}") from err
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: a sweep file is a mapping with method, metric, parameters and command")
    command = raw.get("command")
    if not isinstance(command, list) or "semedit" not in command:
        raise SweepError(f"{path}: 'command' must be a list that runs semedit, e.g. "
                         "[${env}, semedit, train, hair, ${args_no_hyphens}]")
    if not any(macro in command for macro in ARGS_MACROS):
        raise SweepError(f"{path}: 'command' must end with ${{args_no_hyphens}} so that trials receive "
                         "their parameters as key=value overrides")
    args = [str(a) for a in command[command.index("semedit") + 1:] if a not in ARGS_MACROS]
    schema, config_path = _command_schema(args, path)
    return SweepSpec(path=path, raw=raw, command=args, schema=schema, config_path=config_path)


def _command_schema(args: list[str], path: Path) -> tuple[type, Path | None]:
    """The config schema and starting YAML of the job a sweep's command runs, from the job registry."""
    config = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    name = args[1] if args[:1] == ["train"] and len(args) >= 2 else (args[0] if args else "")
    if name not in JOBS:
        raise SweepError(f"{path}: the command must run a registered job (`semedit train JOB ...`, or "
                         f"`semedit JOB ...` for {', '.join(j for j in sorted(JOBS) if j not in ('hair', 'direction'))});"
                         f" got `semedit {' '.join(args)}`")
    job = JOBS[name]
    config_path = resolve_config_path(config) if config is not None else packaged_config(job.default_config)
    return job.config_schema(), config_path


def _candidate_values(name: str, spec: Any) -> list:
    """Representative values of one parameter: all listed values, or the range's ends."""
    if not isinstance(spec, dict):
        raise SweepError(f"parameter '{name}': expected a mapping such as {{values: [...]}} or {{min: .., max: ..}}")
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise SweepError(f"parameter '{name}': 'values' must be a non-empty list")
        return list(spec["values"])
    if "min" in spec and "max" in spec:
        if spec["min"] > spec["max"]:
            raise SweepError(f"parameter '{name}': min {spec['min']} is larger than max {spec['max']}")
        return [spec["min"], spec["max"]]
    if spec.get("distribution") in ("normal", "log_normal"):
        return [spec.get("mu", 0.0)]
    raise SweepError(f"parameter '{name}': give 'value', 'values', or 'min' and 'max' (with a 'distribution')")


def format_override(key: str, value: Any) -> str:
    """``key=value`` exactly as W&B's ``${args_no_hyphens}`` writes it (``f"{key}={value}"``).

    OmegaConf reads that spelling back: True/False as booleans, 1e-05 as a float. None is written as
    ``null`` (W&B would write the string "None", so sweeps should not use None values).
    """
    return f"{key}=null" if value is None else f"{key}={value}"


def check_sweep(spec: SweepSpec) -> dict[str, list]:
    """Validate a sweep against its job's schema; returns {parameter: values checked}.

    Every parameter must be a config key of the job, and the job's config must load with each of the
    parameter's representative values (all listed values, or the range's ends), so wrong types fail too.
    """
    raw = spec.raw
    method = raw.get("method")
    if method not in METHODS:
        raise SweepError(f"{spec.path}: method must be one of {', '.join(METHODS)}, got {method!r}")
    metric = raw.get("metric")
    if method == "bayes" and not (isinstance(metric, dict) and metric.get("name")):
        raise SweepError(f"{spec.path}: a bayes sweep needs metric.name (and metric.goal)")
    if isinstance(metric, dict) and metric.get("goal", "minimize") not in ("minimize", "maximize"):
        raise SweepError(f"{spec.path}: metric.goal must be minimize or maximize")
    if not spec.parameters:
        raise SweepError(f"{spec.path}: no parameters")
    keys = set(valid_keys(spec.schema))
    fixed = spec.fixed_overrides
    try:
        load_config(spec.schema, spec.config_path, fixed)
    except ConfigError as err:
        raise SweepError(f"{spec.path}: command arguments {' '.join(fixed)}: {err}") from err
    checked: dict[str, list] = {}
    for name, param in spec.parameters.items():
        if name not in keys:
            hint = difflib.get_close_matches(name, sorted(keys), n=3, cutoff=0.5)
            raise SweepError(f"{spec.path}: parameter '{name}' is not a config key of "
                             f"`semedit {' '.join(spec.command[:2])}`"
                             + (f"; did you mean: {', '.join(hint)}?" if hint else ""))
        values = _candidate_values(name, param)
        for value in values:
            try:
                load_config(spec.schema, spec.config_path, [*fixed, format_override(name, value)])
            except ConfigError as err:
                raise SweepError(f"{spec.path}: parameter '{name}' = {value!r}: {err}") from err
        checked[name] = values
    return checked


def _sample(name: str, spec: dict, rng: random.Random) -> Any:
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    dist = spec.get("distribution") or ("int_uniform" if isinstance(spec.get("min"), int)
                                        and isinstance(spec.get("max"), int) else "uniform")
    lo, hi = spec.get("min"), spec.get("max")
    if dist == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if dist == "uniform":
        return rng.uniform(lo, hi)
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if dist == "q_uniform":
        q = spec.get("q", 1.0)
        return round(rng.uniform(lo, hi) / q) * q
    if dist == "q_log_uniform_values":
        q = spec.get("q", 1.0)
        return round(math.exp(rng.uniform(math.log(lo), math.log(hi))) / q) * q
    if dist == "normal":
        return rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))
    if dist == "log_normal":
        return math.exp(rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0)))
    raise SweepError(f"parameter '{name}': distribution '{dist}' cannot be sampled offline; "
                     f"use one of int_uniform, {', '.join(sorted(_CONTINUOUS))} or values")


def expand_sweep(spec: SweepSpec, trials: int | None = None, seed: int = 0) -> list[list[str]]:
    """Override lists of the trials of a sweep, for running it without a W&B server.

    grid: every combination of ``values`` (first ``trials`` of them if given; all parameters need values).
    random and bayes: ``trials`` random draws (seeded) — bayes needs W&B's server, offline it is random.
    """
    params = spec.parameters
    method = spec.raw.get("method")
    if method == "grid":
        names = list(params)
        for name in names:
            if "values" not in params[name] and "value" not in params[name]:
                raise SweepError(f"grid sweep: parameter '{name}' needs 'values'")
        axes = [params[n]["values"] if "values" in params[n] else [params[n]["value"]] for n in names]
        combos = list(itertools.product(*axes))
        if trials is not None:
            combos = combos[:trials]
        return [[format_override(n, v) for n, v in zip(names, combo, strict=True)] for combo in combos]
    if trials is None or trials < 1:
        raise SweepError(f"a {method} sweep needs the number of trials (--trials N)")
    rng = random.Random(seed)
    return [[format_override(n, _sample(n, p, rng)) for n, p in params.items()] for _ in range(trials)]
