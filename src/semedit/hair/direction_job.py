"""`semedit train hair-direction`: a hair-manipulation direction in the hair-embedding space.

The talk says hair manipulation works "on the same principle as face rotation": a linear classifier
separating samples scored high and low on an attribute. Here the samples are images of the hair model's
generator, the features are their *hair embeddings* (the hair encoder's output [num_ws, w_dim], the
space the released ``latent_directions.pkl`` lives in; hairstyle_transfer_tool.py lines 214-222) and the
scores come from a hair attribute scorer (``hair_lightness``, ``hair_hue``, ``hair_area``,
``hair_length``; ``semedit.data.hair_scores``) measured in the hair mask of the model's region splitter.
The classifier is the direction classifier of ``semedit train direction`` (``classifier=linear``, or
``classifier=interfacegan`` for InterFaceGAN's SVM). The result, ``<run>/direction.safetensors``, is a
unit "wplus" direction over all entries of the hair embedding, for ``semedit hair-edit --direction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from semedit.config import MISSING, ConfigError, JobConfig
from semedit.data import StyleGAN2DataModule, SyntheticDataConfig
from semedit.directions.module import DirectionClassifierModule, DirectionConfig, ScoredLatentsDataModule
from semedit.hair.inference import HairTransfer, load_hair_model
from semedit.training import FitResult, fit

__all__ = ["Config", "DEFAULT_CONFIG", "HairEmbeddingScores", "build", "train"]

DEFAULT_CONFIG = "hair/direction_tiny.yaml"  # packaged default (semedit/configs/)


def _direction() -> DirectionConfig:
    return DirectionConfig(space="wplus")


@dataclass
class Config(JobConfig):
    """The hair model, the scored samples (data.scorer: a hair attribute) and the classifier.

    ``generator``: only ``truncation_psi``, ``noise_mode`` and ``reduced_precision`` are used; the
    generator itself is the hair model's (its W+ is what the fusion produces).
    """

    hair_ckpt: str = MISSING  # semedit hair checkpoint or the released model (best_model.pt / hairstyle-fg2021)
    regions: Optional[str] = None  # region splitter for the hair inputs; None: the model's own
    region_weights: Optional[str] = None
    data: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    direction: DirectionConfig = field(default_factory=_direction)


class HairEmbeddingScores(ScoredLatentsDataModule):
    """Scored samples whose features are hair embeddings of the synthesised images (flattened)."""

    def __init__(self, source: StyleGAN2DataModule, direction: DirectionConfig, tool: HairTransfer):
        super().__init__(source, direction)
        self.tool = tool

    def batch_features(self, batch: dict) -> torch.Tensor:
        if "image" not in batch:
            raise ConfigError("hair-direction needs images: set data.synthesize_images=true")
        tool = self.tool
        if tool.device != batch["image"].device:  # follow the trainer's device
            tool.device = batch["image"].device
            tool.model.net.to(tool.device)
            tool.splitter.to(tool.device)
        return tool.embed_hair(batch["image"]).flatten(1).float()


def build(cfg: Config) -> tuple[DirectionClassifierModule, HairEmbeddingScores]:
    if cfg.direction.space != "wplus" or cfg.direction.layers is not None:
        raise ConfigError("hair-direction classifies whole hair embeddings: direction.space must be 'wplus' "
                          "and direction.layers unset")
    if cfg.data.scorer.name is None:
        raise ConfigError("hair-direction needs data.scorer.name, e.g. hair_lightness, hair_hue, hair_area "
                          "or hair_length")
    if cfg.generator.ckpt is not None:
        raise ConfigError("hair-direction renders with the hair model's own generator; leave generator.ckpt "
                          "unset (hair_ckpt chooses the model)")
    model = load_hair_model(cfg.hair_ckpt, device="cpu")
    source = StyleGAN2DataModule(cfg.generator, cfg.data)
    source._generator = model.generator  # the hair model's generator, not one built from the spec
    # The scorer's hair mask is the hair model's region split unless the scorer names its own.
    scorer = cfg.data.scorer
    if scorer.regions is None:
        scorer.regions = cfg.regions or model.regions
        scorer.weights = scorer.weights or cfg.region_weights
    tool = HairTransfer(model, regions=cfg.regions, region_weights=cfg.region_weights)
    datamodule = HairEmbeddingScores(source, cfg.direction, tool)
    meta = {"scorer": scorer.name, "embedding": "hair", "hair_ckpt": str(cfg.hair_ckpt), "hair_model": model.source,
            "truncation_psi": cfg.generator.truncation_psi, "data_seed": cfg.data.seed}
    module = DirectionClassifierModule(datamodule.dim, cfg.direction, meta=meta)
    return module, datamodule


def train(cfg: Config) -> FitResult:
    module, datamodule = build(cfg)
    result = fit("hair-direction", module, datamodule, cfg, cfg.trainer, cfg.logger, cfg.run)
    path = result.run_dir / cfg.direction.output
    if path.is_file():
        print(f"hair direction: {path}  (semedit hair-edit --direction {path} --strengths -2 0 2)")
    return result
