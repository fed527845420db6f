"""Reduced precision as NVlabs runs it (top blocks, conv clamp), on the CPU too, and its detection."""

import numpy as np
import pytest
import torch
from PIL import Image

from semedit.stylegan2 import build_tiny_generator
from semedit.stylegan2 import compile as sg_compile


def _block_dtypes(G, z):
    """The dtype of every block's conv1 output during one forward pass of ``G(z)``."""
    seen = {}
    hooks = [b.conv1.register_forward_hook(lambda m, i, o, r=b.resolution: seen.__setitem__(r, o.dtype))
             for b in G.synthesis.blocks()]
    out = G(z)
    for h in hooks:
        h.remove()
    return out, seen


def test_bf16_on_cpu_runs_the_top_blocks_in_bf16_and_stays_close_to_fp32():
    G = build_tiny_generator(resolution=64, channel_max=64, seed=0)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
    ref, dtypes = _block_dtypes(G, z)
    assert set(dtypes.values()) == {torch.float32}
    G.set_reduced_precision("bf16", num_res=2)
    out, dtypes = _block_dtypes(G, z)
    f32, bf16 = torch.float32, torch.bfloat16
    assert dtypes == {4: f32, 8: f32, 16: f32, 32: bf16, 64: bf16}  # NVlabs' rule: res >= 2**(6 + 1 - 2)
    assert out.dtype == torch.float32
    err = (out - ref).abs()
    # bf16 has an 8-bit mantissa (relative step 2**-8 = 0.004): the images differ, but only by rounding.
    assert err.mean() > 1e-4, "the bf16 blocks did not change the result: they did not run in bf16"
    # Measured: mean 0.7 % of the mean |pixel|, max 2 % of the max |pixel| (3 seeds).
    assert err.mean() < 0.02 * ref.abs().mean() and err.max() < 0.05 * ref.abs().max()
    # The reduced blocks clamp at 256 (the tiny model sets no clamp), the fp32 blocks are untouched.
    assert G.synthesis.b64.conv1.conv_clamp == 256 and G.synthesis.b64.torgb.conv_clamp == 256
    assert G.synthesis.b16.conv1.conv_clamp is None
    # Switching back restores the exact fp32 generator (clamps included).
    G.set_reduced_precision("none")
    assert torch.equal(G(z), ref) and G.synthesis.b64.conv1.conv_clamp is None


def test_fp16_stays_fp32_on_cpu_and_bad_values_are_rejected():
    G = build_tiny_generator(resolution=32, seed=0)
    z = torch.randn(2, G.z_dim)
    ref = G(z)
    G.set_reduced_precision("fp16", num_res=2)
    out, dtypes = _block_dtypes(G, z)
    assert set(dtypes.values()) == {torch.float32} and torch.equal(out, ref)
    with pytest.raises(ValueError, match="precision"):
        G.set_reduced_precision("int8")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_cpu_capability(monkeypatch, native):
    monkeypatch.setattr(sg_compile, "cpu_has_bf16_units", lambda: native)
    G = build_tiny_generator(resolution=32, seed=0)
    G.set_reduced_precision("auto", num_res=1)
    _, dtypes = _block_dtypes(G, torch.randn(1, G.z_dim))
    assert dtypes[32] == (torch.bfloat16 if native else torch.float32) and dtypes[16] == torch.float32
    assert sg_compile.resolve_precision("auto", "cpu") == ("bf16" if native else "none")
    assert sg_compile.resolve_precision("bf16", "cpu") == "bf16"  # forcing it works on any CPU
    with pytest.raises(ValueError, match="reduced_precision"):
        sg_compile.resolve_precision("half", "cpu")


def test_bf16_detection_reads_the_cpu_flags(monkeypatch):
    detect = sg_compile._probe_cpu_bf16_units.__wrapped__  # bypass the per-process cache
    for flags, expected in [({"avx2", "amx_bf16", "amx_tile"}, True), ({"avx512f", "avx512_bf16"}, True),
                            ({"avx2", "avx512f"}, False), (set(), False)]:
        monkeypatch.setattr(sg_compile, "_cpu_flags", lambda flags=flags: flags)
        assert detect() is expected
    info = sg_compile.describe_cpu()
    assert set(info) == {"model_name", "torch_cpu_capability", "bf16_flags", "bf16_native"}


def test_the_bf16_probe_can_be_forced_either_way(monkeypatch):
    monkeypatch.setattr(sg_compile, "_cpu_flags", lambda: {"avx2"})
    sg_compile._probe_cpu_bf16_units.cache_clear()
    try:
        monkeypatch.setenv(sg_compile.CPU_BF16_ENV, "1")
        assert sg_compile.cpu_has_bf16_units() and sg_compile.resolve_precision("auto", "cpu") == "bf16"
        monkeypatch.setenv(sg_compile.CPU_BF16_ENV, "0")
        assert not sg_compile.cpu_has_bf16_units() and sg_compile.resolve_precision("auto", "cpu") == "none"
        monkeypatch.setenv(sg_compile.CPU_BF16_ENV, "yes")
        with pytest.raises(ValueError, match="SEMEDIT_CPU_BF16"):
            sg_compile.cpu_has_bf16_units()
        monkeypatch.delenv(sg_compile.CPU_BF16_ENV)
        assert not sg_compile.cpu_has_bf16_units()  # the (patched) flags decide
    finally:
        sg_compile._probe_cpu_bf16_units.cache_clear()


def test_generate_precision_flag_reaches_the_generator(tmp_path):
    from semedit.cli import main

    def run(precision):
        out = tmp_path / precision
        assert main(["generate", "--seeds", "0-1", "--out", str(out), "--device", "cpu", "--precision", precision,
                     "--compile", "off"]) == 0
        return [np.asarray(Image.open(out / f"seed000{i}.png")).astype(int) for i in range(2)]

    fp32, bf16 = run("none"), run("bf16")
    diffs = [np.abs(a - b) for a, b in zip(fp32, bf16)]
    assert any(d.max() > 0 for d in diffs), "--precision bf16 changed nothing"
    assert all(d.mean() < 3 for d in diffs)  # a few 8-bit levels at most
    with pytest.raises(SystemExit):
        main(["generate", "--seeds", "0", "--out", str(tmp_path / "x"), "--precision", "int8"])
