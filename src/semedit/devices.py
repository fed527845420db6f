"""Whether this machine has the devices a job's ``trainer`` section asks for, checked before any work.

Lightning starts one process per device. On a CPU machine ``trainer.devices=64`` would start 64 processes of
about 500 MB each and exhaust the memory long before anything useful happens, and ``accelerator=gpu``
without a GPU fails deep inside Lightning. Both are refused here in one line, before a run folder exists.
This runs where the job runs (not at config load): `semedit launch` checks configs on a login node that may
have no GPU at all.
"""

from __future__ import annotations

from typing import Any

import torch

from semedit.errors import ConfigError
from semedit.threads import available_cpus

__all__ = ["requested_devices", "check_devices"]


def requested_devices(devices: Any) -> list[int] | int | None:
    """trainer.devices as a count (int), explicit ids (list) or None ("auto" / -1: all there are)."""
    if isinstance(devices, (list, tuple)):
        return [int(d) for d in devices]
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return None
    if "," in text:
        return [int(p) for p in text.split(",") if p.strip()]
    return int(text)


def check_devices(trainer: Any, prefix: str = "trainer") -> None:
    """ConfigError unless this machine has what ``trainer.accelerator`` / ``trainer.devices`` ask for."""
    accelerator = str(trainer.accelerator)
    wanted = requested_devices(trainer.devices)
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{prefix}.accelerator={accelerator} but this machine has no usable CUDA GPU; use "
                              f"{prefix}.accelerator=cpu here, or run on a GPU machine (e.g. semedit launch "
                              "--cluster slurm ...)")
        have, what = torch.cuda.device_count(), "CUDA GPUs"
    elif accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        # On the CPU every device is one process: more processes than CPUs only adds memory and contention.
        have, what = available_cpus(), "CPUs this process may use"
    else:
        have, what = torch.cuda.device_count(), "CUDA GPUs"
    if isinstance(wanted, list):
        bad = [d for d in wanted if not 0 <= d < have]
        if bad:
            raise ConfigError(f"{prefix}.devices={trainer.devices}: device ids {bad} do not exist; this machine has "
                              f"{have} {what} (ids 0..{have - 1})")
    elif isinstance(wanted, int) and wanted > have:
        raise ConfigError(f"{prefix}.devices={wanted} but this machine has {have} {what}; each device is one "
                          f"process, so use at most {prefix}.devices={have} here")
