"""Loading the public formats: numerical equivalence, round trips, and refusing bad files."""

import argparse
import os
import pickle
import shutil

import pytest
import torch

from semedit.stylegan2 import (
    CheckpointError,
    UnsafePickleError,
    build_tiny_generator,
    load_generator,
    save_generator,
    zs_from_seeds,
)
from semedit.stylegan2.checkpoints import semedit_to_rosinality
from tests.stylegan2.rosinality_reference import rosinality_forward


@pytest.fixture(scope="module")
def nvlabs_pkl(fixtures_dir):
    return fixtures_dir / "stylegan2" / "nvlabs_tiny32.pkl"


@pytest.fixture(scope="module")
def nvlabs_expected(fixtures_dir):
    return torch.load(fixtures_dir / "stylegan2" / "nvlabs_tiny32_expected.pt", weights_only=True)


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_nvlabs_pickle_reproduces_reference_outputs(nvlabs_pkl, nvlabs_expected):
    G = load_generator(nvlabs_pkl)
    e = nvlabs_expected
    z = zs_from_seeds(e["seeds"], G.z_dim)
    assert torch.equal(z, e["z"])
    assert (G.mapping(z) - e["ws"]).abs().max() < 1e-4
    assert (G.mapping(z, truncation_psi=0.5) - e["ws_trunc05"]).abs().max() < 1e-4
    assert _rel_err(G.synthesis(e["ws"], noise_mode="const"), e["img"]) < 1e-4
    assert _rel_err(G.synthesis(e["ws_trunc05"], noise_mode="const"), e["img_trunc05"]) < 1e-4
    assert G.config.conv_clamp == 256 and G.config.num_fp16_res == 2
    assert not any(p.requires_grad for p in G.parameters()) and not G.training


def test_numpy2_module_names_load_too(nvlabs_pkl, nvlabs_expected, tmp_path):
    data = nvlabs_pkl.read_bytes()
    old, new = b"numpy.core.multiarray", b"numpy._core.multiarray"
    assert old in data
    patched = tmp_path / "numpy2.pkl"
    # GLOBAL opcodes store "module\nname\n" as text, so the replacement keeps the pickle valid.
    patched.write_bytes(data.replace(old, new))
    G = load_generator(patched)
    assert _rel_err(G.synthesis(nvlabs_expected["ws"]), nvlabs_expected["img"]) < 1e-4


def _save_rosinality(G, path, latent_avg=True, extras=None):
    ckpt = {"g_ema": semedit_to_rosinality(G)}
    if latent_avg:
        ckpt["latent_avg"] = G.w_avg.clone()
    ckpt.update(extras or {})
    torch.save(ckpt, path)
    return ckpt


def test_rosinality_checkpoint_matches_rosinality_forward(tmp_path):
    G0 = build_tiny_generator(resolution=32, seed=3)
    ckpt = _save_rosinality(G0, tmp_path / "ros.pt")
    G = load_generator(tmp_path / "ros.pt")
    assert G.config.source_format == "rosinality" and G.img_resolution == 32 and G.config.mapping_layers == 2
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0))
    ref = rosinality_forward(ckpt["g_ema"], z)
    assert _rel_err(G(z, noise_mode="const"), ref) < 1e-4
    ref_t = rosinality_forward(ckpt["g_ema"], z, truncation=0.6, truncation_latent=ckpt["latent_avg"])
    assert _rel_err(G(z, truncation_psi=0.6), ref_t) < 1e-4
    assert torch.equal(G.w_avg, G0.w_avg)


def test_rosinality_training_checkpoint_with_args_and_without_latent_avg(tmp_path):
    G0 = build_tiny_generator(resolution=16, seed=1, channel_max=32)
    extras = {"args": argparse.Namespace(size=16, n_mlp=2), "g": semedit_to_rosinality(G0)}
    _save_rosinality(G0, tmp_path / "train.pt", latent_avg=False, extras=extras)
    a = load_generator(tmp_path / "train.pt")
    b = load_generator(tmp_path / "train.pt")
    assert torch.equal(a.w_avg, b.w_avg)  # computed reproducibly
    assert torch.allclose(a.w_avg, G0.w_avg, atol=0.05 * G0.w_avg.abs().max().item() + 1e-3)


def test_bare_rosinality_state_dict_loads(tmp_path):
    G0 = build_tiny_generator(resolution=16, seed=2, channel_max=32)
    torch.save(semedit_to_rosinality(G0), tmp_path / "bare.pt")
    z = torch.randn(2, G0.z_dim)
    G = load_generator(tmp_path / "bare.pt")
    assert torch.allclose(G.synthesis(G0.mapping(z)), G0.synthesis(G0.mapping(z)), atol=1e-6)


def test_own_format_round_trip_is_exact(nvlabs_pkl, tmp_path):
    G = load_generator(nvlabs_pkl)
    path = save_generator(G, tmp_path / "g.safetensors")
    H = load_generator(path)
    assert H.config == G.config
    for (k, a), (k2, b) in zip(G.state_dict().items(), H.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    z = torch.randn(2, G.z_dim)
    assert torch.equal(G(z), H(z))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _RunsCode(marker)}, protocol=3))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        load_generator(evil)
    assert not marker.exists()
    # The same payload inside a torch.save zip is refused by the weights-only loader.
    evil_pt = tmp_path / "evil.pt"
    torch.save({"g_ema": _RunsCode(marker)}, evil_pt)
    with pytest.raises(UnsafePickleError, match="nothing from it was run") as info:
        load_generator(evil_pt)
    assert "weights_only" not in str(info.value)
    assert not marker.exists()


def test_embedded_module_source_is_never_executed(nvlabs_pkl, tmp_path):
    # Plant module source that would create a file if anybody exec'd it; loading must not.
    marker = tmp_path / "exec_ran"
    data = nvlabs_pkl.read_bytes()
    stub = b"# source omitted\n"
    record = b"X" + len(stub).to_bytes(4, "little") + stub  # BINUNICODE opcode, length, text
    assert record in data
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n".encode()
    patched = tmp_path / "with_src.pkl"
    patched.write_bytes(data.replace(record, b"X" + len(code).to_bytes(4, "little") + code))
    G = load_generator(patched)
    assert G.img_resolution == 32
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_truncated_files_give_clear_errors(nvlabs_pkl, tmp_path, cut):
    data = nvlabs_pkl.read_bytes()
    bad = tmp_path / "cut.pkl"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(bad)
    G = build_tiny_generator(resolution=16, channel_max=16)
    torch.save({"g_ema": semedit_to_rosinality(G)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(tmp_path / "cut.pt")
    save_generator(G, tmp_path / "ok.safetensors")
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(tmp_path / "cut.safetensors")


def test_unknown_missing_and_wrong_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="directory"):
        load_generator(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        load_generator(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_text("this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_generator(tmp_path / "text.pt")
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"D": 1}, protocol=3))
    with pytest.raises(CheckpointError, match="no 'G_ema'"):
        load_generator(tmp_path / "other.pkl")
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.4"}, tmp_path / "lightning.ckpt")
    with pytest.raises(CheckpointError, match="Lightning training checkpoint"):
        load_generator(tmp_path / "lightning.ckpt")


def test_mismatched_weights_are_reported(tmp_path):
    G = build_tiny_generator(resolution=16, channel_max=16)
    sd = semedit_to_rosinality(G)
    sd["convs.0.conv.weight"] = sd["convs.0.conv.weight"][:, :, :8]
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"wrong shape: synthesis\.b\d+\.conv0\.weight: file \[\d+, 8, 3, 3\]"):
        load_generator(tmp_path / "bad.pt")
    sd = semedit_to_rosinality(G)
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"g_ema": sd}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_generator(tmp_path / "extra.pt")


def test_load_to_device_and_copy(nvlabs_pkl, tmp_path):
    copy = tmp_path / "renamed.bin"  # detection goes by content, not by suffix
    shutil.copy(nvlabs_pkl, copy)
    G = load_generator(copy, device="cpu")
    assert G.w_avg.device.type == "cpu" and G.config.source_format == "nvlabs"
