"""The configuration of `semedit train hair-direction` (no Lightning imported here; see jobs/hair_direction.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from semedit.config import MISSING, JobConfig
from semedit.data.config import SyntheticDataConfig
from semedit.directions.config import DirectionConfig

__all__ = ["HairDirectionJobConfig"]


def _direction() -> DirectionConfig:
    return DirectionConfig(space="wplus")


@dataclass
class HairDirectionJobConfig(JobConfig):
    """The hair model, the scored samples (data.scorer: a hair attribute) and the classifier.

    ``generator``: only ``truncation_psi``, ``noise_mode`` and ``reduced_precision`` are used; the
    generator itself is the hair model's (its W+ is what the fusion produces).
    """

    hair_model: str = MISSING  # a hair-transfer model file (semedit hair checkpoint, best_model.pt / hairstyle-fg2021)
    regions: Optional[str] = None  # region splitter for the hair inputs; None: the model's own
    region_weights: Optional[str] = None
    data: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    direction: DirectionConfig = field(default_factory=_direction)
