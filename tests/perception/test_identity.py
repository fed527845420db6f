"""ArcFace identity encoders: IR-SE50 in the model_ir_se50.pth format, insightface ONNX, the FFHQ crop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semedit.perception.identity import (
    IRSEBackbone,
    OnnxIdentityEncoder,
    TorchIdentityEncoder,
    build_irse,
    cosine_similarity,
    cosine_similarity_matrix,
    ffhq_face_crop,
    identity_distance,
    load_identity_encoder,
)
from semedit.weights import CorruptWeightsError, MissingWeightsError
from tests.perception.helpers import TinyArcFace, export_onnx, fixture_json, randomize_batchnorm


def _images(n=2, res=64, seed=0):
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_irse50_matches_the_public_format_exactly():
    fixture = fixture_json("irse50_arcface.json")["state_dict"]
    sd = IRSEBackbone(50).state_dict()
    assert list(sd) == list(fixture)  # same names, same order
    assert {k: list(v.shape) for k, v in sd.items()} == fixture


def test_irse50_round_trip_reproduces_outputs(isolated_weights):
    net = randomize_batchnorm(build_irse(50, seed=1), seed=1)
    torch.save(net.state_dict(), isolated_weights / "model_ir_se50.pth")
    enc = load_identity_encoder("arcface-irse50")
    assert isinstance(enc, TorchIdentityEncoder) and enc.backbone.num_layers == 50
    x = _images(1, 64)  # one image: IR-SE50 is slow on a shared 2-core CPU
    with torch.no_grad():
        expected = net(ffhq_face_crop(x))
        got = enc(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.allclose(got.norm(dim=1), torch.ones(1), atol=1e-5)


def test_smaller_depths_round_trip_through_a_path(tmp_path):
    net = randomize_batchnorm(build_irse(18, seed=2), seed=2)
    path = tmp_path / "irse18.pth"
    torch.save({"state_dict": net.state_dict()}, path)  # wrapped dicts are accepted too
    enc = load_identity_encoder(path)
    assert enc.backbone.num_layers == 18
    x = _images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), net(ffhq_face_crop(x)), rtol=0, atol=1e-6)


def test_wrong_checkpoint_is_refused_loudly(tmp_path):
    sd = build_irse(18).state_dict()
    sd.pop("output_layer.3.bias")
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(CorruptWeightsError, match="missing: output_layer.3.bias"):
        load_identity_encoder(path)
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(CorruptWeightsError, match="not an IR-SE"):
        load_identity_encoder(path)


def test_missing_registry_weights_error():
    with pytest.raises(MissingWeightsError, match="model_ir_se50.pth"):
        load_identity_encoder("arcface-irse50")


@pytest.fixture(scope="module")
def irse18():
    return load_identity_encoder("random-irse:18")


def test_random_irse_specs_are_deterministic_and_differentiable(irse18):
    a = irse18
    b = load_identity_encoder("random-irse:18:0")
    c = load_identity_encoder("random-irse:18:1")
    torch.testing.assert_close(b.state_dict(), a.state_dict(), rtol=0, atol=0)
    assert not torch.equal(c.backbone.input_layer[0].weight, a.backbone.input_layer[0].weight)
    x = _images(2, 32).requires_grad_(True)
    ea = a(x)
    assert ea.shape == (2, 512)
    identity_distance(ea, ea.detach().flip(0)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.backbone.training  # frozen batch-norm statistics inside training modules
    with pytest.raises(ValueError, match="depth"):
        load_identity_encoder("random-irse:20")


def test_ffhq_crop_equals_psp_at_256_and_1024():
    def psp(x):  # pSp IDLoss.extract_feats preprocessing
        if x.shape[2] != 256:
            x = torch.nn.AdaptiveAvgPool2d((256, 256))(x)
        return torch.nn.AdaptiveAvgPool2d((112, 112))(x[:, :, 35:223, 32:220])

    for res in (256, 1024):
        x = _images(1, res, seed=res)
        torch.testing.assert_close(ffhq_face_crop(x), psp(x), rtol=0, atol=1e-6)
    small = ffhq_face_crop(_images(2, 32))
    assert small.shape == (2, 3, 112, 112)


def test_batch_embedding_helper_matches_single_calls(irse18):
    x = _images(2, 32)
    torch.testing.assert_close(irse18.embed(x, batch_size=1), irse18(x), rtol=0, atol=1e-5)


def test_onnx_arcface_through_insightface(tmp_path):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    tiny = TinyArcFace(seed=3).eval()
    path = export_onnx(tiny, tmp_path / "w600k_r50.onnx", (1, 3, 112, 112))
    enc = load_identity_encoder(path)
    assert isinstance(enc, OnnxIdentityEncoder) and isinstance(enc.model, ArcFaceONNX)
    assert enc.fixed_batch is None
    x = _images(5, 64)
    got = enc(x)
    assert got.shape == (5, 512)
    with torch.no_grad():
        # insightface normalises pixels (0..255) with mean = std = 127.5, i.e. our [-1, 1] images.
        expected = F.normalize(tiny(ffhq_face_crop(x).clamp(-1, 1)), dim=1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)

    # Exports with a fixed batch of 1 run in chunks.
    fixed = OnnxIdentityEncoder(export_onnx(tiny, tmp_path / "fixed.onnx", (1, 3, 112, 112), dynamic_batch=False))
    assert fixed.fixed_batch == 1
    torch.testing.assert_close(fixed(x), got, rtol=0, atol=1e-6)

    # crop="none" takes ArcFace-aligned 112 px crops as they are.
    crops = _images(2, 112)
    with torch.no_grad():
        torch.testing.assert_close(load_identity_encoder(path, crop="none")(crops),
                                   F.normalize(tiny(crops), dim=1), rtol=0, atol=1e-5)


def test_onnx_of_the_wrong_kind_is_refused(tmp_path):
    path = export_onnx(torch.nn.Conv2d(3, 1, 1), tmp_path / "not_arcface.onnx", (1, 3, 96, 96))
    with pytest.raises(CorruptWeightsError, match="not an ArcFace"):
        load_identity_encoder(path)
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CorruptWeightsError, match="could not be loaded"):
        load_identity_encoder(bad)


def test_cosine_helpers():
    a = F.normalize(torch.randn(4, 8), dim=1)
    b = F.normalize(torch.randn(3, 8), dim=1)
    m = cosine_similarity_matrix(a, b)
    assert m.shape == (4, 3)
    torch.testing.assert_close(m[1, 2], (a[1] * b[2]).sum())
    torch.testing.assert_close(cosine_similarity(a, a), torch.ones(4))
    torch.testing.assert_close(identity_distance(a, -a), torch.full((4,), 2.0))
