"""InversionModule: any registered inverter at predict time, one folder per image, DDP, resume, edits.

The module only wires things together: the method is an ``Inverter`` (``semedit.inversion.base``), the disk
layout ``io.save_output``. Each predict batch is one call of the inverter (its own batch size); Lightning
provides device placement and DDP (each rank takes its share of the images through ``data.ShardSampler``).
Finished images are skipped, so re-running an interrupted run resumes it. When edits are asked for (the
identity-after-edit table), each image's edits are rendered right after its inversion, while a method that
modified the generator (PTI, HyperStyle) still holds that generator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from semedit.edits import Direction
from semedit.images import save_image
from semedit.inversion.base import InversionOutput, Inverter, rendering_as
from semedit.inversion.data import RealImageDataset, ShardSampler
from semedit.inversion.edit import edit_codes_images
from semedit.inversion.io import edit_file, is_finished, save_output, write_summary

__all__ = ["EditRequest", "InversionModule", "render_output_edits"]


@dataclass(frozen=True)
class EditRequest:
    """Edits to render for every image: ``edits/<name>@<strength>.png`` for each direction and strength; a
    direction's strengths are multiplied by its ``scales`` entry (Chunkmogrify's units, eval.strength_units)."""

    directions: dict[str, Direction]
    strengths: tuple[float, ...]
    scales: dict[str, float]
    noise_mode: str = "const"

    def files(self) -> list[str]:
        return [edit_file(d, k) for d in self.directions for k in self.strengths]


def render_output_edits(G, output: InversionOutput, i: int, folder: Path, edits: EditRequest,
                        only_missing: bool = True) -> None:
    """Write the edits of image ``i`` of ``output`` (rendered as the method renders it: its noise maps, its
    tuned generator parameters or weight deltas) into ``folder/edits``."""
    device = G.w_avg.device
    codes = [c[i:i + 1].to(device) for c in output.codes]
    masks = output.masks[i:i + 1]
    (folder / "edits").mkdir(parents=True, exist_ok=True)
    with rendering_as(G, output, i):
        for name, direction in edits.directions.items():
            ks = [k for k in edits.strengths
                  if not (only_missing and (folder / "edits" / edit_file(name, k)).is_file())]
            if not ks:
                continue
            scale = edits.scales.get(name, 1.0)
            images = edit_codes_images(G, output.space, codes, masks, direction, [k * scale for k in ks],
                                       noise_mode=edits.noise_mode)
            for k, image in zip(ks, images, strict=True):
                save_image(image[0].cpu(), folder / "edits" / edit_file(name, k))


class InversionModule(pl.LightningModule):
    """Inverts the images of ``dataset`` with ``inverter`` into ``output_dir/<name>/`` (layout: io.py).

    Args:
        inverter: a built ``Inverter``.
        generator: the frozen StyleGAN2 the inverter renders with (the module moves it to the device).
        dataset: ``RealImageDataset`` (items {"image" [3,R,R], "name", "index"}).
        output_dir: where the per-image folders go.
        tools: the job's ``InversionTools`` (moved to the device with the module).
        meta: facts of the run written into every codes.safetensors (resolution, generator, settings).
        edits: edits to render after each image's inversion (None: none).
        progress: show a bar over the optimisation steps of each batch (global rank 0 only).
    """

    def __init__(self, inverter: Inverter, generator: torch.nn.Module, dataset: RealImageDataset,
                 output_dir: str | Path, tools, meta: dict, edits: EditRequest | None = None,
                 progress: bool = True, num_workers: int = 0):
        super().__init__()
        self.G = generator.eval().requires_grad_(False)
        if dataset.resolution != self.G.img_resolution:
            raise ValueError(f"dataset resolution {dataset.resolution} != generator resolution {self.G.img_resolution}")
        self.inverter, self.dataset, self.tools, self.meta, self.edits = inverter, dataset, tools, meta, edits
        self.output_dir = Path(output_dir)
        self.progress, self.num_workers = progress, num_workers
        self._done_this_run: list[str] = []

    # -- data ------------------------------------------------------------------------------------
    def image_dir(self, name: str) -> Path:
        return self.output_dir / name

    def finished(self, name: str) -> bool:
        folder = self.image_dir(name)
        if not is_finished(folder):
            return False
        return self.edits is None or all((folder / "edits" / f).is_file() for f in self.edits.files())

    def predict_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self._trainer is not None else 0
        world = self.trainer.world_size if self._trainer is not None else 1
        sampler = ShardSampler(len(self.dataset), rank, world, lambda i: self.finished(self.dataset.sources[i].name))
        return DataLoader(self.dataset, batch_size=self.inverter.batch_size, sampler=sampler,
                          num_workers=self.num_workers, collate_fn=_collate)

    def on_predict_start(self) -> None:
        self.tools.to(self.device)

    # -- the work --------------------------------------------------------------------------------
    def predict_step(self, batch: dict, batch_idx: int) -> None:
        names, images = batch["name"], batch["image"]
        indices = [int(i) for i in batch["index"]]
        start = time.perf_counter()
        # A bar over the optimisation steps of this batch (Lightning's own bar counts batches only).
        show = self.progress and self.global_rank == 0
        with tqdm(desc=f"inverting {', '.join(names)}", unit="step", leave=False, disable=not show,
                  dynamic_ncols=True) as bar:
            output = self.inverter.invert(images, names, indices, on_step=lambda step, _: bar.update(1))
        seconds = time.perf_counter() - start
        targets = images.detach().cpu()
        for i, name in enumerate(names):
            folder = self.image_dir(name)
            meta = {**self.meta, "index": indices[i],
                    "result": {"seconds": seconds / len(names), "rank": int(self.global_rank),
                               **(batch["where"][i] if "where" in batch else {})}}
            result = save_output(folder, name, output, i, targets[i], seconds / len(names), meta)
            if self.edits is not None:
                render_output_edits(self.G, output, i, folder, self.edits)
            self._done_this_run.append(name)
            if self.logger is not None:
                self.logger.log_metrics({"invert/lpips": result["lpips"], "invert/l2": result["l2"],
                                         "invert/reg": result["reg"]}, step=indices[i])
        return None

    def on_predict_end(self) -> None:
        # Every rank lists what it did; rank 0 writes the run summary once all ranks are through.
        mine = self.output_dir / f".done_rank{self.global_rank}.json"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        mine.write_text(json.dumps(self._done_this_run))
        self.trainer.strategy.barrier("inversion-predict-end")
        if self.global_rank == 0:
            summary = write_summary(self.output_dir, [s.name for s in self.dataset.sources])
            if self.logger is not None and "mean" in summary:
                # The run's figure of merit (what sweeps rank trials by): means over all finished images.
                self.logger.log_metrics({f"invert/mean_{k}": v for k, v in summary["mean"].items()})


def _collate(items: Sequence[dict]) -> dict[str, Any]:
    return {
        "image": torch.stack([it["image"] for it in items]),
        "name": [it["name"] for it in items],
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "where": [{k: it[k] for k in ("source", "crop_quad", "crop_size", "crop_padding") if k in it} for it in items],
    }
