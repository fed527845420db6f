"""What the demo accepts from a browser: upload size in bytes and in pixels, checked before decoding.

A public-facing server must not decode whatever it is sent: a small PNG can declare a 100,000 x 100,000
canvas (a "decompression bomb"). Uploads are read by the package's one photo reader
(``semedit.perception.photos.read_photo``), which checks the file size, then the size the image header
declares, and only then decodes; the demo's limits are stricter than the command line's, and every
refusal says which ``semedit demo`` flag raises the limit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from semedit.errors import ImageError
from semedit.perception.photos import PhotoLimits
from semedit.perception.photos import read_photo as read_any_photo

__all__ = ["UploadLimits", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_MAX_PIXELS", "upload_limits", "read_upload"]

# semedit's choice: 20 MB holds any phone photo as JPEG; 40 megapixels is above common phone cameras
# (a 12-48 MP sensor saves 12 MP by default) and decodes to 120 MB of RGB, safe on a laptop.
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PIXELS = 40_000_000

UploadLimits = PhotoLimits  # the demo's limits are photo limits with the demo's flags as hints


def upload_limits(max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoLimits:
    return PhotoLimits(int(max_upload_mb * 1024 * 1024), int(max_pixels),
                       bytes_hint="start the demo with --max-upload-mb to change that",
                       pixels_hint="start the demo with --max-pixels to change that, or downscale the photo")


def read_upload(path: str | os.PathLike | None, limits: PhotoLimits, what: str = "photo") -> np.ndarray:
    """An uploaded file as uint8 RGB [H, W, 3] (EXIF rotation applied), within ``limits``; ImageError naming
    the file by its uploaded name otherwise."""
    if path is None or str(path) == "":
        raise ImageError(f"no {what}: upload one or pick an example below")
    path = Path(path)
    if not path.exists():
        raise ImageError(f"the uploaded {what} {path.name} is gone from the server's temporary folder; upload it again")
    return read_any_photo(path, limits, label=path.name)
