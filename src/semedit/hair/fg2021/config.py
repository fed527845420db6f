"""The configuration of the FG 2021 hair-transfer member: its networks, losses, optimiser, and the `hair` job.

Kept apart from the modules that import Lightning, so that `semedit config show hair` loads the schema alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from semedit.config import JobConfig, check, check_number
from semedit.data.config import PairsConfig, SyntheticDataConfig
from semedit.layers import IRSE_DEPTHS

__all__ = ["EncoderConfig", "LossConfig", "OptimConfig", "HairJobConfig", "OPTIMIZERS",
           "SCHEDULERS"]


@dataclass
class EncoderConfig:
    """Architecture of the face/hair encoders (both use the same one); defaults are the released model."""

    num_layers: int = 50  # IR-SE depth: 10 | 18 | 34 | 50 | 100 | 152
    channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # width of each stage
    feature_dim: int = 512  # pooled feature width before the W+ projection
    pool_size: int = 7  # last feature map is average-pooled to pool_size x pool_size
    se_reduction: int = 16
    input_size: int = 256  # images are resized to input_size x input_size before the encoders

    def validate(self, prefix: str = "") -> None:
        check(self.num_layers in IRSE_DEPTHS, f"{prefix}num_layers", " | ".join(map(str, IRSE_DEPTHS)), self.num_layers)
        check(len(self.channels) == 4 and all(1 <= c <= 4096 for c in self.channels), f"{prefix}channels",
              "four stage widths from 1 to 4096", self.channels)
        for key in ("feature_dim", "pool_size", "se_reduction"):
            check(1 <= getattr(self, key) <= 4096, f"{prefix}{key}", "an integer from 1 to 4096", getattr(self, key))
        check(16 <= self.input_size <= 1024, f"{prefix}input_size", "an integer from 16 to 1024", self.input_size)


OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("none", "cosine", "step")


@dataclass
class LossConfig:
    """Weights of the loss terms (0 disables a term) and the models they use."""

    l2: float = 1.0
    lpips: float = 0.8
    identity: float = 0.1
    wplus: float = 1.0
    # Compute the image losses (L2, LPIPS) separately on the target's face and hair regions and weight
    # them with face_weight / hair_weight, instead of once over the whole image.
    region_masks: bool = False
    face_weight: float = 1.0
    hair_weight: float = 1.0
    lpips_net: str = "alex"  # "alex" | "vgg"
    lpips_pretrained_backbone: bool = True  # false: random backbone (tiny configs: no downloads)
    # ArcFace for the identity term: registry name, .pth/.onnx path, or "random-irse:<depth>" (tests).
    identity_encoder: Optional[str] = "arcface-irse50"

    def validate(self, prefix: str = "") -> None:
        for key in ("l2", "lpips", "identity", "wplus", "face_weight", "hair_weight"):
            check_number(getattr(self, key), f"{prefix}{key}", low=0)
        check(self.lpips_net in ("alex", "vgg"), f"{prefix}lpips_net", "alex or vgg", self.lpips_net)
        check(self.identity == 0 or bool(self.identity_encoder), f"{prefix}identity_encoder",
              f"an identity encoder (e.g. arcface-irse50) while {prefix}identity > 0; or set {prefix}identity=0",
              self.identity_encoder)


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # "adam" | "adamw"
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    scheduler: str = "none"  # "none" | "cosine" (to min_lr_ratio * lr at max_steps) | "step"
    warmup_steps: int = 0  # linear warm-up from 0 (all schedulers)
    min_lr_ratio: float = 0.0
    # Length of the cosine schedule; None: the trainer's max_steps. Set it when a run will be resumed with
    # a larger trainer.max_steps, so that the schedule (and thus the resumed run) does not change.
    total_steps: Optional[int] = None
    step_size: int = 10_000  # "step": multiply by gamma every step_size steps
    gamma: float = 0.5

    def validate(self, prefix: str = "") -> None:
        check(self.optimizer in OPTIMIZERS, f"{prefix}optimizer", " | ".join(OPTIMIZERS), self.optimizer)
        check(self.scheduler in SCHEDULERS, f"{prefix}scheduler", " | ".join(SCHEDULERS), self.scheduler)
        check_number(self.lr, f"{prefix}lr", low=0, low_open=True)
        check(len(self.betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas),
              f"{prefix}betas", "two numbers in [0, 1), e.g. [0.9, 0.999]", self.betas)
        check_number(self.weight_decay, f"{prefix}weight_decay", low=0)
        check(self.warmup_steps >= 0, f"{prefix}warmup_steps", "an integer >= 0", self.warmup_steps)
        check_number(self.min_lr_ratio, f"{prefix}min_lr_ratio", low=0, high=1)
        check(self.total_steps is None or self.total_steps >= 1, f"{prefix}total_steps", "null or an integer >= 1",
              self.total_steps)
        check(self.step_size >= 1, f"{prefix}step_size", "an integer >= 1", self.step_size)
        check_number(self.gamma, f"{prefix}gamma", low=0, low_open=True)


def _pairs_data() -> SyntheticDataConfig:
    # Hair transfer always trains on pairs; "random" is only a placeholder direction for tiny runs.
    return SyntheticDataConfig(mode="pairs", pairs=PairsConfig(direction="random"))


@dataclass
class HairJobConfig(JobConfig):
    data: SyntheticDataConfig = field(default_factory=_pairs_data)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    grid_samples: int = 4  # pairs per logged image grid
