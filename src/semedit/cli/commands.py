"""The command table: each `semedit` command, the module that implements it and its one-line help.

``semedit --help`` is printed from this table alone; a command's module (and with it torch, Lightning, ...)
is imported only when that command runs, as pip and git do. A command module's ``register(subparsers)``
adds its commands with ``add_command``, which takes the help from here, so the two never disagree.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["Command", "COMMANDS", "add_command"]


@dataclass(frozen=True)
class Command:
    module: str  # semedit.cli.<module> registers it
    help: str


COMMANDS: dict[str, Command] = {
    "train": Command("train", "run a registered job from a YAML config plus key=value overrides "
                              "(`semedit train --help` lists the jobs)"),
    "config": Command("train", "show the merged config a job would run with"),
    "generate": Command("stylegan2", "write images from seeds with a StyleGAN2 checkpoint"),
    "convert": Command("stylegan2", "convert a checkpoint to semedit's .safetensors format"),
    "info": Command("stylegan2", "print a checkpoint's inferred generator configuration"),
    "edit": Command("directions", "image strips of seeds moved along a latent direction"),
    "pca": Command("directions", "GANSpace: principal components of W as direction files"),
    "directions": Command("directions", "direction files: import Chunkmogrify's .npy directions"),
    "transfer": Command("hair", "hairstyle transfer: the face of one image with the hair of another"),
    "hair-interpolate": Command("hair", "interpolate the hair (or face) embedding in N steps"),
    "hair-pca": Command("hair", "learn hair-embedding directions by PCA of generated images"),
    "hair-edit": Command("hair", "move the hair embedding along a direction (hair-pca or direction tools)"),
    "eval-identity": Command("hair", "identity retrieval after hair transfer (the FG 2021 protocol)"),
    "eval-hair": Command("eval_hair", "hair-transfer realism (FID, FID_CLIP by pose), reconstruction, identity and "
                                      "time: HairFastGAN's table"),
    "invert": Command("inversion", "invert real photos into StyleGAN2 codes (ChunkyGAN or any registered "
                                   "method: invert.method)"),
    "edit-real": Command("inversion", "edit inverted real photos along a direction (recomposited with their masks)"),
    "eval-inversion": Command("inversion", "the inversion tables, one row per method: projection and identity "
                                           "after edits"),
    "align": Command("perception", "FFHQ-align the faces of raw photos (dlib, offline)"),
    "weights": Command("weights", "list, download and verify pretrained weight files"),
    "launch": Command("launch", "submit training runs or W&B sweep agents to SLURM (submitit)"),
    "sweep": Command("launch", "check a W&B sweep file against the job config, or expand it into commands"),
    "demo": Command("demo", "local web app: hair transfer, ChunkyGAN editing, generation (Gradio)"),
}


def add_command(subparsers: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    """``subparsers.add_parser`` for a command of the table, with the table's help."""
    return subparsers.add_parser(name, help=COMMANDS[name].help, **kwargs)
