import math

import pytest
import torch

from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.latents import flatten_codes, latent_mean, render_chunks
from semedit.inversion.optimize import invert_batch, projector_lr, snapshot_steps
from semedit.inversion.projector import project_single_code
from tests.inversion.helpers import small_invert_cfg


def _target_from_known_codes(G, num_images=2, n=2, seed=0):
    """A composite the generator can reproduce exactly: known W+ codes blended by known masks."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num_images * n, G.z_dim, generator=gen)
    with torch.no_grad():
        ws = G.mapping(z).reshape(num_images, n, G.num_ws, G.w_dim)
        logits = torch.randn(num_images, n, 4, 4, generator=gen) * 2
        target = composite(render_chunks(G, "wplus", [ws]), masks_from_logits(logits, G.img_resolution))
    return target, ws, logits


def test_projector_lr_matches_nvlabs_schedule():
    # Reference values from NVlabs projector.py's formula with rampup 0.05, rampdown 0.25, 1000 steps.
    assert projector_lr(0, 1000, 0.1, 0.05, 0.25) == 0.0
    assert math.isclose(projector_lr(25, 1000, 0.1, 0.05, 0.25), 0.05)
    assert math.isclose(projector_lr(500, 1000, 0.1, 0.05, 0.25), 0.1)
    t = 0.9
    expected = 0.1 * (0.5 - 0.5 * math.cos(min(1.0, (1 - t) / 0.25) * math.pi))
    assert math.isclose(projector_lr(900, 1000, 0.1, 0.05, 0.25), expected)
    assert snapshot_steps(10, 3) == [0, 5, 10]


@pytest.mark.parametrize("space", ["w", "wplus", "s"])
def test_one_chunk_with_frozen_masks_is_single_code_projection(G, distance, space):
    target, _, _ = _target_from_known_codes(G, num_images=2, n=1, seed=1)
    cfg = small_invert_cfg(space=space, n=1, steps=12, freeze_masks=True, lambda_reg=0.01)
    chunky = invert_batch(G, distance, target, torch.zeros(2, 1, 4, 4), cfg)
    codes, images = project_single_code(G, distance, target, cfg)
    for c_chunky, c_single in zip(chunky.codes, codes, strict=True):
        torch.testing.assert_close(c_chunky[:, 0], c_single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunky.reconstruction, images, rtol=1e-5, atol=1e-6)
    assert torch.equal(chunky.masks, torch.ones_like(chunky.masks))
    # The codes moved: the test compares two optimisations, not two initial states.
    assert flatten_codes(chunky.codes).sub(flatten_codes(latent_mean(G, space))).abs().max() > 1e-3


def test_loss_decreases_and_regulariser_pulls_codes_toward_mean(G, distance):
    target, _, _ = _target_from_known_codes(G, seed=2)
    logits0 = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(3)) * 0.1
    free = invert_batch(G, distance, target, logits0, small_invert_cfg(steps=40, lr=0.05))
    assert (free.losses["total"] < 0.5 * free.history["total"][0]).all()
    assert free.history["total"][-1].sum() < free.history["total"][len(free.history["total"]) // 2].sum()

    reg = invert_batch(G, distance, target, logits0, small_invert_cfg(steps=40, lr=0.05, lambda_reg=2.0))
    mean = flatten_codes(latent_mean(G, "wplus"))
    dist_free = (flatten_codes(free.codes) - mean).norm(dim=2).mean()
    dist_reg = (flatten_codes(reg.codes) - mean).norm(dim=2).mean()
    assert dist_reg < 0.7 * dist_free
    assert (reg.losses["reg"] < free.losses["reg"]).all()


def test_masks_are_optimised_unless_frozen(G, distance):
    target, _, _ = _target_from_known_codes(G, seed=4)
    # Not all-zero: equal masks and equal initial codes would be a symmetric point where the mask
    # gradient vanishes (real initialisations, k-means or parsing, are never symmetric).
    logits0 = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(7))
    moved = invert_batch(G, distance, target, logits0, small_invert_cfg(steps=10))
    frozen = invert_batch(G, distance, target, logits0, small_invert_cfg(steps=10, freeze_masks=True))
    assert not torch.equal(moved.mask_logits, logits0)
    assert torch.equal(frozen.mask_logits, logits0)


def test_images_in_a_batch_do_not_influence_each_other(G, distance):
    target, _, _ = _target_from_known_codes(G, num_images=2, seed=5)
    logits0 = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(6))
    cfg = small_invert_cfg(steps=8)
    both = invert_batch(G, distance, target, logits0, cfg)
    alone = invert_batch(G, distance, target[1:], logits0[1:], cfg)
    torch.testing.assert_close(both.codes[0][1:], alone.codes[0], rtol=0, atol=2e-5)
    torch.testing.assert_close(both.mask_logits[1:], alone.mask_logits, rtol=0, atol=2e-5)
    assert both.snapshots.shape == (2, 3, 3, 16, 16)
