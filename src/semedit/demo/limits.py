"""What the demo accepts from a browser: upload size in bytes and in pixels, checked before decoding.

A public-facing server must not decode whatever it is sent: a small PNG can declare a 100,000 x 100,000
canvas (a "decompression bomb"). ``read_photo`` checks the file size, then the size the image header
declares, and only then decodes; every refusal is an ``ImageError`` whose message says what the limit is
and which ``semedit demo`` flag raises it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from semedit.errors import ImageError

__all__ = ["UploadLimits", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_MAX_PIXELS", "read_photo"]

# semedit's choice: 20 MB holds any phone photo as JPEG; 40 megapixels is above common phone cameras
# (a 12-48 MP sensor saves 12 MP by default) and decodes to 120 MB of RGB, safe on a laptop.
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError(f"upload limits must be positive, got {self.max_bytes} bytes and {self.max_pixels} "
                             "pixels")

    @classmethod
    def from_megabytes(cls, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> UploadLimits:
        return cls(int(max_upload_mb * 1024 * 1024), int(max_pixels))

    @property
    def max_megabytes(self) -> float:
        return self.max_bytes / (1024 * 1024)


def read_photo(path: str | os.PathLike | None, limits: UploadLimits, what: str = "photo") -> np.ndarray:
    """An uploaded file as uint8 RGB [H, W, 3] (EXIF rotation applied), within ``limits``.

    Raises ``ImageError`` for a missing upload, a file over the byte or pixel limit, a non-image or a
    corrupt image, naming the file (by its uploaded name) and the limit.
    """
    if path is None or str(path) == "":
        raise ImageError(f"no {what}: upload one or pick an example below")
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ImageError(f"the uploaded {what} {name} is gone from the server's temporary folder; upload it again")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ImageError(f"{name} is {size / 2**20:.1f} MB; this demo accepts uploads up to "
                         f"{limits.max_megabytes:.1f} MB (start it with --max-upload-mb to change that)")
    if size == 0:
        raise ImageError(f"{name} is empty (0 bytes); upload a PNG or JPEG photo")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below replaces PIL's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > limits.max_pixels:
                    raise ImageError(
                        f"{name} is {width}x{height} = {width * height / 1e6:.1f} megapixels; this demo accepts "
                        f"up to {limits.max_pixels / 1e6:.1f} megapixels (start it with --max-pixels to change "
                        "that, or downscale the photo)")
                im = ImageOps.exif_transpose(im)
                rgb = np.asarray(im.convert("RGB"))
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name} declares an image too large to decode safely ({err})") from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{name} is not an image (PIL cannot identify it); upload a PNG or JPEG photo") from err
    except (OSError, SyntaxError, ValueError) as err:  # truncated or damaged image data
        raise ImageError(f"{name} is a corrupt or truncated image ({err}); upload the photo again or "
                         "re-save it as PNG/JPEG") from err
    if min(rgb.shape[:2]) < 8:
        raise ImageError(f"{name} is only {rgb.shape[1]}x{rgb.shape[0]} pixels; upload a photo of a face")
    return rgb
