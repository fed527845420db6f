"""Typed configuration: YAML files plus ``key=value`` overrides, merged by OmegaConf onto dataclasses.

Every job declares its configuration as a dataclass (the schema). ``load_config(Schema, yaml, overrides)``
merges the schema defaults, the YAML file and the command-line overrides, in that order, and returns an
instance of the dataclass. Because the schema is an OmegaConf *structured* config, an unknown key or a
value of the wrong type is rejected; ``ConfigError`` then names the offending key and what is valid.

The sections shared by all jobs (which generator, how Lightning trains, how W&B logs) live here so that
every job spells them the same way, which is what lets one sweep file or one SLURM launcher drive any job.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from semedit.errors import ConfigError

T = TypeVar("T")

__all__ = [
    "MISSING",
    "ConfigError",
    "TinyGeneratorConfig",
    "GeneratorSpec",
    "TrainerConfig",
    "LoggerConfig",
    "RunConfig",
    "JobConfig",
    "packaged_config",
    "resolve_config_path",
    "load_config",
    "save_config",
    "to_yaml",
    "valid_keys",
]


# ----------------------------------------------------------------------------------------------------
# Shared sections.


@dataclass
class TinyGeneratorConfig:
    """A small, randomly initialised StyleGAN2, used when no checkpoint is given (CPU tests and demos).

    Its weights come from ``init_seed`` alone, so every machine builds the same generator.
    """

    resolution: int = 32  # output size in pixels, a power of two >= 8
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    channel_base: int = 1024  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 64
    architecture: str = "skip"  # "orig" | "skip" | "resnet"
    init_seed: int = 0


@dataclass
class GeneratorSpec:
    """Which frozen StyleGAN2 a job uses."""

    # Path to a rosinality .pt, an NVlabs .pkl or a semedit .safetensors checkpoint, or a weights-registry
    # name (see `semedit weights list`). None builds the tiny random generator below.
    ckpt: Optional[str] = None
    tiny: TinyGeneratorConfig = field(default_factory=TinyGeneratorConfig)
    truncation_psi: float = 1.0  # w_avg + psi * (w - w_avg); 1.0 means no truncation
    noise_mode: str = "const"  # "const" | "random" | "none"
    # Run the highest-resolution synthesis blocks in reduced precision on a GPU: "none" | "bf16" | "fp16".
    reduced_precision: str = "none"
    num_reduced_precision_res: int = 4  # how many of the highest resolutions use it


@dataclass
class TrainerConfig:
    """Arguments passed to ``lightning.Trainer`` (names match Lightning's)."""

    accelerator: str = "cpu"
    devices: Any = 1  # int, list of device ids, or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "auto" | "ddp" | "ddp_spawn" | ...
    precision: str = "32-true"
    max_steps: int = -1
    max_epochs: Optional[int] = None
    val_check_interval: Optional[float] = None
    check_val_every_n_epoch: Optional[int] = 1
    limit_val_batches: Optional[float] = None
    log_every_n_steps: int = 10
    gradient_clip_val: Optional[float] = None
    accumulate_grad_batches: int = 1
    fast_dev_run: Any = False  # bool or number of batches
    deterministic: bool = False
    enable_progress_bar: bool = True


@dataclass
class LoggerConfig:
    """Weights & Biases logging. Offline mode writes a local run that ``wandb sync`` uploads later."""

    wandb: bool = True
    project: str = "semedit"
    entity: Optional[str] = None
    mode: str = "offline"  # "online" | "offline" | "disabled"
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    log_images_every_n_steps: int = 100


@dataclass
class RunConfig:
    """Where a run writes and how it resumes."""

    output_dir: str = "runs"
    # None: "<job>-<wandb run id>" in a W&B sweep, "<job>-slurm<jobid>" under SLURM, else
    # "<job>-<date>-<time>-<random>". Pin it to resume by re-running the same command.
    name: str | None = None
    seed: int = 0
    resume: str = "auto"  # "auto": continue from the run folder's newest checkpoint if any | "never" | a .ckpt path
    checkpoint_every_n_steps: int = 100



@dataclass
class JobConfig:
    """The sections every job shares, defined once: each job's schema subclasses this and adds its own.

    Spelling them the same way in every job is what lets one sweep file, one SLURM launcher and one
    run-folder policy drive any job.
    """

    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    run: RunConfig = field(default_factory=RunConfig)


# ----------------------------------------------------------------------------------------------------
# Loading.


def packaged_config(relative: str) -> Path:
    """Path of a default config shipped inside the package, e.g. ``packaged_config("hair/tiny.yaml")``.

    The defaults are package data (``semedit/configs/``), so they are found after a plain ``pip install``
    from any folder; the repository's top-level ``configs/`` is the same folder (a test checks).
    """
    path = Path(str(resources.files("semedit") / "configs" / relative))
    if not path.is_file():
        raise ConfigError(f"no packaged config '{relative}' (looked in {path.parent})")
    return path


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A user's ``--config`` path as given; else, for ``configs/<job>/<file>.yaml`` (the spelling in the
    README, sweep files and cluster scripts), the packaged copy, so it works from any folder."""
    path = Path(path)
    if path.is_file() or path.is_absolute():
        return path
    parts = path.parts
    if parts and parts[0] == "configs" and len(parts) > 1:
        packaged = Path(str(resources.files("semedit") / "configs")).joinpath(*parts[1:])
        if packaged.is_file():
            return packaged
    return path


def valid_keys(schema: Any, prefix: str = "") -> list[str]:
    """All dotted keys a schema accepts (for error messages and for validating sweep files)."""
    cfg = schema if isinstance(schema, DictConfig) else OmegaConf.structured(schema)
    keys: list[str] = []
    for key in cfg.keys():
        node = cfg._get_node(key)
        dotted = f"{prefix}{key}"
        if isinstance(node, DictConfig) and node._metadata.object_type not in (None, dict):
            keys.extend(valid_keys(node, prefix=dotted + "."))
        else:
            keys.append(dotted)
    return keys


def _closest(key: str, options: list[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(key, options, n=n, cutoff=0.5)


def _explain(err: OmegaConfBaseException, schema: type, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
    keys = valid_keys(schema)
    if isinstance(err, ConfigKeyError) or "not in struct" in str(err) or "Key '" in str(err):
        parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
        siblings = [k for k in keys if k.startswith(parent) and "." not in k[len(parent):]] if parent else [
            k.split(".")[0] for k in keys
        ]
        siblings = sorted(set(siblings))
        hint = _closest(key, keys)
        msg = f"unknown config key '{key}' (from {source})."
        if hint:
            msg += f" Did you mean: {', '.join(hint)}?"
        msg += f" Valid keys here: {', '.join(siblings)}."
        return ConfigError(msg)
    if isinstance(err, ValidationError):
        node_type = None
        try:
            node_type = OmegaConf.select(OmegaConf.structured(schema), key, throw_on_missing=False)
        except Exception:  # noqa: BLE001 - only used to enrich the message
            pass
        expected = f" (default: {node_type!r})" if node_type is not None else ""
        reason = str(err.msg).strip().splitlines()[0]  # OmegaConf appends internal node details
        return ConfigError(f"invalid value for config key '{key}' (from {source}): {reason}{expected}")
    return ConfigError(f"invalid configuration (from {source}), key '{key}': {err}")


def _open_free_form_dicts(cfg: DictConfig) -> None:
    """Struct mode rejects unknown keys everywhere; ``dict``-typed fields (free-form maps such as
    environment variables) must still accept new keys."""
    for key in cfg.keys():
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            if node._metadata.object_type in (None, dict):
                OmegaConf.set_struct(node, False)
            else:
                _open_free_form_dicts(node)


def _parse_overrides(overrides: list[str]) -> list[str]:
    parsed = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. optim.lr=0.001)")
        key = item.split("=", 1)[0]
        if key.startswith("--"):
            # W&B agents pass parameters as --key=value; accept that spelling too.
            item = item[2:]
        parsed.append(item)
    return parsed


def load_config(schema: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> T:
    """Merge ``schema`` defaults <- YAML file ``path`` <- ``overrides`` and return a ``schema`` instance.

    Raises ``ConfigError`` naming the key for unknown keys, wrong types and missing required values.
    """
    base = OmegaConf.structured(schema)
    OmegaConf.set_struct(base, True)
    _open_free_form_dicts(base)
    merged = base
    if path is not None:
        path = resolve_config_path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            file_cfg = OmegaConf.load(path)
        except Exception as err:  # yaml errors come in several types
            raise ConfigError(f"cannot parse config file {path}: {err}") from err
        file_cfg.pop("defaults", None) if isinstance(file_cfg, DictConfig) else None
        try:
            merged = OmegaConf.merge(merged, file_cfg)
        except OmegaConfBaseException as err:
            raise _explain(err, schema, str(path)) from err
    if overrides:
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(_parse_overrides(list(overrides))))
        except OmegaConfBaseException as err:
            raise _explain(err, schema, "command-line overrides") from err
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(f"required config keys have no value: {', '.join(missing)}")
    try:
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise _explain(err, schema, "merged configuration") from err


def to_yaml(cfg: Any) -> str:
    """YAML text of a config dataclass instance (what `save_config` writes)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write ``cfg`` as YAML; ``load_config(type(cfg), path)`` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg))
    return path


def as_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass (for loggers and hyper-parameter saving)."""
    if dataclasses.is_dataclass(cfg):
        return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    return dict(cfg)
