"""The machine a benchmark ran on: CPU model and the instruction-set flags that change which kernels run,
thread count, torch and oneDNN versions, GPU. Every benchmark JSON carries ``machine_info()`` beside its
figures, and ``machine_kind()`` names the kind of machine (``amd-epyc-avx512bf16``, ``intel-xeon-amx``, ...),
so figures from different kinds of machines are kept apart and never compared as if from one.
"""

from __future__ import annotations

import os
import platform
import re

import torch

__all__ = ["machine_info", "machine_kind", "capped_isa", "ISA_FLAGS"]

# The CPU flags that decide torch's CPU paths (oneDNN's ISA dispatch, bf16 support).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n")[0].splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _transparent_hugepage() -> str | None:
    """The kernel's THP mode ("always" | "madvise" | "never"): with "always" large tensors get huge pages and few
    page faults, which changes how much a fresh allocation costs (see semedit.allocator)."""
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    match = re.search(r"\[(\w+)\]", text)
    return match.group(1) if match else None


def _onednn_version() -> str | None:
    match = re.search(r"(?:oneDNN|MKL-DNN)[^v\n]*v([\d.]+)", torch.__config__.show())
    return match.group(1) if match else None


def machine_info() -> dict:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_flags": [f for f in ISA_FLAGS if f in flags],
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onednn": _onednn_version(),
        "transparent_hugepage": _transparent_hugepage(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        # Other work on the machine while measuring (figures taken under load are slower than the machine is).
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "kind": machine_kind(),
        "isa_capped_to": capped_isa(),  # kernels limited by ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA (emulation)
        "isa_cap_note": CAP_NOTE if capped_isa() else None,
    }


def machine_kind() -> str:
    """``<vendor>-<family>-<best ISA>`` (CPU) or the GPU's name: the key of one JSON per machine kind."""
    if torch.cuda.is_available():
        return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    model = info.get("model name", platform.machine()).lower()
    vendor = "amd-epyc" if "epyc" in model else "amd" if "amd" in model else "intel-xeon" if "xeon" in model \
        else "intel" if "intel" in model else platform.machine().lower()
    isa = ("amx" if "amx_tile" in flags else "avx512bf16" if "avx512_bf16" in flags else
           "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "baseline")
    capped = capped_isa()
    # Kernels limited to AVX2 on a newer CPU (see capped_isa): a kind of its own, named for what it is, so that
    # its figures sit neither with this CPU's own nor with a real AVX2 machine's.
    return f"{vendor}-{isa}" + (f"-as-{capped}" if capped and capped != isa else "")


CAP_NOTE = ("an emulation of an AVX2-only CPU on this one: torch's own and oneDNN's kernels (the convolutions) "
            "run their AVX2 code; MKL's dense matmuls, the caches, memory bandwidth and clock are this CPU's. A real "
            "AVX2 machine's figures belong in its own kind")


def capped_isa() -> str | None:
    """"avx2" when both torch's own kernels (``ATEN_CPU_CAPABILITY=avx2``) and oneDNN's
    (``ONEDNN_MAX_CPU_ISA=AVX2``) are limited to AVX2, as when a newer CPU emulates an AVX2-only one; else None.
    bf16 without native units is then emulated too (semedit's probe: ``SEMEDIT_CPU_BF16=0``)."""
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).lower()
    return "avx2" if aten == "avx2" and onednn.startswith("avx2") else None
