"""invert.percept=nvlabs-vgg16: the authors' perceptual distance and preprocessing, against transcriptions of
Chunkmogrify's _calc_loss and the NVlabs projector (tests/inversion/chunkmogrify_reference.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from semedit.errors import MissingWeightsError
from semedit.inversion.latents import latent_regulariser, regulariser_stats
from semedit.inversion.optimize import inversion_loss, percept_input
from semedit.perception.lpips import load_nvlabs_vgg16
from tests.inversion.chunkmogrify_reference import (
    ChunkmogrifyLoss,
    chunkmogrify_latent_stats,
    torch_fidelity_lpips_features,
)
from tests.inversion.helpers import small_invert_cfg


@pytest.fixture(scope="module")
def vgg16():
    return load_nvlabs_vgg16(pretrained_backbone=False).eval()


def _images(size, seed, n=1):
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=gen) * 2 - 1
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def test_distance_is_the_torch_fidelity_lpips_features_sum(vgg16):
    """(phi(x) - phi(y)).square().sum() of the vgg16.pt stand-in built from torch-fidelity's reference LPIPS
    equals NVlabsVGG16Distance on the same [0, 255] images (one pair at a time, as the projectors)."""
    for s in (0, 1):
        x, y = (_images(64, 2 * s) + 1) * 127.5, (_images(64, 2 * s + 1) + 1) * 127.5
        ref = (torch_fidelity_lpips_features(vgg16.lpips.model, x)
               - torch_fidelity_lpips_features(vgg16.lpips.model, y)).square().sum()
        torch.testing.assert_close(vgg16(x, y)[0], ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("space", ["w", "wplus"])
def test_chunkygan_objective_is_chunkmogrifys_calc_loss(G, vgg16, space):
    """perceptual term (512 px at 1024, here 64 at 128) + 10 x wstd = Chunkmogrify's _calc_loss (lines 422-457)
    for one segment with the vgg16.pt stand-in (W: w_use, line 516; W+: wplus, line 648)."""
    cfg = small_invert_cfg(space=space, n=1, percept="nvlabs-vgg16", percept_downsample=0.5, lambda_reg=10.0,
                           reg_form="wstd")
    target, synth = _images(128, 5), _images(128, 6)
    means, spread = regulariser_stats(G, space, "wstd")
    shape = (1, 1, G.w_dim) if space == "w" else (1, 1, G.num_ws, G.w_dim)
    codes = [means[0].expand(*shape) + 0.2 * torch.randn(*shape, generator=torch.Generator().manual_seed(3))]
    lp = vgg16(percept_input(synth, cfg), percept_input(target, cfg, target=True))
    assert percept_input(synth, cfg).shape[-1] == 64  # int(128 * 0.5), line 423
    ours = inversion_loss(lp, latent_regulariser(codes, means, "wstd", spread, space), cfg.lambda_reg)["total"]

    mean_latent, std_latent = chunkmogrify_latent_stats(G)
    provider = SimpleNamespace(mean_latent=mean_latent, std_latent=std_latent,
                               vgg=lambda img: torch_fidelity_lpips_features(vgg16.lpips.model, img))
    ref = ChunkmogrifyLoss(provider, target, percept_downsample=0.5, mean_latent_loss_weight=10.0)
    if space == "w":
        expected = ref._calc_loss(synth, w=codes[0][0].expand(1, G.num_ws, -1))
    else:
        expected = ref._calc_loss(synth, wplus=codes[0][0])
    torch.testing.assert_close(ours[0], expected, rtol=1e-4, atol=1e-6)


def test_nvlabs_recipe_preprocessing(vgg16):
    """projector.py lines 65-68 (target, [0, 255], area to 256 when larger) and 96-102 (synth: (x + 1) * 255/2,
    area to 256, features, square().sum())."""
    cfg = small_invert_cfg(percept="nvlabs-vgg16")
    target, synth = _images(512, 7), _images(512, 8)
    target_uint8 = ((target + 1) * 127.5).round()  # NVlabs' target is the uint8 image (line 179)
    target_ours = ((target_uint8 / 127.5) - 1)
    ours = vgg16(percept_input(synth, cfg, "nvlabs"), percept_input(target_ours, cfg, "nvlabs", target=True))

    def features(img):
        return torch_fidelity_lpips_features(vgg16.lpips.model, img)

    target_images = target_uint8.to(torch.float32)
    if target_images.shape[2] > 256:
        target_images = F.interpolate(target_images, size=(256, 256), mode='area')
    target_features = features(target_images)
    synth_images = (synth + 1) * (255/2)
    if synth_images.shape[2] > 256:
        synth_images = F.interpolate(synth_images, size=(256, 256), mode='area')
    synth_features = features(synth_images)
    dist = (target_features - synth_features).square().sum()
    torch.testing.assert_close(ours[0], dist, rtol=1e-4, atol=1e-6)


def test_lpips_percept_is_unchanged(distance):
    """percept=lpips keeps semedit's LPIPS input (lpips_input): the tiny defaults' numbers stay."""
    from semedit.inversion.optimize import lpips_input

    cfg = small_invert_cfg()
    img = _images(16, 9)
    assert torch.equal(percept_input(img, cfg), lpips_input(img, cfg.lpips_resolution))


def test_missing_vgg16_backbone_names_the_file(isolated_weights):
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        load_nvlabs_vgg16(pretrained_backbone=True)


def test_config_accepts_the_percepts():
    from semedit.errors import ConfigError
    from semedit.inversion.config import inversion_job_schema, validate

    cfg = inversion_job_schema()()
    cfg.invert.percept = "nvlabs-vgg16"
    validate(cfg)
    cfg.invert.percept = "dists"
    with pytest.raises(ConfigError, match="invert.percept"):
        validate(cfg)


def test_check_script_names_the_missing_vgg16_pt(isolated_weights):
    """experiments/chunkygan/check_nvlabs_vgg16.py compares with the real file; without it, a clear error."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / "chunkygan" / "check_nvlabs_vgg16.py"
    loader = importlib.util.spec_from_file_location("check_nvlabs_vgg16", path)
    script = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(script)
    with pytest.raises(MissingWeightsError) as info:
        script.main([])
    text = str(info.value)
    assert "vgg16.pt" in text and str(isolated_weights / "vgg16.pt") in text
    assert "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt" in text
