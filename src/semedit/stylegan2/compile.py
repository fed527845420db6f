"""When and how the generator runs under ``torch.compile``, and which reduced precision the hardware supports.

``compile`` setting (``GeneratorSpec.compile``): "auto" | "on" | "off" (booleans are accepted too).
"auto" is decided by measurement for a job that declared how many generator calls it makes
(``semedit.stylegan2.autotune``); without a declaration (or with ``SEMEDIT_AUTOTUNE=0``) the static rule here
decides: compile on CUDA, where inductor's fused Triton kernels replace many small memory-bound passes, and
stay eager on a CPU unless ``CPU_COMPILE_PAYS_OFF`` (see below) says it pays off there.

``reduced_precision`` setting: "auto" | "none" | "bf16" | "fp16". "auto" means bf16 where the hardware has
bf16 matrix units (a CUDA GPU of compute capability >= 8.0, or a CPU with AMX-BF16 / AVX512-BF16) and fp32
elsewhere. Forcing "bf16" runs it anyway (on a CPU without those units oneDNN emulates it, slowly).

The entry points are compiled once per code object (``torch.compile`` of the unbound implementation), so
no compiled function holds a reference to a module and modules stay deep-copyable and picklable. The
whole mapping or synthesis pass is one graph (no graph breaks; see tests/stylegan2/test_compile.py).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

import torch

log = logging.getLogger("semedit")

COMPILE_SETTINGS = ("auto", "on", "off")
PRECISION_SETTINGS = ("auto", "none", "bf16", "fp16")

# The static rule (jobs that declare their length measure instead: semedit.stylegan2.autotune).
# benchmarks/results/amd-epyc-avx2/speed.json (AMD EPYC, AVX2, 2 shared cores): the whole synthesis as one
# graph, compiled, ran at 0.80x eager at 256 px batch 4 and 1.33x at 1024 px batch 1, after 7-10 minutes of
# compiling on the loaded machine (0.72-0.97x measured with graph breaks). Inductor's CPU convolutions call the
# same oneDNN kernels; the elementwise passes it fuses matter only at high resolution. A mixed gain that costs
# minutes of compiling: without a measurement the CPU stays eager; `compile: on` forces it.
CPU_COMPILE_PAYS_OFF = False

# torch.compile's backend ("inductor"); tests put a counting backend here.
COMPILE_BACKEND: Union[str, Callable] = "inductor"

_COMPILED: dict[tuple[type, str], Callable] = {}


def normalize_compile_setting(setting: Union[str, bool, None]) -> str:
    """"auto" | "on" | "off" from a config value; a clear error otherwise.

    Booleans are accepted, and so are their spellings as strings: YAML 1.1 reads a bare ``on``/``off`` as
    a boolean, which a string config field then holds as "True"/"False"."""
    if isinstance(setting, str) and setting.lower() in ("true", "false"):
        setting = setting.lower() == "true"
    if setting is True:
        return "on"
    if setting is False or setting is None:
        return "off"
    if setting not in COMPILE_SETTINGS:
        raise ValueError(f"generator.compile must be one of {COMPILE_SETTINGS} (or true/false), got {setting!r}")
    return setting


def compile_enabled(setting: Union[str, bool, None], device: Union[torch.device, str]) -> bool:
    """Whether the generator compiles on ``device`` under ``setting``."""
    setting = normalize_compile_setting(setting)
    if setting != "auto":
        return setting == "on"
    return torch.device(device).type == "cuda" or CPU_COMPILE_PAYS_OFF


def default_cache_dir() -> Path:
    """~/.cache/semedit/inductor (XDG_CACHE_HOME respected): compiled kernels and FX graphs persist there."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "semedit" / "inductor"


def enable_compile_cache() -> str:
    """Turn on inductor's on-disk FX graph cache so that a second run loads the compiled graphs instead of
    compiling them again, under ``$TORCHINDUCTOR_CACHE_DIR`` (default ``default_cache_dir()``).

    A cache dir already chosen by the user (the environment variable) is kept.
    """
    import torch._inductor.config as inductor_config  # the config module is not imported by `import torch`
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir as torch_default_cache_dir

    # Importing inductor writes its own default (/tmp/torchinductor_<user>, lost at reboot) into the
    # environment variable; only a value other than that one was chosen by the user.
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(torch_default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(default_cache_dir())
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    inductor_config.fx_graph_cache = True
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def compiled_entry(module: torch.nn.Module, name: str, device: Union[torch.device, str],
                   enabled: Optional[bool] = None) -> Callable:
    """``getattr(module, name)``, compiled when ``module.compile_setting`` enables it on ``device`` (``enabled``,
    when given, decides instead: "auto" measured by ``semedit.stylegan2.autotune``).

    The first compiled call of each module reports its duration (compiling included) once, on one log line.
    """
    eager = getattr(module, name)
    if enabled is None:
        enabled = compile_enabled(getattr(module, "compile_setting", "off"), device)
    if torch.compiler.is_compiling() or not enabled:
        return eager
    key = (type(module), name)
    fn = _COMPILED.get(key)
    if fn is None:
        enable_compile_cache()
        fn = torch.compile(getattr(type(module), name), backend=COMPILE_BACKEND)
        _COMPILED[key] = fn

    def call(*args, **kwargs):
        _mark_batch_dynamic(args)
        return fn(module, *args, **kwargs)

    if getattr(module, "_compile_reported", False):
        return call

    def first_call(*args, **kwargs):
        start = time.perf_counter()
        out = call(*args, **kwargs)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        module._compile_reported = True
        message = (f"torch.compile: {type(module).__name__}.{name} compiled and ran its first call in "
                   f"{time.perf_counter() - start:.1f} s (inductor cache: {os.environ.get('TORCHINDUCTOR_CACHE_DIR')})")
        if logging.getLogger().handlers or log.handlers:
            log.info(message)
        else:  # logging not configured (the CLI): still show the one line
            print(f"semedit: {message}", file=sys.stderr)
        return out

    return first_call


def _mark_batch_dynamic(args) -> None:
    """One graph for every batch size >= 2 (jobs change it between training, validation and the last batch)
    instead of a recompile at the second size. Batch 1 still gets its own graph (PyTorch specialises 1)."""
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.ndim:
            torch._dynamo.maybe_mark_dynamic(arg, 0)
        elif isinstance(arg, (list, tuple)):
            _mark_batch_dynamic(arg)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Overrides the CPU probe below: "1" = behave as on a CPU with bf16 units, "0" = as on one without. The test
# suite sets "0" so that no expectation depends on the CPU it runs on, and sets "1" to exercise that branch on
# every machine (on a CPU without the units bf16 is then emulated: correct, only slow).
CPU_BF16_ENV = "SEMEDIT_CPU_BF16"


@functools.cache
def _probe_cpu_bf16_units() -> bool:
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def cpu_has_bf16_units() -> bool:
    """AMX-BF16 or AVX512-BF16 in /proc/cpuinfo: the CPU multiplies bf16 matrices natively (oneDNN then runs
    bf16 convolutions and matmuls faster than fp32). Without them oneDNN emulates bf16, slower than fp32.
    ``torch.backends.cpu.get_cpu_capability()`` ("AVX512", "AVX2") does not say whether bf16 is native.
    ``SEMEDIT_CPU_BF16=1|0`` overrides the probe."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"{CPU_BF16_ENV}={forced!r}: expected 1 (bf16 units) or 0 (none), or unset (probe the CPU)")
    return _probe_cpu_bf16_units()


def describe_cpu() -> dict:
    """CPU model, PyTorch's vector capability and the bf16 flags, for benchmark reports."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"model_name": model, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_flags": sorted({"amx_bf16", "avx512_bf16", "amx_tile"} & _cpu_flags()),
            "bf16_native": cpu_has_bf16_units()}


def bf16_capable(device: Union[torch.device, str]) -> bool:
    """Whether ``device`` runs bf16 convolutions natively (see module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_has_bf16_units()
    return False


def resolve_precision(setting: str, device: Union[torch.device, str]) -> str:
    """"none" | "bf16" | "fp16" for ``setting`` ("auto" picks bf16 where ``bf16_capable``)."""
    if setting not in PRECISION_SETTINGS:
        raise ValueError(f"generator.reduced_precision must be one of {PRECISION_SETTINGS}, got {setting!r}")
    if setting != "auto":
        return setting
    return "bf16" if bf16_capable(device) else "none"
