"""Face/hair region splitters: ellipse prior (no weights), landmark hull, parser."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from semedit.perception.landmarks import FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT, FFHQ_MOUTH, convex_hull_mask
from semedit.perception.regions import make_region_splitter
from tests.perception.helpers import TinyLandmark3D, export_onnx


def _topology_ok(face: np.ndarray) -> None:
    assert scipy.ndimage.label(face)[1] == 1
    assert (scipy.ndimage.binary_fill_holes(face) == face).all()
    assert scipy.ndimage.label(~face)[1] == 1


@pytest.mark.parametrize("size", [32, 256])
def test_ellipse_area_topology_and_placement(size):
    split = make_region_splitter("ellipse")
    images = torch.zeros(3, 3, size, size)
    masks = split(images)
    face, hair = masks["face"], masks["hair"]
    assert face.shape == hair.shape == (3, 1, size, size)
    torch.testing.assert_close(hair, 1 - face)
    assert torch.equal(face[0], face[2])
    expected = split.expected_area(size, size)
    assert abs(face[0].sum().item() - expected) / expected < (0.05 if size == 32 else 0.01)
    f = face[0, 0].numpy() > 0.5
    _topology_ok(f)
    for fx, fy in (FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT, FFHQ_MOUTH):
        assert f[int(fy * size), int(fx * size)]  # eyes and mouth of an aligned face are inside
    assert not f[:, 0].any() and not f[0].any() and not f[int(0.2 * size)].any()  # forehead/hair outside


def test_feathered_ellipse_is_soft_and_centred():
    face = make_region_splitter("ellipse", feather=0.05)(torch.zeros(1, 3, 64, 64))["face"]
    assert 0 < face.min() < 0.01 and face.max() > 0.99
    assert ((face > 0.05) & (face < 0.95)).any()


def test_hull_splitter_uses_the_landmark_hull(tmp_path):
    path = export_onnx(TinyLandmark3D(seed=2), tmp_path / "1k3d68.onnx", (1, 3, 192, 192))
    split = make_region_splitter("hull", weights=str(path))
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    masks = split(images)
    expected = convex_hull_mask(torch.from_numpy(split.landmarker(images)), 64, 64)
    torch.testing.assert_close(masks["face"], expected)
    torch.testing.assert_close(masks["hair"], 1 - masks["face"])
    assert masks["face"][0].sum() > 50
    _topology_ok(masks["face"][0, 0].numpy() > 0.5)


def test_parsing_splitter_and_bad_strategies():
    split = make_region_splitter("parsing", weights="random")
    with torch.no_grad():
        masks = split(torch.rand(1, 3, 48, 48) * 2 - 1)
    assert masks["face"].shape == (1, 1, 48, 48)
    torch.testing.assert_close(masks["hair"], 1 - masks["face"])
    with pytest.raises(ValueError, match="choose one of ellipse, hull, dlib-hull, parsing"):
        make_region_splitter("box")
    with pytest.raises(ValueError, match="no weights"):
        make_region_splitter("ellipse", weights="x.pth")
