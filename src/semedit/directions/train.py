"""`semedit train direction`: find a latent direction with a linear classifier on scored samples.

The embedded default (configs/direction/tiny.yaml) uses the tiny random generator and the ``centroid_x``
scorer, so it runs end to end on a CPU in minutes. The result is ``<run>/direction.safetensors``.
"""

from __future__ import annotations

from semedit.data.datamodule import StyleGAN2DataModule
from semedit.directions.config import DirectionJobConfig
from semedit.directions.module import DirectionClassifierModule, ScoredLatentsDataModule
from semedit.training import FitResult, fit


def build(cfg: DirectionJobConfig) -> tuple[DirectionClassifierModule, ScoredLatentsDataModule]:
    source = StyleGAN2DataModule(cfg.generator, cfg.data)
    datamodule = ScoredLatentsDataModule(source, cfg.direction)
    meta = {"scorer": cfg.data.scorer.name, "generator": cfg.generator.ckpt or "tiny-random",
            "truncation_psi": cfg.generator.truncation_psi, "data_seed": cfg.data.seed}
    module = DirectionClassifierModule(datamodule.dim, cfg.direction, meta=meta)
    return module, datamodule


def train(cfg: DirectionJobConfig) -> FitResult:
    module, datamodule = build(cfg)
    result = fit("direction", module, datamodule, cfg, cfg.trainer, cfg.logger, cfg.run)
    path = result.run_dir / cfg.direction.output
    if path.is_file():
        print(f"direction:   {path}")
    return result


def run(cfg: DirectionJobConfig, inputs: list[str]) -> FitResult:
    """The `direction` job's entry (semedit.jobs)."""
    return train(cfg)
