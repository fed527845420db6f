"""The two regulariser forms: the talk's literal sum and Chunkmogrify's w_std-normalised mean."""

import numpy as np
import torch

from semedit.inversion.latents import latent_mean, latent_regulariser, latent_spread
from semedit.inversion.optimize import inversion_loss


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


def test_wstd_form_is_chunkmogrifys_normalised_mean(G):
    """reg_form "wstd": mean over the code's entries of ((z - z_mu) / w_std)^2, per chunk, summed over chunks."""
    means = latent_mean(G, "w")
    spread = latent_spread(G, "w")
    w_std = float(spread[0])
    codes = [means[0].expand(1, 2, -1) + torch.tensor([[[2.0 * w_std]], [[1.0 * w_std]]]).reshape(1, 2, 1)]
    reg = latent_regulariser(codes, means, "wstd", spread)
    torch.testing.assert_close(reg, torch.tensor([4.0 + 1.0]))
    # In W+ the mean runs over num_ws x w_dim entries, as Chunkmogrify's W+-repeated w (line 516).
    wp_means = latent_mean(G, "wplus")
    wp = [wp_means[0].clone().expand(1, 1, -1, -1).clone()]
    wp[0][0, 0, 0] += 3.0 * w_std  # one layer off by 3 w_std in every entry
    torch.testing.assert_close(latent_regulariser(wp, wp_means, "wstd", spread), torch.tensor([9.0 / G.num_ws]))


def test_forms_differ_by_their_documented_factor(G):
    means = latent_mean(G, "wplus")
    spread = latent_spread(G, "wplus")
    codes = [means[0] + torch.randn(1, 2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(0))]
    total = latent_regulariser(codes, means, "sum")
    entries = G.num_ws * G.w_dim
    torch.testing.assert_close(latent_regulariser(codes, means, "mean"), total / entries)
    torch.testing.assert_close(latent_regulariser(codes, means, "wstd", spread), total / entries / spread[0] ** 2)


def test_invert_batch_reports_the_configured_form(G, distance):
    from semedit.inversion.optimize import invert_batch
    from tests.inversion.helpers import small_invert_cfg

    target = torch.zeros(1, 3, G.img_resolution, G.img_resolution)
    cfg = small_invert_cfg(steps=5, n=2, lambda_reg=10.0, reg_form="wstd")
    out = invert_batch(G, distance, target, torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0)), cfg)
    means, spread = latent_mean(G, "wplus"), latent_spread(G, "wplus")
    expected = latent_regulariser(out.codes, means, "wstd", spread)
    torch.testing.assert_close(out.losses["reg"], expected)
    torch.testing.assert_close(out.losses["total"], out.losses["lpips"] + 10.0 * expected)


def test_config_rejects_unknown_form():
    import pytest

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
