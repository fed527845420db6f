"""The released FG 2021 model as the authors ran it: file name, seeded random noise, official preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semedit.hair import load_hair_method
from semedit.hair.fg2021.config import EncoderConfig
from semedit.hair.fg2021.encoders import build_hair_net, resize_for_encoder
from semedit.hair.fg2021.method import FG2021, gaussian_filter_like_scipy
from semedit.stylegan2 import build_tiny_generator
from semedit.stylegan2.checkpoints import semedit_to_rosinality
from semedit.weights import REGISTRY, MissingWeightsError, resolve_weights
from tests.hair.fg2021_reference import random_original_state_dict


def _released_state_dict():
    G = build_tiny_generator(resolution=32, seed=3)
    net = build_hair_net(EncoderConfig(num_layers=10, channels=[8, 16, 32, 64], feature_dim=32, pool_size=2),
                         num_ws=G.num_ws, w_dim=G.w_dim)
    sd = random_original_state_dict({f"encoder.{k}": list(v.shape) for k, v in net.state_dict().items()}, seed=5)
    sd.update({f"decoder.{k}": v for k, v in semedit_to_rosinality(G).items()})
    return sd


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    path = folder / "best_model.pt"  # the name inference.py loads (line 74)
    torch.save(_released_state_dict(), path)
    model = load_hair_method(path).model
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        images = model.generator(torch.randn(2, model.generator.z_dim, generator=g), noise_mode="const").clamp(-1, 1)
    return folder, path, model, images


def test_registry_uses_the_real_file_name(released, monkeypatch, tmp_path):
    folder, path, _, _ = released
    entry = REGISTRY["hairstyle-fg2021"]
    assert entry.filename == "best_model.pt"
    assert "2103.16449" not in entry.source + entry.url + entry.purpose
    assert "10.1109/FG52635.2021.9667038" in entry.source and "cmp.felk.cvut.cz/hairstyles" in entry.source
    assert "github.com/subrtade662/hairstyle_transfer" in entry.source
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(folder))
    assert resolve_weights("hairstyle-fg2021") == path
    # Absent, the registry name says which file to fetch from where.
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"best_model\.pt.*drive\.google\.com"):
        resolve_weights("hairstyle-fg2021")
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(folder))
    assert load_hair_method("hairstyle-fg2021").model.source == "fg2021"


def test_released_model_renders_with_seeded_random_noise(released):
    _, _, model, images = released
    assert model.noise_mode == "random"  # psp.py lines 34, 50: randomize_noise=True
    tool = FG2021(model, regions="ellipse")
    a = tool.transfer(images[:1], images[1:])
    torch.testing.assert_close(a, tool.transfer(images[:1], images[1:]))  # same seed, same image
    b = FG2021(model, regions="ellipse", noise_seed=1).transfer(images[:1], images[1:])
    assert (a - b).abs().max() > 1e-4  # the noise really is random across seeds
    const = FG2021(model, regions="ellipse", noise_mode="const").transfer(images[:1], images[1:])
    face, hair = tool.embed_face(images[:1]), tool.embed_hair(images[1:])
    ref = model.generator.synthesis(model.net.fuse(face, hair), noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(const, ref)
    with pytest.raises(ValueError, match="noise_mode"):
        FG2021(model, regions="ellipse", noise_mode="fresh")


@pytest.mark.parametrize("sigma", [0.3, 1.0, 5.0, 12.0])
def test_gaussian_filter_matches_scipy(sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    mask = (torch.rand(2, 1, 20, 17, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    ours = gaussian_filter_like_scipy(mask, sigma)
    for i in range(2):
        np.testing.assert_allclose(ours[i, 0].numpy(), ndimage.gaussian_filter(mask[i, 0].numpy(), sigma), atol=1e-12)


def test_official_preprocessing_pastes_an_upscaled_small_face(released):
    ndimage = pytest.importorskip("scipy.ndimage")
    _, _, model, images = released
    tool = FG2021(model, regions="ellipse", noise_mode="const")
    size = 16  # the official 256 px, scaled to the 32 px tiny generator
    out = tool.transfer_official(images[:1], images[1:], size=size)
    assert out.shape == (1, 3, 32, 32)
    # Reference: inputs at 16 px, hard masks at 16 px, encoders, full-resolution output.
    face16 = F.interpolate(images[:1], size=(size, size), mode="area")
    hair16 = F.interpolate(images[1:], size=(size, size), mode="area")
    m_face = (tool.masks(face16)["face"] > 0.5).float()
    m_hair = 1 - (tool.masks(hair16)["face"] > 0.5).float()
    assert set(m_face.unique().tolist()) <= {0.0, 1.0}
    with torch.no_grad():
        ws = model.net(resize_for_encoder(face16 * m_face, 256), resize_for_encoder(hair16 * m_hair, 256))
        rendered = model.generator.synthesis(ws, noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(out, rendered)
    # Alpha blending: scipy's Gaussian (sigma 5 px at 256 -> 5 * 16 / 256 here) at 16 px, upscaled.
    blended = tool.transfer_official(images[:1], images[1:], alpha_blend=True, size=size)
    alpha = torch.from_numpy(ndimage.gaussian_filter(m_face[0, 0].double().numpy(), 5.0 * size / 256)).float()
    up = lambda x: F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)  # noqa: E731
    alpha, original = up(alpha[None, None]), up(face16)
    torch.testing.assert_close(blended, alpha * original + (1 - alpha) * rendered, atol=1e-5, rtol=1e-5)
    # Where alpha is 1 the official result is the upscaled 16 px face; semedit's full-resolution blend
    # keeps the original 32 px face there instead.
    inner = (alpha > 0.999).expand_as(blended)
    assert inner.any()
    torch.testing.assert_close(blended[inner], original[inner], atol=2e-3, rtol=0)
    ours = tool.transfer(images[:1], images[1:], alpha_blend=True, feather=0)
    inner_semedit = (tool.masks(images[:1])["face"] > 0.999).expand_as(ours)
    torch.testing.assert_close(ours[inner_semedit], images[:1][inner_semedit])
    assert (original[inner] - images[:1][inner]).abs().max() > 1e-3  # the two pastes differ
    with pytest.raises(ValueError, match="preprocess"):
        tool.transfer(images[:1], images[1:], preprocess="fast")
