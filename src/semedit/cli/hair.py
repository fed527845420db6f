"""CLI: `semedit transfer`, `semedit hair-interpolate`, `semedit hair-pca`, `semedit hair-edit`,
`semedit eval-identity`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch

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
from semedit.config import TrainerConfig
from semedit.edits import load_direction, save_direction
from semedit.hair import MethodOptions, load_hair_method
from semedit.hair.fg2021.method import hair_pca_directions
from semedit.hair.fg2021.official_directions import (
    OFFICIAL_DIRECTION_NAMES,
    OFFICIAL_STRENGTHS,
    load_official_directions,
    official_direction_step,
)
from semedit.jobs import run_job
from semedit.jobs.hair_batch import (
    CACHE_FOLDER,
    BatchRow,
    HairBatch,
    PhotoCache,
    batch_settings,
    run_hair_batch,
    single_row,
)
from semedit.perception.photos import read_photo
from semedit.stylegan2.seeds import zs_from_seeds
from semedit.weights import resolve_weights


def _load_inputs(paths: list[str], raw: bool, size: int, device: str) -> torch.Tensor:
    """Images [N, 3, size, size] in [-1, 1] (raw photos FFHQ-aligned first), as every hair command reads them."""
    cache = PhotoCache(_InputsOnly(device), size, raw)
    return torch.cat([cache.image(path) for path in paths])


class _InputsOnly:
    """The part of a method PhotoCache needs to read and align photos (no model)."""

    def __init__(self, device: str):
        self.device = torch.device(device)


def _precheck(paths: list[Optional[str]], raw: bool, out: Optional[str], folder: bool = False) -> None:
    """Every input readable (aligned inputs square) and the output usable, before the model is loaded."""
    for path in paths:
        if path is None:
            continue
        photo = read_photo(path)
        height, width = photo.shape[:2]
        if not raw and width != height:
            raise CLIError(f"{path} is {width}x{height}, not a square FFHQ-aligned image; pass --raw to detect "
                           "and align the face first")
    if out is not None:
        (check_output_dir if folder else check_output_file)(out)


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


def _batch(args, command: str, preprocess: str = "semedit", **kwargs) -> HairBatch:
    """The work of every row of a hair command (one pair from the flags, or a pair file)."""
    method, size = _setup(args, preprocess)
    if preprocess == "official" and args.official_size:
        size = args.official_size
    cache_dir = Path(args.out) / CACHE_FOLDER if args.pairs else None
    method_key = f"{_content_key_of_model(args.hair_model)}|{method.regions}|{preprocess}"
    cache = PhotoCache(method, size, args.raw, args.all_faces, args.detector, cache_dir, method_key)
    identity = args.identity if args.pairs and command == "transfer" else "none"
    return HairBatch(command, method, cache, Path(args.out) if args.pairs else None, preprocess=preprocess,
                     paste_back=args.paste_back, noise_seed=args.noise_seed, identity=identity, **kwargs)


def _content_key_of_model(spec: str) -> str:
    path = resolve_weights(spec)
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _run(args, batch: HairBatch, row: BatchRow, extra_settings: dict, what: str = "") -> int:
    """One row from the flags, or every row of --pairs (exit status 1 when any row failed)."""
    if not args.pairs:
        record = batch.run(row)
        outputs = record["outputs"]
        print(f"wrote {outputs[0]}" + (f" (+{len(outputs) - 1} more)" if len(outputs) > 1 else "") + what)
        if record["note"]:
            print(f"note: {record['note']}")
        elif batch.paste_back:
            print(PASTE_BACK_NOTE)
        return 0
    trainer = TrainerConfig(accelerator="gpu" if str(args.device).startswith("cuda") else "cpu",
                            devices=args.devices, strategy="ddp" if args.devices > 1 else "auto")
    settings = batch_settings(batch, args.hair_model, extra_settings)
    report = run_hair_batch(batch, args.pairs, trainer, settings)
    if report is None:  # other DDP ranks
        return 0
    print(f"{report.written} written, {report.done_before} already done, {len(report.failed)} failed "
          f"-> {report.out_dir}  (summary: {report.summary})")
    for r in report.failed:
        print(f"  line {r['line']}: {r['note']}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}")
    if batch.paste_back and report.written:
        print(PASTE_BACK_NOTE)
    counts = report.counts
    if counts:
        print("work: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(counts.items()))
              + " (each distinct photo once; cached in " + str(report.out_dir / CACHE_FOLDER) + ")")
    return 1 if report.failed else 0


PASTE_BACK_NOTE = ("note: only the FFHQ crop around each face is generated; hair beyond it (long hair, shoulders) "
                   "keeps the photo's own pixels. Photos where the hair fits in the crop transfer best.")


def _check_mode(args, single: list[Optional[str]], flags: str) -> None:
    """One item from the flags or a pair file, and flags that fit together; before any work."""
    if (args.paste_back or args.all_faces) and not args.raw:
        raise CLIError("--paste-back and --all-faces need --raw: they work on the original photos, which "
                       "semedit aligns itself")
    if args.pairs:
        if any(single):
            raise CLIError(f"--pairs replaces {flags}: give either a pair file or one item")
        if args.out is None:
            args.out = f"{Path(args.pairs).stem}_results"
        _precheck([], args.raw, args.out, folder=True)
    elif not all(x is not None for x in single[:1]):
        raise CLIError(f"give {flags}, or --pairs FILE.csv")


def cmd_transfer(args) -> int:
    _check_mode(args, [args.face, args.hair], "--face/--hair")
    if not args.pairs:
        if args.hair is None:
            raise CLIError("give --hair (the image whose hair is taken), or --pairs FILE.csv")
        args.out = args.out or "transfer.png"
        _precheck([args.face, args.hair], args.raw, args.out)
    batch = _batch(args, "transfer", args.preprocess, alpha_blend=args.alpha_blend)
    return _run(args, batch, single_row(args.face, args.hair, out=args.out or ""), {})


def cmd_interpolate(args) -> int:
    _check_mode(args, [args.face, args.hair, args.to], "--face/--hair/--to")
    if not args.pairs:
        if args.hair is None or args.to is None:
            raise CLIError("give --hair and --to, or --pairs FILE.csv")
        args.out = args.out or "interpolation.png"
        _precheck([args.face, args.hair, args.to], args.raw, args.out)
    if args.steps < 2:
        raise CLIError(f"--steps must be >= 2, got {args.steps}")
    batch = _batch(args, "hair-interpolate", args.preprocess, steps=args.steps, what=args.what)
    _embeddings(batch.method)
    return _run(args, batch, single_row(args.face, args.hair, args.to, args.out or ""),
                {"steps": args.steps, "what": args.what}, f" ({args.steps} steps of the {args.what} embedding)")


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
    _check_mode(args, [args.face, args.hair], "--face/--hair")
    if not args.pairs:
        args.out = args.out or "hair_edit.png"
        _precheck([args.face, args.hair], args.raw, args.out)
    batch = _batch(args, "hair-edit", args.preprocess)
    tool = _embeddings(batch.method)
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
    batch.direction, batch.strengths = direction, [s * scale for s in strengths]
    settings = {"direction": str(args.direction), "strengths": [float(s) for s in batch.strengths]}
    return _run(args, batch, single_row(args.face, args.hair, out=args.out or ""), settings,
                f" (strengths {strengths}; {note})")


def cmd_eval_identity(args) -> int:
    run_job("eval-identity", args.config, args.overrides)
    return 0


def _common(p, face: bool = True, columns: str = "") -> None:
    p.add_argument("--hair-model", required=True, help="a hair-transfer model: <run>/checkpoints/last.ckpt of "
                                                       "`semedit train hair`, or the released FG 2021 model "
                                                       "(best_model.pt, registry name hairstyle-fg2021)")
    if face:
        p.add_argument("--face", default=None, help="image whose face is kept")
        p.add_argument("--raw", action="store_true", help="inputs are unaligned photos: detect the largest face "
                                                          "and FFHQ-align it on dlib's 68 landmarks (as `semedit align`)")
        p.add_argument("--pairs", default=None, metavar="FILE.csv",
                       help="run every row of a CSV file (columns: " + columns + "; paths relative to the file; "
                            "header optional) as one job: --out is then a folder, with one result per row, "
                            "summary.csv, resumable; exit status 1 when a row failed")
        p.add_argument("--devices", type=int, default=1, help="with --pairs: processes / GPUs (DDP), each its share")
        p.add_argument("--paste-back", action="store_true",
                       help="paste the result back into the original photo at its own resolution (needs --raw): "
                            "only the face and hair regions change, the rest keeps the photo's pixels")
        p.add_argument("--all-faces", action="store_true", help="with --raw: process and paste back every face of "
                                                                "the face photo, not only the largest")
        p.add_argument("--detector", default="hog", choices=["hog", "mmod"], help="dlib face detector for --raw")
        p.add_argument("--preprocess", default="semedit",
                       help="semedit: inputs, masks (and alpha blend) at full resolution; official: the released "
                            "FG 2021 code's path (align to 256 px, hard hull masks at 256; transfer renders at "
                            "1024 and pastes the 256 px face upscaled, edits and interpolations are pooled to 256)")
        p.add_argument("--official-size", type=int, default=None, help=argparse.SUPPRESS)  # tests: tiny generators
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
    _common(p, columns="face,hair[,out]")
    p.add_argument("--hair", default=None, help="image whose hair is taken")
    p.add_argument("--alpha-blend", action="store_true", help="paste the original inner face over the result "
                                                              "(better identity on real photos)")
    p.add_argument("--identity", default="dlib-resnet",
                   help="with --pairs: identity encoder of summary.csv's distance face -> result (dlib-resnet: "
                        "dlib's descriptor, offline; an ArcFace registry name or file; none)")
    p.add_argument("--out", default=None, help="output image (default transfer.png); with --pairs a folder "
                                               "(default <pair file name>_results)")
    p.set_defaults(func=cmd_transfer)

    p = add_command(subparsers, "hair-interpolate")
    _common(p, columns="face,hair,to[,out]")
    p.add_argument("--hair", default=None, help="hair at the start")
    p.add_argument("--to", default=None, help="hair (or face, with --what face) at the end")
    p.add_argument("--what", choices=["hair", "face"], default="hair")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--out", default=None, help="output strip (default interpolation.png); with --pairs a folder; "
                                               "with --paste-back one photo per step (<out>_NN.png)")
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
    _common(p, columns="face[,hair][,out]")
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
    p.add_argument("--in-std", action="store_true", help="strengths in standard deviations (PCA directions)")
    p.add_argument("--out", default=None, help="output strip (default hair_edit.png); with --pairs a folder; "
                                               "with --paste-back one photo per strength (<out>_NN.png)")
    p.set_defaults(func=cmd_hair_edit)

    p = add_command(subparsers, "eval-identity")
    p.add_argument("--config", default=None, help="YAML config (default: configs/hair/eval_identity_tiny.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. hair_model=runs/x/checkpoints/last.ckpt")
    p.set_defaults(func=cmd_eval_identity)


__all__ = ["register"]
