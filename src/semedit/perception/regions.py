"""Split FFHQ-aligned face images into the inner face and the hair (everything else).

``make_region_splitter(strategy)`` returns a module ``split(images [N, 3, H, W] in [-1, 1]) ->
{"face": [N, 1, H, W], "hair": [N, 1, H, W]}`` with ``hair = 1 - face``:

- ``"hull"``: the convex hull of the 68 facial landmarks (the split of the FG 2021 hairstyle paper);
  needs the landmark model.
- ``"parsing"``: BiSeNet's inner-face classes (skin, brows, eyes, nose, mouth, lips); needs the parser.
- ``"ellipse"``: a fixed ellipse where FFHQ alignment puts the inner face; needs no weights, so tiny
  configs and tests use it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "FFHQ_FACE_ELLIPSE",
    "EllipseSplitter",
    "HullSplitter",
    "ParsingSplitter",
    "make_region_splitter",
    "REGION_STRATEGIES",
]

# Inner face of FFHQ-aligned images as an ellipse (centre x, centre y, semi-axis x, semi-axis y), as
# fractions of the image size: from the eyebrows (~0.37) to the chin (~0.88), cheek to cheek. FFHQ
# alignment puts the eyes at y = 0.475 and the mouth at y = 0.725 (see landmarks.FFHQ_EYE_LEFT).
FFHQ_FACE_ELLIPSE = (0.5, 0.625, 0.24, 0.255)
REGION_STRATEGIES = ("hull", "parsing", "ellipse")


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
        from semedit.perception.landmarks import convex_hull_mask

        points = torch.from_numpy(self.landmarker(images))
        face = convex_hull_mask(points, images.shape[-2], images.shape[-1])
        return _split(face.to(device=images.device, dtype=images.dtype))


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


def make_region_splitter(strategy: str = "ellipse", device: str | torch.device = "cpu",
                         weights: str | None = None, **kwargs) -> nn.Module:
    """A face/hair splitter. ``weights``: landmark model (hull) or parser (parsing), registry name or path;
    None means the registry default. Extra keyword arguments go to the splitter (e.g. ``ellipse=``,
    ``feather=`` for "ellipse"; ``soft=`` for "parsing"; ``detector=`` for "hull")."""
    if strategy == "ellipse":
        if weights is not None:
            raise ValueError("the 'ellipse' region splitter uses no weights; drop `weights`")
        return EllipseSplitter(**kwargs).to(device)
    if strategy == "hull":
        from semedit.perception.landmarks import load_landmarker

        return HullSplitter(load_landmarker(weights, device=device, **kwargs))
    if strategy == "parsing":
        from semedit.perception.parsing import load_face_parser

        return ParsingSplitter(load_face_parser(weights, device=device), **kwargs).to(device)
    raise ValueError(f"unknown region strategy {strategy!r}; choose one of {', '.join(REGION_STRATEGIES)}")
