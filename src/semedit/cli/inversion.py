"""`semedit invert`, `semedit edit-real`, `semedit eval-inversion`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semedit.cli.commands import add_command
from semedit.cli.common import CLIError, add_out_argument, add_strengths_argument, parse_floats
from semedit.config import GeneratorSpec, load_config
from semedit.edits import load_direction
from semedit.files import write_atomically
from semedit.images import save_image
from semedit.inversion.base import use_noise
from semedit.inversion.edit import edit_codes_images, render_composite
from semedit.inversion.io import RESULT_FILE, find_inversions, load_inversion, load_noise
from semedit.jobs import get_job, run_job
from semedit.perception.paste_back import crop_geometry, paste_back
from semedit.perception.photos import load_image, read_photo
from semedit.stylegan2 import generator_from_spec

__all__ = ["register"]


def cmd_invert(args: argparse.Namespace) -> int:
    run_job("invert", args.config, [*args.items, *(args.input or [])])
    return 0


def _generator_spec(inv_dirs: list[Path], config: str | None, overrides: list[str]) -> GeneratorSpec:
    """The generator that made the inversions: ``--config``'s, else the one recorded with their codes."""
    cfg = get_job("invert").load_config(config, overrides)
    recorded = load_inversion(inv_dirs[0]).meta.get("generator")
    if config is not None or recorded is None or any(o.startswith("generator.") for o in overrides):
        return cfg.generator
    return load_config(GeneratorSpec, overrides=[f"{k}={v}" for k, v in _flat(recorded)])


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", "null" if v is None else v


def cmd_edit_real(args: argparse.Namespace) -> int:
    strengths = parse_floats(args.strengths, "--strengths")
    inv_dirs = find_inversions(args.inversion)
    spec = _generator_spec(inv_dirs, args.config, args.overrides)
    direction = load_direction(args.direction)
    G = generator_from_spec(spec)
    out_root = Path(args.out) if args.out else Path(args.inversion) / "edits" / Path(args.direction).stem
    print(f"direction {args.direction}: space {direction.space}, layers {direction.layers}")
    for directory in inv_dirs:
        inv = load_inversion(directory)
        if inv.meta.get("resolution") not in (None, G.img_resolution):
            raise CLIError(f"{directory} was inverted with a {inv.meta['resolution']} px generator, but the "
                             f"configured generator makes {G.img_resolution} px; pass the run's --config")
        with use_noise(G, load_noise(directory)):  # the noise maps a projection optimised, if it saved them
            edited = edit_codes_images(G, inv.space, inv.codes, inv.masks, direction, strengths,
                                       chunks=args.chunks, layers=args.layers, noise_mode=spec.noise_mode)
            recon = render_composite(G, inv.space, inv.codes, inv.masks, spec.noise_mode)[0]
        out = out_root / inv.name
        out.mkdir(parents=True, exist_ok=True)
        for k, img in zip(strengths, edited, strict=True):
            save_image(img[0], out / f"strength{k:+g}.png")
        strip = [load_image(directory / "target.png")[0], recon, *[img[0] for img in edited]]
        save_image(torch.cat(strip, dim=2), out / "strip.png")
        print(f"  {inv.name}: {out / 'strip.png'}  (target | reconstruction | strengths {' '.join(f'{k:g}' for k in strengths)})")
        if args.paste_back:
            photo, geometry = _source_photo(directory)
            region = inv.masks[0, args.chunks].sum(0).clamp(0, 1)[0] if args.chunks else torch.ones(inv.masks.shape[-2:])
            for k, img in zip(strengths, edited, strict=True):
                pasted = paste_back(photo, geometry, img[0], region)
                write_atomically(out / f"strength{k:+g}_photo.png",
                                 lambda tmp, pasted=pasted: Image.fromarray(pasted).save(tmp))
            print(f"    in the photo ({photo.shape[1]}x{photo.shape[0]}): {out}/strength*_photo.png")
    if args.paste_back:
        print("note: only the aligned crop is edited; the rest of each photo keeps its own pixels")
    print(f"edits written to {out_root}")
    return 0


def _source_photo(directory: Path):
    """The photo an inversion came from, and where its crop lies (recorded by `semedit invert` in result.json)."""
    result = json.loads((directory / RESULT_FILE).read_text())
    if not all(result.get(k) is not None for k in ("source", "crop_quad", "crop_size", "crop_padding")):
        raise CLIError(f"{directory} does not record which photo and crop it came from; invert the photo again "
                       "to use --paste-back")
    photo = read_photo(result["source"])
    geometry = crop_geometry(np.asarray(result["crop_quad"], dtype=np.float64), photo.shape, result["crop_size"],
                             enable_padding=bool(result["crop_padding"]))
    return photo, geometry


def cmd_eval_inversion(args: argparse.Namespace) -> int:
    extra = []
    if args.strengths:
        extra.append(f"eval.edit_strengths=[{','.join(str(k) for k in parse_floats(args.strengths, '--strengths'))}]")
    if args.direction:
        extra.append(f"eval.directions=[{','.join(repr(d) for d in args.direction)}]")
    if args.out:
        extra.append(f"eval.output_dir={args.out}")
    run_job("eval-inversion", args.config, [*args.items, *(args.input or [])], extra)
    return 0


def register(subparsers) -> None:
    p = add_command(subparsers, "invert",
        description="Invert real images into n StyleGAN2 codes + masks. Without --config the tiny CPU default "
                    "(configs/chunkygan/tiny.yaml) is used. Items with '=' are config overrides.",
    )
    p.add_argument("items", nargs="*", help="image files, folders, skimage:<name>, and key=value overrides")
    p.add_argument("--input", action="append", help="an input (file, folder, skimage:<name>); repeatable")
    p.add_argument("--config", default=None, help="YAML config (default: configs/chunkygan/tiny.yaml)")
    p.set_defaults(func=cmd_invert)

    p = add_command(subparsers, "edit-real",
        description="Apply a direction file to the codes of an inversion (all or chosen chunks) and recomposite.",
    )
    p.add_argument("--inversion", required=True, help="an image folder written by `semedit invert`, or its run folder")
    p.add_argument("--direction", required=True, help="direction file (.safetensors from the direction tools)")
    add_strengths_argument(p, ["-3", "0", "3"], "edit strengths, e.g. --strengths -3 0 3")
    p.add_argument("--chunks", type=int, nargs="+", default=None, help="chunks to edit (default: all)")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="W+ layers (style layers for an S direction) to edit; default: the direction's own")
    add_out_argument(p, None, "output folder (default: <inversion>/edits/<direction name>)")
    p.add_argument("--paste-back", action="store_true",
                   help="also paste each edit back into the inverted photo at its own resolution "
                        "(strength<k>_photo.png; only the crop changes, --chunks limits it to those chunks' masks)")
    p.add_argument("--config", default=None, help="config of the inversion run (default: its config.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.set_defaults(func=cmd_edit_real)

    p = add_command(subparsers, "eval-inversion",
        description="Invert a folder of aligned faces once per row of eval.rows (Optimization and ChunkyGAN in W, "
                    "W+, S; W+ reg.; pSp; e4e; Pivotal Tuning) and write the projection table (LPIPS-Alex and L2 at "
                    "256 px, identity, L2 at full size) and the identity-after-edit table (reconstructed vs edited, "
                    "input vs edited) as JSON and Markdown, beside a figure of masks and edits. --direction takes "
                    "direction files (see `semedit directions import`) or random:<name> for tiny configs.",
    )
    p.add_argument("items", nargs="*", help="image folders/files and key=value overrides")
    p.add_argument("--input", action="append", help="an input folder or file; repeatable")
    p.add_argument("--config", default=None, help="YAML config (default: configs/chunkygan/tiny.yaml)")
    p.add_argument("--direction", action="append", help="direction file for the identity-after-edit table; repeatable")
    add_strengths_argument(p, None, "edit strengths (default: eval.edit_strengths)")
    add_out_argument(p, None, "output folder (default: eval.output_dir, runs/eval-inversion)")
    p.set_defaults(func=cmd_eval_inversion)
