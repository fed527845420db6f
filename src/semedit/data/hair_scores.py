"""Hair attributes measured in a hair mask: colour lightness and hue, hair area and length.

These are the attributes of the hair-embedding directions (``semedit train hair-direction``): the talk
says hair manipulation works "on the same principle as face rotation", a linear classifier on a scored
attribute; the released tool ships two such directions, ``color`` and ``structure``. The scores here are
semedit's own definitions (the paper does not give its attribute measurements):

- ``hair_lightness``: mean CIELAB L* (0 black .. 100 white) of the hair pixels.
- ``hair_hue``: the mean CIELAB chroma vector (a*, b*) of the hair pixels projected on a hue angle
  (default 45 degrees, between red a* and yellow b*): warm / red / blond hair scores high, ash / cool
  hair low. A projection, not the circular hue angle itself, so that the score is linear and has no
  wrap-around for the classifier's top/bottom split.
- ``hair_area``: the fraction of the image covered by hair.
- ``hair_length``: the fraction of the image covered by hair below the mouth line of FFHQ alignment
  (y = 0.725 of the height): hair that falls past the chin.

"Hair pixels" are the hair mask's pixels (the region splitter used for the training pairs: ``ellipse``,
``hull`` or ``parsing``; with a face parser the parser's own hair class is used) minus the background:
the ellipse and hull splitters call everything outside the inner face "hair", so pixels whose colour is
within ``background_delta`` (CIELAB Delta E) of the image border's median colour are dropped.
"""

from __future__ import annotations

import torch

from semedit.perception.landmarks import FFHQ_MOUTH

__all__ = ["HAIR_ATTRIBUTES", "srgb_to_lab", "background_weight", "hair_attribute"]

HAIR_ATTRIBUTES = ("hair_lightness", "hair_hue", "hair_area", "hair_length")

# sRGB (D65) -> linear RGB -> XYZ -> CIELAB (IEC 61966-2-1 and CIE 15 formulas).
_RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
_D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def srgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] sRGB in [-1, 1] -> [N, 3, H, W] CIELAB (L* 0..100, a*, b*), float32."""
    rgb = ((images.double().clamp(-1, 1) + 1) / 2)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ.to(rgb.device), linear)
    t = xyz / _D65_WHITE.to(rgb.device).view(1, 3, 1, 1)
    eps, kappa = 216 / 24389, 24389 / 27
    f = torch.where(t > eps, t.clamp(min=0) ** (1 / 3), (kappa * t + 16) / 116)
    lab = torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)
    return lab.float()


def background_weight(lab: torch.Tensor, delta: float, border: float = 1 / 16) -> torch.Tensor:
    """[N, 1, H, W]: 0 where a pixel's colour is within ``delta`` (Delta E) of the border's median colour.

    The border is the outer ``border`` fraction of the top rows and of the left and right columns (the
    bottom of an FFHQ-aligned image is usually clothing, not background).
    """
    n, _, h, w = lab.shape
    b = max(1, int(round(border * min(h, w))))
    strip = torch.cat([lab[:, :, :b, :].flatten(2), lab[:, :, b:, :b].flatten(2), lab[:, :, b:, -b:].flatten(2)], dim=2)
    median = strip.median(dim=2).values.view(n, 3, 1, 1)
    return ((lab - median).norm(dim=1, keepdim=True) > delta).float()


def hair_attribute(images: torch.Tensor, hair_mask: torch.Tensor, attribute: str, hue_angle: float = 45.0,
                   background_delta: float = 10.0) -> torch.Tensor:
    """One hair attribute (``HAIR_ATTRIBUTES``) per image -> [N] float32; NaN where no hair pixel is left.

    images [N, 3, H, W] in [-1, 1]; hair_mask [N, 1, H, W] in [0, 1] (soft masks weight the pixels).
    ``background_delta`` <= 0 keeps the whole mask.
    """
    if attribute not in HAIR_ATTRIBUTES:
        raise ValueError(f"unknown hair attribute {attribute!r}; choose one of {', '.join(HAIR_ATTRIBUTES)}")
    if hair_mask.shape != (images.shape[0], 1, *images.shape[-2:]):
        raise ValueError(f"hair_mask must be [N, 1, H, W] matching images {list(images.shape)}, "
                         f"got {list(hair_mask.shape)}")
    lab = srgb_to_lab(images)
    weight = hair_mask.float()
    if background_delta > 0:
        weight = weight * background_weight(lab, background_delta)
    n, _, h, w = images.shape
    total = weight.flatten(1).sum(dim=1)
    if attribute == "hair_area":
        return total / (h * w)
    if attribute == "hair_length":
        below = (torch.arange(h, device=images.device, dtype=torch.float32) + 0.5) / h > FFHQ_MOUTH[1]
        return (weight * below.view(1, 1, h, 1)).flatten(1).sum(dim=1) / (h * w)
    mean = (lab * weight).flatten(2).sum(dim=2) / total.clamp(min=1e-8)[:, None]  # [N, 3]
    if attribute == "hair_lightness":
        score = mean[:, 0]
    else:
        angle = torch.deg2rad(torch.tensor(float(hue_angle)))
        score = mean[:, 1] * torch.cos(angle) + mean[:, 2] * torch.sin(angle)
    return torch.where(total > 0, score, torch.full_like(score, float("nan")))
