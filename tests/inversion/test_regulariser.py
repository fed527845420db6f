"""The regulariser forms: the talk's literal sum, and Chunkmogrify's mean-latent term per mode (tested against a
transcription of its _calc_loss, tests/inversion/chunkmogrify_reference.py)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from semedit.inversion.latents import latent_mean, latent_regulariser, latent_spread, regulariser_stats
from semedit.inversion.optimize import inversion_loss
from tests.inversion.chunkmogrify_reference import (
    ChunkmogrifyLoss,
    chunkmogrify_latent_stats,
    chunkmogrify_w_use,
)


def test_lambda_one_is_the_talks_formula(G):
    """lambda_reg = 1 with reg_form "sum": the loss is LPIPS + sum_i ||z_i - z_mu||^2, summed over all W+ entries."""
    means = latent_mean(G, "wplus")
    n, offset = 3, 0.5
    codes = [means[0].expand(2, n, -1, -1) + offset]  # every entry of every chunk off by 0.5
    entries = G.num_ws * G.w_dim
    reg = latent_regulariser(codes, means, "sum")
    torch.testing.assert_close(reg, torch.full((2,), n * entries * offset ** 2))
    lpips = torch.tensor([0.3, 0.4])
    total = inversion_loss(lpips, reg, lambda_reg=1.0)["total"]
    torch.testing.assert_close(total, lpips + n * entries * offset ** 2)
    # One chunk moved, the others at the mean: only that chunk's squared distance counts.
    one = means[0].expand(1, n, -1, -1).clone()
    one[0, 1, 2, 5] += 3.0
    torch.testing.assert_close(latent_regulariser([one], means, "sum"), torch.tensor([9.0]))


def test_latent_spread_is_the_projector_statistic(G):
    """w_std = sqrt(sum ||w - w_avg||^2 / N) over 10k samples from RandomState(123) (projector.py lines 50-54)."""
    z = np.random.RandomState(123).randn(10_000, G.z_dim)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z).float())[:, :1, :].numpy().astype(np.float32)
    w_avg = w.mean(axis=0, keepdims=True)
    expected = (np.sum((w - w_avg) ** 2) / 10_000) ** 0.5
    (spread,) = latent_spread(G, "wplus")
    assert abs(float(spread) - expected) < 1e-4 * expected
    assert latent_spread(G, "w")[0].item() == spread.item()
    assert len(latent_spread(G, "s")) == len(G.synthesis.style_dims)


def _chunkmogrify(G, target):
    mean_latent, std_latent = chunkmogrify_latent_stats(G)
    provider = SimpleNamespace(mean_latent=mean_latent, std_latent=std_latent,
                               vgg=lambda img: img.flatten(1))  # any features: x == target gives distance 0
    return ChunkmogrifyLoss(provider, target, percept_downsample=0.5, mean_latent_loss_weight=10.0)


def test_wstd_statistics_are_chunkmogrifys(G):
    """w_avg and w_std of the wstd form: stylegan_project.py lines 97-105 (the NVlabs projector's lines 50-54)."""
    mean_latent, std_latent = chunkmogrify_latent_stats(G)
    means, spread = regulariser_stats(G, "w", "wstd")
    torch.testing.assert_close(means[0].reshape(-1), torch.from_numpy(mean_latent).reshape(-1), atol=1e-5, rtol=1e-5)
    assert abs(float(spread[0]) - float(std_latent)) < 1e-4 * float(std_latent)
    wp_means, wp_spread = regulariser_stats(G, "wplus", "wstd")
    assert wp_means[0].shape == (1, 1, 1, G.w_dim) and wp_spread[0].item() == spread[0].item()
    assert regulariser_stats(G, "s", "wstd")[1] is None  # no S statistics: Chunkmogrify has no S term
    m, s = regulariser_stats(G, "wplus", "sum")  # the other forms: G's w_avg, no spread
    assert s is None and torch.equal(m[0], latent_mean(G, "wplus")[0])


@pytest.mark.parametrize("n", [1, 3])
def test_wstd_in_w_is_chunkmogrifys_w_term_per_code(G, n):
    """W: 10 * mean(((w_use - w_avg) / w_std)^2) with w_use the code repeated over num_ws (lines 447-451,
    496-499, 516), one term per segment (each segment has its own loss, lines 489-519), summed over the chunks."""
    means, spread = regulariser_stats(G, "w", "wstd")
    gen = torch.Generator().manual_seed(n)
    codes = [means[0].expand(2, n, -1) + torch.randn(2, n, G.w_dim, generator=gen) * float(spread[0]) * 0.1]
    ours = 10.0 * latent_regulariser(codes, means, "wstd", spread, "w")
    target = torch.zeros(1, 3, 16, 16)
    for i in range(2):
        ref = _chunkmogrify(G, target)
        expected = sum(float(ref._calc_loss(target, chunkmogrify_w_use(codes[0][i, k][None, None], G.num_ws)))
                       for k in range(n))
        assert float(ours[i]) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("n", [1, 4])
def test_wstd_in_wplus_is_chunkmogrifys_wplus_term(G, n):
    """W+: 10 * mean over all segments, layers and entries / wplus.shape[1] (lines 453-457, commit f89bf12),
    called once with every segment's code [n, num_ws, 512] (lines 624, 648): 1 / (n num_ws) of the W sum."""
    means, spread = regulariser_stats(G, "wplus", "wstd")
    gen = torch.Generator().manual_seed(10 + n)
    codes = [means[0].expand(2, n, G.num_ws, -1) + torch.randn(2, n, G.num_ws, G.w_dim, generator=gen) * 0.3]
    ours = 10.0 * latent_regulariser(codes, means, "wstd", spread, "wplus")
    target = torch.zeros(1, 3, 16, 16)
    for i in range(2):
        expected = float(_chunkmogrify(G, target)._calc_loss(target, wplus=codes[0][i]))
        assert float(ours[i]) == pytest.approx(expected, rel=1e-4)
    # The factor against the W form of the same per-layer deviations: n x num_ws (72 at n = 4, 18 layers).
    per_code = ((codes[0] - means[0]) / spread[0]).pow(2).flatten(2).mean(dim=2).sum(dim=1)
    torch.testing.assert_close(ours * n * G.num_ws, 10.0 * per_code)


def test_wstd_in_s_is_zero_as_chunkmogrifys_s_projector(G):
    """S: _calc_loss(res) without a latent (line 724): no mean-latent term at all."""
    styles = [s.detach().unsqueeze(1) + 1.0 for s in G.synthesis.ws_to_styles(G.mean_ws(2))]
    means = latent_mean(G, "s")
    assert torch.equal(latent_regulariser(styles, means, "wstd", None, "s"), torch.zeros(2))
    target = torch.zeros(1, 3, 16, 16)
    assert float(_chunkmogrify(G, target)._calc_loss(target)) == 0.0


def test_forms_differ_by_their_documented_factor(G):
    means = latent_mean(G, "wplus")
    codes = [means[0] + torch.randn(1, 2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(0))]
    total = latent_regulariser(codes, means, "sum")
    entries = G.num_ws * G.w_dim
    torch.testing.assert_close(latent_regulariser(codes, means, "mean"), total / entries)
    # wstd about the same centre: sum / (entries w_std^2) / (n num_ws)
    spread = latent_spread(G, "wplus")
    torch.testing.assert_close(latent_regulariser(codes, means, "wstd", spread),
                               total / entries / spread[0] ** 2 / (2 * G.num_ws))


def test_invert_batch_reports_the_configured_form(G, distance):
    from semedit.inversion.optimize import invert_batch
    from tests.inversion.helpers import small_invert_cfg

    target = torch.zeros(1, 3, G.img_resolution, G.img_resolution)
    cfg = small_invert_cfg(steps=5, n=2, lambda_reg=10.0, reg_form="wstd")
    out = invert_batch(G, distance, target, torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0)), cfg)
    means, spread = regulariser_stats(G, "wplus", "wstd")
    expected = latent_regulariser(out.codes, means, "wstd", spread, "wplus")
    torch.testing.assert_close(out.losses["reg"], expected)
    torch.testing.assert_close(out.losses["total"], out.losses["lpips"] + 10.0 * expected)


def test_config_rejects_unknown_form():
    from semedit.errors import ConfigError
    from semedit.inversion.config import inversion_job_schema, validate

    cfg = inversion_job_schema()()
    cfg.invert.reg_form = "l1"
    with pytest.raises(ConfigError, match="invert.reg_form"):
        validate(cfg)
    cfg = inversion_job_schema()()
    cfg.eval.reg_form = "mean-ish"
    with pytest.raises(ConfigError, match="eval.reg_form"):
        validate(cfg)
