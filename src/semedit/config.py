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
import math
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
    "validate_run_name",
    "check",
    "check_number",
    "validate_config",
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

    def validate(self, prefix: str = "") -> None:
        r = self.resolution
        check(r in TINY_RESOLUTIONS, f"{prefix}resolution", "a power of two from 8 to 1024 (the tiny generator is "
              "for tests and demos; paper-scale runs load a checkpoint with generator.ckpt)", r)
        for key in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max"):
            check(1 <= getattr(self, key) <= 4096, f"{prefix}{key}", "an integer from 1 to 4096", getattr(self, key))
        check(self.architecture in ("orig", "skip", "resnet"), f"{prefix}architecture", "orig, skip or resnet",
              self.architecture)


TINY_RESOLUTIONS = tuple(2**i for i in range(3, 11))


@dataclass
class GeneratorSpec:
    """Which frozen StyleGAN2 a job uses."""

    # Path to a rosinality .pt, an NVlabs .pkl or a semedit .safetensors checkpoint, or a weights-registry
    # name (see `semedit weights list`). None builds the tiny random generator below.
    ckpt: Optional[str] = None
    tiny: TinyGeneratorConfig = field(default_factory=TinyGeneratorConfig)
    truncation_psi: float = 1.0  # w_avg + psi * (w - w_avg); 1.0 means no truncation
    noise_mode: str = "const"  # "const" | "random" | "none"
    # Run the highest-resolution synthesis blocks in reduced precision, as NVlabs does (their conv_clamp=256
    # comes with it): "none" | "bf16" | "fp16" (GPU only) | "auto" = bf16 where the device multiplies bf16
    # natively (CUDA compute capability >= 8, CPU with AMX-BF16/AVX512-BF16), fp32 elsewhere; a long job measures
    # bf16 against fp32 instead (semedit.stylegan2.autotune; training never takes bf16 under "auto"). Training
    # and equivalence checks keep "none"; inference commands (generate, hair transfer, demo) default to "auto".
    reduced_precision: str = "none"
    num_reduced_precision_res: int = 4  # how many of the highest resolutions use it (NVlabs train.py:181: 4)
    # torch.compile mapping and synthesis: "auto" | "on" | "off". "auto": a job that declares its length (training,
    # galleries, inversion, pair batches, the demo) measures the synthesis compiled and eager on this machine and
    # keeps the faster, compile time counted against its length (semedit.stylegan2.autotune; the decision is cached
    # in ~/.cache/semedit/autotune.json); otherwise on with CUDA, off on a CPU. The compile time is logged once;
    # compiled graphs are cached on disk (~/.cache/semedit/inductor, or $TORCHINDUCTOR_CACHE_DIR) across runs.
    compile: str = "auto"

    def validate(self, prefix: str = "") -> None:
        check(math.isfinite(self.truncation_psi), f"{prefix}truncation_psi", "a finite number (1.0: no truncation)",
              self.truncation_psi)
        check(self.noise_mode in NOISE_MODES, f"{prefix}noise_mode", " | ".join(NOISE_MODES), self.noise_mode)
        check(self.reduced_precision in PRECISION_SETTINGS, f"{prefix}reduced_precision", " | ".join(PRECISION_SETTINGS),
              self.reduced_precision)
        check(0 <= self.num_reduced_precision_res <= 10, f"{prefix}num_reduced_precision_res", "an integer from 0 to 10",
              self.num_reduced_precision_res)
        check(str(self.compile).lower() in ("auto", "on", "off", "true", "false"), f"{prefix}compile",
              "auto | on | off", self.compile)


NOISE_MODES = ("const", "random", "none")
PRECISION_SETTINGS = ("auto", "none", "bf16", "fp16")


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

    def validate(self, prefix: str = "") -> None:
        validate_trainer(self, prefix.rstrip(".") or "trainer")


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
    # "auto": continue the run folder if its config.yaml has the same result-affecting settings (see
    # semedit.runs.RESUME_SAFE_KEYS), from its newest checkpoint | "never": start over (the old contents move
    # to <run>/replaced-<time>/) | a .ckpt path
    resume: str = "auto"
    checkpoint_every_n_steps: int = 100
    # CPU threads of each process (torch.set_num_threads). 0: the CPUs this process may use (its affinity,
    # and SLURM_CPUS_PER_TASK when set) divided among the local DDP processes; OMP_NUM_THREADS, when set, wins.
    threads: int = 0

    def validate(self, prefix: str = "") -> None:
        validate_run(self, prefix.rstrip(".") or "run")


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
        key, value = item.split("=", 1)
        if not value.strip():
            # OmegaConf would read "key=" as null, silently (run.name= would become an automatic name).
            raise ConfigError(f"override '{item}' has no value: give one, or write {key}=null for none "
                              f"(or {key}=\"''\" for an empty string)")
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
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise _explain(err, schema, "merged configuration") from err
    validate_config(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------------
# Checks of the shared sections that OmegaConf's types cannot express (run for every job at load time,
# so a bad value stops before a run folder exists).

# Lightning's precision spellings (lightning_fabric/connector.py _PRECISION_INPUT).
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
              "32-true", "64-true", "64", "32", "16", "bf16")


# Lightning's accelerator names that semedit's jobs can run on.
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")


def validate_run_name(name: str, source: str = "run.name") -> str:
    """``name`` if it is one plain path component (a folder directly inside run.output_dir), else ConfigError."""
    text = str(name)
    problem = None
    if not text.strip():
        problem = "is empty"
    elif text in (".", ".."):
        problem = f"is '{text}'"
    elif "/" in text or "\\" in text or os.sep in text or (os.altsep and os.altsep in text):
        problem = "contains a path separator"
    elif "\0" in text:
        problem = "contains a NUL character"
    elif text != text.strip():
        problem = "starts or ends with white space"
    if problem:
        raise ConfigError(f"{source}={text!r} {problem}: a run name must be a single folder name such as "
                          "hair-lr1e-4 (no '/', not '.' or '..'); the folder is created inside run.output_dir")
    return text


def _devices_ok(devices: Any) -> bool:
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, str):
        text = devices.strip()
        return text == "auto" or text == "-1" or all(p.strip().isdigit() for p in text.rstrip(",").split(","))
    if isinstance(devices, (list, tuple)):
        return len(devices) > 0 and all(isinstance(d, int) and d >= 0 for d in devices)
    return False


def validate_trainer(t: TrainerConfig, prefix: str = "trainer") -> None:
    checks = [
        (t.max_steps == -1 or t.max_steps >= 1, "max_steps", "-1 (no limit) or an integer >= 1", t.max_steps),
        (t.max_epochs is None or t.max_epochs == -1 or t.max_epochs >= 1, "max_epochs",
         "null, -1 (no limit) or an integer >= 1", t.max_epochs),
        (t.log_every_n_steps >= 1, "log_every_n_steps", "an integer >= 1", t.log_every_n_steps),
        (t.accumulate_grad_batches >= 1, "accumulate_grad_batches", "an integer >= 1", t.accumulate_grad_batches),
        (t.num_nodes >= 1, "num_nodes", "an integer >= 1", t.num_nodes),
        (_devices_ok(t.devices), "devices", "an integer >= 1, -1, 'auto' or a list of device ids", t.devices),
        (str(t.precision) in PRECISIONS, "precision", "one of " + ", ".join(PRECISIONS), t.precision),
        (str(t.accelerator) in ACCELERATORS, "accelerator", "one of " + ", ".join(ACCELERATORS), t.accelerator),
        (t.gradient_clip_val is None or t.gradient_clip_val >= 0, "gradient_clip_val", "null or a number >= 0",
         t.gradient_clip_val),
        (t.check_val_every_n_epoch is None or t.check_val_every_n_epoch >= 1, "check_val_every_n_epoch",
         "null or an integer >= 1", t.check_val_every_n_epoch),
        (t.val_check_interval is None or t.val_check_interval > 0, "val_check_interval", "null or a number > 0",
         t.val_check_interval),
        (t.limit_val_batches is None or t.limit_val_batches >= 0, "limit_val_batches", "null or a number >= 0",
         t.limit_val_batches),
    ]
    for ok, key, valid, value in checks:
        if not ok:
            raise ConfigError(f"{prefix}.{key}={value!r} is not valid: expected {valid}")


def validate_run(r: RunConfig, prefix: str = "run") -> None:
    if r.name is not None:
        validate_run_name(r.name, f"{prefix}.name")
    if r.checkpoint_every_n_steps < 0:
        raise ConfigError(f"{prefix}.checkpoint_every_n_steps={r.checkpoint_every_n_steps} is not valid: expected "
                          "0 (checkpoint at the end only) or an integer >= 1")
    if r.threads < 0:
        raise ConfigError(f"{prefix}.threads={r.threads} is not valid: expected 0 (automatic) or an integer >= 1")
    if not str(r.resume).strip():
        raise ConfigError(f"{prefix}.resume is empty: expected auto, never or the path of a .ckpt file")


def check(ok: bool, key: str, expected: str, value: Any, error: type[ConfigError] = ConfigError) -> None:
    """Raise ``error`` (a ConfigError) naming ``key``, its value and what is valid, unless ``ok``."""
    if not ok:
        raise error(f"{key}={value!r} is not valid: expected {expected}")


def check_number(value: Any, key: str, low: float | None = None, high: float | None = None,
                 low_open: bool = False, error: type[ConfigError] = ConfigError) -> None:
    """A finite number within [low, high] (``low_open``: strictly above ``low``); ConfigError otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high)
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    check(ok, key, "a finite number" + (" " + " and ".join(bounds) if bounds else ""), value, error)


def validate_config(cfg: Any, prefix: str = "") -> None:
    """Run the ``validate(prefix)`` method of every section of a loaded config, depth first, with the dotted
    key of each section, so that every job's sections (shared or its own) are checked at load time, before
    any folder exists, by ``train``, ``config show`` and ``launch`` alike."""
    if not dataclasses.is_dataclass(cfg):
        return
    for f in dataclasses.fields(cfg):
        validate_config(getattr(cfg, f.name), f"{prefix}{f.name}.")
    hook = getattr(cfg, "validate", None)
    if callable(hook):
        hook(prefix)


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
