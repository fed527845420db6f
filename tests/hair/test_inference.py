"""Inference: loading checkpoints, transfer (+ alpha blend), interpolation, hair-embedding directions, CLI."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from semedit.cli import main
from semedit.config import GeneratorSpec, as_dict
from semedit.edits import wplus_offset
from semedit.hair import load_hair_method
from semedit.hair.fg2021.config import EncoderConfig, LossConfig, OptimConfig
from semedit.hair.fg2021.method import FG2021, hair_pca_directions
from semedit.hair.fg2021.module import HairTransferModule, hair_inputs
from semedit.images import save_image
from semedit.stylegan2 import generator_from_spec


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    spec = GeneratorSpec()
    spec.tiny.resolution = 16
    G = generator_from_spec(spec)
    torch.manual_seed(0)
    module = HairTransferModule(EncoderConfig(num_layers=10, channels=[8, 16, 32, 64], feature_dim=32, pool_size=2,
                                              input_size=16),
                                LossConfig(identity=0, identity_encoder=None), OptimConfig(), G.num_ws, G.w_dim,
                                generator_spec=as_dict(spec), regions="ellipse")
    folder = tmp_path_factory.mktemp("inference")
    path = folder / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    with torch.no_grad():
        images = G(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    return path, module, images, folder


def test_loaded_model_matches_the_trained_module(tiny_model):
    path, module, images, _ = tiny_model
    model = load_hair_method(path).model
    assert model.source == "semedit" and model.regions == "ellipse" and model.input_size == 16
    tool = FG2021(model)
    out = tool.transfer(images[:2], images[1:3])
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1
    # The same computation as in training: masked inputs -> net -> generator.
    m_face, m_hair = tool.masks(images[:2])["face"], tool.masks(images[1:3])["hair"]
    face, hair = hair_inputs(images[:2], m_face, images[1:3], m_hair, 16)
    module.eval()
    with torch.no_grad():
        ref = model.generator.synthesis(module(face, hair), noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(out, ref)


def test_alpha_blend_keeps_the_inner_face(tiny_model):
    path, _, images, _ = tiny_model
    tool = FG2021(load_hair_method(path).model)
    plain = tool.transfer(images[:1], images[1:2])
    blended = tool.transfer(images[:1], images[1:2], alpha_blend=True, feather=0)
    face = tool.masks(images[:1])["face"] > 0.999
    hair = tool.masks(images[:1])["face"] < 0.001
    assert torch.allclose(blended[face.expand_as(blended)], images[:1][face.expand_as(blended)])
    assert torch.allclose(blended[hair.expand_as(blended)], plain[hair.expand_as(plain)], atol=1e-5)


def test_interpolation_endpoints_and_hair_directions(tiny_model):
    path, _, images, _ = tiny_model
    tool = FG2021(load_hair_method(path).model)
    frames = tool.interpolate(images[:1], images[1:2], images[2:3], steps=4, what="hair")
    assert frames.shape == (4, 1, 3, 16, 16)
    torch.testing.assert_close(frames[0], tool.transfer(images[:1], images[1:2]))
    torch.testing.assert_close(frames[-1], tool.transfer(images[:1], images[2:3]))
    faces = tool.interpolate(images[:1], images[1:2], images[2:3], steps=3, what="face")
    torch.testing.assert_close(faces[-1], tool.transfer(images[2:3], images[1:2]))

    # PCA on planted embeddings: the first component is the planted axis.
    g = torch.Generator().manual_seed(0)
    num_ws, w_dim = tool.model.net.num_ws, tool.model.net.w_dim
    axis = torch.zeros(num_ws, w_dim)
    axis[2, 5] = 1.0
    codes = 0.01 * torch.randn(200, num_ws, w_dim, generator=g) + torch.randn(200, 1, 1, generator=g) * axis
    directions, ratio = hair_pca_directions(codes, 3)
    assert abs(float(directions[0].vector @ axis.flatten())) > 0.99 and ratio[0] > 0.5
    assert directions[0].space == "wplus" and directions[0].meta["embedding"] == "hair"
    # Editing: strength 0 is the plain transfer, and a [w_dim] direction applies to all entries.
    edits = tool.manipulate_hair(images[:1], images[1:2], directions[0], [0.0, 3.0])
    torch.testing.assert_close(edits[0], tool.transfer(images[:1], images[1:2]))
    assert (edits[1] - edits[0]).abs().max() > 0
    assert wplus_offset(torch.ones(w_dim), num_ws, w_dim).sum() == num_ws * w_dim
    with pytest.raises(ValueError, match="entries"):
        wplus_offset(torch.ones(w_dim + 1), num_ws, w_dim)


def test_cli_transfer_and_errors(tiny_model, capsys):
    path, _, images, folder = tiny_model
    a, b = save_image(images[0], folder / "a.png"), save_image(images[1], folder / "b.png")
    out = folder / "out.png"
    assert main(["transfer", "--hair-model", str(path), "--face", str(a), "--hair", str(b), "--alpha-blend",
                 "--out", str(out)]) == 0
    assert out.is_file()

    Image.new("RGB", (20, 10)).save(folder / "wide.png")
    assert main(["transfer", "--hair-model", str(path), "--face", str(folder / "wide.png"), "--hair", str(b)]) == 2
    assert "--raw" in capsys.readouterr().err
    bad = folder / "bad.ckpt"
    torch.save({"foo": torch.zeros(1)}, bad)
    assert main(["transfer", "--hair-model", str(bad), "--face", str(a), "--hair", str(b)]) == 2
    assert "is not a model of any hair-transfer method" in capsys.readouterr().err
