"""insightface's norm_crop (5-point similarity + warpAffine) in torch, and the ArcFace encoder behind it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semedit.perception.face_align import (
    ARCFACE_DST,
    NormCropIdentityEncoder,
    estimate_norm,
    ffhq_template_keypoints,
    norm_crop,
    umeyama,
    warp_affine,
)
from semedit.perception.landmarks import FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT


def _similarity(scale, angle, tx, ty):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1.0]])


def test_umeyama_recovers_a_planted_similarity_and_matches_skimage():
    rng = np.random.RandomState(0)
    src = rng.rand(5, 2) * 200
    T = _similarity(0.7, 0.3, 12.0, -5.0)
    dst = src @ T[:2, :2].T + T[:2, 2]
    np.testing.assert_allclose(umeyama(src, dst), T, atol=1e-9)
    noisy = dst + rng.randn(5, 2)
    transform = pytest.importorskip("skimage.transform")
    # What insightface's estimate_norm calls (face_align.py line 23); scikit-image >= 0.26 spells it from_estimate.
    if hasattr(transform.SimilarityTransform, "from_estimate"):
        ref = transform.SimilarityTransform.from_estimate(src, noisy)
    else:
        ref = transform.SimilarityTransform()
        ref.estimate(src, noisy)
    np.testing.assert_allclose(umeyama(src, noisy), ref.params, atol=1e-9)


def test_estimate_norm_maps_keypoints_to_the_arcface_template():
    kps = ARCFACE_DST * 2.0 + np.array([30.0, 10.0])  # the template, scaled and shifted in a bigger image
    M = estimate_norm(kps)
    np.testing.assert_allclose(kps @ M[:, :2].T + M[:, 2], ARCFACE_DST, atol=1e-4)
    with pytest.raises(ValueError, match="5 keypoints"):
        estimate_norm(np.zeros((4, 2)))


def test_warp_follows_opencv_pixel_centres_and_black_border():
    crop = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 2 - 1
    canvas = -torch.ones(1, 3, 200, 200)
    canvas[:, :, 40:152, 30:142] = crop  # crop pixel (x, y) at canvas (x + 30, y + 40)
    out = norm_crop(canvas, torch.from_numpy(ARCFACE_DST + np.array([30.0, 40.0], dtype=np.float32))[None])
    torch.testing.assert_close(out, crop, atol=1e-4, rtol=0)
    # Shifted half outside: the missing part is black (-1), as warpAffine's borderValue=0 on uint8.
    out = norm_crop(canvas, torch.from_numpy(ARCFACE_DST + np.array([-26.0, 40.0], dtype=np.float32))[None])
    torch.testing.assert_close(out[..., :55], -torch.ones_like(out[..., :55]), atol=1e-4, rtol=0)
    # scale 2 down: the warp samples between pixel centres (bilinear), like cv2 INTER_LINEAR
    img = torch.arange(16.0).reshape(1, 1, 4, 4)
    half = warp_affine(img, torch.tensor([[[0.5, 0, -0.25], [0, 0.5, -0.25]]]), 2)
    torch.testing.assert_close(half, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def test_ffhq_template_and_encoder_on_tiny_images():
    kps = ffhq_template_keypoints(256)
    eyes = np.array([FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT]) * 256 - 0.5
    assert np.abs(kps[:2] - eyes).max() < 4  # least squares over eyes + mouth: within a few pixels
    enc = NormCropIdentityEncoder("random-irse:10", keypoints="ffhq")
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    emb = enc(images)
    assert emb.shape == (3, 512)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    crops = norm_crop(images, np.broadcast_to(ffhq_template_keypoints(64), (3, 5, 2)))
    torch.testing.assert_close(emb, torch.nn.functional.normalize(enc.encoder(crops), dim=1))
    with pytest.raises(ValueError, match="keypoints"):
        NormCropIdentityEncoder("random-irse:10", keypoints="dlib")
