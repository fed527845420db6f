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

import torch

from semedit.config import ConfigError
from semedit.data.datamodule import StyleGAN2DataModule
from semedit.directions.config import DirectionConfig
from semedit.directions.module import DirectionClassifierModule, ScoredLatentsDataModule
from semedit.hair import HairTransferMethod, MethodOptions, load_hair_method
from semedit.jobs.hair_direction_config import HairDirectionJobConfig
from semedit.training import FitResult, fit

__all__ = ["HairEmbeddingScores", "build", "train", "run"]


class HairEmbeddingScores(ScoredLatentsDataModule):
    """Scored samples whose features are hair embeddings of the synthesised images (flattened)."""

    def __init__(self, source: StyleGAN2DataModule, direction: DirectionConfig, method: HairTransferMethod):
        super().__init__(source, direction)
        self.method = method

    def batch_features(self, batch: dict) -> torch.Tensor:
        if "image" not in batch:
            raise ConfigError("hair-direction needs images: set data.synthesize_images=true")
        if self.method.device != batch["image"].device:  # follow the trainer's device
            self.method.to(batch["image"].device)
        return self.method.embed_hair(batch["image"]).flatten(1).float()


def build(cfg: HairDirectionJobConfig) -> tuple[DirectionClassifierModule, HairEmbeddingScores]:
    if cfg.direction.space != "wplus" or cfg.direction.layers is not None:
        raise ConfigError("hair-direction classifies whole hair embeddings: direction.space must be 'wplus' "
                          "and direction.layers unset")
    if cfg.data.scorer.name is None:
        raise ConfigError("hair-direction needs data.scorer.name, e.g. hair_lightness, hair_hue, hair_area "
                          "or hair_length")
    if cfg.generator.ckpt is not None:
        raise ConfigError("hair-direction renders with the hair model's own generator; leave generator.ckpt "
                          "unset (hair_model chooses the model)")
    method = load_hair_method(cfg.hair_model, MethodOptions(regions=cfg.regions, region_weights=cfg.region_weights))
    if not method.has_embeddings:
        raise ConfigError(f"hair-direction needs a hair embedding; the {method.name} method has none")
    source = StyleGAN2DataModule(cfg.generator, cfg.data)
    source._generator = method.generator  # the hair model's generator, not one built from the spec
    # The scorer's hair mask is the method's region split unless the scorer names its own.
    scorer = cfg.data.scorer
    if scorer.regions is None:
        scorer.regions = method.regions
        scorer.weights = scorer.weights or cfg.region_weights
    datamodule = HairEmbeddingScores(source, cfg.direction, method)
    meta = {"scorer": scorer.name, "embedding": "hair", "hair_model": str(cfg.hair_model),
            "hair_method": method.name, "hair_model_source": method.source,
            "truncation_psi": cfg.generator.truncation_psi, "data_seed": cfg.data.seed}
    module = DirectionClassifierModule(datamodule.dim, cfg.direction, meta=meta)
    return module, datamodule


def train(cfg: HairDirectionJobConfig) -> FitResult:
    module, datamodule = build(cfg)
    result = fit("hair-direction", module, datamodule, cfg, cfg.trainer, cfg.logger, cfg.run)
    path = result.run_dir / cfg.direction.output
    if path.is_file():
        print(f"hair direction: {path}  (semedit hair-edit --direction {path} --strengths -2 0 2)")
    return result


def run(cfg: HairDirectionJobConfig, inputs: list[str]) -> FitResult:
    """The `hair-direction` job's entry (semedit.jobs)."""
    return train(cfg)
