"""ReStyle loaders on random-weight checkpoints written in the public layout, against restyle_reference.py."""

import hashlib
import logging

import pytest
import torch

from semedit.inversion.restyle import (
    BackboneEncoder,
    ProgressiveBackboneEncoder,
    build_restyle_encoder,
    load_restyle,
    restyle_checkpoint,
)
from semedit.stylegan2 import build_tiny_generator
from semedit.weights import REGISTRY, CorruptWeightsError, MissingWeightsError
from tests.inversion.restyle_reference import encoder_forward, run_on_batch
from tests.inversion.test_encoders import _randomise_stats

# sha256 over the sorted "key\tshape" lines of the state dicts of the upstream classes, instantiated with
# random weights (/work/notes/restyle_hyperstyle_keys/restyle_keys.txt, dump_restyle.py: BackboneEncoder and
# ProgressiveBackboneEncoder(50, 'ir_se', 18, input_nc=6), 565 keys each).
UPSTREAM_BACKBONE_KEYS = "bf2054714508db70f1afa2637fae42d114efc45fb284c23dbf7be0f56151291a"


def _key_digest(module: torch.nn.Module) -> str:
    lines = sorted(f"{k}\t{tuple(v.shape)}" for k, v in module.state_dict().items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.fixture(scope="module")
def G():
    return build_tiny_generator(resolution=32, seed=0)  # w_dim 64, 4..16 px 64 channels, 32 px 32 channels


def _checkpoint(G, kind, depth=50, seed=3):
    enc = build_restyle_encoder(kind, G.num_ws, G.w_dim, depth=depth, channels=(16, 32, 48, 64), input_size=64,
                                seed=seed)
    _randomise_stats(enc, seed + 1)
    latent_avg = G.w_avg.reshape(1, -1).repeat(G.num_ws, 1)  # rosinality's [512] repeated n_styles times
    return enc, restyle_checkpoint(enc, latent_avg, G)


def _strip(state, prefix):
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def test_full_size_encoders_have_the_released_keys_and_shapes():
    with torch.device("meta"):
        psp, e4e = BackboneEncoder(18), ProgressiveBackboneEncoder(18)
    assert _key_digest(psp) == _key_digest(e4e) == UPSTREAM_BACKBONE_KEYS
    assert len(psp.state_dict()) == 565 and psp.input_size == 256
    assert tuple(psp.state_dict()["styles.17.convs.6.weight"].shape) == (512, 512, 3, 3)


@pytest.mark.parametrize("kind", ["psp", "e4e"])
def test_loader_matches_public_inference(kind, G, tmp_path, caplog):
    enc, ckpt = _checkpoint(G, kind)
    assert set(ckpt) == {"state_dict", "opts", "latent_avg"}
    assert ckpt["opts"]["encoder_type"] == ("BackboneEncoder" if kind == "psp" else "ProgressiveBackboneEncoder")
    assert ckpt["opts"]["input_nc"] == 6 and ckpt["opts"]["output_size"] == 32
    state = ckpt["state_dict"]
    for key, shape in (("encoder.input_layer.0.weight", (16, 6, 3, 3)), ("encoder.input_layer.2.weight", (16,)),
                       ("encoder.body.23.res_layer.5.fc2.weight", (64, 4, 1, 1)),
                       ("encoder.body.21.shortcut_layer.0.weight", (64, 48, 1, 1)),
                       ("encoder.styles.7.convs.2.weight", (64, 64, 3, 3)), ("encoder.styles.0.linear.bias", (64,)),
                       ("decoder.conv1.conv.weight", (1, 64, 64, 3, 3)), ("decoder.noises.noise_0", (1, 1, 4, 4))):
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("encoder.latlayer") for k in state)  # no feature pyramid, unlike pSp
    path = tmp_path / f"restyle_{kind}_random.pt"
    torch.save(ckpt, path)

    with caplog.at_level(logging.WARNING, logger="semedit"):
        model = load_restyle(kind, str(path), G)
    assert not caplog.records  # the given generator is the checkpoint's decoder: nothing to warn about
    assert model.generator is G and model.input_size == 64
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(7)) * 2 - 1
    result = model.run(x, n_iters=4, keep_iteration_images=True)

    enc_sd, dec_sd = _strip(state, "encoder"), _strip(state, "decoder")
    codes, images = run_on_batch(kind, x, enc_sd, dec_sd, ckpt["latent_avg"], 4, pool=64)
    assert len(result.codes) == 4 and result.codes[0].shape == (2, G.num_ws, G.w_dim)
    for mine, ref in zip(result.codes, codes, strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.images, images[-1], rtol=1e-5, atol=1e-5)
    for mine, ref in zip(result.iteration_images, images, strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(result.codes[0], result.codes[-1])  # the later iterations refine the codes

    # The checkpoint's own decoder gives the same numbers; inputs of another size are resized first.
    own = load_restyle(kind, str(path), None, use_checkpoint_decoder=True)
    assert own.generator is not G
    torch.testing.assert_close(own.run(x, n_iters=2).codes[-1], codes[1], rtol=1e-5, atol=1e-5)
    assert model.run(torch.zeros(1, 3, 32, 32), n_iters=1).images.shape == (1, 3, 32, 32)
    final, recon = model.invert(x, n_iters=4, batch_size=1)
    torch.testing.assert_close(final, codes[-1], rtol=1e-5, atol=1e-5)


def test_e4e_forward_is_progressive_on_the_same_weights(G):
    psp = build_restyle_encoder("psp", G.num_ws, G.w_dim, depth=10, channels=(16, 32, 48, 64), input_size=64, seed=0)
    e4e = build_restyle_encoder("e4e", G.num_ws, G.w_dim, depth=10, channels=(16, 32, 48, 64), input_size=64, seed=0)
    x = torch.rand(2, 6, 64, 64) * 2 - 1
    a, b = psp(x), e4e(x)
    torch.testing.assert_close(a[:, 0], b[:, 0])  # entry 0 is styles[0](x) in both
    torch.testing.assert_close(b[:, 1:], a[:, :1] + a[:, 1:])  # e4e: w0 + styles[i](x)
    torch.testing.assert_close(b, encoder_forward("e4e", e4e.state_dict(), x, units=(1, 1, 1, 1)))


def test_other_generator_warns_once(G, tmp_path, caplog):
    _, ckpt = _checkpoint(G, "psp", depth=10)
    path = tmp_path / "r.pt"
    torch.save(ckpt, path)
    other = build_tiny_generator(resolution=32, seed=1)
    with caplog.at_level(logging.WARNING, logger="semedit"):
        model = load_restyle("psp", str(path), other)
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    message = caplog.records[0].getMessage()
    assert "not the checkpoint's decoder" in message and "differ in value" in message and "w_avg" in message
    assert model.generator is other
    # The same weights, rendered in reduced precision: also not the decoder's computation.
    caplog.clear()
    same = build_tiny_generator(resolution=32, seed=0)
    same.set_reduced_precision("bf16", num_res=1)
    with caplog.at_level(logging.WARNING, logger="semedit"):
        load_restyle("psp", str(path), same)
    assert [r.getMessage().count("reduced precision (bf16)") for r in caplog.records] == [1]
    assert "differ in value" not in caplog.records[0].getMessage()


def test_wrong_layouts_and_files_are_clear_errors(G, tmp_path, monkeypatch):
    enc, ckpt = _checkpoint(G, "psp", depth=10)

    def write(name, edit):
        c = {"state_dict": dict(ckpt["state_dict"]), "opts": dict(ckpt["opts"]), "latent_avg": ckpt["latent_avg"]}
        edit(c)
        torch.save(c, tmp_path / name)
        return str(tmp_path / name)

    cases = [
        (lambda c: c["opts"].update(encoder_type="ResNetBackboneEncoder"),
         r"'ResNetBackboneEncoder' \(ReStyle-pSp over a ResNet-34 backbone.*not supported; supported: BackboneEncoder"),
        (lambda c: c["opts"].update(encoder_type="GradualStyleEncoder"), "not supported"),
        (lambda c: c["opts"].update(encoder_type="Encoder4Editing"), "not a ReStyle encoder"),
        (lambda c: c["state_dict"].pop("encoder.styles.3.linear.bias"), r"1 missing: styles\.3\.linear\.bias"),
        (lambda c: c["state_dict"].update({"encoder.extra.weight": torch.zeros(1)}), r"1 unexpected: extra\.weight"),
        (lambda c: c["state_dict"].update({"encoder.input_layer.0.weight": torch.zeros(16, 3, 3, 3)}),
         r"wrong shape: input_layer\.0\.weight: file \[16, 3, 3, 3\] vs model \[16, 6, 3, 3\]"),
        (lambda c: c["opts"].update(input_nc=3), "input_nc=3"),
        (lambda c: c.pop("latent_avg"), "no 'latent_avg'"),
        (lambda c: c.update(latent_avg=torch.zeros(3, 64)), r"latent_avg has shape \[3, 64\]"),
        (lambda c: c.pop("opts"), "no 'opts'"),
        (lambda c: c.update(state_dict={k: v for k, v in c["state_dict"].items() if k.startswith("encoder.")}),
         "no 'decoder"),
        (lambda c: c.update(state_dict={k: v for k, v in c["state_dict"].items() if k.startswith("decoder.")}),
         "no 'encoder"),
        (lambda c: c["opts"].update(output_size=64), "output_size 64 means 10 W\\+ entries, but the encoder has 8"),
    ]
    for i, (edit, match) in enumerate(cases):
        path = write(f"case{i}.pt", edit)
        with pytest.raises(CorruptWeightsError, match=match) as err:
            load_restyle("psp", path, G)
        assert "weights_only" not in str(err.value)
    # An e4e checkpoint for the pSp row (and back).
    e4e_path = tmp_path / "e4e.pt"
    torch.save(_checkpoint(G, "e4e", depth=10)[1], e4e_path)
    with pytest.raises(CorruptWeightsError, match="encoder_type is 'ProgressiveBackboneEncoder'.*restyle-psp"):
        load_restyle("psp", str(e4e_path), G)
    # A generator the encoder was not trained for.
    with pytest.raises(CorruptWeightsError, match="num_ws=6"):
        load_restyle("e4e", str(e4e_path), build_tiny_generator(resolution=16, seed=0))
    # Truncated and foreign files: CorruptWeightsError naming the file, without PyTorch's advice.
    good = write("good.pt", lambda c: None)
    data = open(good, "rb").read()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for name in ("cut.pt", "junk.pt"):
        with pytest.raises(CorruptWeightsError, match=name) as err:
            load_restyle("psp", str(tmp_path / name), G)
        assert "weights_only" not in str(err.value) and "truncated or corrupt" in str(err.value)
    # The released files, when absent: where to get them.
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(MissingWeightsError, match=r"restyle_psp_ffhq_encode\.pt.*1sw6I2lRIB0MpuJkpc8F5BJiSZrc0hjfE"):
        load_restyle("psp", None, G)
    with pytest.raises(MissingWeightsError, match=r"restyle_e4e_ffhq_encode\.pt.*restyle-encoder"):
        load_restyle("e4e", None, G)
    with pytest.raises(ValueError, match="use_checkpoint_decoder"):
        load_restyle("psp", good, None)


def test_registry_entries():
    for name, filename, drive_id in (("restyle-psp-ffhq-encode", "restyle_psp_ffhq_encode.pt", "1sw6I2lRIB0MpuJkpc8F5BJiSZrc0hjfE"),
                                     ("restyle-e4e-ffhq-encode", "restyle_e4e_ffhq_encode.pt", "1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e")):
        entry = REGISTRY[name]
        assert entry.filename == filename and entry.sha256 is None and entry.download is False
        assert entry.url == f"https://drive.google.com/file/d/{drive_id}/view?usp=sharing"
        assert entry.source.startswith("https://github.com/yuval-alaluf/restyle-encoder")


def test_random_tiny_restyle_fits_generator(G):
    for kind in ("psp", "e4e"):
        model = load_restyle(kind, "random:2", G)
        result = model.run(torch.zeros(2, 3, 32, 32), n_iters=2)
        assert [c.shape for c in result.codes] == [(2, G.num_ws, G.w_dim)] * 2
        assert result.images.shape == (2, 3, 32, 32) and torch.isfinite(result.images).all()
        assert "random" in model.source
