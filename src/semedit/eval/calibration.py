"""Which metric produced the ChunkyGAN paper's numbers? Every variant, on the encoder rows.

The talk's projection table does not say how it measured. pSp's own scripts give LPIPS-Alex and MSE on
images resized to 256 px (scripts/calc_losses_on_images.py lines 31-33, 47-49) and the identity *similarity*
cos of CurricularFace on MTCNN-aligned 112 px crops (scripts/calc_id_loss_parallel.py lines 29-33, 51-65);
with that script the literature has pSp near 0.17 LPIPS on CelebA-HQ, while the talk's table has pSp 0.4433
and e4e 0.4444; its L2 column (pSp 0.0351) agrees with MSE at 256 px, and its identity column (pSp 0.1706) is
far from CurricularFace's similarity read as a distance.

The encoder rows (pSp, e4e, ReStyle) are deterministic given the released weights and the test images, so
their numbers can be recomputed with every variant, and the variant that lands on the paper's numbers is the
one the paper used:

- LPIPS Alex / VGG / Squeeze (the lpips package, v0.1) at 256 px (pSp's bilinear resize) and at the
  generator's full resolution;
- L2 (MSE in [-1, 1]) at 256 px and at full resolution;
- identity 1 - cos of IR-SE50 on pSp's crop (``arcface-irse50``), of insightface's R50 (``arcface-w600k-r50``)
  behind its own 5-point norm_crop, and of CurricularFace (pSp's ``IR_101``, CurricularFace_Backbone.pth) when
  its file is given; norm_crop's template is the one pSp's MTCNN warp uses (mtcnn.py line 21, default_square
  reference points), the keypoints come from SCRFD instead of MTCNN.

Each row is inverted with the configured method into ``<out>/rows/<row>/`` (the layout and resume of
`semedit eval-inversion`, so pointing ``out`` at an eval-inversion folder reuses its rows). Writes
``metric_calibration.json`` and ``metric_calibration.md``: every variant's mean per row, its relative error
to the paper, and per metric the closest variant (it "reproduces" the paper when every row is within
``tolerance``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from semedit.errors import MissingWeightsError, WeightsError
from semedit.eval.inversion import (
    _rows_config,
    _sources,
    l2_error,
    resize_for_metrics,
    row_record,
    summarise,
    table_rows,
)
from semedit.inversion.base import InversionTools
from semedit.inversion.optimize import lpips_input
from semedit.inversion.run import invert
from semedit.perception.face_align import NormCropIdentityEncoder
from semedit.perception.identity import load_identity_encoder
from semedit.perception.lpips import LPIPS_BACKBONES, load_lpips
from semedit.perception.photos import load_image
from semedit.stylegan2 import generator_from_spec

__all__ = ["PAPER_ENCODER_ROWS", "DEFAULT_IDENTITY", "IdentityVariant", "parse_identity", "calibrate",
           "closest_variants", "write_calibration"]

# The talk's projection table (shared/reference, as in experiments/chunkygan/README.md): mean over the test set.
PAPER_ENCODER_ROWS = {
    "psp": {"label": "pSp", "lpips": 0.4433, "identity": 0.1706, "l2": 0.0351},
    "e4e": {"label": "e4e", "lpips": 0.4444, "identity": 0.1912, "l2": 0.0468},
    "restyle": {"label": "ReStyle - 5 iters", "lpips": 0.4444, "identity": 0.1900, "l2": 0.0433},
}
METRICS = ("lpips", "identity", "l2")
RESOLUTIONS = ("256", "full")
# name -> "spec[:crop]": crop "ffhq" (pSp's fixed crop) or "norm_crop" (insightface's 5-point alignment).
DEFAULT_IDENTITY = {"irse50": "arcface-irse50:ffhq", "insightface-r50": "arcface-w600k-r50:norm_crop"}


@dataclass(frozen=True)
class IdentityVariant:
    name: str
    spec: str  # registry name or path (load_identity_encoder)
    crop: str  # "ffhq" | "norm_crop"


def parse_identity(text: str) -> IdentityVariant:
    """``name=spec[:crop]`` (crop ffhq or norm_crop; default ffhq). A spec may itself hold colons
    (random-irse:10), so only a trailing ``:ffhq`` / ``:norm_crop`` is read as the crop."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"identity variant {text!r}: expected name=spec[:ffhq|:norm_crop]")
    crop = "ffhq"
    for option in ("ffhq", "norm_crop"):
        if rest.endswith(f":{option}"):
            rest, crop = rest[: -len(option) - 1], option
    return IdentityVariant(name, rest, crop)


def _identity_encoder(variant: IdentityVariant, keypoints: str, device):
    if variant.crop == "norm_crop":
        return NormCropIdentityEncoder(variant.spec, keypoints=keypoints, device=device)
    return load_identity_encoder(variant.spec, device=device)


@torch.no_grad()
def _variant_values(targets: torch.Tensor, recons: torch.Tensor, lpips_nets: dict, identity_encoders: dict) -> dict:
    """Per-image values [N] of every variant for one batch of pairs (images in [-1, 1])."""
    out: dict[str, torch.Tensor] = {}
    small_t, small_r = resize_for_metrics(targets, 256), resize_for_metrics(recons, 256)
    full_t, full_r = lpips_input(targets.float(), targets.shape[-1]), lpips_input(recons.float(), recons.shape[-1])
    for net, fn in lpips_nets.items():
        device = next(fn.parameters()).device
        for res, (t, r) in (("256", (small_t, small_r)), ("full", (full_t, full_r))):
            # One pair at a time, as pSp's script (calc_losses_on_images.py lines 58-59).
            vals = [fn(r[i:i + 1].to(device), t[i:i + 1].to(device)).reshape(()) for i in range(len(t))]
            out[f"lpips-{net}@{res}"] = torch.stack(vals).cpu()
    out["l2@256"] = l2_error(small_t, small_r).cpu()
    out["l2@full"] = l2_error(targets, recons).cpu()
    for name, enc in identity_encoders.items():
        device = next((p.device for p in enc.parameters()), torch.device("cpu"))
        ea, eb = enc(targets.to(device)), enc(recons.to(device))
        out[f"identity-{name}"] = enc.distance(ea, eb).float().cpu()
    return out


def _family(variant: str) -> str:
    return variant.split("-")[0].split("@")[0]


def closest_variants(means: dict[str, dict[str, float]], rows: Sequence[str], tolerance: float) -> dict:
    """Per metric: every variant's relative error to the paper (mean and worst over ``rows``), sorted, and
    whether the best reproduces the paper (every row within ``tolerance``)."""
    result = {}
    for metric in METRICS:
        scored = []
        for variant, per_row in means.items():
            if _family(variant) != metric:
                continue
            errors = [abs(per_row[r] - PAPER_ENCODER_ROWS[r][metric]) / PAPER_ENCODER_ROWS[r][metric]
                      for r in rows if r in per_row and math.isfinite(per_row[r])]
            if errors:
                scored.append({"variant": variant, "mean_rel_error": sum(errors) / len(errors),
                               "max_rel_error": max(errors), "rows": len(errors)})
        scored.sort(key=lambda s: s["mean_rel_error"])
        best = scored[0] if scored else None
        result[metric] = {"ranking": scored, "closest": best["variant"] if best else None,
                          "reproduces": bool(best and best["max_rel_error"] <= tolerance)}
    return result


def calibrate(cfg, inputs: Sequence[str], out_dir: str | Path, rows: Sequence[str] = ("psp", "e4e", "restyle"),
              lpips_nets: Sequence[str] = ("alex", "vgg", "squeeze"),
              identity: Sequence[IdentityVariant] | None = None, keypoints: str = "detector",
              tolerance: float = 0.05, generator=None, device: str | torch.device | None = None) -> dict:
    """Invert ``rows`` (resumable) and measure every metric variant on their reconstructions; writes and returns
    the report (see the module docstring). Variants whose weights are absent are listed as not available."""
    out_dir = Path(out_dir)
    unknown = [r for r in rows if r not in PAPER_ENCODER_ROWS]
    if unknown:
        raise ValueError(f"rows {unknown} have no paper numbers to calibrate against; use {list(PAPER_ENCODER_ROWS)}")
    identity = list(identity) if identity is not None else [parse_identity(f"{k}={v}") for k, v in DEFAULT_IDENTITY.items()]
    if generator is None:
        generator = generator_from_spec(cfg.generator)
    if device is None:
        device = "cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu"
    unavailable: dict[str, str] = {}
    nets = {}
    for net in lpips_nets:
        if net not in LPIPS_BACKBONES:
            raise ValueError(f"unknown LPIPS net {net!r}; choose from {', '.join(LPIPS_BACKBONES)}")
        try:
            nets[net] = load_lpips(net, pretrained_backbone=cfg.invert.lpips_pretrained, device=device).eval()
        except WeightsError as err:
            unavailable[f"lpips-{net}"] = str(err)
    encoders = {}
    for variant in identity:
        try:
            encoders[variant.name] = _identity_encoder(variant, keypoints, device).eval()
        except (WeightsError, ImportError) as err:
            unavailable[f"identity-{variant.name}"] = f"{type(err).__name__}: {err}"
    names = [s.name for s in _sources(cfg, inputs)]
    rows_cfg = _rows_config(cfg)
    tools = InversionTools(cfg)
    per_row: dict[str, dict[str, list[float]]] = {}
    not_run: dict[str, str] = {}
    for row in table_rows(list(rows), cfg):
        directory = out_dir / "rows" / row.slug
        try:
            invert(rows_cfg, list(inputs), generator=generator, tools=tools, run_dir=directory, row=row,
                   record=row_record(rows_cfg, row))
        except MissingWeightsError as err:
            not_run[row.key] = str(err)
            print(f"metric calibration: row {row.label} not run: {err}", file=sys.stderr, flush=True)
            continue
        values: dict[str, list[float]] = {}
        for name in names:
            target = load_image(directory / name / "target.png")
            recon = load_image(directory / name / "reconstruction.png")
            for variant, v in _variant_values(target, recon, nets, encoders).items():
                values.setdefault(variant, []).extend(float(x) for x in v)
        per_row[row.key] = values
    variants = sorted({v for values in per_row.values() for v in values})
    stats = {v: {r: summarise(per_row[r][v]) for r in per_row if v in per_row[r]} for v in variants}
    means = {v: {r: s["mean"] for r, s in by_row.items()} for v, by_row in stats.items()}
    report = {
        "images": len(names), "test_set": cfg.eval.test_set or "unnamed", "rows": list(per_row),
        "paper": {r: PAPER_ENCODER_ROWS[r] for r in rows}, "variants": stats,
        "closest": closest_variants(means, list(per_row), tolerance), "tolerance": tolerance,
        "not_available": unavailable, "not_run": not_run, "keypoints": keypoints,
        "identity_variants": {v.name: {"spec": v.spec, "crop": v.crop} for v in identity},
    }
    write_calibration(out_dir, report)
    return report


def _cell(value: float, paper: float) -> str:
    return f"{value:.4f} ({100 * (value - paper) / paper:+.1f} %)"


def write_calibration(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """metric_calibration.json and metric_calibration.md in ``out_dir``; the summary is also printed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "metric_calibration.json"
    json_path.write_text(json.dumps(report, indent=1))
    rows = report["rows"]
    labels = [PAPER_ENCODER_ROWS[r]["label"] for r in rows]
    lines = ["# Metric calibration: which variant gives the paper's encoder rows", "",
             f"{report['images']} images ({report['test_set']}); rows {', '.join(labels) or 'none'}. Each cell: "
             "semedit's mean (relative difference to the paper).", ""]
    summary = []
    for metric in METRICS:
        lines += [f"## {metric}", "", "| variant | " + " | ".join(labels) + " | mean rel. error |",
                  "| --- |" + " --- |" * (len(rows) + 1),
                  "| paper | " + " | ".join(f"{PAPER_ENCODER_ROWS[r][metric]:.4f}" for r in rows) + " | |"]
        for item in report["closest"][metric]["ranking"]:
            by_row = report["variants"][item["variant"]]
            cells = [_cell(by_row[r]["mean"], PAPER_ENCODER_ROWS[r][metric]) if r in by_row else "–" for r in rows]
            lines.append(f"| {item['variant']} | " + " | ".join(cells) + f" | {100 * item['mean_rel_error']:.1f} % |")
        closest = report["closest"][metric]
        if closest["closest"]:
            verdict = "reproduces it" if closest["reproduces"] else "does not reproduce it"
            text = (f"{metric}: closest variant {closest['closest']} ({verdict}: every row within "
                    f"{100 * report['tolerance']:g} % is required)")
        else:
            text = f"{metric}: no variant measured"
        summary.append(text)
        lines += ["", text, ""]
    for key, reason in {**report["not_available"], **report["not_run"]}.items():
        lines.append(f"- not available: **{key}**: {reason}")
    md_path = out_dir / "metric_calibration.md"
    md_path.write_text("\n".join(lines) + "\n")
    print("\n".join(summary))
    print(f"tables: {md_path}, {json_path}")
    return json_path, md_path
