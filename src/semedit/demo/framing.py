"""Bringing an uploaded photo to the generator's framing: FFHQ alignment, or a centre crop with a notice.

The demo has no alignment of its own: it calls the package's one alignment path,
``semedit.perception.faces.align_photo`` (dlib's HOG detector and 68-point predictor, offline, largest
face). A photo without a face is a ``NoFaceError`` (an ``ImageError``), shown in the page. Only when that
path cannot run at all here (dlib or its model files not installed) is the photo centre-cropped, as
`semedit invert` does with ``data.align_fallback=center-crop``, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

from semedit.errors import ImageError
from semedit.perception.faces import align_photo
from semedit.perception.paste_back import CropGeometry, centre_square_quad, crop_geometry
from semedit.weights import WeightsError

__all__ = ["Framed", "frame_face"]


@dataclass
class Framed:
    image: np.ndarray  # uint8 [S, S, 3]
    method: str  # how the crop was made, shown next to it
    geometry: Optional[CropGeometry] = None  # where the crop lies in the photo (None: the upload is the crop)


def _resized(square: np.ndarray, size: int) -> np.ndarray:
    return np.array(Image.fromarray(np.ascontiguousarray(square)).resize((size, size), Image.LANCZOS))


def _centre_square(photo: np.ndarray, size: int) -> np.ndarray:
    h, w = photo.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return _resized(photo[top:top + side, left:left + side], size)


def frame_face(photo: np.ndarray, size: int, source: str, aligned: bool = False) -> Framed:
    """uint8 RGB photo -> an FFHQ-aligned ``size`` x ``size`` crop of its largest face.

    ``aligned=True`` takes the photo as already FFHQ-aligned (only resized; it must be square).
    """
    if aligned:
        h, w = photo.shape[:2]
        if h != w:
            raise ImageError(f"{source} is {w}x{h}, not a square aligned face; untick 'already aligned' to "
                             "detect and align the face")
        return Framed(_resized(photo, size), "as uploaded (already aligned)")
    try:
        faces = align_photo(photo, size=size, source=source)
    except (WeightsError, ModuleNotFoundError) as err:  # dlib or its model files are not installed
        first_line = str(err).splitlines()[0]
        geometry = crop_geometry(centre_square_quad(photo.shape), photo.shape, min(photo.shape[:2]),
                                 enable_padding=False)
        return Framed(_centre_square(photo, size),
                      f"centre crop — face alignment is not available here ({first_line})", geometry)
    return Framed(np.array(faces[0].image), "FFHQ-aligned (dlib 68 landmarks, largest face)",
                  crop_geometry(faces[0], photo.shape))
