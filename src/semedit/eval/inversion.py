"""Inversion metrics and the ChunkyGAN paper's tables (ECCV 2022, Tables "projection" and "identity after edits").

- Projection table: for every row (a latent space, single-code or ChunkyGAN, optionally regularised),
  invert a folder of aligned real faces and report mean ± std over images of
  LPIPS(target, reconstruction), identity distance 1 - cos(ArcFace(target), ArcFace(reconstruction)) and
  L2 = mean squared pixel error with images in [-1, 1].
- Identity after edits: for every row and direction/strength, the identity distance between the
  reconstruction and its edited version (lower = the edit preserved identity better).

Every row is an ordinary `semedit invert` run in ``<out>/rows/<row>/``, so an interrupted evaluation
resumes where it stopped.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["RowSpec", "parse_row", "row_config", "identity_distance", "l2_error", "image_metrics",
           "summarise", "projection_table", "identity_after_edit_table", "write_tables", "evaluate_inversion"]

_SPACE_LABEL = {"w": "W", "wplus": "W+", "s": "S"}


@dataclass(frozen=True)
class RowSpec:
    key: str  # "wplus:chunky:reg"
    space: str
    chunky: bool
    reg: bool

    @property
    def label(self) -> str:
        name = ("ChunkyGAN in " if self.chunky else "Single-code ") + _SPACE_LABEL[self.space]
        return name + (" reg." if self.reg else "")

    @property
    def slug(self) -> str:
        return self.key.replace(":", "-")


def parse_row(key: str) -> RowSpec:
    """"<space>:<single|chunky>[:reg]" -> RowSpec."""
    parts = key.split(":")
    if len(parts) not in (2, 3) or parts[0] not in _SPACE_LABEL or parts[1] not in ("single", "chunky") or (
        len(parts) == 3 and parts[2] != "reg"
    ):
        raise ValueError(f"invalid eval row '{key}'; expected <w|wplus|s>:<single|chunky>[:reg], e.g. wplus:chunky:reg")
    return RowSpec(key, parts[0], parts[1] == "chunky", len(parts) == 3)


def row_config(cfg, row: RowSpec):
    """The inversion config of one row: single-code rows use n = 1 with frozen masks."""
    out = copy.deepcopy(cfg)
    out.invert.space = row.space
    if not row.chunky:
        out.invert.n = 1
        out.invert.freeze_masks = True
    out.invert.lambda_reg = cfg.eval.lambda_reg if row.reg else 0.0
    return out


def identity_distance(identity_fn: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(ArcFace(a), ArcFace(b)) per image: [N]."""
    ea, eb = identity_fn(a), identity_fn(b)
    return 1 - torch.nn.functional.cosine_similarity(ea, eb, dim=1)


def l2_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error per image, images in [-1, 1]: [N]."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(dim=1)


@torch.no_grad()
def image_metrics(targets: torch.Tensor, outputs: torch.Tensor, lpips_fn, identity_fn,
                  lpips_resolution: int = 256) -> dict[str, torch.Tensor]:
    """Per-image LPIPS, identity distance and L2 of outputs against targets ([N, 3, R, R] each)."""
    from semedit.inversion.optimize import lpips_input

    lp = lpips_fn(lpips_input(outputs, lpips_resolution), lpips_input(targets, lpips_resolution)).reshape(-1)
    return {"lpips": lp.cpu(), "identity": identity_distance(identity_fn, targets, outputs).cpu(),
            "l2": l2_error(targets, outputs).cpu()}


def summarise(values: Sequence[float]) -> dict:
    """Mean and (population) std, as the paper's "mean ± std"."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": math.nan, "std": math.nan, "count": 0}
    mean = sum(vals) / len(vals)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)), "count": len(vals)}


def _load_pairs(row_dir: Path, names: Sequence[str]):
    from semedit.images import load_image

    targets = torch.stack([load_image(row_dir / n / "target.png")[0] for n in names])
    recons = torch.stack([load_image(row_dir / n / "reconstruction.png")[0] for n in names])
    return targets, recons


def projection_table(row_dirs: dict[RowSpec, Path], names: Sequence[str], lpips_fn, identity_fn,
                     lpips_resolution: int = 256, batch: int = 16) -> list[dict]:
    """One dict per row: label, key, and {metric: {mean, std, count}} plus per-image values."""
    rows = []
    for row, directory in row_dirs.items():
        per_image: dict[str, list[float]] = {"lpips": [], "identity": [], "l2": []}
        for start in range(0, len(names), batch):
            chunk = names[start: start + batch]
            targets, recons = _load_pairs(directory, chunk)
            for k, v in image_metrics(targets, recons, lpips_fn, identity_fn, lpips_resolution).items():
                per_image[k].extend(float(x) for x in v)
        rows.append({"key": row.key, "label": row.label, "folder": str(directory),
                     **{k: summarise(v) for k, v in per_image.items()},
                     "per_image": {k: dict(zip(names, v, strict=True)) for k, v in per_image.items()}})
    return rows


def identity_after_edit_table(G, row_dirs: dict[RowSpec, Path], names: Sequence[str],
                              directions: dict[str, object], strengths: Sequence[float], identity_fn,
                              noise_mode: str = "const") -> list[dict]:
    """Identity distance between each reconstruction and its edit, per row x direction x strength."""
    from semedit.inversion.edit import edit_codes_images, render_composite
    from semedit.inversion.io import load_inversion

    device = G.w_avg.device
    rows = []
    for row, directory in row_dirs.items():
        cells: dict[str, list[float]] = {}
        for name in names:
            inv = load_inversion(directory / name)
            codes = [c.to(device) for c in inv.codes]
            recon = render_composite(G, inv.space, codes, inv.masks, noise_mode)
            for dname, direction in directions.items():
                edited = edit_codes_images(G, inv.space, codes, inv.masks, direction, strengths, noise_mode=noise_mode)
                for k, img in zip(strengths, edited, strict=True):
                    with torch.no_grad():
                        d = identity_distance(identity_fn, recon, img)
                    cells.setdefault(f"{dname}@{k:g}", []).append(float(d[0]))
        rows.append({"key": row.key, "label": row.label, "cells": {c: summarise(v) for c, v in cells.items()}})
    return rows


def _fmt(stat: dict, digits: int = 4) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def write_tables(out_dir: Path, projection: list[dict], identity_edits: list[dict] | None, info: dict) -> tuple[Path, Path]:
    """inversion_metrics.json and inversion_metrics.md in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "inversion_metrics.json"
    json_path.write_text(json.dumps({"info": info, "projection": projection, "identity_after_edit": identity_edits},
                                    indent=1))
    lines = ["# Inversion: projection quality", "",
             f"{info.get('images', '?')} images from `{info.get('input', '?')}`; generator `{info.get('generator', '?')}`; "
             f"{info.get('steps', '?')} steps; LPIPS {info.get('lpips', '?')}; identity `{info.get('identity', '?')}`.",
             "", "| Projection | LPIPS | Identity | L2 |", "| --- | --- | --- | --- |"]
    for r in projection:
        lines.append(f"| {r['label']} | {_fmt(r['lpips'])} | {_fmt(r['identity'])} | {_fmt(r['l2'])} |")
    if identity_edits:
        cols = list(identity_edits[0]["cells"])
        lines += ["", "# Identity distance after edits (1 - ArcFace cosine, reconstruction vs edit)", "",
                  "| Projection | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
        for r in identity_edits:
            lines.append(f"| {r['label']} | " + " | ".join(f"{r['cells'][c]['mean']:.3f}" for c in cols) + " |")
    md_path = out_dir / "inversion_metrics.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def evaluate_inversion(cfg, inputs: Sequence[str], output_dir: Path, direction_paths: Sequence[str] = (),
                       generator=None, lpips_fn=None, identity_fn=None) -> dict:
    """Run every row of ``cfg.eval.rows`` (resumable) and write both tables. Returns the JSON content."""
    from semedit.inversion.data import list_images
    from semedit.inversion.module import load_lpips_for
    from semedit.inversion.run import invert

    rows = [parse_row(k) for k in cfg.eval.rows]
    edit_rows = [parse_row(k) for k in cfg.eval.edit_rows] if direction_paths else []
    missing = [r.key for r in edit_rows if r.key not in {x.key for x in rows}]
    if missing:
        raise ValueError(f"eval.edit_rows {missing} are not in eval.rows {list(cfg.eval.rows)}")
    if generator is None:
        from semedit.stylegan2 import generator_from_spec

        generator = generator_from_spec(cfg.generator)
    if lpips_fn is None:
        lpips_fn = load_lpips_for(cfg)
    if identity_fn is None:
        from semedit.perception.identity import load_identity_encoder

        identity_fn = load_identity_encoder(cfg.perception.identity, "cpu").eval()
    directions = {}
    if direction_paths:
        from semedit.directions.io import load_direction

        directions = {Path(p).stem: load_direction(p) for p in direction_paths}
    names = [s.name for s in list_images(inputs, cfg.data.extensions, cfg.data.max_images)]
    row_dirs: dict[RowSpec, Path] = {}
    for row in rows:
        row_dirs[row] = output_dir / "rows" / row.slug
        invert(row_config(cfg, row), list(inputs), generator=generator, lpips_fn=lpips_fn, run_dir=row_dirs[row])
    projection = projection_table(row_dirs, names, lpips_fn, identity_fn, cfg.invert.lpips_resolution)
    edits = None
    if directions:
        edits = identity_after_edit_table(generator, {r: row_dirs[r] for r in edit_rows}, names, directions,
                                          list(cfg.eval.edit_strengths), identity_fn, cfg.generator.noise_mode)
    info = {"images": len(names), "input": ", ".join(map(str, inputs)), "generator": cfg.generator.ckpt or "tiny-random",
            "steps": cfg.invert.steps, "n": cfg.invert.n, "lambda_reg_rows": cfg.eval.lambda_reg,
            "lpips": f"{cfg.invert.lpips_net} (pretrained backbone: {cfg.invert.lpips_pretrained})",
            "identity": cfg.perception.identity, "l2": "mean squared error, images in [-1, 1]"}
    json_path, md_path = write_tables(output_dir, projection, edits, info)
    return {"json": json_path, "markdown": md_path, "projection": projection, "identity_after_edit": edits}
