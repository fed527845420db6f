"""Generator shapes, determinism, gradients, latent spaces and the reference ops."""

import pytest
import torch
import torch.nn.functional as F

from semedit.stylegan2 import Generator, GeneratorConfig, build_tiny_generator
from semedit.stylegan2.ops import setup_filter, upfirdn2d


@pytest.mark.parametrize("resolution", [8, 16, 32])
@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_shapes_for_every_resolution_and_architecture(resolution, architecture):
    G = build_tiny_generator(resolution=resolution, architecture=architecture, z_dim=16, w_dim=16, channel_max=16)
    log2 = resolution.bit_length() - 1
    assert G.num_ws == 2 * log2 - 2
    ws = G.mapping(torch.randn(3, 16))
    assert ws.shape == (3, G.num_ws, 16)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, resolution, resolution)
    assert torch.isfinite(img).all()
    styles = G.synthesis.ws_to_styles(ws)
    assert [s.shape[1] for s in styles] == G.synthesis.style_dims
    assert len(styles) == G.synthesis.num_style_layers


def test_both_channel_layouts():
    # rosinality channel_multiplier=2 at 1024 and NVlabs channel_base=32768 give the same layout.
    nv = GeneratorConfig.channels_from_base(1024, 32768, 512)
    assert nv == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    # config E-style narrower layout (channel_multiplier=1 / channel_base=16384) builds too.
    cfg = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=64, mapping_layers=1,
                          channels=GeneratorConfig.channels_from_base(64, 16384 // 64, 16))
    with torch.device("meta"):
        G = Generator(cfg)
    assert G.synthesis.b64.conv1.weight.shape == (4, 4, 3, 3)


def test_invalid_resolution_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(img_resolution=48, channels={})
    G = build_tiny_generator(resolution=16, z_dim=8, w_dim=8, channel_max=8)
    with pytest.raises(ValueError, match=r"z has shape \[2, 9\], expected \[\*, 8\]"):
        G.mapping(torch.randn(2, 9))
    with pytest.raises(ValueError, match="ws has shape"):
        G.synthesis(torch.randn(2, G.num_ws + 1, 8))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(G.mapping(torch.randn(1, 8)), noise_mode="fancy")


def test_deterministic_given_seed_and_const_noise(tiny_generator):
    G = tiny_generator
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(1))
    a = G(z, noise_mode="const")
    b = G(z, noise_mode="const")
    assert torch.equal(a, b)
    # Batch composition does not change an image.
    assert torch.allclose(G(z[2:3]), a[2:3], atol=1e-5)
    # The same init seed builds the same generator.
    assert torch.equal(build_tiny_generator(resolution=32, seed=0)(z), a)
    assert not torch.allclose(build_tiny_generator(resolution=32, seed=1)(z), a)


def test_noise_modes(tiny_generator):
    G = tiny_generator
    ws = G.mapping(torch.randn(2, G.z_dim))
    r1 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(0))
    r2 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(0))
    r3 = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(1))
    none = G.synthesis(ws, noise_mode="none")
    const = G.synthesis(ws, noise_mode="const")
    assert torch.equal(r1, r2) and not torch.allclose(r1, r3)
    assert not torch.allclose(none, const)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
    assert torch.allclose(G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise_mode="const"))


def test_truncation_is_lerp_towards_w_avg(tiny_generator):
    G = tiny_generator
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z)
    wt = G.mapping(z, truncation_psi=0.7)
    assert torch.allclose(wt, G.w_avg + 0.7 * (ws - G.w_avg), atol=1e-6)
    cut = G.mapping(z, truncation_psi=0.7, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], wt[:, :2]) and torch.allclose(cut[:, 2:], ws[:, 2:])


def test_w_wplus_and_s_paths_agree(tiny_generator):
    G = tiny_generator
    z = torch.randn(2, G.z_dim)
    ws = G.mapping(z)
    assert torch.equal(ws[:, 0:1].expand_as(ws), ws)  # W is W+ with equal rows
    img_w = G(z)
    img_wplus = G.synthesis(ws)
    img_s = G.synthesis.synthesize_from_styles(G.synthesis.ws_to_styles(ws))
    assert torch.allclose(img_w, img_wplus) and torch.allclose(img_wplus, img_s)
    # A W+ edit on one row changes exactly the styles fed by that row.
    ws2 = ws.clone()
    ws2[:, 3] += 1.0
    s1, s2 = G.synthesis.ws_to_styles(ws), G.synthesis.ws_to_styles(ws2)
    changed = [i for i, (a, b) in enumerate(zip(s1, s2)) if not torch.equal(a, b)]
    assert changed == [i for i, w in enumerate(G.synthesis.style_ws_index) if w == 3]
    assert len(G.mean_styles()) == G.synthesis.num_style_layers


def test_gradients_reach_ws_and_styles(tiny_generator):
    G = tiny_generator
    ws = G.mapping(torch.randn(2, G.z_dim)).detach().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0 and torch.isfinite(ws.grad).all()
    styles = [s.detach().requires_grad_(True) for s in G.synthesis.ws_to_styles(ws.detach())]
    G.synthesis.synthesize_from_styles(styles).square().mean().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in styles)
    # The frozen generator itself accumulates no gradients.
    assert all(p.grad is None for p in G.parameters())


def test_separable_upfirdn2d_matches_full_2d_filter():
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    f = setup_filter().double()
    for up, down, pad in [(1, 1, (1, 2, 1, 2)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (2, 1, (-1, 0, 0, 1))]:
        got = upfirdn2d(x, f, up=up, down=down, padding=pad, gain=3.0)
        # Reference: zero insertion, pad/crop, full 2-D (flipped) filter, decimation.
        n, c, h, w = x.shape
        y = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
        y = F.pad(y, [max(pad[0], 0), max(pad[1], 0), max(pad[2], 0), max(pad[3], 0)])
        y = y[:, :, max(-pad[2], 0): y.shape[2] - max(-pad[3], 0), max(-pad[0], 0): y.shape[3] - max(-pad[1], 0)]
        k = (f * 3.0).flip([0, 1])
        y = F.conv2d(y, k.expand(c, 1, 4, 4), groups=c)[:, :, ::down, ::down]
        assert got.shape == y.shape and torch.allclose(got, y, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision,tol", [("bf16", 0.1), ("fp16", 0.05)])
def test_reduced_precision_on_gpu_stays_close(precision, tol):
    G = build_tiny_generator(resolution=64, channel_max=64).cuda()
    z = torch.randn(4, G.z_dim, device="cuda")
    ref = G(z)
    G.set_reduced_precision(precision, num_res=2)
    out = G(z)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() / ref.abs().max() < tol


def test_cached_weight_derivatives_follow_weight_changes():
    G = build_tiny_generator(resolution=16, channel_max=16, seed=0)
    other = build_tiny_generator(resolution=16, channel_max=16, seed=1)
    z = torch.randn(2, G.z_dim)
    G(z)  # fills the caches of weight-derived tensors
    G.load_state_dict(other.state_dict())  # in-place copies bump the parameters' versions
    assert torch.equal(G(z), other(z))
    with torch.no_grad():
        G.synthesis.b8.conv0.weight.mul_(2)
        G.synthesis.b8.conv0.noise_strength.add_(1)
    fresh = build_tiny_generator(resolution=16, channel_max=16, seed=1)
    fresh.load_state_dict(G.state_dict())
    assert torch.equal(G(z), fresh(z))


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 1), (1, 2, 5, 5, 2, 1), (1, 4, 2, 3)])
def test_cpu_polyphase_upsample_equals_zero_insertion(taps):
    """upsample2d's polyphase path (few channels on a CPU) gives upfirdn2d's values and gradients."""
    from semedit.stylegan2.ops import upsample2d

    f = setup_filter(taps).double()
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64, requires_grad=True)
    fw = f.shape[-1]
    p0, p1 = (fw + 1) // 2, (fw - 2) // 2
    want = upfirdn2d(x, f, up=2, padding=(p0, p1, p0, p1), gain=4)
    got = upsample2d(x, f)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-12)
    (g_got,) = torch.autograd.grad(got, x, torch.ones_like(got))
    (g_want,) = torch.autograd.grad(want, x, torch.ones_like(want))
    assert torch.allclose(g_got, g_want, atol=1e-12)


def test_synthesis_gradients_are_exact_despite_in_place_noise():
    """The in-place noise additions keep autograd exact: the gradient's directional derivative matches a
    central finite difference (the synthesis computes in float32, so a loose tolerance on a smooth loss)."""
    torch.manual_seed(0)
    G = build_tiny_generator(resolution=16, channel_max=8)
    ws = torch.randn(2, G.num_ws, G.w_dim)
    weights = torch.randn(2, 3, 16, 16)
    direction = torch.randn_like(ws)

    def loss(w):
        return (G.synthesis(w, noise_mode="const") * weights).sum()

    w = ws.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(w), w)
    h = 1e-3  # small: the leaky ReLUs make larger steps cross kinks (1e-2 gives 2 % off)
    with torch.no_grad():
        numeric = (loss(ws + h * direction) - loss(ws - h * direction)) / (2 * h)
    analytic = (grad * direction).sum()
    assert torch.isclose(analytic, numeric, rtol=2e-2), (analytic, numeric)
