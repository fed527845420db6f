"""`semedit generate | convert | info` end to end."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from semedit.cli import main
from semedit.stylegan2 import build_tiny_generator, load_generator, zs_from_seeds
from semedit.stylegan2.checkpoints import semedit_to_rosinality


def _png(path):
    return np.asarray(Image.open(path))


def test_generate_from_fixture_pickle_writes_expected_images(fixtures_dir, tmp_path):
    pkl = fixtures_dir / "stylegan2" / "nvlabs_tiny32.pkl"
    assert main(["generate", "--generator", str(pkl), "--seeds", "0,1,7", "--truncation-psi", "0.5", "--out",
                 str(tmp_path / "a"), "--batch-size", "2", "--device", "cpu", "--precision", "none"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["seed0000.png", "seed0001.png", "seed0007.png"]
    expected = torch.load(fixtures_dir / "stylegan2" / "nvlabs_tiny32_expected.pt", weights_only=True)
    ref = (expected["img_trunc05"][2] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    got = _png(tmp_path / "a" / "seed0007.png")
    assert got.shape == (32, 32, 3)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    # Batch size does not change an image.
    main(["generate", "--generator", str(pkl), "--seeds", "7", "--truncation-psi", "0.5", "--out", str(tmp_path / "b"),
          "--precision", "none"])
    assert np.array_equal(_png(tmp_path / "b" / "seed0007.png"), got)


def test_generate_from_rosinality_checkpoint_and_range_seeds(tmp_path):
    G = build_tiny_generator(resolution=16, channel_max=32, seed=5)
    torch.save({"g_ema": semedit_to_rosinality(G), "latent_avg": G.w_avg}, tmp_path / "ros.pt")
    assert main(["generate", "--generator", str(tmp_path / "ros.pt"), "--seeds", "0-4", "--out",
                 str(tmp_path / "out"), "--noise-mode", "none", "--precision", "none"]) == 0
    assert len(list((tmp_path / "out").glob("seed000*.png"))) == 5
    z = zs_from_seeds([3], G.z_dim)
    ref = ((G(z, noise_mode="none")[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8)).permute(1, 2, 0).numpy()
    assert np.abs(_png(tmp_path / "out" / "seed0003.png").astype(int) - ref.astype(int)).max() <= 1


def test_convert_then_info(fixtures_dir, tmp_path, capsys):
    pkl = fixtures_dir / "stylegan2" / "nvlabs_tiny32.pkl"
    assert main(["convert", str(pkl), str(tmp_path / "g.safetensors")]) == 0
    G = load_generator(tmp_path / "g.safetensors")
    assert G.num_ws == 8
    capsys.readouterr()
    assert main(["info", str(tmp_path / "g.safetensors"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["img_resolution"] == 32 and info["w_dim"] == 64 and info["mapping_layers"] == 2
    assert info["conv_clamp"] == 256 and info["num_ws"] == 8


@pytest.mark.parametrize("argv,message", [
    (["generate", "--seeds", "3-1", "--out", "x"], "cannot parse seeds"),
    (["generate", "--seeds", "0", "--out", "x", "--noise-mode", "loud"], "noise-mode"),
    (["info", "/definitely/not/here.pt"], "checkpoint not found"),
])
def test_bad_arguments_give_clear_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
