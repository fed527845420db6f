import pytest
import torch

from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.latents import init_codes, latent_mean, latent_regulariser, render_chunks
from semedit.inversion.masks import (
    DEFAULT_PARSING_GROUPS,
    PARSING_CLASSES,
    kmeans_mask_logits,
    labels_mask_logits,
    parse_groups,
    uniform_mask_logits,
)


def test_composite_equals_direct_sum():
    gen = torch.Generator().manual_seed(0)
    chunks = torch.randn(2, 3, 3, 8, 8, generator=gen)
    masks = masks_from_logits(torch.randn(2, 3, 4, 4, generator=gen), 8)
    expected = torch.zeros(2, 3, 8, 8)
    for b in range(2):
        for i in range(3):
            expected[b] += chunks[b, i] * masks[b, i]
    torch.testing.assert_close(composite(chunks, masks), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_masks_sum_to_one_and_are_smooth(n):
    logits = torch.randn(3, n, 4, 4, generator=torch.Generator().manual_seed(n)) * 2
    masks = masks_from_logits(logits, 32)
    assert masks.shape == (3, n, 1, 32, 32)
    assert masks.min() >= 0 and masks.max() <= 1
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(3, 1, 32, 32), rtol=0, atol=1e-6)
    # Smooth: upsampled 8x from 4x4 logits, neighbouring pixels change far less than neighbouring cells.
    coarse = torch.softmax(logits, dim=1)
    coarse_jump = max((coarse[..., 1:] - coarse[..., :-1]).abs().max(), (coarse[..., 1:, :] - coarse[..., :-1, :]).abs().max())
    fine_jump = max((masks[..., 1:] - masks[..., :-1]).abs().max(), (masks[..., 1:, :] - masks[..., :-1, :]).abs().max())
    assert fine_jump <= coarse_jump / 3 + 1e-6


def test_composite_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        composite(torch.zeros(1, 2, 3, 8, 8), torch.zeros(1, 3, 1, 8, 8))


def test_kmeans_init_separates_colour_regions():
    img = -torch.ones(1, 3, 16, 16)
    img[:, 0, :, 8:] = 1  # right half red
    logits = kmeans_mask_logits(img, 2, 8, sharpness=4.0, position_weight=0.1, iters=10, seeds=[0])
    labels = logits[0].argmax(dim=0)
    assert (labels[:, :4] == labels[0, 0]).all() and (labels[:, 4:] == labels[0, 7]).all()
    assert labels[0, 0] != labels[0, 7]
    # Same seed -> same initialisation.
    again = kmeans_mask_logits(img, 2, 8, sharpness=4.0, position_weight=0.1, iters=10, seeds=[0])
    assert torch.equal(logits, again)


def test_uniform_init_is_near_equal_and_seeded():
    a = uniform_mask_logits(2, 3, 4, 0.1, seeds=[1, 2])
    b = uniform_mask_logits(2, 3, 4, 0.1, seeds=[1, 2])
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    masks = masks_from_logits(a, 8)
    assert (masks - 1 / 3).abs().max() < 0.1


def test_parsing_groups_cover_every_class_once():
    for n in DEFAULT_PARSING_GROUPS:
        groups = parse_groups(None, n)
        flat = sorted(i for g in groups for i in g)
        assert flat == list(range(len(PARSING_CLASSES)))
    with pytest.raises(ValueError, match="not in any group"):
        parse_groups(["skin", "hair"], 2)
    with pytest.raises(ValueError, match="unknown parsing class"):
        parse_groups(["skin,foo", "hair"], 2)
    with pytest.raises(ValueError, match="no default parsing groups"):
        parse_groups(None, 7)


def test_labels_init_assigns_pixels_to_their_group():
    labels = torch.full((1, 8, 8), PARSING_CLASSES.index("skin"), dtype=torch.long)
    labels[:, :, 4:] = PARSING_CLASSES.index("hair")
    logits = labels_mask_logits(labels, parse_groups(None, 2), 4, sharpness=4.0)
    assert (logits[0, 1, :, 2:] == 4).all() and (logits[0, 0, :, :2] == 4).all()


@pytest.mark.parametrize("space", ["w", "wplus", "s"])
def test_codes_start_at_mean_and_regulariser_formula(G, space):
    codes = init_codes(G, space, 2, 3)
    means = latent_mean(G, space)
    assert torch.equal(latent_regulariser(codes, means, "sum"), torch.zeros(2))
    with torch.no_grad():
        for c in codes:
            c.add_(0.5)
    dim = sum(c[0, 0].numel() for c in codes)
    torch.testing.assert_close(latent_regulariser(codes, means, "sum"), torch.full((2,), 3 * dim * 0.25))
    torch.testing.assert_close(latent_regulariser(codes, means, "mean"), torch.full((2,), 3 * 0.25))


@pytest.mark.parametrize("space", ["w", "wplus", "s"])
def test_render_chunks_is_one_batched_call_matching_per_chunk_renders(G, space):
    codes = [c.detach() + 0.3 * torch.randn_like(c) for c in init_codes(G, space, 2, 3)]
    calls = []
    handle = G.synthesis.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        out = render_chunks(G, space, codes)
    finally:
        handle.remove()
    assert out.shape == (2, 3, 3, 16, 16)
    if space != "s":
        assert len(calls) == 1
    single = render_chunks(G, space, [c[1:2, 2:3] for c in codes])
    torch.testing.assert_close(out[1, 2], single[0, 0], rtol=1e-4, atol=1e-5)
