"""CLI: `semedit align PHOTO_OR_FOLDER... --out DIR [--size 1024] [--all-faces] [--detector hog|mmod]`.

FFHQ-aligns the faces of raw photos, offline, through the package's one alignment path
(``semedit.perception.faces.align_photo``: dlib's detector and 68 landmarks, FFHQ's crop with the
intermediate transform at 4 x the size). Writes ``DIR/<stem>.png`` (the largest face) or
``DIR/<stem>_<k>.png`` for every face with ``--all-faces`` (k = 0 is the largest).

Every file of a folder is tried (non-hidden, not recursive), so a file that is not an image is reported
rather than silently skipped. A file without a face, an unreadable file or a non-image is reported by
name with the reason and the others are still written; the exit status is 1 if any file failed. An
output that would overwrite one of the inputs is refused.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from semedit.cli.common import CLIError, add_out_argument, check_output_dir
from semedit.errors import ImageError
from semedit.perception import faces

__all__ = ["register", "list_photos", "read_photo", "align_files", "AlignReport"]

SKIMAGE_PREFIX = "skimage:"  # e.g. skimage:astronaut, a photo that ships with scikit-image


@dataclass
class AlignReport:
    written: list[Path]
    failures: list[tuple[str, str]]  # (input, reason)
    photos: int


def list_photos(inputs: list[str]) -> list[str]:
    """Files, the files of folders (sorted, non-hidden, not recursive) and ``skimage:<name>`` entries."""
    photos: list[str] = []
    for item in inputs:
        path = Path(item)
        if item.startswith(SKIMAGE_PREFIX):
            photos.append(item)
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise CLIError(f"folder {path} holds no files")
            photos.extend(str(p) for p in files)
        elif path.is_file():
            photos.append(item)
        else:
            raise CLIError(f"input not found: {item} (give photos, folders, or skimage:<name> e.g. skimage:astronaut)")
    return photos


def read_photo(item: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a photo file (EXIF orientation applied) or ``skimage:<name>``; ImageError with
    the reason otherwise."""
    if item.startswith(SKIMAGE_PREFIX):

        loader = getattr(skimage.data, item[len(SKIMAGE_PREFIX):], None)
        if not callable(loader):
            raise ImageError(f"scikit-image ships no image called {item[len(SKIMAGE_PREFIX):]!r} "
                             "(try skimage:astronaut)")
        arr = np.asarray(loader())
        if arr.dtype != np.uint8:
            raise ImageError(f"{item} is not an 8-bit image")
        return np.ascontiguousarray(np.stack([arr] * 3, axis=-1) if arr.ndim == 2 else arr[..., :3])
    path = Path(item)
    if path.stat().st_size == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # phone photos store their rotation in EXIF
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ImageError("not an image (no image format recognises its content)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"unreadable image ({type(err).__name__}: {err})") from None


def _stem(item: str) -> str:
    return item[len(SKIMAGE_PREFIX):] if item.startswith(SKIMAGE_PREFIX) else Path(item).stem


def align_files(photos: list[str], out: Path, size: int = 1024, all_faces: bool = False, detector: str = "hog",
                progress: bool = True) -> AlignReport:
    """Align every photo into ``out``; failures are collected, not raised (missing models still raise)."""
    inputs = {Path(p).resolve() for p in photos if not p.startswith(SKIMAGE_PREFIX)}
    claimed: dict[str, str] = {}  # output stem -> the input that produced it
    written: list[Path] = []
    failures: list[tuple[str, str]] = []
    for item in tqdm(photos, desc="align", unit="photo", disable=not progress, file=sys.stderr):
        stem = _stem(item)
        if stem in claimed:
            failures.append((item, f"its output name {stem}.png is already taken by {claimed[stem]}; rename one"))
            continue
        claimed[stem] = item
        try:
            found = faces.align_photo(read_photo(item), size, detector=detector, all_faces=all_faces, source=item)
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
    if args.size < 8:
        raise CLIError(f"--size must be at least 8, got {args.size}")
    photos = list_photos(args.inputs)
    out = check_output_dir(args.out)
    # Missing dlib models raise a WeightsError naming the pip package (exit 2); bad photos are collected.
    report = align_files(photos, out, args.size, args.all_faces, args.detector, progress=not args.quiet)
    ok = report.photos - len(report.failures)
    print(f"aligned {len(report.written)} face(s) from {ok} of {report.photos} photo(s) into {out}"
          + (f"; {len(report.failures)} failed:" if report.failures else ""))
    for item, reason in report.failures:
        print(f"  {item}: {reason}")
    return 1 if report.failures else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "align", help="FFHQ-align the faces of raw photos (dlib, offline)",
        description="Detect the face (dlib HOG, or the MMOD CNN), find dlib's 68 landmarks and write the FFHQ "
                    "crop (as NVlabs/ffhq-dataset). Files that fail are reported by name; the rest are written.")
    p.add_argument("inputs", nargs="+", metavar="PHOTO_OR_FOLDER",
                   help="photos, folders of photos, or skimage:<name> (e.g. skimage:astronaut)")
    add_out_argument(p, None, "output folder: <stem>.png per photo (<stem>_<k>.png with --all-faces)")
    p.add_argument("--size", type=int, default=1024, help="output size in pixels (FFHQ: 1024; the intermediate "
                                                          "transform runs at 4x)")
    p.add_argument("--all-faces", action="store_true", help="write every face found, largest first (default: "
                                                            "the largest only)")
    p.add_argument("--detector", choices=faces.DETECTORS, default="hog",
                   help="dlib face detector: hog (default; fast, frontal; the boxes the 68-point model was "
                        "trained on) or mmod (CNN; slower, finds more turned and small faces)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_align)
