"""Loading public state_dicts into semedit modules with loud key and shape checks (no ``strict=False``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from semedit.weights import CorruptWeightsError, load_state_dict_strict, load_torch_state_dict

__all__ = ["load_checked_state_dict"]


def load_checked_state_dict(module: nn.Module, source: str | Path | Mapping[str, torch.Tensor],
                            what: str, strip_prefix: str = "") -> nn.Module:
    """Load ``source`` (a path read with ``weights_only=True``, or a dict) into ``module``.

    Every key and shape must match exactly; otherwise CorruptWeightsError lists the differences and says
    which format was expected. ``strip_prefix`` removes a prefix such as ``"module."`` (DataParallel).
    """
    name = str(source) if not isinstance(source, Mapping) else "state_dict"
    sd = dict(source) if isinstance(source, Mapping) else load_torch_state_dict(source)
    if "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = dict(sd["state_dict"])
    if strip_prefix:
        sd = {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v for k, v in sd.items()}
    non_tensors = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise CorruptWeightsError(f"{name}: entries that are not tensors: {non_tensors[:5]}; expected {what}")
    return load_state_dict_strict(module, sd, f"{name} (expected {what})", cast=False)
