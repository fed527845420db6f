"""On-disk layout of one inverted image, and reading it back for editing and evaluation.

    <out>/<name>/
        codes.safetensors   code.<k> [n, ...] (one entry in W/W+, one per style layer in S), mask_logits
                            [n, h, w], masks [n, 1, R, R]; JSON metadata: space, n, resolution, config
        target.png          the aligned target the codes were fitted to
        reconstruction.png  sum_i G(z_i) * s_i
        chunks.png          G(z_i) of every chunk, side by side
        masks.png           the masks, one colour per chunk
        progress.png        target | reconstructions during the optimisation (last = final)
        noise.safetensors   the noise maps the codes were fitted with, when the method optimised them
        result.json         final metrics and per-step loss; written last, so its presence means "finished"
        edits/              <direction>@<strength>.png, when edits were asked for
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from semedit.files import save_safetensors, write_atomically
from semedit.images import save_image

__all__ = [
    "RESULT_FILE",
    "CODES_FILE",
    "NOISE_FILE",
    "save_output",
    "load_noise",
    "write_summary",
    "edit_file",
    "Inversion",
    "is_finished",
    "save_inversion",
    "load_inversion",
    "find_inversions",
    "colour_masks",
]

RESULT_FILE = "result.json"
CODES_FILE = "codes.safetensors"
NOISE_FILE = "noise.safetensors"

# Distinct colours for up to 10 chunks (then they repeat).
_PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
], dtype=np.float32) / 255.0


@dataclass
class Inversion:
    """One inverted image read back from disk."""

    name: str
    directory: Path
    space: str
    codes: list[torch.Tensor]  # code set with a leading image axis of 1: [1, n, ...]
    mask_logits: torch.Tensor  # [1, n, h, w]
    masks: torch.Tensor  # [1, n, 1, R, R]
    meta: dict


def is_finished(directory: str | os.PathLike) -> bool:
    return (Path(directory) / RESULT_FILE).is_file()


def colour_masks(masks: torch.Tensor) -> torch.Tensor:
    """[n, 1, H, W] soft masks -> [3, H, W] in [-1, 1]: each pixel the mask-weighted mix of chunk colours."""
    n = masks.shape[0]
    palette = torch.from_numpy(_PALETTE[np.arange(n) % len(_PALETTE)])  # [n, 3]
    rgb = (masks[:, 0].float().cpu().unsqueeze(1) * palette[:, :, None, None]).sum(dim=0)
    return rgb * 2 - 1


def save_inversion(directory: str | os.PathLike, name: str, space: str, codes: list[torch.Tensor],
                   mask_logits: torch.Tensor, masks: torch.Tensor, target: torch.Tensor,
                   reconstruction: torch.Tensor, chunk_images: torch.Tensor, snapshots: torch.Tensor,
                   result: dict, meta: dict) -> Path:
    """Write one image's inversion (tensors without the image axis: codes [n, ...], masks [n, 1, R, R]).

    ``result.json`` is written last and atomically, so an interrupted write is simply redone on resume.
    """

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"code.{k}": c.detach().float().cpu().contiguous() for k, c in enumerate(codes)}
    tensors["mask_logits"] = mask_logits.detach().float().cpu().contiguous()
    tensors["masks"] = masks.detach().float().cpu().contiguous()
    metadata = {"semedit": json.dumps({"name": name, "space": space, "n": int(mask_logits.shape[0]),
                                       "num_code_tensors": len(codes), **meta})}
    save_safetensors(tensors, out / CODES_FILE, metadata=metadata)
    save_image(target, out / "target.png")
    save_image(reconstruction, out / "reconstruction.png")
    save_image(torch.cat(list(chunk_images), dim=2), out / "chunks.png")
    save_image(colour_masks(masks), out / "masks.png")
    save_image(torch.cat([target, *snapshots], dim=2), out / "progress.png")
    text = json.dumps({"name": name, "space": space, **result}, indent=1)
    write_atomically(out / RESULT_FILE, lambda tmp: tmp.write_text(text))
    return out


def edit_file(direction: str, strength: float) -> str:
    """The file name of an edit inside ``<image folder>/edits/``."""
    return f"{direction}@{strength:g}.png"


def save_output(directory: str | os.PathLike, name: str, output, i: int, target: torch.Tensor, seconds: float,
                meta: dict) -> dict:
    """Write image ``i`` of an ``InversionOutput`` (what every method's `semedit invert` writes); returns its
    result.json content. ``target``: [3, R, R] on the CPU; ``meta``: facts of the run for codes.safetensors."""
    directory = Path(directory)
    nan = float("nan")
    terms = {k: float(output.losses[k][i]) if k in output.losses else nan for k in ("lpips", "reg", "total")}
    result = {
        **terms,
        "l2": float((output.reconstruction[i] - target).pow(2).mean()),
        "steps": output.steps_done,
        "seconds": seconds,
        "history": {k: [round(float(x), 6) for x in v[:, i]] for k, v in output.history.items()},
        "snapshot_steps": output.snapshot_steps,
        **meta.get("result", {}),
        **(output.meta[i] if output.meta else {}),
    }
    file_meta = {k: v for k, v in meta.items() if k != "result"}
    file_meta.update(output.meta[i] if output.meta else {})
    if output.noise and output.noise[i]:
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors({k: v.contiguous() for k, v in output.noise[i].items()}, directory / NOISE_FILE)
    save_inversion(directory, name, output.space, [c[i] for c in output.codes], output.mask_logits[i],
                   output.masks[i], target, output.reconstruction[i], output.chunk_images[i], output.snapshots[i],
                   result, file_meta)
    return result


def write_summary(output_dir: Path, names: list[str]) -> dict:
    """summary.json: per-image final metrics of all finished images, and the mean over them."""
    rows = {}
    for name in names:
        path = output_dir / name / RESULT_FILE
        if path.is_file():
            data = json.loads(path.read_text())
            rows[name] = {k: data.get(k, float("nan")) for k in ("lpips", "l2", "reg", "total", "seconds", "rank")}
    summary = {"images": rows, "finished": len(rows), "total": len(names)}
    if rows:
        summary["mean"] = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("lpips", "l2", "reg")}
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def load_noise(directory: str | os.PathLike) -> dict[str, torch.Tensor] | None:
    """The noise maps saved beside an inversion (``NOISE_FILE``), or None."""
    path = Path(directory) / NOISE_FILE
    return load_file(str(path)) if path.is_file() else None


def load_inversion(directory: str | os.PathLike) -> Inversion:
    """Read an image folder written by ``save_inversion``; clear errors for unfinished/foreign folders."""

    directory = Path(directory)
    path = directory / CODES_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a ChunkyGAN inversion folder (no {CODES_FILE}); pass a folder written by "
            "`semedit invert` (one per image) or its run folder"
        )
    if not is_finished(directory):
        raise FileNotFoundError(f"the inversion in {directory} is unfinished (no {RESULT_FILE}); re-run `semedit invert`")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["semedit"])
        codes = [f.get_tensor(f"code.{k}")[None] for k in range(meta["num_code_tensors"])]
        mask_logits = f.get_tensor("mask_logits")[None]
        masks = f.get_tensor("masks")[None]
    return Inversion(meta["name"], directory, meta["space"], codes, mask_logits, masks, meta)


def find_inversions(path: str | os.PathLike) -> list[Path]:
    """Image folders under ``path`` (itself, or its finished sub-folders, sorted by name)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"inversion path not found: {path}")
    if (path / CODES_FILE).is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and is_finished(p) and (p / CODES_FILE).is_file())
    if not found:
        raise FileNotFoundError(f"no finished inversions in {path} (expected sub-folders with {RESULT_FILE})")
    return found
