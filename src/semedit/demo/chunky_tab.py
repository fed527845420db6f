"""ChunkyGAN tab: invert one photo with live previews, then edit each chunk along directions.

``invert_photo`` is a generator: it runs ``semedit.inversion.optimize.invert_batch`` (the optimisation of
`semedit invert`) in a worker thread and yields a preview every few steps. Setting its ``cancel`` event
(Stop was pressed, or the page was closed) ends the optimisation before its next step, and the codes and
masks it has so far are the (partial) result; closing the generator does the same. The result is written
with ``semedit.inversion.io.save_output``, so the files offered for download are the ones `semedit invert`
writes. Any registered inversion method can be chosen (``method``); ChunkyGAN is the default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from semedit.demo.framing import frame_face
from semedit.demo.hair_tab import DISPLAY_SIZE
from semedit.demo.limits import UploadLimits, read_upload
from semedit.demo.models import DemoModels, NamedDirection
from semedit.images import from_uint8, to_uint8
from semedit.inversion.base import INVERTERS, InversionOutput, InverterContext, rendering_as
from semedit.inversion.edit import apply_direction, render_composite
from semedit.inversion.io import colour_masks, save_output
from semedit.inversion.latents import check_space

__all__ = ["Inverted", "InvertUpdate", "invert_photo", "recomposite", "mask_overlay", "chunk_directions",
           "MAX_CHUNKS"]

log = logging.getLogger(__name__)

MAX_CHUNKS = 8  # semedit's choice: the largest n with default parsing groups (masks.DEFAULT_PARSING_GROUPS)


@dataclass
class Inverted:
    """A finished inversion, kept per browser session for editing."""

    name: str
    space: str
    codes: list[torch.Tensor]  # [1, n, ...]
    masks: torch.Tensor  # [1, n, 1, R, R]
    target: torch.Tensor  # [1, 3, R, R]
    folder: Path  # the image folder as `semedit invert` writes it
    files: list[Path]  # its files, then a zip of them
    output: Optional[InversionOutput] = None  # the method's output (its generator changes, for edits)

    @property
    def n(self) -> int:
        return int(self.masks.shape[1])


@dataclass
class InvertUpdate:
    step: int
    steps: int
    preview: Optional[np.ndarray] = None  # uint8 composite at this step
    result: Optional[Inverted] = None  # set on the last update only
    framing: str = ""
    stopped: bool = False  # the last update of an inversion that Stop ended early
    saving: bool = False  # the optimisation is over; its files are being written

    @property
    def status(self) -> str:
        """One line for the page: where the inversion is (the one progress display)."""
        if self.result is not None:
            done = (f"stopped at step {self.step} / {self.steps}: the result below is the partial inversion"
                    if self.stopped else f"done: {self.steps} steps")
            return f"{done}, n = {self.result.n}, space {self.result.space} — {self.framing}"
        percent = 100 * self.step / max(1, self.steps)
        what = "saving the result" if self.saving else "inverting"
        return f"{what}: step {self.step} / {self.steps} ({percent:.0f} %) — {self.framing}"


def chunk_directions(models: DemoModels) -> list[NamedDirection]:
    """Directions that can edit inverted codes (Z directions cannot: the mapping is not invertible)."""
    return [d for d in models.latent_directions if d.direction.space != "z"]


def mask_overlay(image: torch.Tensor, masks: torch.Tensor, size: int, opacity: float = 0.5) -> np.ndarray:
    """[1, 3, R, R] image and [n, 1, R, R] masks -> uint8 [size, size, 3], one colour per chunk over it."""
    up = F.interpolate(image.float().cpu(), size=(size, size), mode="bilinear", align_corners=False)
    colours = F.interpolate(colour_masks(masks)[None], size=(size, size), mode="bilinear", align_corners=False)
    return to_uint8((1 - opacity) * up + opacity * colours)[0]


def invert_photo(models: DemoModels, path, n: int, space: str, steps: int, limits: UploadLimits, workdir: Path,
                 preview_every: int = 10, aligned: bool = False, cancel: Optional[threading.Event] = None,
                 method: str = "chunkygan") -> Iterator[InvertUpdate]:
    """Invert one uploaded photo with a registered inversion method (``method``; ChunkyGAN with ``n``
    chunks by default); yields progress, the last update carries the result."""
    if method not in INVERTERS:
        raise ValueError(f"unknown inversion method {method!r}; choose one of {', '.join(sorted(INVERTERS))}")
    if not 1 <= int(n) <= MAX_CHUNKS:
        raise ValueError(f"n chunks must be in 1..{MAX_CHUNKS}, got {n}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_space(space)
    G, dev = models.generator, models.device
    name = Path(str(path)).stem if path else "photo"
    photo = read_upload(path, limits, "photo")
    res = G.img_resolution
    framed = frame_face(photo, max(res, DISPLAY_SIZE), source=Path(str(path)).name, aligned=aligned)
    target = from_uint8(framed.image)
    target = F.interpolate(target, size=(res, res), mode="area") if target.shape[-1] > res else target
    target = target.to(dev)
    cfg = models.invert_config
    cfg = dataclasses.replace(cfg, invert=dataclasses.replace(cfg.invert, n=int(n), space=space, steps=int(steps),
                                                              method=method))
    inverter = INVERTERS[method].build(InverterContext(G, cfg, {"method": method}, models.tools))
    cancel = cancel or threading.Event()
    updates: queue.Queue = queue.Queue()
    every = max(1, int(preview_every))

    def on_step(step: int, out: torch.Tensor) -> None:
        if step % every == 0:
            updates.put(("step", step, to_uint8(out[:1].cpu())[0]))

    def work() -> None:
        try:
            start = time.perf_counter()
            output = inverter.invert(target, [name], [0], on_step=on_step, should_stop=cancel.is_set)
            if output.steps_done < int(steps) and cancel.is_set():  # Stop was pressed, or the page was closed
                log.info("demo: inversion of %s stopped at step %d of %d", name, output.steps_done, steps)
            updates.put(("done", output, time.perf_counter() - start))
        except BaseException as err:  # handed to the consumer, which re-raises it
            updates.put(("error", err, None))

    worker = threading.Thread(target=work, name=f"semedit-demo-invert-{name}", daemon=True)
    worker.start()
    try:
        yield InvertUpdate(0, int(steps), to_uint8(target)[0], framing=framed.method)
        while True:
            kind, a, b = updates.get()
            if kind == "step":
                yield InvertUpdate(a + 1, int(steps), b, framing=framed.method)
            elif kind == "error":
                raise a
            else:
                done = min(a.steps_done, int(steps)) if a.steps_done else int(steps)
                yield InvertUpdate(done, int(steps), to_uint8(a.reconstruction)[0], framing=framed.method, saving=True)
                folder = workdir / f"invert-{uuid.uuid4().hex[:12]}" / name
                meta = {"resolution": res, "num_ws": int(G.num_ws), "generator_ckpt": cfg.generator.ckpt,
                        "method": method, "index": 0, "result": {"rank": 0}}
                save_output(folder, name, a, 0, target[0].cpu(), b, meta)
                files = sorted(p for p in folder.iterdir() if p.is_file())
                archive = Path(shutil.make_archive(str(folder), "zip", root_dir=folder))
                inverted = Inverted(name, a.space, a.codes, a.masks, target.cpu(), folder, files + [archive], a)
                yield InvertUpdate(done, int(steps), to_uint8(a.reconstruction)[0], inverted, framed.method,
                                   stopped=done < int(steps))
                return
    finally:
        cancel.set()  # a closed page (GeneratorExit here) or an error: stop the worker at its next step
        worker.join(timeout=30)


def recomposite(models: DemoModels, inverted: Inverted, strengths: Sequence[Sequence[float]]) -> np.ndarray:
    """Move chunk c along direction k by ``strengths[c][k]`` (in the direction's unit) and recomposite."""
    G = models.generator
    directions = chunk_directions(models)
    if len(strengths) > inverted.n:
        raise ValueError(f"strengths for {len(strengths)} chunks, the inversion has {inverted.n}")
    space, codes = inverted.space, [c.to(models.device) for c in inverted.codes]
    # As the method renders: with its noise maps, tuned generator or weight deltas (the styles of an S edit too).
    with rendering_as(G, inverted.output, 0) if inverted.output is not None else contextlib.nullcontext():
        for chunk, row in enumerate(strengths):
            for named, s in zip(directions, row):
                if s:
                    space, codes = apply_direction(G, space, codes, named.direction, float(s) * named.scale,
                                                   chunks=[chunk])
        out = render_composite(G, space, codes, inverted.masks, models.invert_config.generator.noise_mode)
    return to_uint8(out)[0]
