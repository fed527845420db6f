"""The ChunkyGAN paper's two tables (ECCV 2022; numbers in the talk, shared/reference): projection quality
and identity preservation after edits.

Rows (``eval.rows``) are filled by the registered inversion methods (semedit.inversion.base): each key goes
to the method that claims it, and the method's label, group and description make the table's row and note.
Built in: ``<space>:single`` ("Optimization" in W / W+ / S: the NVlabs projector recipe, or with
``eval.optimization_recipe=chunkygan`` the ChunkyGAN optimiser with n = 1 and frozen masks; both with the
identity term ``eval.optimization_lambda_id``; the NVlabs recipe's result, score and edits use the
generator's const noise unless ``methods.projector.noise=keep``: each row's note says which),
``<space>:chunky[:reg]`` ("Ours": ChunkyGAN with ``invert.n`` chunks; ``:reg`` adds eval.lambda_reg x the
regulariser in the form eval.reg_form), ``psp``, ``e4e`` (released encoders), ``pti`` (Pivotal Tuning). Every
row runs as a `semedit invert` of its method into its own folder, so rows resume independently and run on
any number of devices. The paper's rows that no method fills yet are listed with the reason.

Projection metrics, per image then mean ± std over images: LPIPS-Alex and L2 = MSE with images in [-1, 1],
both after resizing target and reconstruction to 256 px, as pSp's scripts/calc_losses_on_images.py
(lines 31-33: Resize((256, 256)), ToTensor, Normalize(0.5, 0.5); line 47: LPIPS(net_type='alex'); line 49:
MSELoss; lines 58-59: one image at a time; lines 66-67: np.mean / np.std, the population std); identity
distance 1 - cos(ArcFace(target), ArcFace(reconstruction)); and, as an extra column, L2 at the generator's
full resolution.

Identity after edits: for every edit row, direction and strength, (a) 1 - cos between the reconstruction and
its edit and (b) 1 - cos between the input photo and the edit.

Every row writes one folder per image in ``<out>/rows/<row>/`` (target.png, reconstruction.png, codes,
edits/), so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from semedit.config import as_dict
from semedit.edits import Direction, load_direction
from semedit.errors import ConfigError, MissingWeightsError
from semedit.images import save_image
from semedit.inversion.base import (
    InversionTools,
    InverterContext,
    Row,
    resolve_row,
    row_invert_config,
    use_noise,
)
from semedit.inversion.data import list_images
from semedit.inversion.edit import edit_codes_images
from semedit.inversion.io import colour_masks, edit_file, is_finished, load_inversion, load_noise
from semedit.inversion.module import EditRequest
from semedit.inversion.run import invert
from semedit.perception.identity import identity_metric, load_identity_encoder
from semedit.perception.lpips import load_lpips
from semedit.perception.photos import load_image
from semedit.stylegan2 import generator_from_spec

__all__ = ["SkippedRow", "table_rows", "image_identity_distance", "l2_error", "resize_for_metrics",
           "image_metrics", "summarise", "projection_table", "identity_after_edit_table", "write_tables",
           "evaluate_inversion", "load_eval_directions", "render_figure", "row_record"]

@dataclass(frozen=True)
class SkippedRow:
    """A row of ``eval.rows`` that could not run here (its method's weight files are absent), and why."""

    key: str
    label: str
    group: str
    reason: str


def table_rows(keys: Sequence[str], cfg) -> list[Row]:
    """The rows of ``eval.rows`` (or ``eval.edit_rows``): each filled by a registered method."""
    return [resolve_row(k, cfg) for k in keys]


def row_record(cfg, row: Row) -> dict:
    """What a row's folder records as its config (semedit.runs checks it on resume): everything that makes the
    row's numbers (the generator, the photos' framing, the method with its settings, the seed), and nothing
    of the rest of the evaluation, so adding a row or a direction to it resumes the others."""
    full = as_dict(cfg)
    method = row.entry.name
    return {"row": {"key": row.key, **row.settings_dict}, "generator": full["generator"], "data": full["data"],
            "perception": full["perception"], "invert": as_dict(row_invert_config(cfg, row.settings_dict)),
            "method_settings": full.get("methods", {}).get(method), "run": {"seed": cfg.run.seed}}


# ----------------------------------------------------------------------------------------------------
# Metrics


def _distance_name(identity_spec) -> str:
    """How the identity column is measured, for the tables (the encoder's distance convention)."""
    if identity_metric(identity_spec) == "euclidean":
        return "Euclidean distance of the dlib descriptors, same person < 0.6"
    return "1 - cosine of the identity encoder's embeddings"


def image_identity_distance(identity_fn: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Identity distance per image [N] in the encoder's convention (``identity_fn.distance``): 1 - cos for
    ArcFace; for dlib-resnet the Euclidean distance of the 128-d descriptors (same person < 0.6). Plain
    callables without ``distance`` get 1 - cos."""
    ea, eb = identity_fn(a), identity_fn(b)
    distance = getattr(identity_fn, "distance", None)
    if distance is not None:
        return distance(ea, eb)
    return 1 - torch.nn.functional.cosine_similarity(ea, eb, dim=1)


def l2_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error per image, images in [-1, 1]: [N]."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(dim=1)


def resize_for_metrics(images: torch.Tensor, size: int) -> torch.Tensor:
    """pSp's Resize((size, size)) on PIL images: bilinear, antialiased when shrinking."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.float()
    return F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > size)


@torch.no_grad()
def image_metrics(targets: torch.Tensor, outputs: torch.Tensor, lpips_fn, identity_fn,
                  resolution: int = 256) -> dict[str, torch.Tensor]:
    """Per-image LPIPS (at ``resolution``), identity distance, L2 at ``resolution`` and L2 at full size."""
    t_small, o_small = resize_for_metrics(targets, resolution), resize_for_metrics(outputs, resolution)
    lp = torch.cat([lpips_fn(o_small[i:i + 1], t_small[i:i + 1]).reshape(-1) for i in range(targets.shape[0])])
    return {"lpips": lp.cpu(), "identity": image_identity_distance(identity_fn, targets, outputs).cpu(),
            "l2": l2_error(t_small, o_small).cpu(), "l2_full": l2_error(targets, outputs).cpu()}


def summarise(values: Sequence[float]) -> dict:
    """Mean and (population) std, as the paper's "mean ± std" (np.std in pSp's script)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": math.nan, "std": math.nan, "count": 0}
    mean = sum(vals) / len(vals)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)), "count": len(vals)}


METRICS = ("lpips", "identity", "l2", "l2_full")


def projection_table(row_dirs: dict[Row, Path], names: Sequence[str], lpips_fn, identity_fn,
                     resolution: int = 256, batch: int = 16) -> list[dict]:
    """One dict per implemented row: label, key, {metric: {mean, std, count}} and per-image values."""
    rows = []
    for row, directory in row_dirs.items():
        per_image: dict[str, list[float]] = {k: [] for k in METRICS}
        for start in range(0, len(names), batch):
            chunk = names[start: start + batch]
            targets = torch.cat([load_image(directory / n / "target.png") for n in chunk])
            recons = torch.cat([load_image(directory / n / "reconstruction.png") for n in chunk])
            for k, v in image_metrics(targets, recons, lpips_fn, identity_fn, resolution).items():
                per_image[k].extend(float(x) for x in v)
        rows.append({"key": row.key, "label": row.label, "group": row.group, "folder": str(directory),
                     **{k: summarise(v) for k, v in per_image.items()},
                     "per_image": {k: dict(zip(names, v, strict=True)) for k, v in per_image.items()}})
    return rows


# ----------------------------------------------------------------------------------------------------
# Directions


def load_eval_directions(specs: Sequence[str], G) -> dict[str, object]:
    """Direction files by column name (file stem), or ``random:<name>[:seed]``: a random W direction for the
    generator, named ``<name>`` (tiny configs only: the column is labelled, the edit means nothing).

    Edit strengths are in units of the unit vector; see ``strength_scales`` for Chunkmogrify's units."""

    out = {}
    for k, spec in enumerate(specs):
        text = str(spec)
        if text.startswith("random:"):
            parts = text.split(":")
            name, seed = parts[1], int(parts[2]) if len(parts) > 2 else k
            vec = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(seed))
            out[name] = Direction.from_vector(vec, "w", meta={"method": "random", "seed": seed})
        else:
            out[Path(text).stem] = load_direction(text)
    return out


def strength_scales(directions: dict, units: str) -> dict[str, float]:
    """Multiplier from ``eval.edit_strengths`` to the unit-vector strength, per direction.

    "unit": strengths apply to the unit vector as they are. "source": strengths are Chunkmogrify's total
    multiplier (UI value x multiplier, synthesis.py line 319) on the imported raw direction, i.e. scaled by
    the ``source_norm`` that `semedit directions import` records.
    """
    if units == "unit":
        return {name: 1.0 for name in directions}
    if units != "source":
        raise ConfigError(f"eval.strength_units must be 'unit' or 'source', got {units!r}")
    missing = [name for name, d in directions.items() if "source_norm" not in d.meta]
    if missing:
        raise ConfigError(f"eval.strength_units=source needs directions imported with `semedit directions import` "
                         f"(they record source_norm); {missing} have none. Use eval.strength_units=unit for them")
    return {name: float(d.meta["source_norm"]) for name, d in directions.items()}


def render_edits(G, directory: Path, directions: dict, strengths: Sequence[float], noise_mode: str,
                 scales: dict[str, float] | None = None) -> None:
    """Write the missing ``edits/<direction>@<k>.png`` of one finished inversion folder from what it saved
    (codes, masks, noise maps): for methods that render with the configured generator."""
    missing = [(d, k) for d in directions for k in strengths if not (directory / "edits" / edit_file(d, k)).is_file()]
    if not missing:
        return
    inv = load_inversion(directory)
    device = G.w_avg.device
    codes = [c.to(device) for c in inv.codes]
    noise = load_noise(directory)
    (directory / "edits").mkdir(exist_ok=True)
    with use_noise(G, noise):
        for dname in {d for d, _ in missing}:
            ks = [k for d, k in missing if d == dname]
            scale = (scales or {}).get(dname, 1.0)
            edited = edit_codes_images(G, inv.space, codes, inv.masks, directions[dname], [k * scale for k in ks],
                                       noise_mode=noise_mode)
            for k, img in zip(ks, edited, strict=True):
                save_image(img[0].cpu(), directory / "edits" / edit_file(dname, k))


def identity_after_edit_table(row_dirs: dict[Row, Path], names: Sequence[str], directions: Sequence[str],
                              strengths: Sequence[float], identity_fn) -> list[dict]:
    """Per row x direction x strength: (a) reconstruction vs edit and (b) input vs edit identity distances."""
    cols = [f"{d}@{k:g}" for d in directions for k in strengths]
    rows = []
    for row, directory in row_dirs.items():
        cells = {c: {"reconstructed_vs_edited": [], "input_vs_edited": []} for c in cols}
        for name in names:
            folder = directory / name
            edits = [folder / "edits" / edit_file(d, k) for d in directions for k in strengths]
            # One embedding pass per image: input, reconstruction and every edit.
            batch = torch.cat([load_image(folder / "target.png"), load_image(folder / "reconstruction.png"),
                               *[load_image(e) for e in edits]])
            with torch.no_grad():
                emb = identity_fn(batch)
                # The encoder's own distance convention, as image_identity_distance (1 - cos unless it defines one).
                dist = getattr(identity_fn, "distance", None) or (
                    lambda x, y: 1 - torch.nn.functional.cosine_similarity(x, y, dim=1))
                edited = emb[2:]
                a = dist(emb[1:2].expand_as(edited), edited)
                b = dist(emb[0:1].expand_as(edited), edited)
            for j, c in enumerate(cols):
                cells[c]["reconstructed_vs_edited"].append(float(a[j]))
                cells[c]["input_vs_edited"].append(float(b[j]))
        rows.append({"key": row.key, "label": row.label, "group": row.group,
                     "cells": {c: {col: summarise(v) for col, v in d.items()} for c, d in cells.items()}})
    return rows


# ----------------------------------------------------------------------------------------------------
# Writing


def _fmt(stat: dict, digits: int = 4) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def write_tables(out_dir: Path, projection: list[dict], identity_edits: list[dict] | None, info: dict,
                 skipped: Sequence[SkippedRow] = (), notes: dict[str, str] | None = None,
                 figure: Path | None = None) -> tuple[Path, Path]:
    """inversion_metrics.json and inversion_metrics.md in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = notes or {}
    not_run = [{"key": r.key, "label": r.label, "group": r.group, "reason": r.reason} for r in skipped]
    json_path = out_dir / "inversion_metrics.json"
    json_path.write_text(json.dumps({"info": info, "projection": projection, "identity_after_edit": identity_edits,
                                     "not_run": not_run, "row_notes": notes,
                                     "figure": str(figure) if figure else None}, indent=1))
    res = info.get("metric_resolution", 256)
    lines = ["# Inversion: projection quality", "",
             f"{info.get('images', '?')} images ({info.get('test_set', '?')}) from `{info.get('input', '?')}`; generator "
             f"`{info.get('generator', '?')}`; identity `{info.get('identity', '?')}`.", "",
             f"| Group | Projection | LPIPS ({info.get('metric_lpips', 'alex')}, {res} px) | Identity | L2 ({res} px) | "
             f"L2 (full res.) | s / image |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in projection:
        sec = info.get("seconds_per_image", {}).get(r["key"])
        lines.append(f"| {r['group']} | {r['label']} | {_fmt(r['lpips'])} | {_fmt(r['identity'])} | {_fmt(r['l2'])} | "
                     f"{_fmt(r['l2_full'])} | {sec:.2f} |" if sec is not None else
                     f"| {r['group']} | {r['label']} | {_fmt(r['lpips'])} | {_fmt(r['identity'])} | {_fmt(r['l2'])} | "
                     f"{_fmt(r['l2_full'])} | – |")
    for r in not_run:
        lines.append(f"| {r['group']} | {r['label']} | – | – | – | – | – |")
    if identity_edits:
        cols = list(identity_edits[0]["cells"])
        lines += ["", f"# Identity distance after edits ({_distance_name(info.get('identity'))})", "",
                  "(a) reconstructed vs edited, (b) input vs edited.", "",
                  "| Group | Projection | " + " | ".join(f"(a) {c}" for c in cols) + " | "
                  + " | ".join(f"(b) {c}" for c in cols) + " |",
                  "| --- | --- |" + " --- |" * (2 * len(cols))]
        for r in identity_edits:
            a = [f"{r['cells'][c]['reconstructed_vs_edited']['mean']:.3f}" for c in cols]
            b = [f"{r['cells'][c]['input_vs_edited']['mean']:.3f}" for c in cols]
            lines.append(f"| {r['group']} | {r['label']} | " + " | ".join(a + b) + " |")
        for r in not_run:
            lines.append(f"| {r['group']} | {r['label']} | " + " | ".join(["–"] * (2 * len(cols))) + " |")
    lines += ["", "## Notes", ""]
    lines += [f"- **{label}**: {text}" for label, text in notes.items()]
    lines += [f"- **{r['label']}**: {r['reason']}" for r in not_run]
    lines += [f"- {text}" for text in info.get("notes", [])]
    if figure:
        lines += ["", f"![masks and edits]({figure.name})", "",
                  "Figure, one line per row (" + ", ".join(info.get("figure_rows", [])) + "): input | reconstruction | "
                  "masks | edits (" + ", ".join(info.get("figure_edits", [])) + ")."]
    md_path = out_dir / "inversion_metrics.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def render_figure(path: Path, row_dirs: dict[Row, Path], name: str, directions: Sequence[str],
                  strengths: Sequence[float]) -> Path:
    """One line per row for image ``name``: input | reconstruction | masks | edits (direction x strength)."""

    lines = []
    for directory in row_dirs.values():
        folder = directory / name
        target, recon = load_image(folder / "target.png")[0], load_image(folder / "reconstruction.png")[0]
        inv = load_inversion(folder)
        tiles = [target, recon, colour_masks(inv.masks[0])]
        for d in directions:
            for k in strengths:
                edit = folder / "edits" / edit_file(d, k)
                if edit.is_file():
                    tiles.append(load_image(edit)[0])
        lines.append(torch.cat(tiles, dim=2))
    width = max(t.shape[-1] for t in lines)
    lines = [F.pad(t, (0, width - t.shape[-1]), value=1.0) for t in lines]
    save_image(torch.cat(lines, dim=1), path)
    return path


# ----------------------------------------------------------------------------------------------------
# Running the rows


def _sources(cfg, inputs):
    sources = list_images(inputs, cfg.data.extensions, cfg.data.max_images)
    size = cfg.eval.test_set_size
    if size is not None:
        if len(sources) < size:
            raise ConfigError(f"eval.test_set_size is {size} ({cfg.eval.test_set}) but the inputs hold only "
                              f"{len(sources)} images; pass the whole test set or set eval.test_set_size=null")
        sources = sources[:size]
    return sources


def _rows_config(cfg):
    """The job config every row runs with: the test set's first ``eval.test_set_size`` images."""
    out = copy.deepcopy(cfg)
    if cfg.eval.test_set_size is not None:
        limit = cfg.data.max_images
        out.data.max_images = cfg.eval.test_set_size if limit is None else min(limit, cfg.eval.test_set_size)
    return out


def _unfinished(directory: Path, names: Sequence[str], edits: EditRequest | None) -> int:
    files = edits.files() if edits is not None else []
    return sum(not (is_finished(directory / n) and all((directory / n / "edits" / f).is_file() for f in files))
               for n in names)


def evaluate_inversion(cfg, inputs: Sequence[str], output_dir: Path, direction_paths: Sequence[str] = (),
                       generator=None, lpips_fn=None, identity_fn=None, metric_lpips_fn=None) -> dict:
    """Run every row of ``cfg.eval.rows`` (resumable) and write both tables and the figure."""

    inputs = list(inputs)
    if not inputs:
        raise ConfigError("no input images: give a folder of aligned faces (e.g. the CelebA-HQ test split)")
    output_dir = Path(output_dir)
    run_rows = table_rows(cfg.eval.rows, cfg)
    skipped: list[SkippedRow] = []
    specs = list(direction_paths) or list(cfg.eval.directions)
    absent = [k for k in cfg.eval.edit_rows if k not in cfg.eval.rows] if specs else []
    if absent:
        raise ConfigError(f"eval.edit_rows {absent} are not in eval.rows {list(cfg.eval.rows)}")
    edit_keys = set(cfg.eval.edit_rows) if specs else set()
    if generator is None:
        generator = generator_from_spec(cfg.generator)
    if lpips_fn is None:
        lpips_fn = load_lpips(cfg.invert.lpips_net, pretrained_backbone=cfg.invert.lpips_pretrained)
    if metric_lpips_fn is None:
        metric_lpips_fn = load_lpips(cfg.eval.metric_lpips_net, pretrained_backbone=cfg.invert.lpips_pretrained)
        metric_lpips_fn = metric_lpips_fn.to(generator.w_avg.device).eval().requires_grad_(False)
    if identity_fn is None:
        identity_fn = load_identity_encoder(cfg.perception.identity, "cpu").eval()
    tools = InversionTools(cfg, lpips_fn, metric_lpips_fn)
    directions = load_eval_directions(specs, generator) if specs else {}
    strengths = list(cfg.eval.edit_strengths)
    scales = strength_scales(directions, cfg.eval.strength_units)
    names = [s.name for s in _sources(cfg, inputs)]
    rows_cfg = _rows_config(cfg)
    row_dirs: dict[Row, Path] = {}
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    for k, row in enumerate(run_rows, 1):
        directory = output_dir / "rows" / row.slug
        # Progress over the rows (each row's own inversion shows its bar over images and steps), with the
        # time so far and a rough estimate of what is left (from the rows done in this run).
        if cfg.trainer.enable_progress_bar:
            spent = time.perf_counter() - began
            left = f"; about {spent / (k - 1) * (len(run_rows) - k + 1):.0f} s left" if k > 1 else ""
            print(f"eval-inversion: row {k}/{len(run_rows)}: {row.label} ({len(names)} images; {spent:.0f} s so far"
                  f"{left})", flush=True)
        edits = (EditRequest(directions, tuple(strengths), scales, cfg.generator.noise_mode)
                 if row.key in edit_keys else None)
        if edits is not None and not row.entry.modifies_generator:
            # Finished images of a method that renders with the configured generator: their edits come from
            # what they saved (codes, masks, noise), without inverting them again.
            for n in names:
                if is_finished(directory / n):
                    render_edits(generator, directory / n, directions, strengths, cfg.generator.noise_mode, scales)
        start = time.perf_counter()
        ran = _unfinished(directory, names, edits)
        try:
            invert(rows_cfg, inputs, generator=generator, tools=tools, run_dir=directory, row=row, edits=edits,
                   record=row_record(rows_cfg, row))
        except MissingWeightsError as err:
            # The other rows still make a table; this one is listed as not run, with the file to fetch.
            skipped.append(SkippedRow(row.key, row.label, row.group, f"not run: {err}"))
            print(f"eval-inversion: row {row.label} not run: {err}", file=sys.stderr, flush=True)
            continue
        row_dirs[row] = directory
        timing_file = directory / "timing.json"
        if ran:
            seconds[row.key] = (time.perf_counter() - start) / ran
            timing_file.write_text(json.dumps({"seconds_per_image": seconds[row.key], "images": ran}))
        elif timing_file.is_file():
            seconds[row.key] = json.loads(timing_file.read_text())["seconds_per_image"]
    run_rows = [r for r in run_rows if r in row_dirs]
    projection = projection_table(row_dirs, names, metric_lpips_fn, identity_fn, cfg.eval.metric_resolution)
    edit_rows = [r for r in run_rows if r.key in edit_keys]
    edits_table = None
    if directions:
        edits_table = identity_after_edit_table({r: row_dirs[r] for r in edit_rows}, names, list(directions),
                                                strengths, identity_fn)
    figure_rows = edit_rows or run_rows
    figure = None
    if names:
        figure = render_figure(output_dir / "inversion_figure.png", {r: row_dirs[r] for r in figure_rows},
                               names[0], list(directions), strengths)
    notes = {r.label: r.entry.describe(InverterContext(generator, cfg, r.settings_dict, tools)) for r in run_rows}
    info = {"images": len(names), "input": ", ".join(map(str, inputs)),
            "test_set": cfg.eval.test_set or "unnamed", "generator": cfg.generator.ckpt or "tiny-random",
            "steps": cfg.invert.steps, "n": cfg.invert.n, "lambda_reg_rows": cfg.eval.lambda_reg,
            "reg_form": cfg.eval.reg_form, "optimization_recipe": cfg.eval.optimization_recipe,
            "optimization_lambda_id": cfg.eval.optimization_lambda_id, "lambda_id": cfg.invert.lambda_id,
            "identity_loss": cfg.perception.identity_loss,
            "optimization_noise": getattr(getattr(cfg.methods, "projector", None), "noise", None),
            "percept": cfg.invert.percept, "percept_downsample": cfg.invert.percept_downsample,
            "inversion_lpips": f"{cfg.invert.lpips_net} (pretrained backbone: {cfg.invert.lpips_pretrained})",
            "metric_lpips": cfg.eval.metric_lpips_net, "metric_resolution": cfg.eval.metric_resolution,
            "identity": cfg.perception.identity, "directions": {k: v.meta for k, v in directions.items()},
            "edit_strengths": strengths, "strength_units": cfg.eval.strength_units, "strength_scales": scales,
            "seconds_per_image": seconds, "figure_rows": [r.label for r in figure_rows],
            "figure_edits": [f"{d}@{k:g}" for d in directions for k in strengths],
            "notes": [f"LPIPS and L2 are computed after resizing both images to {cfg.eval.metric_resolution} px "
                      "(pSp scripts/calc_losses_on_images.py); L2 is the MSE with images in [-1, 1]; "
                      "'L2 (full res.)' is the same at the generator's resolution.",
                      f"Identity: {_distance_name(cfg.perception.identity)}; the edit table's (a) compares the "
                      "reconstruction with its edit, (b) the input photo with the edit.",
                      "s / image: wall time of this run of the row divided by the images it processed."]}
    json_path, md_path = write_tables(output_dir, projection, edits_table, info, skipped, notes, figure)
    return {"json": json_path, "markdown": md_path, "figure": figure, "projection": projection,
            "identity_after_edit": edits_table}


def run(cfg, inputs: Sequence[str]) -> dict:
    """The `eval-inversion` job's entry (semedit.jobs): the tables of ``cfg.eval.rows`` on ``inputs``."""
    return evaluate_inversion(cfg, inputs, Path(cfg.eval.output_dir), list(cfg.eval.directions))
