"""The configuration of the direction classifier and of the `direction` job (no Lightning imported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from semedit.config import JobConfig, check, check_number
from semedit.data.config import SyntheticDataConfig

__all__ = ["LOSSES", "FEATURE_SPACES", "CLASSIFIERS", "DirectionConfig", "DirectionJobConfig"]

LOSSES = ("hinge", "logistic")
FEATURE_SPACES = ("z", "w", "wplus")
CLASSIFIERS = ("linear", "interfacegan")


@dataclass
class DirectionConfig:
    """What the direction classifier fits and how."""

    space: str = "w"  # "z" | "w" | "wplus"
    layers: Optional[list[int]] = None  # wplus: the W+ layers (None: all); w: layers recorded in the file
    num_samples: int = 10_000  # scored samples drawn (indices [0, num_samples) of the datamodule)
    fraction: float = 0.02  # top and bottom fraction kept as the two classes
    val_fraction: float = 0.2  # held-out part of the kept samples, for validation accuracy
    score_batch_size: int = 64  # per device, while scoring
    # "linear": semedit's classifier (loss/optimizer/whiten below). "interfacegan": InterFaceGAN's
    # train_boundary (SVC(kernel='linear'), raw codes, int(N * fraction) per class, split
    # interfacegan_split_ratio / rest per class); loss, optimizer, lr, weight_decay, whiten and
    # val_fraction are then unused.
    classifier: str = "linear"
    interfacegan_split_ratio: float = 0.7  # train_boundary's split_ratio default (manipulator.py line 15)
    loss: str = "hinge"  # "hinge": squared hinge (the L2-SVM loss, cf. sklearn LinearSVC's default) | "logistic"
    # "lbfgs" (default): full-batch L-BFGS to the optimum of the regularised loss (semedit's choice; not
    # what InterFaceGAN does, see classifier=interfacegan); it runs a fixed number of iterations per step
    # (no tolerance stop), so DDP ranks stay in lockstep. "sgd" (momentum 0.9) for pools too large for one batch. Not Adam: its
    # per-coordinate step sizes rotate the normal, and separable classes stop training right there.
    optimizer: str = "lbfgs"  # "lbfgs" | "sgd"
    lbfgs_iterations: int = 50  # L-BFGS iterations per training step
    lr: float = 1.0  # L-BFGS step size (1 is standard) or SGD learning rate
    weight_decay: float = 1e-4  # L2 on the (whitened) normal: the SVM's 1/C
    batch_size: int = 0  # per device, while fitting; 0: the whole training split in one batch
    whiten: bool = True
    output: str = "direction.safetensors"  # written into the run folder

    def validate(self, prefix: str = "") -> None:
        check(self.space in FEATURE_SPACES, f"{prefix}space", " | ".join(FEATURE_SPACES), self.space)
        check(self.classifier in CLASSIFIERS, f"{prefix}classifier", " | ".join(CLASSIFIERS), self.classifier)
        check(self.loss in LOSSES, f"{prefix}loss", " | ".join(LOSSES), self.loss)
        check(self.optimizer in ("lbfgs", "sgd"), f"{prefix}optimizer", "lbfgs or sgd", self.optimizer)
        check(self.num_samples >= 2, f"{prefix}num_samples", "an integer >= 2", self.num_samples)
        check_number(self.fraction, f"{prefix}fraction", low=0, high=0.5, low_open=True)
        check_number(self.val_fraction, f"{prefix}val_fraction", low=0, high=0.9)
        check_number(self.interfacegan_split_ratio, f"{prefix}interfacegan_split_ratio", low=0, high=1, low_open=True)
        check(self.score_batch_size >= 1, f"{prefix}score_batch_size", "an integer >= 1", self.score_batch_size)
        check(self.lbfgs_iterations >= 1, f"{prefix}lbfgs_iterations", "an integer >= 1", self.lbfgs_iterations)
        check_number(self.lr, f"{prefix}lr", low=0, low_open=True)
        check_number(self.weight_decay, f"{prefix}weight_decay", low=0)
        check(self.batch_size >= 0, f"{prefix}batch_size", "0 (whole split) or an integer >= 1", self.batch_size)
        check(self.layers is None or all(isinstance(i, int) and i >= 0 for i in self.layers), f"{prefix}layers",
              "null or a list of W+ layer indices >= 0", self.layers)
        check(bool(self.output.strip()) and "/" not in self.output, f"{prefix}output",
              "a file name inside the run folder", self.output)


@dataclass
class DirectionJobConfig(JobConfig):
    """`semedit train direction`: scored samples of the generator and the classifier that separates them."""

    data: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    direction: DirectionConfig = field(default_factory=DirectionConfig)
