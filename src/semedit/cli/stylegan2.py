"""`semedit generate`, `semedit convert`, `semedit info`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from semedit.cli.commands import add_command
from semedit.cli.common import CLIError, add_out_argument, add_speed_arguments, apply_speed_arguments
from semedit.config import GeneratorSpec
from semedit.images import save_image
from semedit.stylegan2 import (
    describe,
    expect_calls,
    generator_from_spec,
    load_generator,
    parse_seeds,
    save_generator,
    zs_from_seeds,
)


def _device(name: str):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {name} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def _load(ckpt: str | None, device):
    if ckpt is None:
        return generator_from_spec(GeneratorSpec(), device)
    return load_generator(ckpt, device=device)


def generate(args: argparse.Namespace) -> int:
    if args.noise_mode not in ("const", "random", "none"):
        raise CLIError(f"--noise-mode must be const, random or none, got '{args.noise_mode}'")
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as err:
        raise CLIError(str(err)) from None
    device = _device(args.device)
    G = _load(args.generator, device)
    apply_speed_arguments(G, args)
    expect_calls(G, len(seeds) if args.noise_mode == "random" else len(seeds) / args.batch_size, "render")
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), tqdm(total=len(seeds), unit="img", desc="generate") as bar:
        for start in range(0, len(seeds), args.batch_size):
            batch = seeds[start:start + args.batch_size]
            z = zs_from_seeds(batch, G.z_dim).to(device)
            ws = G.mapping(z, truncation_psi=args.truncation_psi)
            if args.noise_mode == "random":
                # Noise seeded per image, so that a seed renders the same image in any batch.
                images = torch.cat([
                    G.synthesis(ws[i:i + 1], noise_mode="random",
                                generator=torch.Generator(device=device).manual_seed(seed))
                    for i, seed in enumerate(batch)
                ])
            else:
                images = G.synthesis(ws, noise_mode=args.noise_mode)
            for seed, img in zip(batch, images):
                save_image(img, outdir / f"seed{seed:04d}.png")
            bar.update(len(batch))
    print(f"wrote {len(seeds)} images to {outdir}")
    return 0


def convert(args: argparse.Namespace) -> int:
    G = load_generator(args.input)
    out = Path(args.output)
    if out.suffix != ".safetensors":
        out = out.with_suffix(out.suffix + ".safetensors") if out.suffix else out.with_suffix(".safetensors")
    save_generator(G, out)
    print(f"wrote {out} ({G.config.source_format} -> semedit, {G.img_resolution}px, num_ws={G.num_ws})")
    return 0


def info(args: argparse.Namespace) -> int:
    G = load_generator(args.ckpt)
    details = describe(G)
    if args.json:
        print(json.dumps(details, indent=2))
    else:
        for key, value in details.items():
            print(f"{key:32s} {value}")
    return 0


def register(subparsers) -> None:
    p = add_command(subparsers, "generate")
    p.add_argument("--generator", default=None, help="rosinality .pt, NVlabs .pkl, semedit .safetensors or registry "
                   "name (default: the tiny random generator)")
    p.add_argument("--seeds", required=True, help="e.g. 0,1,7 or 0-99")
    p.add_argument("--truncation-psi", type=float, default=1.0, help="truncation psi: w_avg + psi (w - w_avg) (1 = none)")
    p.add_argument("--noise-mode", default="const", help="const | random | none")
    add_out_argument(p, "outputs/generate", "output folder (seedNNNN.png)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    add_speed_arguments(p)
    p.set_defaults(func=generate)

    p = add_command(subparsers, "convert")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=convert)

    p = add_command(subparsers, "info")
    p.add_argument("ckpt")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=info)
