"""CLI: `semedit transfer`, `semedit hair-interpolate`, `semedit hair-pca`, `semedit hair-edit`,
`semedit eval-identity`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semedit.cli.commands import add_command
from semedit.cli.common import (
    CLIError,
    add_out_argument,
    add_speed_arguments,
    add_strengths_argument,
    apply_speed_arguments,
    check_output_dir,
    check_output_file,
    parse_floats,
)
from semedit.edits import load_direction, save_direction
from semedit.hair import MethodOptions, load_hair_method
from semedit.hair.fg2021.method import hair_pca_directions
from semedit.hair.fg2021.official_directions import (
    OFFICIAL_DIRECTION_NAMES,
    OFFICIAL_STRENGTHS,
    load_official_directions,
    official_direction_step,
)
from semedit.images import from_uint8, image_grid, save_image
from semedit.jobs import run_job
from semedit.perception import faces
from semedit.perception.photos import read_photo
from semedit.stylegan2.seeds import zs_from_seeds
from semedit.weights import resolve_weights


def _load_inputs(paths: list[str], raw: bool, size: int, device: str) -> torch.Tensor:
    """Images [N, 3, size, size] in [-1, 1]; raw photos are FFHQ-aligned first."""

    images = []
    for path, photo in zip(paths, _read_inputs(paths, raw), strict=True):
        if raw:
            images.append(from_uint8(faces.align_photo(photo, size, source=path)[0].image))
            continue
        im = Image.fromarray(photo)
        if im.size != (size, size):
            im = im.resize((size, size), Image.LANCZOS)
        images.append(from_uint8(np.array(im)))
    return torch.cat(images)


def _read_inputs(paths: list[str], raw: bool) -> list[np.ndarray]:
    """uint8 RGB arrays of the inputs, through the package's one photo reader (missing, empty, non-image and
    decompression-bomb files are ImageErrors naming the file); aligned inputs must be squares."""
    photos = []
    for path in paths:
        photo = read_photo(path)
        if not raw:
            height, width = photo.shape[:2]
            if width != height:
                raise CLIError(f"{path} is {width}x{height}, not a square FFHQ-aligned image; pass --raw to detect "
                               "and align the face first")
        photos.append(photo)
    return photos


def _precheck(paths: list[str], raw: bool, out: str) -> None:
    """Every input readable and the output path usable, before the model is loaded and any work starts."""
    _read_inputs(paths, raw)
    check_output_file(out)


def _setup(args, preprocess: str = "semedit"):
    """The hair-transfer method of ``--hair-model`` and the size its inputs are aligned to."""
    method = load_hair_method(args.hair_model, MethodOptions(args.regions, args.region_weights, args.noise_mode,
                                                             args.noise_seed, args.device))
    apply_speed_arguments(method.generator, args)
    if preprocess not in method.preprocess_modes:
        raise CLIError(f"--preprocess {preprocess}: the {method.name} method offers {', '.join(method.preprocess_modes)}")
    return method, method.input_size(preprocess)


def _embeddings(method):
    if not method.has_embeddings:
        raise CLIError(f"the {method.name} hair-transfer method has no hair embedding to interpolate, edit or "
                       "analyse; this command needs one (FG 2021 models have)")
    return method


def _save_rows(frames: torch.Tensor, out: str) -> Path:
    """frames [K, N, 3, H, W] -> one grid, a row per input pair, K columns."""

    k, n = frames.shape[:2]
    grid = image_grid(frames.transpose(0, 1).reshape(k * n, *frames.shape[2:]).cpu(), ncols=k)
    return save_image(grid, out)


def cmd_transfer(args) -> int:
    _precheck([args.face, args.hair], args.raw, args.out)
    method, size = _setup(args, args.preprocess)
    size = args.official_size or size if args.preprocess == "official" else size
    face_images = _load_inputs([args.face], args.raw, size, args.device)
    hair_images = _load_inputs([args.hair], args.raw, size, args.device)
    out = method.transfer(face_images, hair_images, alpha_blend=args.alpha_blend, preprocess=args.preprocess)
    path = save_image(out[0], args.out)
    print(f"wrote {path}")
    return 0


def cmd_interpolate(args) -> int:
    _precheck([args.face, args.hair, args.to], args.raw, args.out)
    tool, size = _setup(args)
    _embeddings(tool)
    load = lambda p: _load_inputs([p], args.raw, size, args.device)  # noqa: E731
    frames = tool.interpolate(load(args.face), load(args.hair), load(args.to), steps=args.steps, what=args.what)
    print(f"wrote {_save_rows(frames, args.out)} ({args.steps} steps of the {args.what} embedding)")
    return 0


def cmd_pca(args) -> int:
    """PCA of hair embeddings of generated images -> one direction file per component."""

    check_output_dir(args.out)
    tool, _ = _setup(args)
    _embeddings(tool)
    G = tool.generator
    codes = []
    for start in range(0, args.samples, args.batch_size):
        seeds = list(range(args.seed + start, args.seed + min(start + args.batch_size, args.samples)))
        with torch.no_grad():
            images = G.synthesis(G.mapping(zs_from_seeds(seeds, G.z_dim).to(args.device)), noise_mode="const")
        codes.append(tool.embed_hair(images.float().clamp(-1, 1)).cpu())
    directions, ratio = hair_pca_directions(torch.cat(codes), args.components)
    out = Path(args.out)
    for i, direction in enumerate(directions):
        save_direction(out / f"hair_pc{i:02d}.safetensors", direction)
    print(f"wrote {len(directions)} hair-embedding directions to {out} (explained variance: "
          + ", ".join(f"{100 * float(r):.1f}%" for r in ratio) + ")")
    return 0


def _official_step(args, tool) -> torch.Tensor:
    """The step of an official direction ('color' / 'structure' of latent_directions.pkl), unnormalised."""
    if args.in_std:
        raise CLIError("--in-std applies to PCA direction files, not to the official directions")
    num_ws, w_dim = tool.generator.num_ws, tool.generator.w_dim
    directions = load_official_directions(resolve_weights(args.directions_file))
    return official_direction_step(directions, args.direction, num_ws, w_dim)


def cmd_hair_edit(args) -> int:
    _precheck([args.face, args.hair or args.face], args.raw, args.out)
    tool, size = _setup(args)
    _embeddings(tool)
    official = args.direction in OFFICIAL_DIRECTION_NAMES
    if official:
        direction = _official_step(args, tool)
        default = [str(s) for s in OFFICIAL_STRENGTHS]
        scale, note = 1.0, (f"official '{args.direction}' direction (norm {float(direction.norm()):.4g}); strengths on "
                            "the file's own scale, the official tool uses -25..25")
    else:
        if not Path(args.direction).is_file():
            raise CLIError(f"--direction {args.direction}: not a file; give a direction file (.safetensors, from "
                           f"hair-pca or `semedit train hair-direction`) or one of {', '.join(OFFICIAL_DIRECTION_NAMES)} "
                           "(the official latent_directions.pkl, see --directions-file)")
        direction = load_direction(args.direction)
        default = ["-2", "-1", "0", "1", "2"]
        scale = float(direction.meta.get("std", 1.0)) if args.in_std else 1.0
        note = "unit direction" + (f" x its std {scale:.4g}" if args.in_std else "")
    strengths = parse_floats(args.strengths if args.strengths is not None else default, "--strengths")
    frames = tool.manipulate_hair(_load_inputs([args.face], args.raw, size, args.device),
                                  _load_inputs([args.hair or args.face], args.raw, size, args.device),
                                  direction, [s * scale for s in strengths])
    print(f"wrote {_save_rows(frames, args.out)} (strengths {strengths}; {note})")
    return 0


def cmd_eval_identity(args) -> int:
    run_job("eval-identity", args.config, args.overrides)
    return 0


def _common(p, face: bool = True) -> None:
    p.add_argument("--hair-model", required=True, help="a hair-transfer model: <run>/checkpoints/last.ckpt of "
                                                       "`semedit train hair`, or the released FG 2021 model "
                                                       "(best_model.pt, registry name hairstyle-fg2021)")
    if face:
        p.add_argument("--face", required=True, help="image whose face is kept")
        p.add_argument("--raw", action="store_true", help="inputs are unaligned photos: detect the largest face "
                                                          "and FFHQ-align it on dlib's 68 landmarks (as `semedit align`)")
    p.add_argument("--regions", default=None, help="face/hair regions: ellipse | dlib-hull | hull | parsing "
                                                   "(default: the model's)")
    p.add_argument("--region-weights", default=None, help="weights of the region model (hull, parsing)")
    p.add_argument("--noise-mode", default=None, choices=["const", "random", "none"],
                   help="synthesis noise (default: the model's: random for the released model, as its code "
                        "renders with randomize_noise=True; const for semedit checkpoints)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the random noise (results are reproducible)")
    p.add_argument("--device", default="cpu")
    add_speed_arguments(p)


def register(subparsers) -> None:
    p = add_command(subparsers, "transfer")
    _common(p)
    p.add_argument("--hair", required=True, help="image whose hair is taken")
    p.add_argument("--alpha-blend", action="store_true", help="paste the original inner face over the result "
                                                              "(better identity on real photos)")
    p.add_argument("--preprocess", default="semedit",
                   help="semedit: inputs, masks and alpha blend at full resolution; official: the released "
                        "code's path (align to 256 px, hard hull masks at 256, the 256 px face pasted upscaled)")
    p.add_argument("--official-size", type=int, default=None, help=argparse.SUPPRESS)  # tests: tiny generators
    p.add_argument("--out", default="transfer.png")
    p.set_defaults(func=cmd_transfer)

    p = add_command(subparsers, "hair-interpolate")
    _common(p)
    p.add_argument("--hair", required=True, help="hair at the start")
    p.add_argument("--to", required=True, help="hair (or face, with --what face) at the end")
    p.add_argument("--what", choices=["hair", "face"], default="hair")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", default="interpolation.png")
    p.set_defaults(func=cmd_interpolate)

    p = add_command(subparsers, "hair-pca")
    _common(p, face=False)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--components", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    add_out_argument(p, "hair_directions", "output folder of the direction files")
    p.set_defaults(func=cmd_pca)

    p = add_command(subparsers, "hair-edit")
    _common(p)
    p.add_argument("--hair", default=None, help="hair source (default: the face image's own hair)")
    p.add_argument("--direction", required=True,
                   help="color | structure (the official latent_directions.pkl, see --directions-file) or a "
                        "direction file over the hair embedding (hair-pca, `semedit train hair-direction`)")
    p.add_argument("--directions-file", default="hairstyle-fg2021-directions",
                   help="the official latent_directions.pkl (path or registry name; read without running "
                        "pickled code)")
    add_strengths_argument(p, None, "steps along the direction, e.g. --strengths -2 0 2 (default -2 -1 0 1 2 for "
                                    "unit directions; official directions: 10 10.5 11 as the official README, "
                                    "on the file's own scale, the official tool's range is -25..25)")
    p._negative_number_matcher = re.compile(r"^-\d[\d.,eE+-]*$")  # the old comma form "-2,0,2" too
    p.add_argument("--in-std", action="store_true", help="strengths in standard deviations (PCA directions)")
    p.add_argument("--out", default="hair_edit.png")
    p.set_defaults(func=cmd_hair_edit)

    p = add_command(subparsers, "eval-identity")
    p.add_argument("--config", default=None, help="YAML config (default: configs/hair/eval_identity_tiny.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. hair_model=runs/x/checkpoints/last.ckpt")
    p.set_defaults(func=cmd_eval_identity)


__all__ = ["register"]
