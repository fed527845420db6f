"""The NVlabs projector recipe (noise maps, w noise) and Pivotal Tuning on the 16 px generator."""

import copy

import torch

from semedit.inversion.projector import noise_buffers, noise_regulariser, project_nvlabs, use_noise
from semedit.inversion.pti import PivotConfig, PTIConfig, locality_regulariser, pivotal_tuning, tune_generator


def _target(G, seed=1):
    with torch.no_grad():
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
        return G(z).clamp(-1, 1)


def test_noise_regulariser_matches_hand_computation():
    v = torch.arange(16.0).reshape(4, 4)
    # 4 x 4 <= 8: one octave; means of v * roll(v) along width and height, squared.
    expected = (v * torch.roll(v, 1, dims=1)).mean() ** 2 + (v * torch.roll(v, 1, dims=0)).mean() ** 2
    torch.testing.assert_close(noise_regulariser([v]), expected)
    # 16 x 16: the 16 px octave, then the 2x2-average-pooled 8 px one (projector.py lines 107-113).
    big = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
    small = torch.nn.functional.avg_pool2d(big[None, None], 2)[0, 0]

    def octave(m):
        return (m * torch.roll(m, 1, dims=1)).mean() ** 2 + (m * torch.roll(m, 1, dims=0)).mean() ** 2

    torch.testing.assert_close(noise_regulariser([big]), octave(big) + octave(small))
    torch.testing.assert_close(noise_regulariser([big, v]), octave(big) + octave(small) + expected)


def test_project_nvlabs_optimises_noise_and_keeps_G(G, distance):
    before = {k: v.clone() for k, v in noise_buffers(G).items()}
    target = _target(G)
    cfg = PivotConfig(space="wplus", steps=12, lr=0.1)
    codes, noise, img = project_nvlabs(G, distance, target, cfg, seed=0, keep_noise=True)
    assert codes[0].shape == (1, G.num_ws, G.w_dim) and img.shape == target.shape
    # The caller's generator is untouched (the projector works on a copy, projector.py line 46).
    for k, v in noise_buffers(G).items():
        assert torch.equal(v, before[k])
    # Optimised maps are re-normalised after every step (lines 125-128).
    for v in noise[0].values():
        assert abs(float(v.mean())) < 1e-4 and abs(float(v.square().mean()) - 1) < 1e-3
    # Rendering with the returned maps reproduces the returned image.
    with use_noise(G, noise[0]), torch.no_grad():
        again = G.synthesis(codes[0], noise_mode="const")
    torch.testing.assert_close(again, img, atol=1e-5, rtol=1e-5)
    for k, v in noise_buffers(G).items():
        assert torch.equal(v, before[k])
    # It fits better than the starting point (the mean code with G's own noise).
    with torch.no_grad():
        start = G.synthesis(G.mean_ws(1), noise_mode="const")
    assert distance(img, target) < distance(start, target)


def test_project_nvlabs_result_discards_the_optimised_noise_as_run_projection(G, distance):
    """Default: the result is what NVlabs writes as proj.png, G.synthesis(w, noise_mode='const') of the caller's
    unmodified G (transcription of projector.py lines 200-201); the optimised maps are still returned."""
    from tests.inversion.chunkmogrify_reference import nvlabs_run_projection_result

    target = _target(G, seed=2)
    codes, noise, img = project_nvlabs(G, distance, target, PivotConfig(space="w", steps=6, lr=0.1), seed=0)
    projected_w_steps = codes[0].unsqueeze(1).expand(-1, G.num_ws, -1)  # project() returns W repeated (line 131)
    with torch.no_grad():
        expected = nvlabs_run_projection_result(G, projected_w_steps)
    torch.testing.assert_close(img, expected)
    with use_noise(G, noise[0]), torch.no_grad():
        with_maps = G.synthesis(projected_w_steps, noise_mode="const")
    assert not torch.allclose(with_maps, img)  # the optimised maps would have changed the picture


def test_projector_inverter_noise_option(G, distance):
    """methods.projector.noise: discard (default) renders and saves no noise maps; keep renders with them."""
    from semedit.inversion.projector import NVlabsProjector, ProjectorSettings

    assert ProjectorSettings().noise == "discard"
    target = _target(G, seed=4)
    cfg = PivotConfig(space="wplus", steps=4)
    discard = NVlabsProjector(G, distance, cfg, seed=0).invert(target, ["a"], [0])
    keep = NVlabsProjector(G, distance, cfg, seed=0, noise="keep").invert(target, ["a"], [0])
    assert discard.noise is None and keep.noise and keep.noise[0]
    torch.testing.assert_close(discard.codes[0], keep.codes[0])  # the same optimisation
    with torch.no_grad():
        const = G.synthesis(discard.codes[0][:, 0], noise_mode="const")
        with use_noise(G, keep.noise[0]):
            optimised = G.synthesis(keep.codes[0][:, 0], noise_mode="const")
    torch.testing.assert_close(discard.reconstruction, const)
    torch.testing.assert_close(keep.reconstruction, optimised)


def test_project_nvlabs_without_noise_optimisation(G, distance):
    codes, noise, _ = project_nvlabs(G, distance, _target(G), PivotConfig(space="w", steps=4), optimise_noise=False)
    assert noise == [{}] and codes[0].shape == (1, G.w_dim)


def test_tune_generator_fits_and_stops_at_threshold(G, distance):
    target = _target(G, seed=3)
    w = G.mean_ws(1)
    cfg = PTIConfig(steps=15, lr=3e-3, lpips_threshold=-1.0)
    tuned, steps = tune_generator(G, w, target, distance, cfg)
    assert steps == 15
    with torch.no_grad():
        err_before = torch.nn.functional.mse_loss(G.synthesis(w), target)
        err_after = torch.nn.functional.mse_loss(tuned.synthesis(w), target)
    assert err_after < err_before
    assert not any(p.requires_grad for p in G.parameters())  # the original stays frozen and unchanged
    _, steps = tune_generator(G, w, target, distance, PTIConfig(steps=15, lpips_threshold=1e9))
    assert steps == 0  # single_id_coach.py line 56: stop before the first step when LPIPS is low enough


def test_locality_regulariser_zero_for_unchanged_generator(G, distance):
    import numpy as np

    w = G.mean_ws(1)
    same = copy.deepcopy(G)
    cfg = PTIConfig(locality_regularization=True)
    val = locality_regulariser(G, same, w, distance, cfg, np.random.RandomState(0))
    assert float(val) == 0.0
    with torch.no_grad():
        for p in same.parameters():
            p.add_(0.05)
    assert float(locality_regulariser(G, same, w, distance, cfg, np.random.RandomState(0))) > 0


def test_pivotal_tuning_end_to_end(G, distance):
    targets = torch.cat([_target(G, 4), _target(G, 5)])
    cfg = PTIConfig(pivot_steps=4, steps=3, lpips_threshold=-1.0, locality_regularization=True)
    out = list(pivotal_tuning(G, targets, distance, distance, cfg, PivotConfig(steps=4)))
    assert [o[0] for o in out] == [0, 1]
    for _, w_pivot, _tuned, recon, steps in out:
        assert w_pivot.shape == (1, G.num_ws, G.w_dim) and steps == 3
        assert torch.equal(w_pivot[:, 0], w_pivot[:, -1])  # a W pivot, repeated over the layers
        assert recon.shape == (1, 3, G.img_resolution, G.img_resolution)
