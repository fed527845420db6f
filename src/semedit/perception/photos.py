"""THE photo reader: every command, dataset and the demo read a user's photo through ``read_photo``.

A photo is a file, or a sample that ships inside an installed package (``skimage:<name>``, e.g.
``skimage:astronaut``; ``matplotlib:grace_hopper``), so that examples and tests run offline.

What it does, the same way everywhere:

- checks the size *before* decoding (``PhotoLimits``: bytes on disk, pixels the header declares), so a small
  file that declares a 100,000 x 100,000 canvas (a "decompression bomb") is refused, not decoded;
- applies the EXIF orientation (phone photos store their rotation there);
- returns uint8 RGB [H, W, 3] whatever was stored: greyscale, palette, CMYK and alpha images are converted
  (alpha is dropped), 16-bit and 32-bit integer images are scaled to 8 bits;
- refuses everything else with one error type, ``ImageError``, whose message names the photo and says what to
  do: missing, empty, not an image, truncated, too large, too small.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from semedit.errors import ImageError
from semedit.images import from_uint8

__all__ = ["PhotoLimits", "CLI_LIMITS", "IMAGE_EXTENSIONS", "SAMPLE_PREFIXES", "is_sample", "photo_name",
           "check_photo", "read_photo", "load_image", "list_photos"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
SAMPLE_PREFIXES = ("skimage:", "matplotlib:")
MIN_SIDE = 8  # pixels: smaller images hold no face


@dataclass(frozen=True)
class PhotoLimits:
    """The largest photo accepted: bytes on disk and pixels declared by the header (checked before decoding).

    The hints complete a refusal ("start it with --max-pixels to change that").
    """

    max_bytes: int = 1 << 30
    # PIL's own decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS): 179 megapixels, 0.5 GB as RGB.
    max_pixels: int = 178_956_970
    bytes_hint: str = "re-save it smaller"
    pixels_hint: str = "downscale it first"

    def __post_init__(self):
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError(f"photo limits must be positive, got {self.max_bytes} bytes and {self.max_pixels} pixels")

    @property
    def max_megabytes(self) -> float:
        return self.max_bytes / 2**20


CLI_LIMITS = PhotoLimits()


def is_sample(item: str | os.PathLike) -> bool:
    return isinstance(item, str) and item.startswith(SAMPLE_PREFIXES)


def photo_name(item: str | os.PathLike) -> str:
    """The name results are saved under: the file stem, or the sample's name (``skimage:astronaut`` -> astronaut)."""
    text = os.fspath(item)
    return text.split(":", 1)[1] if is_sample(text) else Path(text).stem


def _sample(item: str) -> np.ndarray:
    prefix, name = item.split(":", 1)
    if prefix == "skimage":
        loader = getattr(skimage.data, name, None)
        if not callable(loader):
            raise ImageError(f"scikit-image ships no image called {name!r} (try skimage:astronaut)")
        return np.asarray(loader())
    if name != "grace_hopper":
        raise ImageError(f"{item}: the matplotlib sample photo is matplotlib:grace_hopper")
    try:
        import matplotlib.cbook  # optional: only this sample needs it
    except ModuleNotFoundError:
        raise ImageError(f"{item} needs matplotlib (pip install matplotlib), which ships that photo") from None
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def _header(path: Path, label: str, limits: PhotoLimits):
    """Open ``path`` lazily (no pixel decoded yet) after the byte check; the caller closes it."""
    if not path.exists():
        raise ImageError(f"{label} not found")
    if path.is_dir():
        raise ImageError(f"{label} is a folder, not a photo")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"{label} is empty: an empty file (0 bytes), not a photo")
    if size > limits.max_bytes:
        raise ImageError(f"{label} is {size / 2**20:.1f} MB; photos are accepted up to {limits.max_megabytes:.1f} MB "
                         f"({limits.bytes_hint})")
    try:
        with warnings.catch_warnings():
            # The pixel limit below replaces PIL's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image (no image format recognises its content); give a PNG or JPEG "
                         "photo") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{label} declares an image too large to decode safely ({limits.pixels_hint})") from None
    except OSError as err:
        raise ImageError(f"{label} cannot be read ({err})") from None
    width, height = im.size
    if width * height > limits.max_pixels:
        im.close()
        raise ImageError(f"{label} is {width}x{height} = {width * height / 1e6:.1f} megapixels; photos are accepted "
                         f"up to {limits.max_pixels / 1e6:.1f} megapixels ({limits.pixels_hint})")
    return im


def check_photo(item: str | os.PathLike, limits: PhotoLimits = CLI_LIMITS, label: str | None = None) -> None:
    """Everything ``read_photo`` checks before decoding (exists, not empty, an image, within ``limits``)."""
    if is_sample(item):
        return
    _header(Path(item), label or f"photo {os.fspath(item)}", limits).close()


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """uint8 RGB of any PIL image: wide integer modes are scaled to 8 bits, the rest converted by PIL."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or wide.max(initial=0) <= 65535 else float(wide.max())
        grey = np.clip(np.rint(wide / top * 255), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":  # floating point greyscale: 0..1 or 0..255 by its range
        values = np.asarray(im, dtype=np.float64)
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))  # a writable copy (torch.from_numpy warns about read-only buffers)


def read_photo(item: str | os.PathLike, limits: PhotoLimits = CLI_LIMITS, label: str | None = None) -> np.ndarray:
    """A photo file or sample as uint8 RGB [H, W, 3], EXIF orientation applied; ImageError otherwise.

    ``label`` names the photo in messages (default "photo <path>"; the demo passes the uploaded name).
    """
    text = os.fspath(item)
    label = label or f"photo {text}"
    if is_sample(text):
        array = _sample(text)
        if array.dtype != np.uint8:
            raise ImageError(f"{label} is not an 8-bit image")
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
        return np.ascontiguousarray(array)
    im = _header(Path(text), label, limits)
    try:
        with im:
            rgb = _to_rgb8(ImageOps.exif_transpose(im))
    except (OSError, SyntaxError, ValueError) as err:  # truncated or damaged image data
        raise ImageError(f"{label} is a corrupt or truncated image ({err}); re-save it as PNG or JPEG") from None
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{label} is only {rgb.shape[1]}x{rgb.shape[0]} pixels; give a photo of a face")
    return rgb


def load_image(item: str | os.PathLike, size: int | None = None, limits: PhotoLimits = CLI_LIMITS) -> torch.Tensor:
    """``read_photo`` as a tensor [1, 3, H, W] in [-1, 1], optionally resized to size x size (Lanczos)."""
    rgb = read_photo(item, limits)
    if size is not None and rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.LANCZOS))
    return from_uint8(rgb)


def list_photos(inputs: Iterable[str | os.PathLike], extensions: Sequence[str] | None = None,
                recursive: bool | None = False, notices: bool = True) -> list[str]:
    """Photo files and samples of ``inputs`` (files, folders, samples), folders in sorted order.

    ``extensions``: which files of a folder count (None: every non-hidden file, so that a file that is not an
    image is reported rather than silently skipped). Sub-folders are listed with ``recursive``; otherwise a
    notice names the ones skipped (and, when ``recursive`` is False rather than None, points at --recursive).
    A file or sample named directly is always taken.
    """
    suffixes = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions} if extensions else None
    photos: list[str] = []
    for item in map(os.fspath, inputs):
        path = Path(item)
        if is_sample(item) or path.is_file():
            photos.append(item)
            continue
        if not path.is_dir():
            raise ImageError(f"input not found: {item} (give photos, folders, or a sample such as skimage:astronaut)")
        entries = sorted(p for p in (path.rglob("*") if recursive else path.iterdir())
                         if not any(part.startswith(".") for part in p.relative_to(path).parts))
        files = [p for p in entries if p.is_file() and (suffixes is None or p.suffix.lower() in suffixes)]
        skipped = [p for p in entries if p.is_dir()] if not recursive else []
        remedy = "add --recursive to include them" if recursive is False else "give them as inputs to include them"
        if skipped and notices:
            print(f"semedit: skipping {len(skipped)} sub-folder(s) of {path} ("
                  + ", ".join(p.name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
                  + f"); {remedy}", file=sys.stderr)
        if not files:
            kinds = f"images ({', '.join(sorted(suffixes))})" if suffixes else "files"
            raise ImageError(f"folder {path} holds no {kinds}" + (f" (only sub-folders: {remedy})" if skipped else ""))
        photos.extend(str(p) for p in files)
    return photos
