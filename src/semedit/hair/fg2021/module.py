"""HairTransferModule: trains the face/hair encoders + fusion against a frozen StyleGAN2.

The module only wires, optimises and logs: the networks live in ``encoders.py``, the losses in
``losses.py``, the data (pose-misaligned synthetic pairs) in ``semedit.data.StyleGAN2DataModule``
(``data.mode=pairs``). One training step:
    face  = resize(image      * face_mask)        inner face of the target G(w)
    hair  = resize(image_hair * hair_mask_hair)   hair of the same person turned by k·n_yaw
    ws    = net(face, hair)                       [N, num_ws, w_dim]
    out   = G.synthesis(ws)                       compared with the target G(w) and ws with w
    loss  = l2·L2 + lpips·LPIPS + identity·(1 - cos ArcFace) + wplus·||ws - w||²

The frozen models (generator, LPIPS, identity encoder) are deliberately *not* registered submodules:
they stay out of checkpoints and optimiser, out of DDP's parameter sync, and are never switched to
train mode (their batch norms keep their statistics).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch

from semedit.data.datamodule import downsample
from semedit.hair.fg2021 import losses
from semedit.hair.fg2021.config import EncoderConfig, LossConfig, OptimConfig
from semedit.hair.fg2021.encoders import build_hair_net, resize_for_encoder
from semedit.images import image_grid, save_image
from semedit.perception.identity import load_identity_encoder
from semedit.perception.lpips import load_lpips

__all__ = ["HairTransferModule", "hair_inputs", "lr_factor"]


def hair_inputs(image: torch.Tensor, face_mask: torch.Tensor, image_hair: torch.Tensor,
                hair_mask_hair: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(face input, hair input) [N, 3, size, size]: the masked inner face and the masked hair region."""
    face = resize_for_encoder(losses.masked(image, face_mask), size)
    hair = resize_for_encoder(losses.masked(image_hair, hair_mask_hair), size)
    return face, hair


class HairTransferModule(pl.LightningModule):
    """Face + hair encoders into W+ of a frozen StyleGAN2, trained on synthetic pairs.

    Args:
        encoder: encoder architecture (``EncoderConfig`` or its dict).
        loss: loss weights and models (``LossConfig`` or dict).
        optim: optimiser and schedule (``OptimConfig`` or dict).
        num_ws, w_dim: the generator's W+ shape.
        generator: the frozen ``semedit.stylegan2.Generator`` that renders W+ codes. May be omitted when
            the module is trained with a ``StyleGAN2DataModule`` (its ``generator`` is used).
        generator_spec: how the generator was made (a ``GeneratorSpec`` dict), stored in the checkpoint
            so that inference can rebuild it.
        noise_mode: synthesis noise while training ("const" keeps steps deterministic).
        log_images_every_n_steps: training image grids every n steps (0: never); validation grids once
            per validation run.
        grid_samples: pairs per image grid.
        regions: face/hair region strategy of the training data, recorded for inference.
    """

    def __init__(self, encoder: EncoderConfig | dict, loss: LossConfig | dict, optim: OptimConfig | dict,
                 num_ws: int, w_dim: int, generator: Optional[torch.nn.Module] = None,
                 generator_spec: Optional[dict] = None, noise_mode: str = "const",
                 log_images_every_n_steps: int = 100, grid_samples: int = 4, regions: str = "ellipse"):
        super().__init__()
        self.encoder_cfg = encoder if isinstance(encoder, EncoderConfig) else EncoderConfig(**encoder)
        self.loss_cfg = loss if isinstance(loss, LossConfig) else LossConfig(**loss)
        self.optim_cfg = optim if isinstance(optim, OptimConfig) else OptimConfig(**optim)
        # Checked again here for modules built in code rather than from a loaded config.
        self.loss_cfg.validate("loss.")
        self.optim_cfg.validate("optim.")
        # Plain data only, so that checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters({
            "encoder": asdict(self.encoder_cfg), "loss": asdict(self.loss_cfg), "optim": asdict(self.optim_cfg),
            "num_ws": int(num_ws), "w_dim": int(w_dim), "generator_spec": generator_spec,
            "noise_mode": noise_mode, "log_images_every_n_steps": int(log_images_every_n_steps),
            "grid_samples": int(grid_samples), "regions": regions,
        })
        self.net = build_hair_net(self.encoder_cfg, num_ws, w_dim)
        self._frozen: dict[str, Any] = {"generator": generator}  # not registered: see module docstring

    # -- frozen models ------------------------------------------------------------------------------
    @property
    def generator(self) -> torch.nn.Module:
        G = self._frozen.get("generator")
        if G is None:
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            G = getattr(dm, "generator", None)
            if G is None:
                raise RuntimeError("HairTransferModule has no generator: pass generator= or train it with a "
                                   "StyleGAN2DataModule")
            self._frozen["generator"] = G
        if G.w_avg.device != self.device:
            G.to(self.device)
        return G

    def _frozen_model(self, name: str, build) -> torch.nn.Module:
        model = self._frozen.get(name)
        if model is None:
            # Fixed seed: a randomly initialised LPIPS backbone (tiny configs) must be the same network in
            # every process and after a resume, or the loss would change under the optimiser's feet.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = build()
            model.eval().requires_grad_(False)
            self._frozen[name] = model
        if next(iter(model.parameters()), torch.empty(0, device=self.device)).device != self.device:
            model.to(self.device)
        return model

    def lpips(self) -> torch.nn.Module:
        cfg = self.loss_cfg
        return self._frozen_model("lpips", lambda: load_lpips(net=cfg.lpips_net,
                                                              pretrained_backbone=cfg.lpips_pretrained_backbone))

    def identity_encoder(self) -> torch.nn.Module:
        return self._frozen_model("identity", lambda: load_identity_encoder(self.loss_cfg.identity_encoder,
                                                                            device="cpu"))

    def on_fit_start(self) -> None:
        # Build (or load) the frozen loss networks before the first step, so missing weights fail early.
        if self.loss_cfg.lpips > 0:
            self.lpips()
        if self.loss_cfg.identity > 0:
            self.identity_encoder()

    # -- forward ------------------------------------------------------------------------------------
    def forward(self, face: torch.Tensor, hair: torch.Tensor) -> torch.Tensor:
        """Masked face and hair inputs [N, 3, S, S] -> W+ [N, num_ws, w_dim]."""
        return self.net(face, hair)

    def render(self, ws: torch.Tensor, size: int) -> torch.Tensor:
        """W+ -> images [N, 3, size, size] (area-downsampled to the training resolution)."""

        images = self.generator.synthesis(ws, noise_mode=self.hparams.noise_mode)
        return downsample(images.float(), size)

    def transfer_batch(self, batch: dict) -> dict:
        """Inputs, W+ and output for a pairs batch: {"face", "hair", "ws", "output"}."""
        face, hair = hair_inputs(batch["image"], batch["face_mask"], batch["image_hair"], batch["hair_mask_hair"],
                                 self.encoder_cfg.input_size)
        ws = self(face, hair)
        output = self.render(ws, batch["image"].shape[-1])
        return {"face": face, "hair": hair, "ws": ws, "output": output}

    # -- losses -------------------------------------------------------------------------------------
    def compute_losses(self, output: torch.Tensor, batch: dict, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every enabled term (unweighted) plus "loss", their weighted sum."""
        cfg, target = self.loss_cfg, batch["image"]
        terms: dict[str, torch.Tensor] = {}
        weighted: list[torch.Tensor] = []
        if cfg.region_masks:
            regions = {"face": (batch["face_mask"], cfg.face_weight), "hair": (batch["hair_mask"], cfg.hair_weight)}
        else:
            regions = {"": (None, 1.0)}
        for region, (mask, region_weight) in regions.items():
            suffix = f"_{region}" if region else ""
            if cfg.l2 > 0:
                terms["l2" + suffix] = losses.l2_loss(output, target, mask)
                weighted.append(cfg.l2 * region_weight * terms["l2" + suffix])
            if cfg.lpips > 0:
                terms["lpips" + suffix] = losses.lpips_loss(self.lpips(), output, target, mask)
                weighted.append(cfg.lpips * region_weight * terms["lpips" + suffix])
        if cfg.identity > 0:
            terms["identity"] = losses.identity_loss(self.identity_encoder(), output, target)
            weighted.append(cfg.identity * terms["identity"])
        if cfg.wplus > 0:
            terms["wplus"] = losses.wplus_l2_loss(ws, batch["ws"])
            weighted.append(cfg.wplus * terms["wplus"])
        if not weighted:
            raise ValueError("all loss weights are 0; enable at least one of loss.l2/lpips/identity/wplus")
        terms["loss"] = torch.stack(weighted).sum()
        return terms

    # -- steps --------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        result = self.transfer_batch(batch)
        terms = self.compute_losses(result["output"], batch, result["ws"])
        n = batch["image"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, prog_bar=False, batch_size=n)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"] if self._trainer else 0.0, batch_size=n)
        every = self.hparams.log_images_every_n_steps
        if every and self.global_step % every == 0:
            self.log_grid("train", batch, result)
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        result = self.transfer_batch(batch)
        terms = self.compute_losses(result["output"], batch, result["ws"])
        # sync_dist: the validation pairs are split over ranks; the logged value is the global mean.
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, sync_dist=True, batch_size=batch["image"].shape[0])
        if batch_idx == 0:
            self.log_grid("val", batch, result)

    # -- image grids --------------------------------------------------------------------------------
    def log_grid(self, stage: str, batch: dict, result: dict) -> Optional[Path]:
        """Rows of (face input | hair input | output | target): a PNG in <run>/samples and, with W&B, an image."""
        if self._trainer is None or not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return None

        n = min(self.hparams.grid_samples, batch["image"].shape[0])
        size = batch["image"].shape[-1]
        columns = [resize_for_encoder(result["face"][:n], size), resize_for_encoder(result["hair"][:n], size),
                   result["output"][:n], batch["image"][:n]]
        tiles = torch.stack(columns, dim=1).flatten(0, 1).detach().float().clamp(-1, 1).cpu()
        grid = image_grid(tiles, ncols=4)
        path = Path(self.trainer.default_root_dir) / "samples" / f"{stage}_step{self.global_step:08d}.png"
        save_image(grid, path)
        logger = self.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image(key=f"{stage}/grid", images=[str(path)],
                             caption=["face input | hair input | output | target"], step=self.global_step)
        return path

    # -- optimisation -------------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optim_cfg
        opt_class = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        optimizer = opt_class(self.net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none" and cfg.warmup_steps <= 0:
            return optimizer
        total = cfg.total_steps or (int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1)
        total = max(total, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def lr_factor(cfg: OptimConfig, step: int, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step``: linear warm-up, then the schedule."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.scheduler == "cosine":
        span = max(total_steps - cfg.warmup_steps, 1)
        progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.scheduler == "step":
        return cfg.gamma ** (max(step - cfg.warmup_steps, 0) // cfg.step_size)
    return 1.0
