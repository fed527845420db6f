"""Large CPU tensors without page faults: keep freed memory in the process instead of returning it to the OS.

glibc's malloc serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and unmaps it at
``free``. A 1024 px StyleGAN2 synthesis allocates activations of 134 MB ([1, 32, 1024, 1024] fp32) many times per
image; each fresh mapping is zero-filled one 4 KB page fault at a time, on every call. Measured on a 2-core AMD EPYC
with AVX512-BF16 (transparent huge pages in "madvise" mode, so none for these mappings): eager synthesis at 1024 px
batch 1 took 1.40 s with glibc's defaults and 0.93 s with ``reuse_freed_memory()``; NVlabs' reference ops went from
2.36 s to 1.05 s in the same process (benchmarks/results/<machine kind>/speed.json, "allocator" section).

``reuse_freed_memory()`` sets ``M_MMAP_MAX = 0`` (blocks come from the heap, whose freed memory is reused) and
``M_TRIM_THRESHOLD`` to its maximum (the heap is not shrunk after each large free). The process then keeps its
peak memory until it exits, which suits semedit's jobs. The semedit command calls it at start;
``SEMEDIT_MALLOC=default`` keeps glibc's defaults. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from semedit.errors import ConfigError

__all__ = ["MALLOC_ENV", "reuse_freed_memory"]

MALLOC_ENV = "SEMEDIT_MALLOC"  # "default": leave glibc's malloc as it is
# glibc malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
MAX_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


def _mallopt():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def reuse_freed_memory(respect_env: bool = True) -> bool:
    """Keep freed memory for the next allocations (see the module docstring); True when it took effect.
    ``respect_env=False`` ignores ``SEMEDIT_MALLOC`` (benchmarks)."""
    value = os.environ.get(MALLOC_ENV, "").strip() if respect_env else ""
    if value not in ("", "reuse", "default"):
        raise ConfigError(f"{MALLOC_ENV}={value!r}: expected 'default' (glibc's malloc settings) or 'reuse'")
    mallopt = _mallopt()
    if value == "default" or mallopt is None:
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, MAX_TRIM_THRESHOLD))
