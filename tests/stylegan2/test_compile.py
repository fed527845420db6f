"""Whole-graph capture: torch.compile sees each hot path as one graph, and recompiles only for new shapes.

``torch._dynamo.explain`` traces without compiling (fast); the recompile test uses a counting backend.
"""

import logging

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.testing import CompileCounter

from semedit.data.datamodule import downsample
from semedit.edits import edit_wplus
from semedit.hair.fg2021.encoders import HairTransferNet
from semedit.inversion.composite import composite, masks_from_logits
from semedit.inversion.latents import init_codes, render_chunks
from semedit.perception.regions import make_region_splitter
from semedit.stylegan2 import build_tiny_generator
from semedit.stylegan2 import compile as sg_compile


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def _assert_one_graph(fn, *args, **kwargs):
    e = dynamo.explain(fn)(*args, **kwargs)
    reasons = [b.reason.splitlines()[0] for b in e.break_reasons]
    assert e.graph_break_count == 0 and e.graph_count == 1, reasons


def test_generator_mapping_and_synthesis_are_one_graph():
    G = build_tiny_generator(resolution=16, seed=0)
    z = torch.randn(2, G.z_dim)
    _assert_one_graph(G.mapping._forward, z, 0.7, 4)
    ws = G.mapping(z)
    for mode in ("const", "random", "none"):
        _assert_one_graph(G.synthesis._forward, ws, mode, None)
    # A seeded generator's noise is drawn before the graph (a torch.Generator cannot be traced).
    noises = G.synthesis._seeded_noise(2, ws.device, "random", torch.Generator().manual_seed(0))
    _assert_one_graph(G.synthesis._forward, ws, "random", noises)


def test_resnet_and_reduced_precision_synthesis_are_one_graph():
    G = build_tiny_generator(resolution=8, architecture="resnet", seed=0)
    G.set_reduced_precision("bf16", num_res=1)  # bf16 blocks on the CPU
    _assert_one_graph(G.synthesis._forward, G.mapping(torch.randn(2, G.z_dim)), "const", None)


@pytest.mark.parametrize("training", [False, True])
def test_hair_encoders_are_one_graph(training):
    net = HairTransferNet(num_ws=8, w_dim=16, units=(1, 2), channels=(8, 16), feature_dim=16, pool_size=2,
                          se_reduction=4).train(training)
    x = torch.randn(2, 3, 32, 32)
    _assert_one_graph(net, x, x)


@pytest.mark.parametrize("space", ["wplus", "s"])  # "w" renders through the same W+ call
def test_chunkygan_composite_step_is_one_graph(space):
    # The differentiable part of one step of inversion/optimize.py's evaluate(): render every chunk in one
    # generator call, soft masks from the logits, the composite.
    G = build_tiny_generator(resolution=8, seed=0)
    codes = init_codes(G, space, 2, 3)

    def step(codes, logits):
        return composite(render_chunks(G, space, codes, "const"), masks_from_logits(logits, G.img_resolution))

    _assert_one_graph(step, codes, torch.randn(2, 3, 4, 4, requires_grad=True))


def test_datamodule_pair_synthesis_is_one_graph():
    # The tensor part of StyleGAN2DataModule.synthesize in pairs mode: shift, render both, downsample, split.
    G = build_tiny_generator(resolution=16, seed=0)
    splitter = make_region_splitter("ellipse")

    def pairs(ws, k, direction):
        images = G.synthesis(torch.cat([ws, edit_wplus(ws, direction, k, [0, 1, 2])]), noise_mode="const")
        images = downsample(images, 8)
        return images, splitter(images)

    ws = G.mapping(torch.randn(3, G.z_dim))
    _assert_one_graph(pairs, ws, torch.randn(3), torch.randn(G.w_dim))


def test_compiled_generator_recompiles_only_for_new_shapes(monkeypatch, caplog):
    counter = CompileCounter()
    monkeypatch.setattr(sg_compile, "COMPILE_BACKEND", counter)
    monkeypatch.setattr(sg_compile, "_COMPILED", {})
    G = build_tiny_generator(resolution=8, seed=0)
    eager = {n: G(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(n))) for n in (1, 2, 3, 5)}
    G.set_compile("on")
    with caplog.at_level(logging.INFO, logger="semedit"):
        for n in (2, 3, 5, 2):
            z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(n))
            assert torch.allclose(G(z), eager[n], atol=1e-5)
    # mapping + synthesis, one graph each for every batch size >= 2, whatever the order.
    assert counter.frame_count == 2
    # The compile time is reported once per module, not per call.
    assert sum("torch.compile" in r.getMessage() for r in caplog.records) == 2
    G(torch.randn(1, G.z_dim))  # batch 1 is specialised by PyTorch: one more graph each
    assert counter.frame_count == 4
    # Other noise modes are other graphs, compiled once.
    ws = G.mapping(torch.randn(4, G.z_dim))
    for _ in range(2):
        G.synthesis(ws, noise_mode="none")
        G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(0))
    assert counter.frame_count == 6
    # A seeded generator still gives the same images when compiled.
    a = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(1))
    G.set_compile("off")
    assert torch.allclose(a, G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(1)),
                          atol=1e-5)


def test_compile_settings(monkeypatch):
    assert sg_compile.compile_enabled("auto", "cuda") is True
    assert sg_compile.compile_enabled("auto", "cpu") is sg_compile.CPU_COMPILE_PAYS_OFF
    assert sg_compile.compile_enabled(True, "cpu") and not sg_compile.compile_enabled("off", "cuda")
    # YAML 1.1 reads `compile: off` as false, which the string field holds as "False".
    assert sg_compile.normalize_compile_setting("False") == "off" and sg_compile.normalize_compile_setting("True") == "on"
    with pytest.raises(ValueError, match="generator.compile"):
        sg_compile.normalize_compile_setting("yes")
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir as torch_default

    monkeypatch.setenv("XDG_CACHE_HOME", "/tmp/semedit-test-cache")
    # Unset, or holding the /tmp default that importing inductor writes there: the user's cache is used.
    for value in (None, torch_default()):
        if value is None:
            monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        else:
            monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", value)
        assert sg_compile.enable_compile_cache() == "/tmp/semedit-test-cache/semedit/inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/chosen-by-user")  # a user's choice is kept
    assert sg_compile.enable_compile_cache() == "/tmp/chosen-by-user"
    assert inductor_config.fx_graph_cache is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_generator_on_gpu_matches_eager():
    G = build_tiny_generator(resolution=64, channel_max=64).cuda()
    z = torch.randn(4, G.z_dim, device="cuda")
    with torch.no_grad():
        ref = G(z)
        G.set_compile("auto")  # on with CUDA
        assert torch.allclose(G(z), ref, atol=1e-3, rtol=1e-3)
        G.set_reduced_precision("bf16", num_res=2)
        out = G(z)
    assert out.dtype == torch.float32 and (out - ref).abs().mean() < 0.02 * ref.abs().mean()
