"""HyperStyle: the generator's weight-delta path and the loaders on random checkpoints in the public layout,
against hyperstyle_reference.py."""

import hashlib
import logging

import pytest
import torch

from semedit.inversion.hyperstyle import (
    DEFAULT_LAYERS_TO_TUNE,
    HyperNetwork,
    WEncoder,
    _inner_width,
    _spatial_from_blocks,
    build_hypernetwork,
    build_w_encoder,
    hyperstyle_checkpoint,
    load_hyperstyle,
    w_encoder_checkpoint,
)
from semedit.inversion.restyle import build_restyle_encoder, restyle_checkpoint
from semedit.stylegan2 import Generator, GeneratorConfig, build_tiny_generator
from semedit.stylegan2.checkpoints import semedit_to_rosinality
from semedit.weights import REGISTRY, CorruptWeightsError, MissingWeightsError
from tests.inversion.hyperstyle_reference import decoder_forward, run_inversion
from tests.inversion.test_encoders import _randomise_stats

# sha256 over the sorted "key\tshape" lines of the upstream classes' state dicts, instantiated with random weights
# (/work/notes/restyle_hyperstyle_keys/hyperstyle_keys.txt, dump_hyper.py: input_nc=6, 26 outputs, the default
# layers_to_tune; 429 / 493 / 387 keys).
UPSTREAM_KEYS = {
    "SharedWeightsHyperNetResNet": "de18cb2aab3463b72f41cc1d47d22d614e3d8b8dc30f7de858b184b60202588a",
    "SharedWeightsHyperNetResNetSeparable": "b154603c469de3ee58ada03595dcaed863b4f82563f075292031e38afbb32680",
    "WEncoder": "37384f94c62e5795f6de5083e374db0dcbed934aa4c6805024f34cfe4ef22cbf",
}
HYPER_UNITS = (3, 4, 6, 3)  # ResNet-34's block counts, narrow widths


def _key_digest(module: torch.nn.Module) -> str:
    lines = sorted(f"{k}\t{tuple(v.shape)}" for k, v in module.state_dict().items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.fixture(scope="module")
def G():
    return build_tiny_generator(resolution=32, seed=0)  # w_dim 64; 4..16 px: 64 channels, 32 px: 32


def _strip(state, prefix):
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def _random_deltas(G, n, seed, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(n, *s, generator=gen) for s in G.synthesis.style_layer_weight_shapes()]


# ------------------------------------------------------------------------------------------------ generator


def test_style_layer_order_is_hyperstyles(G):
    # 2 + 3 per block: conv1, to_rgb1, then convs[2k] (up), convs[2k+1], to_rgbs[k] (hyperstyle model.py 530-541).
    assert G.synthesis.style_layer_names == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0",
                                             "b16.conv1", "b16.torgb", "b32.conv0", "b32.conv1", "b32.torgb"]
    sd = semedit_to_rosinality(G)
    ros = ["conv1", "to_rgb1"] + [n for k in range(3) for n in (f"convs.{2 * k}", f"convs.{2 * k + 1}", f"to_rgbs.{k}")]
    assert G.synthesis.style_layer_weight_shapes() == [tuple(sd[f"{n}.conv.weight"].shape[1:]) for n in ros]
    with torch.device("meta"):
        big = Generator(GeneratorConfig(channels=GeneratorConfig.channels_from_base(1024, 32768, 512)))
    shapes = big.synthesis.style_layer_weight_shapes()
    assert len(shapes) == 26 and shapes[14] == (256, 512, 3, 3) and shapes[25] == (3, 32, 1, 1)  # PARAMETERS 14, 25


def test_weight_deltas_match_hyperstyle_decoder(G):
    sd = semedit_to_rosinality(G)
    gen = torch.Generator().manual_seed(0)
    ws = G.mapping(torch.randn(3, G.z_dim, generator=gen)) + 0.3 * torch.randn(3, G.num_ws, G.w_dim, generator=gen)
    deltas = _random_deltas(G, 3, 1)
    with torch.no_grad():
        plain = G.synthesis(ws, noise_mode="const")
        # Per-sample deltas on every layer (upsampling convs and toRGBs included).
        out = G.synthesis(ws, noise_mode="const", weight_deltas=deltas)
        torch.testing.assert_close(out, decoder_forward(sd, ws, deltas), rtol=1e-5, atol=1e-5)
        assert (out - plain).abs().max() > 0.1
        # Some layers only; the rest None.
        some = [d if j in (0, 4, 8, 9) else None for j, d in enumerate(deltas)]
        torch.testing.assert_close(G.synthesis(ws, weight_deltas=some), decoder_forward(sd, ws, some),
                                   rtol=1e-5, atol=1e-5)
        # One sample's deltas for a batch ([1, ...] or [O, I, k, k]) as the editor renders them.
        one = [d[1] for d in deltas]
        expected = decoder_forward(sd, ws, [d[1:2].expand(3, -1, -1, -1, -1) for d in deltas])
        torch.testing.assert_close(G.synthesis(ws, weight_deltas=one), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(G.synthesis(ws, weight_deltas=[d[1:2] for d in deltas]), expected, rtol=1e-5, atol=1e-5)
        # Batch composition does not matter; zero deltas are the plain generator; styles entry point agrees.
        torch.testing.assert_close(G.synthesis(ws[2:3], weight_deltas=[d[2:3] for d in deltas]), out[2:3],
                                   rtol=1e-5, atol=1e-5)
        zeros = [torch.zeros_like(d) for d in deltas]
        torch.testing.assert_close(G.synthesis(ws, weight_deltas=zeros), plain, rtol=1e-5, atol=1e-5)
        styles = G.synthesis.ws_to_styles(ws)
        torch.testing.assert_close(G.synthesis.synthesize_from_styles(styles, "const", weight_deltas=deltas), out)
        # Without deltas (None, or no argument) the output is the plain path's.
        assert torch.equal(G.synthesis(ws, noise_mode="const", weight_deltas=None), plain)


@pytest.mark.parametrize("architecture", ["resnet", "orig"])
def test_weight_deltas_other_architectures(architecture):
    G = build_tiny_generator(resolution=16, architecture=architecture, seed=2)
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3)))
    deltas = _random_deltas(G, 2, 4)
    with torch.no_grad():
        both = G.synthesis(ws, weight_deltas=deltas)
        for i in range(2):
            torch.testing.assert_close(G.synthesis(ws[i:i + 1], weight_deltas=[d[i] for d in deltas]), both[i:i + 1],
                                       rtol=1e-5, atol=1e-5)
        assert not torch.allclose(both, G.synthesis(ws))


def test_weight_delta_shapes_are_checked(G):
    ws = G.mean_ws(2)
    deltas = _random_deltas(G, 2, 0)
    with pytest.raises(ValueError, match="expected 11 weight deltas"):
        G.synthesis(ws, weight_deltas=deltas[:-1])
    bad = list(deltas)
    bad[2] = torch.zeros(2, 64, 64, 1, 1)
    with pytest.raises(ValueError, match=r"weight_deltas\[2\] \(b8.conv0\) has shape \[2, 64, 64, 1, 1\]"):
        G.synthesis(ws, weight_deltas=bad)
    bad[2] = torch.zeros(3, 64, 64, 3, 3)
    with pytest.raises(ValueError, match="3 samples for a batch of 2"):
        G.synthesis(ws, weight_deltas=bad)


# ------------------------------------------------------------------------------------------------ hypernet


def test_full_size_networks_have_the_released_keys_and_shapes():
    with torch.device("meta"):
        big = Generator(GeneratorConfig(channels=GeneratorConfig.channels_from_base(1024, 32768, 512)))
        shapes = [(k, i, o) for o, i, k, _ in big.synthesis.style_layer_weight_shapes()]
        nets = {sep: HyperNetwork(shapes, DEFAULT_LAYERS_TO_TUNE, separable=sep) for sep in (False, True)}
        w_enc = WEncoder(18)
    assert _key_digest(nets[False]) == UPSTREAM_KEYS["SharedWeightsHyperNetResNet"]
    assert _key_digest(nets[True]) == UPSTREAM_KEYS["SharedWeightsHyperNetResNetSeparable"]
    assert _key_digest(w_enc) == UPSTREAM_KEYS["WEncoder"]
    net = nets[False]
    assert net.shared_layers == [0, 2, 3, 5, 6, 8, 9, 11, 12] and net.input_size == 256
    assert [j for j, b in enumerate(net.refinement_blocks) if b is None] == [1, 4, 7, 10, 13, 16, 19, 22, 25]
    # The same module under 10 names (the strict-load trap): shared_weight_hypernet and 9 refinement blocks.
    assert all(net.refinement_blocks[j].hypernet is net.shared_weight_hypernet for j in net.shared_layers)
    sd = net.state_dict()
    assert sum(k.endswith("hypernet.w2") for k in sd) == 10 and tuple(sd["shared_weight_hypernet.w2"].shape) == (512, 262144)
    # What the loader reads back from such a state dict.
    for sep, state in ((False, sd), (True, nets[True].state_dict())):
        assert _spatial_from_blocks(state, shapes, sep) == 16
        assert _inner_width(state, False, 0) == 256 and _inner_width(state, True, 0) == 128


def _hyper_files(G, tmp_path, layers_to_tune=DEFAULT_LAYERS_TO_TUNE, separable=False, seed=1):
    hypernet = build_hypernetwork(G, layers_to_tune, separable=separable, units=HYPER_UNITS, seed=seed)
    _randomise_stats(hypernet, seed + 1)
    w_enc = build_w_encoder(G.num_ws, G.w_dim, depth=50, seed=seed + 2)
    _randomise_stats(w_enc, seed + 3)
    latent_avg = G.w_avg.reshape(1, -1).repeat(G.num_ws, 1)
    ckpt = hyperstyle_checkpoint(hypernet, latent_avg, G)
    w_ckpt = w_encoder_checkpoint(w_enc, latent_avg + 1, G)  # its latent_avg is not the one HyperStyle uses
    torch.save(ckpt, tmp_path / "hyperstyle.pt")
    torch.save(w_ckpt, tmp_path / "w_encoder.pt")
    return ckpt, w_ckpt, tmp_path / "hyperstyle.pt", tmp_path / "w_encoder.pt"


@pytest.mark.parametrize("layers_to_tune,separable", [(DEFAULT_LAYERS_TO_TUNE, False), ("", False), ("", True)],
                         ids=["default-layers", "all-layers", "separable"])
def test_loader_matches_public_inversion(G, tmp_path, caplog, layers_to_tune, separable):
    ckpt, w_ckpt, path, w_path = _hyper_files(G, tmp_path, layers_to_tune, separable)
    state = ckpt["state_dict"]
    assert set(ckpt) == {"state_dict", "opts", "latent_avg", "global_step", "best_val_loss"}
    assert ckpt["opts"]["encoder_type"] == ("SharedWeightsHyperNetResNetSeparable" if separable
                                            else "SharedWeightsHyperNetResNet")
    # Shared layers 0, 2, 3, 5, 6 (64 -> 64); 8 and 9 (64 -> 32, 32 -> 32) get their own blocks.
    assert sorted(k for k in state if k.endswith(".w1")) == ["hypernet.refinement_blocks.0.hypernet.w1"] + [
        f"hypernet.refinement_blocks.{j}.hypernet.w1" for j in (2, 3, 5, 6)] + ["hypernet.shared_weight_hypernet.w1"]
    assert tuple(state["hypernet.conv1.weight"].shape) == (8, 6, 7, 7) and "hypernet.body.3.downsample.0.weight" in state
    assert ("hypernet.refinement_blocks.1.output.0.weight" in state) == (layers_to_tune == "")  # toRGB tuned or not
    assert all(k.startswith(("hypernet.", "decoder.")) for k in state)
    assert all(k.startswith(("encoder.", "decoder.")) for k in w_ckpt["state_dict"])

    with caplog.at_level(logging.WARNING, logger="semedit"):
        model = load_hyperstyle(str(path), G, w_encoder=str(w_path))
    assert not caplog.records
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(7)) * 2 - 1
    result = model.run(x, n_iters=3, keep_iteration_images=True)

    hyper_sd, dec_sd = _strip(state, "hypernet"), _strip(state, "decoder")
    w_sd = _strip(w_ckpt["state_dict"], "encoder")
    codes, deltas, image, images = run_inversion(x, hyper_sd, dec_sd, w_sd, ckpt["latent_avg"], layers_to_tune, 3,
                                                 pool=64, separable=separable, hyper_units=HYPER_UNITS)
    torch.testing.assert_close(result.codes, codes, rtol=1e-5, atol=1e-5)
    assert len(result.weight_deltas) == G.synthesis.num_style_layers == 11
    for j, (mine, ref) in enumerate(zip(result.weight_deltas, deltas, strict=True)):
        assert (mine is None) == (ref is None), j
        if ref is not None:
            assert mine.shape == (2, *G.synthesis.style_layer_weight_shapes()[j])
            torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.images, image, rtol=1e-5, atol=1e-5)
    for mine, ref in zip(result.iteration_images, images, strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.w_images, decoder_forward(dec_sd, codes), rtol=1e-5, atol=1e-5)
    assert (result.images - result.w_images).abs().max() > 0.05  # the deltas change the image

    # An edit: the direction added to the W code, rendered with the same deltas (face_editor.py lines 17-38).
    direction = torch.randn(1, G.w_dim, generator=torch.Generator().manual_seed(9))
    edited = model.render(result.codes + 2 * direction, result.weight_deltas)
    torch.testing.assert_close(edited, decoder_forward(dec_sd, codes + 2 * direction, deltas), rtol=1e-5, atol=1e-5)
    # The checkpoint's own decoder gives the same numbers.
    own = load_hyperstyle(str(path), None, w_encoder=str(w_path), use_checkpoint_decoder=True)
    torch.testing.assert_close(own.run(x, n_iters=3).images, image, rtol=1e-5, atol=1e-5)


def test_wrong_layouts_and_files_are_clear_errors(G, tmp_path, monkeypatch, caplog):
    ckpt, w_ckpt, path, w_path = _hyper_files(G, tmp_path, seed=4)

    def write(name, edit):
        c = {**ckpt, "state_dict": dict(ckpt["state_dict"]), "opts": dict(ckpt["opts"])}
        edit(c)
        torch.save(c, tmp_path / name)
        return str(tmp_path / name)

    cases = [
        (lambda c: c["opts"].update(encoder_type="HyperNet"),
         "'HyperNet' is not a HyperStyle hypernetwork; supported: SharedWeightsHyperNetResNet, "),
        # The strict-load trap: the shared hypernet must be under every alias, and the aliases must agree.
        (lambda c: c["state_dict"].pop("hypernet.refinement_blocks.2.hypernet.w2"),
         r"1 missing: refinement_blocks\.2\.hypernet\.w2"),
        (lambda c: c["state_dict"].update({"hypernet.refinement_blocks.3.hypernet.b1":
                                           c["state_dict"]["hypernet.shared_weight_hypernet.b1"] + 1}),
         r"refinement_blocks\.3\.hypernet\.b1 differs from shared_weight_hypernet\.b1"),
        # opts that build another network than the file holds.
        (lambda c: c["opts"].update(layers_to_tune="0,2,3"), r"unexpected: refinement_blocks\.5\."),
        (lambda c: c["opts"].update(encoder_type="SharedWeightsHyperNetResNetSeparable"), "does not match the model"),
        (lambda c: c["opts"].pop("layers_to_tune"), "no layers_to_tune"),
        (lambda c: c["state_dict"].update({"hypernet.conv1.weight": torch.zeros(8, 3, 7, 7)}),
         r"wrong shape: conv1\.weight: file \[8, 3, 7, 7\] vs model \[8, 6, 7, 7\]"),
        (lambda c: c.update(state_dict={k: v for k, v in c["state_dict"].items() if k.startswith("hypernet.")}),
         "no 'decoder"),
        (lambda c: c["opts"].update(output_size=64), "output_size 64 means 14"),
        (lambda c: c.pop("latent_avg"), "no 'latent_avg'"),
    ]
    for i, (edit, match) in enumerate(cases):
        case = write(f"case{i}.pt", edit)
        with pytest.raises(CorruptWeightsError, match=match) as err:
            load_hyperstyle(case, G, w_encoder=str(w_path))
        assert "weights_only" not in str(err.value)
    # A W encoder that is not HyperStyle's WEncoder (a ReStyle encoder) / with a missing tensor.
    restyle = build_restyle_encoder("e4e", G.num_ws, G.w_dim, depth=10, channels=(16, 32, 48, 64), input_size=64)
    torch.save(restyle_checkpoint(restyle, G.mean_ws(1)[0], G), tmp_path / "restyle.pt")
    with pytest.raises(CorruptWeightsError, match="not HyperStyle's WEncoder"):
        load_hyperstyle(str(path), G, w_encoder=str(tmp_path / "restyle.pt"))
    w_bad = {**w_ckpt, "state_dict": {k: v for k, v in w_ckpt["state_dict"].items() if k != "encoder.body.5.res_layer.4.bias"}}
    torch.save(w_bad, tmp_path / "w_bad.pt")
    with pytest.raises(CorruptWeightsError, match=r"W encoder of .* 1 missing: body\.5\.res_layer\.4\.bias"):
        load_hyperstyle(str(path), G, w_encoder=str(tmp_path / "w_bad.pt"))
    # A generator the hypernetwork was not trained for.
    with pytest.raises(CorruptWeightsError, match="layer shapes"):
        load_hyperstyle(str(path), build_tiny_generator(resolution=32, channel_max=32, seed=0), w_encoder=str(w_path))
    # A given generator that differs in value: one warning, and it is used.
    with caplog.at_level(logging.WARNING, logger="semedit"):
        load_hyperstyle(str(path), build_tiny_generator(resolution=32, seed=5), w_encoder=str(w_path))
    assert len(caplog.records) == 1 and "not the checkpoint's decoder" in caplog.records[0].getMessage()
    # Truncated files.
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptWeightsError, match="truncated or corrupt") as err:
        load_hyperstyle(str(tmp_path / "cut.pt"), G, w_encoder=str(w_path))
    assert "weights_only" not in str(err.value)
    (tmp_path / "w_cut.pt").write_bytes(w_path.read_bytes()[:1000])
    with pytest.raises(CorruptWeightsError, match="w_cut.pt is truncated or corrupt"):
        load_hyperstyle(str(path), G, w_encoder=str(tmp_path / "w_cut.pt"))
    # The released files, when absent.
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(MissingWeightsError, match=r"hyperstyle_ffhq\.pt.*1C3dEIIH1y8w1-zQMCyx7rDF0ndswSXh4"):
        load_hyperstyle(None, G)
    with pytest.raises(MissingWeightsError, match=r"faces_w_encoder\.pt.*1M-hsL3W_cJKs77xM1mwq2e9-J0_m7rHP"):
        load_hyperstyle(str(path), G)


def test_registry_entries():
    for name, filename, drive_id in (("hyperstyle-ffhq", "hyperstyle_ffhq.pt", "1C3dEIIH1y8w1-zQMCyx7rDF0ndswSXh4"),
                                     ("hyperstyle-w-encoder-faces", "faces_w_encoder.pt", "1M-hsL3W_cJKs77xM1mwq2e9-J0_m7rHP")):
        entry = REGISTRY[name]
        assert entry.filename == filename and entry.sha256 is None and entry.download is False
        assert entry.url == f"https://drive.google.com/file/d/{drive_id}/view?usp=sharing"
        assert entry.source.startswith("https://github.com/yuval-alaluf/hyperstyle")


def test_random_tiny_hyperstyle_fits_generator(G):
    model = load_hyperstyle("random:1", G)
    result = model.run(torch.zeros(2, 3, 32, 32), n_iters=2)
    assert result.codes.shape == (2, G.num_ws, G.w_dim) and torch.equal(result.codes[:, 0], result.codes[:, -1])
    assert result.images.shape == (2, 3, 32, 32) and torch.isfinite(result.images).all()
    assert [d is None for d in result.weight_deltas] == [j % 3 == 1 for j in range(11)]  # toRGBs untuned
