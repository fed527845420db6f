"""The released FG 2021 checkpoint format: key/shape equality with the fixture and numerical equivalence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from semedit.hair.fg2021.config import EncoderConfig
from semedit.hair.fg2021.encoders import build_hair_net
from semedit.hair.fg2021.release import (
    FG2021CheckpointError,
    infer_encoder_config,
    load_fg2021,
    split_fg2021_state_dict,
)
from semedit.stylegan2 import Generator, build_tiny_generator
from semedit.stylegan2.checkpoints import rosinality_config, rosinality_to_semedit, semedit_to_rosinality
from semedit.stylegan2.ops import setup_filter
from semedit.weights import check_state_dict
from tests.hair.fg2021_reference import random_original_state_dict, released_encoder_forward
from tests.helpers import require_fixtures

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
FIXTURE = FIXTURES / "perception" / "hairstyle_fg2021.json"


@pytest.fixture(scope="module")
def fixture_shapes() -> dict:
    require_fixtures(FIXTURE)
    return json.loads(FIXTURE.read_text())["state_dict"]


def test_fixture_keys_and_shapes_match_semedit_model(fixture_shapes):
    meta = {k: torch.empty(v, device="meta") for k, v in fixture_shapes.items()}
    encoder_sd, decoder_sd = split_fg2021_state_dict(meta)
    cfg, num_ws = infer_encoder_config(encoder_sd)
    assert (cfg.num_layers, cfg.channels, cfg.pool_size, cfg.feature_dim, num_ws) == (50, [64, 128, 256, 512], 7, 512, 18)
    with torch.device("meta"):
        net = build_hair_net(EncoderConfig(), num_ws=18, w_dim=512)  # the paper's defaults
    check_state_dict(net.state_dict(), encoder_sd, "fixture encoder", FG2021CheckpointError)  # raises on any difference
    assert len(net.state_dict()) == len(encoder_sd) == 790

    # Decoder: every rosinality key maps onto a semedit 1024 generator with the right shapes.

    # Real (uninitialised) tensors for the decoder: the converter checks the blur kernels' values.
    decoder_sd = {k: (setup_filter() * 4 if k.endswith("kernel") else torch.empty(fixture_shapes["decoder." + k]))
                  for k in decoder_sd}
    config = rosinality_config(decoder_sd)
    assert (config.img_resolution, config.w_dim, config.mapping_layers) == (1024, 512, 8)
    state = rosinality_to_semedit(decoder_sd, config)
    with torch.device("meta"):
        G = Generator(config)
    assert G.num_ws == 18
    own = {k: v for k, v in G.state_dict().items() if k != "mapping.w_avg"}
    assert set(own) == set(state)
    assert all(tuple(own[k].shape) == tuple(state[k].shape) for k in own)


def test_wrong_shape_is_reported_with_key(fixture_shapes):
    meta = {k: torch.empty(v, device="meta") for k, v in fixture_shapes.items() if k.startswith("encoder.")}
    encoder_sd, _ = split_fg2021_state_dict(meta)
    with torch.device("meta"):
        net = build_hair_net(EncoderConfig(), num_ws=18, w_dim=512)
    encoder_sd["map.0.bias"] = torch.empty(10, device="meta")
    del encoder_sd["encoder_hair.linear.bias"]
    with pytest.raises(FG2021CheckpointError, match=r"map\.0\.bias.*\[10\]|missing 1"):
        check_state_dict(net.state_dict(), encoder_sd, "encoder", FG2021CheckpointError)


def test_not_a_hair_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(FG2021CheckpointError, match="not a released FG 2021"):
        load_fg2021(path)


def test_full_size_random_checkpoint_reproduces_reference_encoder(fixture_shapes):
    """All 790 released encoder weights, random, in original names: semedit == functional reference."""
    sd = random_original_state_dict(fixture_shapes, seed=0)
    model = load_fg2021(sd, load_decoder=False)
    g = torch.Generator().manual_seed(1)
    # 64 px instead of 256 keeps this fast; the backbone is size-agnostic up to the 7x7 pooling.
    face, hair = torch.randn(2, 3, 64, 64, generator=g), torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        ref = released_encoder_forward(face, hair, sd)
        out = model.net(face, hair)
        swapped = model.net(hair, face)
    assert out.shape == (2, 18, 512)
    assert ref.std() > 0.1
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    assert (swapped - ref).abs().max() > 1e-2 * ref.abs().max()  # the two encoders really differ


def test_saved_checkpoint_with_decoder_round_trip(tmp_path):
    """A small checkpoint in the released layout (top-level or under state_dict) with a rosinality
    decoder: loading it reproduces reference encoder W+ and the original generator's images."""

    G = build_tiny_generator(resolution=32, seed=3)
    net = build_hair_net(EncoderConfig(num_layers=10, channels=[8, 16, 32, 64], feature_dim=32, pool_size=2),
                         num_ws=G.num_ws, w_dim=G.w_dim)
    shapes = {f"encoder.{k}": list(v.shape) for k, v in net.state_dict().items()}
    sd = random_original_state_dict(shapes, seed=5)
    sd.update({f"decoder.{k}": v for k, v in semedit_to_rosinality(G).items()})
    for layout in ("top", "state_dict"):
        path = tmp_path / f"{layout}.pt"
        torch.save(sd if layout == "top" else {"state_dict": sd, "opts": {"n_styles": G.num_ws}}, path)
        model = load_fg2021(path)
        assert model.encoder.num_layers == 10 and model.num_ws == G.num_ws
        g = torch.Generator().manual_seed(2)
        face, hair = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 32, 32, generator=g)
        with torch.no_grad():
            ws_ref = released_encoder_forward(face, hair, sd, num_ws=G.num_ws, w_dim=G.w_dim)
            ws = model.net(face, hair)
            torch.testing.assert_close(ws, ws_ref, rtol=1e-4, atol=1e-5)
            img = model.generator.synthesis(ws, noise_mode="const")
            img_ref = G.synthesis(ws_ref, noise_mode="const")
        torch.testing.assert_close(img, img_ref, rtol=1e-4, atol=1e-5)
