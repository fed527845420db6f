"""Where an evaluation of a hair model lives: a folder named after the model and a hash of its protocol.

eval-identity and eval-hair put their results beside the hair run they evaluate
(``<run>/eval-<job>-<protocol hash>/``), or under ``runs/eval-<job>/<model file stem>-<hash>/`` for a model
file outside a run. The hash covers every setting that can change the numbers and the model file's content,
so another protocol or another model never lands in the same folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from semedit.config import as_dict
from semedit.hair import HairModelError
from semedit.weights import resolve_weights, sha256_of

__all__ = ["protocol_hash", "evaluation_dir"]


def protocol_hash(cfg, ckpt_sha256: str, not_protocol: Sequence[str]) -> str:
    """12 hex digits naming an evaluation: the settings of ``cfg`` except ``not_protocol`` (dotted keys that
    cannot change the numbers: where things go, who computes which shard) and the hair model's content."""
    settings = as_dict(cfg)
    for key in not_protocol:
        section, _, name = key.rpartition(".")
        (settings.get(section, {}) if section else settings).pop(name, None)
    text = json.dumps({"settings": settings, "hair_model_sha256": ckpt_sha256}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def evaluation_dir(cfg, job: str, not_protocol: Sequence[str], output_root: str | Path = "runs") -> Path:
    """The folder of evaluation ``job`` ("eval-identity", "eval-hair") of ``cfg.hair_model``; ``cfg.output_dir``
    when set."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    ckpt = Path(resolve_weights(cfg.hair_model))
    if not ckpt.is_file():
        raise HairModelError(f"hair model {ckpt} does not exist: give hair_model=<run>/checkpoints/last.ckpt from "
                             "`semedit train hair` (make train-hair), or the released FG 2021 model "
                             "(`semedit weights download hairstyle-fg2021`)")
    digest = protocol_hash(cfg, sha256_of(ckpt), not_protocol)
    ckpt = ckpt.resolve()
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / f"{job}-{digest}"
    return Path(output_root) / job / f"{ckpt.stem}-{digest}"
