"""`semedit edit` (image strips along a direction), `semedit pca` (GANSpace directions) and
`semedit directions import` (Chunkmogrify's .npy directions as direction files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from semedit.cli.commands import add_command
from semedit.cli.common import CLIError, add_strengths_argument, parse_floats
from semedit.config import GeneratorSpec
from semedit.directions.chunkmogrify import import_chunkmogrify_npy, parse_layer_range
from semedit.directions.pca import pca_w
from semedit.edits import Direction, condition, edit_styles, edit_wplus, load_direction, save_direction
from semedit.images import image_grid, save_image
from semedit.stylegan2 import generator_from_spec, parse_seeds, zs_from_seeds
from semedit.weights import REGISTRY, resolve_weights


def _generator(args):
    return generator_from_spec(GeneratorSpec(ckpt=args.generator), device=args.device)


def _ints(text, what: str):
    try:
        return parse_seeds(text)
    except ValueError as err:
        raise CLIError(f"{what}: {err}") from None


def run_edit(args) -> int:
    seeds = _ints(args.seeds, "--seeds")
    strengths = parse_floats(args.strengths, "--strengths")
    layers = _ints(args.layers, "--layers") if args.layers else None
    direction = load_direction(args.direction)
    if args.condition:
        direction = condition(direction, [load_direction(p) for p in args.condition.split(",")])
    if direction.space == "z":
        raise CLIError("z directions are edited before the mapping network; use a 'w', 'wplus' or 's' direction")
    G = _generator(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.space == "w" and direction.space == "s":
        raise CLIError("an 's' direction can only be applied with --space s")
    with torch.no_grad():
        z = zs_from_seeds(seeds, G.z_dim).to(args.device)
        ws = G.mapping(z, truncation_psi=args.truncation_psi)
        for seed, w in zip(seeds, ws):
            w = w[None].expand(len(strengths), -1, -1)
            k = torch.tensor(strengths, device=args.device)
            if args.space == "s":  # a W/W+ direction is mapped into S exactly (style_offsets)
                styles = edit_styles(G.synthesis, G.synthesis.ws_to_styles(w), direction, k, layers)
                images = G.synthesis.synthesize_from_styles(styles, noise_mode=args.noise_mode)
            else:
                images = G.synthesis(edit_wplus(w, direction, k, layers), noise_mode=args.noise_mode)
            path = save_image(image_grid(images.clamp(-1, 1), ncols=len(strengths)), out / f"seed{seed:04d}.png")
            print(path)
    (out / "edit.json").write_text(json.dumps({
        "direction": str(args.direction), "seeds": seeds, "strengths": strengths, "layers": layers,
        "space": args.space, "truncation_psi": args.truncation_psi, "generator": args.generator}, indent=2))
    return 0


def run_pca(args) -> int:
    G = _generator(args)
    result = pca_w(G, args.samples, args.components, seed=args.seed, batch_size=args.batch_size, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for i, (v, std, ratio) in enumerate(zip(result.components, result.std, result.explained_variance_ratio)):
        meta = {"method": "pca", "component": i, "std": float(std), "explained_variance_ratio": float(ratio),
                "samples": args.samples, "seed": args.seed, "generator": args.generator or "tiny-random"}
        path = save_direction(out / f"pc{i:03d}.safetensors", Direction.from_vector(v, "w", None, meta))
        summary.append({"path": path.name, **meta})
    (out / "pca.json").write_text(json.dumps({"mean": result.mean.tolist(), "components": summary}, indent=2))
    print(f"{args.components} components of W from {args.samples} samples -> {out}")
    for s in summary[:10]:
        print(f"  pc{s['component']:03d}  std {s['std']:.4f}  explained {100 * s['explained_variance_ratio']:.2f} %")
    return 0


def run_import(args) -> int:

    source = args.file
    if not Path(source).is_file() and source in REGISTRY:  # e.g. chunkmogrify-smile_styleganv2
        source = resolve_weights(source)
    direction = import_chunkmogrify_npy(source, parse_layer_range(args.layers), name=args.name)
    path = save_direction(Path(args.out) / f"{args.name}.safetensors", direction)
    meta = direction.meta
    print(f"{path}: W+ rows {args.layers} (end exclusive) of {meta['source_file']} {tuple(meta['source_shape'])} "
          f"{meta['source_dtype']}, sha256 {meta['source_sha256']}")
    print(f"  source_norm {meta['source_norm']:.4f}: a Chunkmogrify edit of multiplier m is semedit strength "
          f"m x {meta['source_norm']:.4f} (or eval.strength_units=source)")
    return 0


def register(subparsers) -> None:
    p = add_command(subparsers, "edit")
    p.add_argument("--generator", default=None, help="generator checkpoint or registry name (default: tiny random)")
    p.add_argument("--direction", required=True, help="direction file (.safetensors)")
    p.add_argument("--seeds", default="0-3", help="seeds, e.g. 0-3 or 1,5,9")
    add_strengths_argument(p, ["-3", "0", "3"], "edit strengths, one image each, e.g. --strengths -3 0 3")
    p.add_argument("--layers", default=None, help="W+ (or style) layers to edit, e.g. 0-5 (default: direction's)")
    p.add_argument("--space", choices=["w", "s"], default="w", help="edit in W/W+ or in StyleSpace S")
    p.add_argument("--condition", default=None, help="comma-separated directions to project out")
    p.add_argument("--truncation-psi", type=float, default=1.0)
    p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="edits", help="output folder (one PNG strip per seed)")
    p.set_defaults(func=run_edit)
    # Let the old `--strengths -3,0,3` through: argparse takes "-3,0,3" for an option unless it looks like a number.
    p._negative_number_matcher = re.compile(r"^-\d[\d.,eE+-]*$")

    q = add_command(subparsers, "pca")
    q.add_argument("--generator", default=None, help="generator checkpoint or registry name (default: tiny random)")
    q.add_argument("--samples", type=int, default=100_000)
    q.add_argument("--components", type=int, default=20)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--batch-size", type=int, default=4096)
    q.add_argument("--device", default="cpu")
    q.add_argument("--out", default="pca", help="output folder: pcNNN.safetensors + pca.json")
    q.set_defaults(func=run_pca)

    d = add_command(subparsers, "directions")
    dsub = d.add_subparsers(dest="directions_command", required=True)
    i = dsub.add_parser("import", help="a Chunkmogrify (18, 512) .npy direction as a semedit W+ direction file",
                        description="Chunkmogrify ships directions as (num_ws, w_dim) arrays, one row per W+ entry, "
                                    "applied to the rows [START, END) (w_directions.py): smile 0-5, age 0-8, "
                                    "gender 0-5, beard 6-9, yaw 0-5.")
    i.add_argument("file", help="the .npy file, or its weights registry name (e.g. chunkmogrify-age)")
    i.add_argument("--name", required=True, help="direction name; the file is <out>/<name>.safetensors")
    i.add_argument("--layers", required=True, help="W+ rows START-END, END exclusive (Chunkmogrify's range)")
    i.add_argument("--out", default="directions", help="output folder")
    i.set_defaults(func=run_import)
