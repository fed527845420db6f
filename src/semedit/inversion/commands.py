"""`semedit invert`, `semedit edit-real`, `semedit eval-inversion`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def _split_items(items: list[str], explicit_inputs: list[str] | None) -> tuple[list[str], list[str]]:
    """Positional items: ``key=value`` are config overrides, everything else an input."""
    overrides = [x for x in items if "=" in x and not Path(x).exists()]
    inputs = [x for x in items if x not in overrides] + list(explicit_inputs or [])
    return inputs, overrides


def _cli_error(msg: str):
    from semedit.cli import CLIError

    return CLIError(msg)


def cmd_invert(args: argparse.Namespace) -> int:
    from semedit.inversion.run import invert, load_invert_config

    inputs, overrides = _split_items(args.items, args.input)
    if not inputs:
        raise _cli_error("no input images: give image files, folders or skimage:<name> (e.g. skimage:astronaut)")
    cfg = load_invert_config(args.config, overrides)
    outcome = invert(cfg, inputs)
    if not outcome.is_global_zero:
        return 0
    run_dir = outcome.run_dir
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"images": {}}
    print(f"run folder: {run_dir}")
    for name in outcome.names:
        d = run_dir / name
        row = summary["images"].get(name)
        metrics = f"LPIPS {row['lpips']:.4f}  L2 {row['l2']:.4f}" if row else "(not finished)"
        print(f"  {name}: {metrics}")
        print(f"    reconstruction: {d / 'reconstruction.png'}")
        print(f"    progress strip: {d / 'progress.png'}")
        print(f"    masks:          {d / 'masks.png'}")
        print(f"    codes:          {d / 'codes.safetensors'}")
    print(f"summary: {summary_path}")
    return 0


def _load_run_config(inv_dirs: list[Path], config: str | None, overrides: list[str]):
    from semedit.inversion.run import load_invert_config

    if config is None:
        candidate = inv_dirs[0].parent / "config.yaml"
        config = str(candidate) if candidate.is_file() else None
    return load_invert_config(config, overrides)


def cmd_edit_real(args: argparse.Namespace) -> int:
    import torch

    from semedit.directions.io import load_direction
    from semedit.images import load_image, save_image
    from semedit.inversion.edit import edit_codes_images, render_composite
    from semedit.inversion.io import find_inversions, load_inversion
    from semedit.stylegan2 import generator_from_spec

    inv_dirs = find_inversions(args.inversion)
    cfg = _load_run_config(inv_dirs, args.config, args.overrides)
    direction = load_direction(args.direction)
    G = generator_from_spec(cfg.generator)
    out_root = Path(args.output) if args.output else Path(args.inversion) / "edits" / Path(args.direction).stem
    print(f"direction {args.direction}: space {direction.space}, layers {direction.layers}")
    for directory in inv_dirs:
        inv = load_inversion(directory)
        if inv.meta.get("resolution") not in (None, G.img_resolution):
            raise _cli_error(f"{directory} was inverted with a {inv.meta['resolution']} px generator, but the "
                             f"configured generator makes {G.img_resolution} px; pass the run's --config")
        edited = edit_codes_images(G, inv.space, inv.codes, inv.masks, direction, args.strengths,
                                   chunks=args.chunks, layers=args.layers, noise_mode=cfg.generator.noise_mode)
        recon = render_composite(G, inv.space, inv.codes, inv.masks, cfg.generator.noise_mode)[0]
        out = out_root / inv.name
        out.mkdir(parents=True, exist_ok=True)
        for k, img in zip(args.strengths, edited, strict=True):
            save_image(img[0], out / f"strength{k:+g}.png")
        strip = [load_image(directory / "target.png")[0], recon, *[img[0] for img in edited]]
        save_image(torch.cat(strip, dim=2), out / "strip.png")
        print(f"  {inv.name}: {out / 'strip.png'}  (target | reconstruction | strengths {' '.join(f'{k:g}' for k in args.strengths)})")
    print(f"edits written to {out_root}")
    return 0


def cmd_eval_inversion(args: argparse.Namespace) -> int:
    from semedit.eval.inversion import evaluate_inversion
    from semedit.inversion.run import load_invert_config

    inputs, overrides = _split_items(args.items, args.input)
    if not inputs:
        raise _cli_error("no input images: give a folder of aligned faces (e.g. CelebA-HQ test)")
    cfg = load_invert_config(args.config, overrides)
    if args.strengths:
        cfg.eval.edit_strengths = list(args.strengths)
    out = Path(args.output)
    result = evaluate_inversion(cfg, inputs, out, args.direction or [])
    print(Path(result["markdown"]).read_text())
    print(f"tables: {result['json']}\n        {result['markdown']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "invert", help="ChunkyGAN inversion of real photos (n codes blended by n soft masks)",
        description="Invert real images into n StyleGAN2 codes + masks. Without --config the tiny CPU default "
                    "(configs/chunkygan/tiny.yaml) is used. Items with '=' are config overrides.",
    )
    p.add_argument("items", nargs="*", help="image files, folders, skimage:<name>, and key=value overrides")
    p.add_argument("--input", action="append", help="an input (file, folder, skimage:<name>); repeatable")
    p.add_argument("--config", default=None, help="YAML config (default: configs/chunkygan/tiny.yaml)")
    p.set_defaults(func=cmd_invert)

    p = subparsers.add_parser(
        "edit-real", help="edit inverted real photos along a direction and recomposite with their masks",
        description="Apply a direction file to the codes of an inversion (all or chosen chunks) and recomposite.",
    )
    p.add_argument("--inversion", required=True, help="an image folder written by `semedit invert`, or its run folder")
    p.add_argument("--direction", required=True, help="direction file (.safetensors from the direction tools)")
    p.add_argument("--strengths", type=float, nargs="+", default=[-3.0, 0.0, 3.0], help="edit strengths")
    p.add_argument("--chunks", type=int, nargs="+", default=None, help="chunks to edit (default: all)")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="W+ layers (style layers for an S direction) to edit; default: the direction's own")
    p.add_argument("--output", default=None, help="output folder (default: <inversion>/edits/<direction name>)")
    p.add_argument("--config", default=None, help="config of the inversion run (default: its config.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.set_defaults(func=cmd_edit_real)

    p = subparsers.add_parser(
        "eval-inversion", help="the ChunkyGAN paper's projection table and identity-after-edit table",
        description="Invert a folder of aligned faces once per row (W, W+, S; single-code and ChunkyGAN; W+ reg.) "
                    "and write LPIPS / identity / L2 tables as JSON and Markdown.",
    )
    p.add_argument("items", nargs="*", help="image folders/files and key=value overrides")
    p.add_argument("--input", action="append", help="an input folder or file; repeatable")
    p.add_argument("--config", default=None, help="YAML config (default: configs/chunkygan/tiny.yaml)")
    p.add_argument("--direction", action="append", help="direction file for the identity-after-edit table; repeatable")
    p.add_argument("--strengths", type=float, nargs="+", default=None, help="edit strengths (default: eval.edit_strengths)")
    p.add_argument("--output", default="runs/eval-inversion", help="output folder")
    p.set_defaults(func=cmd_eval_inversion)
