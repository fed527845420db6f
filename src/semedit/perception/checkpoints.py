"""Loading public state_dicts into semedit modules with loud key and shape checks (no ``strict=False``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from semedit.weights import CorruptWeightsError, load_torch_state_dict

__all__ = ["state_dict_mismatch", "load_checked_state_dict"]


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor],
                        max_lines: int = 8) -> list[str]:
    """Human-readable differences between two state_dicts (missing/unexpected keys, shape changes)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    lines = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            shown = ", ".join(items[:max_lines]) + (f", ... ({len(items)} in all)" if len(items) > max_lines else "")
            lines.append(f"{title}: {shown}")
    return lines


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
    problems = state_dict_mismatch(module.state_dict(), sd)
    if problems:
        raise CorruptWeightsError(
            f"{name} is not {what} ({len(sd)} tensors in the file, {len(module.state_dict())} expected); "
            + "; ".join(problems)
        )
    module.load_state_dict(sd, strict=True)
    return module
