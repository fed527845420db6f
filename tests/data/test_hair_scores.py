"""Hair attribute scores on planted images with known hair colour, area and length."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semedit.data.hair_scores import hair_attribute, srgb_to_lab
from semedit.perception.regions import EllipseSplitter


def test_lab_matches_scikit_image():
    color = pytest.importorskip("skimage.color")
    images = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = srgb_to_lab(images).permute(0, 2, 3, 1).numpy()
    ref = np.stack([color.rgb2lab((im.permute(1, 2, 0).double().numpy() + 1) / 2) for im in images])
    np.testing.assert_allclose(ours, ref, atol=0.02)


def _head(hair_rgb, top=0.15, bottom=0.6, size=64, background=(0.2, 0.6, 0.2)):
    """A green background, a skin-coloured face ellipse and hair of one colour from row `top` to `bottom`."""
    img = torch.tensor(background).view(3, 1, 1).expand(3, size, size).clone()
    ys = (torch.arange(size) + 0.5) / size
    rows = (ys >= top) & (ys <= bottom)
    cols = (ys >= 0.2) & (ys <= 0.8)
    img[:, rows[:, None] & cols[None, :]] = torch.tensor(hair_rgb).view(3, 1)
    face = EllipseSplitter().face_mask(size, size)[0, 0] > 0.5
    img[:, face] = torch.tensor([0.85, 0.45, 0.4]).view(3, 1)
    return img[None]


def _scores(images, attribute):
    mask = EllipseSplitter()(images)["hair"]
    return hair_attribute(images, mask, attribute)


def test_lightness_and_hue_order_hair_colours():
    blond, black, red, ash = (0.9, 0.6, 0.2), (-0.8, -0.8, -0.8), (0.6, -0.4, -0.6), (0.0, 0.05, 0.15)
    images = torch.cat([_head(c) for c in (blond, black, red, ash)])
    light = _scores(images, "hair_lightness")
    assert light[0] > light[2] > light[1] and light[3] > light[1]
    assert abs(float(light[1]) - float(srgb_to_lab(torch.tensor(black).view(1, 3, 1, 1))[0, 0])) < 1.0  # the hair, not the background
    hue = _scores(images, "hair_hue")
    assert hue[2] > hue[3] and hue[0] > hue[3] and abs(float(hue[1])) < 1.0  # red/blond warm, ash cool, black neutral


def test_area_and_length_grow_with_longer_hair():
    short, long_ = _head((0.1, 0.0, -0.2), bottom=0.6), _head((0.1, 0.0, -0.2), bottom=0.95)
    images = torch.cat([short, long_])
    area = _scores(images, "hair_area")
    length = _scores(images, "hair_length")
    assert area[1] > area[0] > 0
    assert length[0] < 0.02 < length[1]  # the short hair ends above the mouth line (0.725)
    # background only (no hair at all): area 0, colour undefined
    empty = torch.tensor((0.2, 0.6, 0.2)).view(1, 3, 1, 1).expand(1, 3, 64, 64).clone()
    assert float(_scores(empty, "hair_area")[0]) == 0.0
    assert torch.isnan(_scores(empty, "hair_lightness")).all()
    with pytest.raises(ValueError, match="unknown hair attribute"):
        hair_attribute(images, torch.ones(2, 1, 64, 64), "hair_curl")
