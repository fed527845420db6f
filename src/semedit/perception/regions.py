"""Split FFHQ-aligned face images into the inner face and the hair (everything else).

``make_region_splitter(strategy)`` returns a module ``split(images [N, 3, H, W] in [-1, 1]) ->
{"face": [N, 1, H, W], "hair": [N, 1, H, W]}`` with ``hair = 1 - face``:

- ``"dlib-hull"``: FG 2021's split computed the way its official code does (the convex hull of 2-D
  68-point landmarks on the 256 px aligned image, scaled to the working size), with one difference: the
  official code takes those landmarks from face_alignment's FAN network (hairstyle_transfer utils.py
  lines 10-13 and 107), semedit from dlib's 68-point predictor on the known face box (no detection), which
  installs offline (face-recognition-models). The default of the released FG 2021 model.
- ``"hull"``: the convex hull of insightface's 3-D 68 landmarks (1k3d68) at the working size; needs
  that landmark model. Its jaw contour differs from the visible silhouette on turned faces.
- ``"parsing"``: BiSeNet's inner-face classes (skin, brows, eyes, nose, mouth, lips); needs the parser.
- ``"ellipse"``: a fixed ellipse where FFHQ alignment puts the inner face; needs no weights. Tiny configs
  and tests keep it: the tiny random generator makes no faces, so landmarks on its images (dlib-hull)
  would be arbitrary points; the ellipse is the same prior on every image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from scipy.spatial import ConvexHull
from torch import nn

from semedit.perception import faces
from semedit.perception.landmarks import convex_hull_mask, load_landmarker
from semedit.perception.parsing import load_face_parser
from semedit.registry import registrar

__all__ = [
    "FFHQ_FACE_ELLIPSE",
    "EllipseSplitter",
    "HullSplitter",
    "DlibHullSplitter",
    "ParsingSplitter",
    "make_region_splitter",
    "REGION_STRATEGIES",
]

# Inner face of FFHQ-aligned images as an ellipse (centre x, centre y, semi-axis x, semi-axis y), as
# fractions of the image size: from the eyebrows (~0.37) to the chin (~0.88), cheek to cheek. FFHQ
# alignment puts the eyes at y = 0.475 and the mouth at y = 0.725 (see landmarks.FFHQ_EYE_LEFT).
FFHQ_FACE_ELLIPSE = (0.5, 0.625, 0.24, 0.255)
# strategy name -> builder(device, weights, **kwargs); filled by @register_splitter below.
REGION_SPLITTERS: dict = {}


def _split(face: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"face": face, "hair": 1.0 - face}


class EllipseSplitter(nn.Module):
    """Fixed elliptic inner-face prior for FFHQ-aligned images.

    ellipse: (cx, cy, ax, ay) as fractions of the width/height. feather: width of a soft edge as a
    fraction of the size (0: hard 0/1 mask, pixel centres inside the ellipse are 1).
    """

    def __init__(self, ellipse: tuple[float, float, float, float] = FFHQ_FACE_ELLIPSE, feather: float = 0.0):
        super().__init__()
        self.ellipse = tuple(float(v) for v in ellipse)
        self.feather = float(feather)

    def face_mask(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """[1, 1, H, W] face mask."""
        cx, cy, ax, ay = self.ellipse
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        r = torch.sqrt(((xs[None, :] - cx) / ax) ** 2 + ((ys[:, None] - cy) / ay) ** 2)
        if self.feather > 0:
            # Signed distance along the radius, in image fractions, through a sigmoid of width `feather`.
            mask = torch.sigmoid((1.0 - r) * min(ax, ay) / self.feather * 4.0)
        else:
            mask = (r <= 1.0).float()
        return mask[None, None]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = images.shape
        face = self.face_mask(h, w, images.device).expand(n, 1, h, w).to(images.dtype)
        return _split(face)

    def expected_area(self, height: int, width: int) -> float:
        """Analytic area of the ellipse in pixels."""
        return math.pi * self.ellipse[2] * width * self.ellipse[3] * height


class HullSplitter(nn.Module):
    """Inner face = convex hull of the 68 landmarks of each image (FG 2021's split)."""

    def __init__(self, landmarker):
        super().__init__()
        self.landmarker = landmarker

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        points = torch.from_numpy(self.landmarker(images))
        face = convex_hull_mask(points, images.shape[-2], images.shape[-1])
        return _split(face.to(device=images.device, dtype=images.dtype))


class DlibHullSplitter(nn.Module):
    """FG 2021's face/hair split, as the official code computes it, with dlib's 2-D 68 landmarks.

    subrtade662/hairstyle_transfer (commit 6b49973): ``split_image`` (utils.py lines 102-122) aligns the
    image to 256 px (line 105), takes 2-D 68 landmarks on it (line 107) and masks the convex hull
    (``create_mask``, lines 19-28: scipy ConvexHull, vertices truncated to int32, cv2.fillConvexPoly);
    the 256 px mask is brought to the 1024 px working size with cv2.resize (hairstyle_transfer_tool.py
    lines 129-132, bilinear). The official landmarks come from face_alignment's FAN (LandmarksType._2D,
    utils.py lines 10-13); dlib's 68-point predictor gives the same 2-D iBUG layout (the jaw follows the
    visible silhouette, unlike 3-D landmarks on turned faces) and ships offline.

    Images are FFHQ-aligned (generated ones by construction), so the predictor runs on the known face box
    (``faces.DLIB_FFHQ_FACE_BOX``) without detection, for the whole batch. ``detect=True`` uses dlib's
    HOG detector on each 256 px image instead, falling back to the known box where it finds no face.
    Masks are soft only on the bilinear edge of the rescale (binary at 256 px).
    """

    def __init__(self, detect: bool = False, predictor_path: str | None = None, size: int = 256):
        super().__init__()

        self.detect, self.size = bool(detect), int(size)
        self.predictor_path = str(predictor_path) if predictor_path is not None else None
        faces.shape_predictor(68, self.predictor_path)  # fail now, with the pip package name, if missing

    def landmarks(self, images: torch.Tensor) -> np.ndarray:
        """[N, 68, 2] dlib landmarks in pixels of the ``size`` px version of ``images``."""

        arrays = faces.aligned_uint8(images, self.size)
        boxes = np.stack([faces.known_face_box(self.size)] * len(arrays))
        if self.detect:
            for i, im in enumerate(arrays):
                found = faces.detect_faces(im, "hog")
                if len(found):
                    boxes[i] = found[0]
        return faces.predict_landmarks(arrays, boxes, 68, predictor_path=self.predictor_path)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:

        n, _, h, w = images.shape
        masks = np.zeros((n, 1, h, w), dtype=np.float32)
        for i, points in enumerate(self.landmarks(images)):
            mask = np.zeros((self.size, self.size), dtype=np.float64)
            cv2.fillConvexPoly(mask, np.int32(points[ConvexHull(points).vertices]), 1)
            if (h, w) != mask.shape:
                mask = cv2.resize(mask, (w, h))  # INTER_LINEAR, as the official 256 -> 1024 resize
            masks[i, 0] = mask
        return _split(torch.from_numpy(masks).to(device=images.device, dtype=images.dtype))


class ParsingSplitter(nn.Module):
    """Inner face = BiSeNet's skin, brows, eyes, nose, mouth and lips classes."""

    def __init__(self, parser: nn.Module, soft: bool = False):
        super().__init__()
        self.parser = parser
        self.soft = soft

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.soft):
            face = self.parser.masks(images, soft=self.soft)["face"]
        return _split(face.to(images.dtype))


# ``@register_splitter("name")`` makes ``builder(device, weights, **kwargs) -> nn.Module`` a region strategy.
register_splitter = registrar(REGION_SPLITTERS, "region strategy")


@register_splitter("ellipse")
def _ellipse(device, weights, **kwargs) -> nn.Module:
    if weights is not None:
        raise ValueError("the 'ellipse' region splitter uses no weights; drop `weights`")
    return EllipseSplitter(**kwargs).to(device)


@register_splitter("hull")
def _hull(device, weights, **kwargs) -> nn.Module:
    return HullSplitter(load_landmarker(weights, device=device, **kwargs))


@register_splitter("dlib-hull")
def _dlib_hull(device, weights, **kwargs) -> nn.Module:
    # weights: None (the 68-point predictor of face-recognition-models) or a path to a file in its format.
    return DlibHullSplitter(predictor_path=weights, **kwargs)


@register_splitter("parsing")
def _parsing(device, weights, **kwargs) -> nn.Module:
    return ParsingSplitter(load_face_parser(weights, device=device), **kwargs).to(device)


def make_region_splitter(strategy: str = "ellipse", device: str | torch.device = "cpu",
                         weights: str | None = None, **kwargs) -> nn.Module:
    """A face/hair splitter. ``weights``: landmark model (hull) or parser (parsing), registry name or path;
    None means the registry default. Extra keyword arguments go to the splitter (e.g. ``ellipse=``,
    ``feather=`` for "ellipse"; ``soft=`` for "parsing"; ``detector=`` for "hull")."""
    if strategy not in REGION_SPLITTERS:
        raise ValueError(f"unknown region strategy {strategy!r}; choose one of {', '.join(REGION_STRATEGIES)}")
    return REGION_SPLITTERS[strategy](device, weights, **kwargs)


# Names in the order the configs document them (kept as a tuple for messages and argparse choices).
REGION_STRATEGIES = tuple(REGION_SPLITTERS)
