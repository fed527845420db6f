"""ChunkyGANModule: per-image ChunkyGAN optimisation at predict time, images x chunks in one G call.

The module only wires things together: the optimisation itself is ``optimize.invert_batch`` and the
disk layout is ``io.save_inversion``. Each predict batch is one independent optimisation problem per
image; Lightning provides device placement and DDP (each rank takes its share of the images through
``data.ShardSampler``). Finished images are skipped, so re-running an interrupted run resumes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from semedit.inversion.config import Config
from semedit.inversion.data import RealImageDataset, ShardSampler
from semedit.inversion.io import is_finished, save_inversion
from semedit.inversion.masks import (
    image_seed,
    kmeans_mask_logits,
    parse_groups,
    parsing_mask_logits,
    uniform_mask_logits,
)
from semedit.inversion.optimize import invert_batch
from semedit.perception.lpips import load_lpips
from semedit.perception.parsing import load_face_parser
from semedit.stylegan2 import generator_from_spec

__all__ = ["ChunkyGANModule", "load_lpips_for", "face_parser_fn", "initial_mask_logits", "save_result"]


def load_lpips_for(cfg: Config):
    """The LPIPS module of the config, frozen: ``fn(x, y) -> [N]`` with images in [-1, 1]."""

    fn = load_lpips(net=cfg.invert.lpips_net, pretrained_backbone=cfg.invert.lpips_pretrained)
    fn.eval().requires_grad_(False)
    return fn


def face_parser_fn(weights: str | None, device):
    """``parse(images [N,3,H,W] in [-1,1]) -> labels [N,H,W]`` from the perception face parser."""

    parser = load_face_parser(weights, device=device) if weights else load_face_parser(device=device)

    def parse(images: torch.Tensor) -> torch.Tensor:
        if hasattr(parser, "labels"):
            return parser.labels(images)
        out = parser(images)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.argmax(dim=1) if out.ndim == 4 else out

    return parse


class ChunkyGANModule(pl.LightningModule):
    """Inverts the images of ``dataset`` into ``output_dir/<name>/`` (see io.py for the layout).

    Args:
        cfg: the inversion ``Config``.
        dataset: ``RealImageDataset`` (items {"image" [3,R,R], "name", "index"}).
        output_dir: where the per-image folders go.
        generator: the frozen StyleGAN2 (built from ``cfg.generator`` when None).
        lpips_fn: LPIPS module (built from ``cfg.invert`` when None).
    """

    def __init__(self, cfg: Config, dataset: RealImageDataset, output_dir: str | Path,
                 generator: torch.nn.Module | None = None, lpips_fn: torch.nn.Module | None = None):
        super().__init__()
        if generator is None:
            generator = generator_from_spec(cfg.generator)
        self.G = generator.eval().requires_grad_(False)
        self.lpips = (lpips_fn if lpips_fn is not None else load_lpips_for(cfg)).eval().requires_grad_(False)
        self.cfg = cfg
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self._parser = None
        self._done_this_run: list[str] = []
        if dataset.resolution != self.G.img_resolution:
            raise ValueError(f"dataset resolution {dataset.resolution} != generator resolution {self.G.img_resolution}")

    # -- data ------------------------------------------------------------------------------------
    def image_dir(self, name: str) -> Path:
        return self.output_dir / name

    def predict_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self._trainer is not None else 0
        world = self.trainer.world_size if self._trainer is not None else 1
        sampler = ShardSampler(len(self.dataset), rank, world,
                               lambda i: is_finished(self.image_dir(self.dataset.sources[i].name)))
        return DataLoader(self.dataset, batch_size=self.cfg.invert.batch_size, sampler=sampler,
                          num_workers=self.cfg.data.num_workers, collate_fn=_collate)

    # -- masks -----------------------------------------------------------------------------------
    def initial_mask_logits(self, images: torch.Tensor, names: list[str]) -> torch.Tensor:
        """[N, n, h, w] initial logits, seeded per image name (independent of rank and batch)."""
        if self._parser is None and self.cfg.invert.mask_init == "parsing" and self.cfg.invert.n > 1:
            self._parser = face_parser_fn(self.cfg.perception.parser_weights, images.device)
        return initial_mask_logits(self.cfg, images, names, self._parser)

    # -- the work --------------------------------------------------------------------------------
    def predict_step(self, batch: dict, batch_idx: int) -> None:
        names, images = batch["name"], batch["image"]
        start = time.perf_counter()
        logits = self.initial_mask_logits(images, names)
        # Lightning runs predict without autograd; the optimisation needs it.
        with torch.inference_mode(False), torch.enable_grad():
            # A batch fetched under inference mode holds inference tensors, which autograd refuses to save.
            images = images.clone()
            # A bar over the optimisation steps of this batch (Lightning's own bar counts batches only).
            show = self.cfg.trainer.enable_progress_bar and self.global_rank == 0
            with tqdm(total=self.cfg.invert.steps, desc=f"inverting {', '.join(names)}", unit="step",
                      leave=False, disable=not show, dynamic_ncols=True) as bar:
                result = invert_batch(self.G, self.lpips, images, logits.to(images.device), self.cfg.invert,
                                      noise_mode=self.cfg.generator.noise_mode, on_step=lambda step, _: bar.update(1))
        seconds = time.perf_counter() - start
        targets = images.detach().cpu()
        for i, name in enumerate(names):
            result_json = save_result(self.image_dir(name), name, result, i, targets[i], self.cfg, self.G,
                                      seconds / len(names), int(self.global_rank), int(batch["index"][i]))
            self._done_this_run.append(name)
            if self.logger is not None:
                self.logger.log_metrics({"invert/lpips": result_json["lpips"], "invert/l2": result_json["l2"],
                                         "invert/reg": result_json["reg"]}, step=int(batch["index"][i]))
        return None

    def on_predict_end(self) -> None:
        # Every rank lists what it did; rank 0 writes the run summary once all ranks are through.
        mine = self.output_dir / f".done_rank{self.global_rank}.json"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        mine.write_text(json.dumps(self._done_this_run))
        self.trainer.strategy.barrier("chunkygan-predict-end")
        if self.global_rank == 0:
            summary = write_summary(self.output_dir, [s.name for s in self.dataset.sources])
            if self.logger is not None and "mean" in summary:
                # The run's figure of merit (what sweeps rank trials by): means over all finished images.
                self.logger.log_metrics({f"invert/mean_{k}": v for k, v in summary["mean"].items()})


def initial_mask_logits(cfg: Config, images: torch.Tensor, names: list[str],
                        parser: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """[N, n, h, w] initial mask logits of ``cfg.invert.mask_init``, seeded per image name.

    ``parser`` (from ``face_parser_fn``) is needed only for mask_init=parsing.
    """
    inv = cfg.invert
    seeds = [image_seed(cfg.run.seed, name) for name in names]
    if inv.mask_init == "uniform" or inv.n == 1:
        return uniform_mask_logits(len(names), inv.n, inv.mask_resolution, inv.mask_noise, seeds)
    if inv.mask_init == "kmeans":
        return kmeans_mask_logits(images.cpu(), inv.n, inv.mask_resolution, inv.mask_init_sharpness,
                                  inv.kmeans_position_weight, inv.kmeans_iters, seeds)
    if parser is None:
        raise ValueError("invert.mask_init=parsing needs a face parser (face_parser_fn)")
    groups = parse_groups(inv.parsing_groups, inv.n)
    return parsing_mask_logits(images, parser, groups, inv.mask_resolution, inv.mask_init_sharpness)


def save_result(directory: str | Path, name: str, result, i: int, target: torch.Tensor, cfg: Config, G,
                seconds: float, rank: int = 0, index: int = 0) -> dict:
    """Write image ``i`` of an ``InversionResult`` in the layout of io.py (what `semedit invert` writes);
    returns its result.json content. ``target``: [3, R, R] on the CPU."""
    l2 = float((result.reconstruction[i] - target).pow(2).mean())
    result_json = {
        "lpips": float(result.losses["lpips"][i]),
        "reg": float(result.losses["reg"][i]),
        "total": float(result.losses["total"][i]),
        "l2": l2,
        "steps": cfg.invert.steps,
        "seconds": seconds,
        "rank": rank,
        "history": {k: [round(float(x), 6) for x in v[:, i]] for k, v in result.history.items()},
        "snapshot_steps": result.snapshot_steps,
    }
    meta = {
        "resolution": int(G.img_resolution),
        "num_ws": int(G.num_ws),
        "lambda_reg": cfg.invert.lambda_reg,
        "generator_ckpt": cfg.generator.ckpt,
        "index": index,
    }
    save_inversion(directory, name, result.space, [c[i] for c in result.codes], result.mask_logits[i],
                   result.masks[i], target, result.reconstruction[i], result.chunk_images[i],
                   result.snapshots[i], result_json, meta)
    return result_json


def _collate(items: list[dict]) -> dict[str, Any]:
    return {
        "image": torch.stack([it["image"] for it in items]),
        "name": [it["name"] for it in items],
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }


def write_summary(output_dir: Path, names: list[str]) -> dict:
    """summary.json: per-image final metrics of all finished images, and the mean over them."""
    rows = {}
    for name in names:
        path = output_dir / name / "result.json"
        if path.is_file():
            data = json.loads(path.read_text())
            rows[name] = {k: data[k] for k in ("lpips", "l2", "reg", "total", "seconds", "rank")}
    summary = {"images": rows, "finished": len(rows), "total": len(names)}
    if rows:
        summary["mean"] = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("lpips", "l2", "reg")}
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
