"""pSp / e4e loaders on random-weight checkpoints written in the public layout, against psp_reference.py."""

from types import SimpleNamespace

import pytest
import torch

from semedit.inversion.encoders import build_encoder, encoder_state_dict_checkpoint, load_encoder
from semedit.weights import CorruptWeightsError, MissingWeightsError
from tests.inversion.psp_reference import reference_forward

NUM_WS, W_DIM = 8, 64


def _fake_G():
    return SimpleNamespace(num_ws=NUM_WS, w_dim=W_DIM, w_avg=torch.randn(W_DIM, generator=torch.Generator().manual_seed(5)))


def _randomise_stats(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and PReLU slopes, so that eval-mode layers are not identities."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
        elif isinstance(m, torch.nn.PReLU):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)


@pytest.mark.parametrize("kind", ["psp", "e4e"])
def test_loader_matches_public_architecture(kind, tmp_path):
    # IR-SE50 unit layout (3, 4, 14, 3) as the released encoders, with narrow stages and a 64 px input to stay fast.
    enc = build_encoder(kind, NUM_WS, W_DIM, depth=50, channels=(16, 32, 48, 64), input_size=64, seed=3)
    _randomise_stats(enc, 4)
    latent_avg = torch.randn(NUM_WS, W_DIM, generator=torch.Generator().manual_seed(6))
    ckpt = encoder_state_dict_checkpoint(enc, latent_avg, decoder_state={"style.1.weight": torch.zeros(2, 2)})
    assert set(ckpt) == {"state_dict", "opts", "latent_avg"}
    assert all(k.startswith(("encoder.", "decoder.")) for k in ckpt["state_dict"])
    # Public key names (helpers.py / psp_encoders.py modules).
    for key in ("encoder.input_layer.0.weight", "encoder.input_layer.1.running_var", "encoder.body.0.res_layer.5.fc1.weight",
                "encoder.body.3.shortcut_layer.0.weight", "encoder.styles.0.convs.0.weight", "encoder.styles.7.linear.bias",
                "encoder.latlayer1.weight", "encoder.latlayer2.bias"):
        assert key in ckpt["state_dict"], key
    path = tmp_path / f"{kind}_ffhq_encode_random.pt"
    torch.save(ckpt, path)

    inverter = load_encoder(kind, str(path), _fake_G())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(7)) * 2 - 1
    sd = {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    expected = reference_forward(kind, sd, x) + latent_avg
    torch.testing.assert_close(inverter(x), expected, rtol=1e-4, atol=1e-4)
    # Inputs at another size are resized to the encoder's input first.
    assert inverter(torch.zeros(1, 3, 32, 32)).shape == (1, NUM_WS, W_DIM)


def test_e4e_differs_from_psp_on_same_weights():
    enc = build_encoder("psp", NUM_WS, W_DIM, depth=10, channels=(16, 32, 48, 64), input_size=64, seed=0)
    sd = enc.state_dict()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    psp, e4e = reference_forward("psp", sd, x, units=(1, 1, 1, 1), taps=(1, 2, 3)), reference_forward(
        "e4e", sd, x, units=(1, 1, 1, 1), taps=(1, 2, 3))
    torch.testing.assert_close(psp[:, 0], e4e[:, 0])  # entry 0 is styles[0](c3) in both
    assert not torch.allclose(psp[:, 1:], e4e[:, 1:])  # e4e adds deltas to w0


def test_loader_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(MissingWeightsError, match=r"psp_ffhq_encode\.pt.*pixel2style2pixel"):
        load_encoder("psp", None, _fake_G())
    with pytest.raises(MissingWeightsError, match=r"e4e_ffhq_encode\.pt.*encoder4editing"):
        load_encoder("e4e", None, _fake_G())
    enc = build_encoder("psp", NUM_WS, W_DIM, depth=10, channels=(16, 32, 48, 64), input_size=64, seed=0)
    path = tmp_path / "psp.pt"
    torch.save(encoder_state_dict_checkpoint(enc, None), path)
    with pytest.raises(CorruptWeightsError, match="encoder_type is 'GradualStyleEncoder'"):
        load_encoder("e4e", str(path), _fake_G())
    with pytest.raises(CorruptWeightsError, match="num_ws=18"):
        load_encoder("psp", str(path), SimpleNamespace(num_ws=18, w_dim=W_DIM, w_avg=torch.zeros(W_DIM)))
    # Without latent_avg and start_from_latent_avg False, codes are the encoder output as is.
    inverter = load_encoder("psp", str(path), _fake_G())
    x = torch.zeros(1, 3, 64, 64)
    torch.testing.assert_close(inverter(x), enc(x))


def test_random_tiny_encoders_fit_generator():
    from semedit.stylegan2 import build_tiny_generator

    G = build_tiny_generator(resolution=16, seed=0)
    for kind in ("psp", "e4e"):
        codes = load_encoder(kind, "random", G)(torch.zeros(2, 3, 16, 16))
        assert codes.shape == (2, G.num_ws, G.w_dim) and torch.isfinite(codes).all()
