"""68-point landmarks through insightface's model zoo, FFHQ alignment, convex-hull masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from semedit.perception.landmarks import (
    FFHQ_EYE_LEFT,
    FFHQ_EYE_RIGHT,
    FFHQ_MOUTH,
    align_ffhq,
    convex_hull_mask,
    ffhq_quad,
    load_landmarker,
    quad_to_aligned,
)
from semedit.weights import CorruptWeightsError, MissingWeightsError
from tests.perception.helpers import TinyArcFace, TinyLandmark3D, export_onnx


@pytest.fixture(scope="module")
def landmark_onnx(tmp_path_factory):
    return export_onnx(TinyLandmark3D(seed=1), tmp_path_factory.mktemp("lmk") / "1k3d68.onnx", (1, 3, 192, 192))


def test_batched_landmarks_match_insightface_get(landmark_onnx, isolated_weights):
    from insightface.app.common import Face

    (isolated_weights / "1k3d68.onnx").write_bytes(landmark_onnx.read_bytes())
    lmk = load_landmarker()  # registry default
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (120, 100, 3), dtype=np.uint8) for _ in range(3)]
    boxes = np.array([[20, 30, 80, 100], [10, 10, 90, 110], [35, 40, 70, 75]], dtype=np.float64)
    got = lmk(images, boxes)
    assert got.shape == (3, 68, 2)
    for image, box, points in zip(images, boxes, got, strict=True):
        face = Face(bbox=box)
        reference = lmk.model.get(np.ascontiguousarray(image[:, :, ::-1]), face)  # insightface wants BGR
        np.testing.assert_allclose(points, reference[:, :2], atol=1e-3)
    # Tensors in [-1, 1] are accepted; without boxes, FFHQ-aligned images use the fixed prior box.
    tensor = torch.from_numpy(np.stack([images[0][:100, :100]])).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert lmk(tensor).shape == (1, 68, 2)


def test_wrong_or_missing_landmark_model(tmp_path):
    arcface = export_onnx(TinyArcFace(), tmp_path / "arc.onnx", (1, 3, 112, 112))
    with pytest.raises(CorruptWeightsError, match="68-point"):
        load_landmarker(arcface)
    with pytest.raises(MissingWeightsError, match="buffalo_l.zip"):
        load_landmarker()


def _face_landmarks(center, scale, angle_deg):
    """68 landmarks of a schematic face: eyes 100 units apart, mouth 100 units below the eyes."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    canon = np.zeros((68, 2))
    canon[:17] = np.stack([np.linspace(-90, 90, 17), 60 + 70 * np.cos(np.linspace(-1.3, 1.3, 17)) * 0.8], 1)
    ring = np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], 1) * 8
    canon[36:42] = np.array([-50, 0]) + ring  # mean = left eye centre
    canon[42:48] = np.array([50, 0]) + ring
    canon[48:60] = np.array([0, 100]) + np.stack([np.cos(np.linspace(np.pi, -np.pi, 12, endpoint=False)) * 35,
                                                   np.sin(np.linspace(np.pi, -np.pi, 12, endpoint=False)) * 10], 1)
    canon[48] = [-35, 100]
    canon[54] = [35, 100]
    return canon @ rot.T * scale + np.asarray(center), rot, scale


def test_ffhq_alignment_puts_eyes_and_mouth_where_ffhq_does():
    h, w = 360, 420
    lm, rot, scale = _face_landmarks(center=(215, 150), scale=0.9, angle_deg=17)
    image = np.full((h, w, 3), 128, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    marks = {0: lm[36:42].mean(0), 1: lm[42:48].mean(0)}
    for channel, centre in marks.items():
        disc = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= 7 ** 2
        image[disc] = 0
        image[disc, channel] = 255
    for corner in (lm[48], lm[54]):
        disc = (xx - corner[0]) ** 2 + (yy - corner[1]) ** 2 <= 7 ** 2
        image[disc] = (0, 0, 255)

    size = 128
    aligned = align_ffhq(image, lm, output_size=size, transform_size=512).astype(np.float64)
    assert aligned.shape == (size, size, 3)

    def centroid(channel):
        others = [c for c in range(3) if c != channel]
        weight = np.clip(aligned[..., channel] - aligned[..., others].max(-1) - 40, 0, None)
        ys, xs = np.mgrid[:size, :size]
        return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum() + 0.5

    for channel, expected in ((0, FFHQ_EYE_LEFT), (1, FFHQ_EYE_RIGHT), (2, FFHQ_MOUTH)):
        np.testing.assert_allclose(centroid(channel), np.array(expected) * size, atol=1.0)

    # The quad geometry: eyes 0.25 of the side apart, 0.25 of the side above the mouth.
    quad, qsize = ffhq_quad(lm)
    assert qsize == pytest.approx(400 * scale)
    mapped = quad_to_aligned(np.stack([marks[0], marks[1]]), quad, 1.0)
    np.testing.assert_allclose(mapped, [FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT], atol=1e-9)


def test_convex_hull_mask_area_and_topology():
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    polygon = np.stack([40 + 20 * np.cos(angles), 30 + 15 * np.sin(angles)], 1)
    inner = np.array([[40, 30], [45, 32], [35, 28]])  # interior points must not matter
    points = torch.from_numpy(np.concatenate([polygon, inner]))[None]
    mask = convex_hull_mask(points, 64, 80)
    assert mask.shape == (1, 1, 64, 80)
    x, y = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    perimeter = np.linalg.norm(polygon - np.roll(polygon, 1, 0), axis=1).sum()
    assert abs(mask.sum().item() - area) <= 0.5 * perimeter
    face = mask[0, 0].numpy() > 0.5
    assert scipy.ndimage.label(face)[1] == 1
    assert (scipy.ndimage.binary_fill_holes(face) == face).all()
    assert scipy.ndimage.label(~face)[1] == 1  # the hair region surrounds it in one piece
    assert face[30, 40] and not face[0, 0] and not face[30, 61]
