"""CLI: `semedit align PHOTO_OR_FOLDER... --out DIR [--size 1024] [--all-faces] [--detector hog|mmod]`.

FFHQ-aligns the faces of raw photos, offline, through the package's one alignment path
(``semedit.perception.faces.align_photo``: dlib's detector and 68 landmarks, FFHQ's crop with the
intermediate transform at 4 x the size). Writes ``DIR/<stem>.png`` (the largest face) or
``DIR/<stem>_<k>.png`` for every face with ``--all-faces`` (k = 0 is the largest).

Every file of a folder is tried (non-hidden; sub-folders with ``--recursive``, otherwise named in a
notice), so a file that is not an image is reported rather than silently skipped. A file without a face, an unreadable file or a non-image is reported by
name with the reason and the others are still written; the exit status is 1 if any file failed. An
output that would overwrite one of the inputs is refused.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from semedit.cli.commands import add_command
from semedit.cli.common import CLIError, add_out_argument, check_output_dir
from semedit.errors import ImageError
from semedit.perception import faces
from semedit.perception.photos import is_sample, list_photos, photo_name, read_photo

__all__ = ["register", "align_files", "AlignReport"]


@dataclass
class AlignReport:
    written: list[Path]
    failures: list[tuple[str, str]]  # (input, reason)
    photos: int


def _stem(item: str, roots: dict[str, Path] | None = None) -> str:
    """The output name of an input: its file stem; for a file found inside a sub-folder with --recursive,
    the relative path joined with "_" (a/b/photo.jpg -> a_b_photo), so equal names in sub-folders differ."""
    root = (roots or {}).get(item)
    if root is not None and Path(item).parent != root:
        return "_".join(Path(item).relative_to(root).with_suffix("").parts)
    return photo_name(item)


def align_files(photos: list[str], out: Path, size: int = 1024, all_faces: bool = False, detector: str = "hog",
                progress: bool = True, roots: dict[str, Path] | None = None) -> AlignReport:
    """Align every photo into ``out``; failures are collected, not raised (missing models still raise).
    ``roots``: the folder each photo was found in (outputs of files in sub-folders are named by their path)."""
    inputs = {Path(p).resolve() for p in photos if not is_sample(p)}
    claimed: dict[str, str] = {}  # output stem -> the input that produced it
    written: list[Path] = []
    failures: list[tuple[str, str]] = []
    for item in tqdm(photos, desc="align", unit="photo", disable=not progress, file=sys.stderr):
        stem = _stem(item, roots)
        if stem in claimed:
            failures.append((item, f"its output name {stem}.png is already taken by {claimed[stem]}; rename one"))
            continue
        claimed[stem] = item
        try:
            found = faces.align_photo(read_photo(item, label="the file"), size, detector=detector, all_faces=all_faces, source=item)
        except ImageError as err:  # NoFaceError is an ImageError
            failures.append((item, str(err)))
            continue
        targets = [out / (f"{stem}_{f.index}.png" if all_faces else f"{stem}.png") for f in found]
        clash = next((t for t in targets if t.resolve() in inputs), None)
        if clash is not None:
            failures.append((item, f"writing {clash} would overwrite an input; choose another --out"))
            continue
        for face, target in zip(found, targets, strict=True):
            Image.fromarray(face.image).save(target)
            written.append(target)
    return AlignReport(written, failures, len(photos))


def cmd_align(args: argparse.Namespace) -> int:
    if not args.out:
        raise CLIError("--out DIR is required: the folder the aligned faces go to")
    faces.check_align_size(args.size, "--size")
    photos = list_photos(args.inputs, recursive=args.recursive)
    roots = {p: Path(folder) for folder in args.inputs if Path(folder).is_dir()
             for p in photos if Path(p).is_relative_to(folder)}
    out = check_output_dir(args.out)
    # Missing dlib models raise a WeightsError naming the pip package (exit 2); bad photos are collected.
    report = align_files(photos, out, args.size, args.all_faces, args.detector, progress=not args.quiet,
                         roots=roots)
    ok = report.photos - len(report.failures)
    print(f"aligned {len(report.written)} face(s) from {ok} of {report.photos} photo(s) into {out}"
          + (f"; {len(report.failures)} failed:" if report.failures else ""))
    for item, reason in report.failures:
        print(f"  {item}: {reason}")
    return 1 if report.failures else 0


def register(subparsers) -> None:
    p = add_command(subparsers, "align",
        description="Detect the face (dlib HOG, or the MMOD CNN), find dlib's 68 landmarks and write the FFHQ "
                    "crop (as NVlabs/ffhq-dataset). Files that fail are reported by name; the rest are written.")
    p.add_argument("inputs", nargs="+", metavar="PHOTO_OR_FOLDER",
                   help="photos, folders of photos, or a sample photo (skimage:astronaut, matplotlib:grace_hopper)")
    add_out_argument(p, None, "output folder: <stem>.png per photo (<stem>_<k>.png with --all-faces)")
    p.add_argument("--size", type=int, default=1024, help="output size in pixels (FFHQ: 1024; the intermediate "
                                                          "transform runs at 4x)")
    p.add_argument("--all-faces", action="store_true", help="write every face found, largest first (default: "
                                                            "the largest only)")
    p.add_argument("--detector", choices=faces.DETECTORS, default="hog",
                   help="dlib face detector: hog (default; fast, frontal; the boxes the 68-point model was "
                        "trained on) or mmod (CNN; slower, finds more turned and small faces)")
    p.add_argument("--recursive", action="store_true", help="also the photos in sub-folders of the given folders "
                                                           "(outputs named by their path: a/b.jpg -> a_b.png)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_align)
