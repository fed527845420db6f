"""BiSeNet face parser in the 79999_iter.pth format: exact format, round trip, any image size, masks."""

from __future__ import annotations

import pytest
import torch

from semedit.perception.parsing import (
    CELEBAMASK_HQ_CLASSES,
    BiSeNet,
    FaceParser,
    build_bisenet,
    load_face_parser,
)
from semedit.weights import CorruptWeightsError, MissingWeightsError
from tests.perception.helpers import fixture_json, randomize_batchnorm


def test_bisenet_matches_the_public_format_exactly():
    fixture = fixture_json("bisenet_celebamaskhq.json")
    sd = BiSeNet(19).state_dict()
    assert list(sd) == list(fixture["state_dict"])
    assert {k: list(v.shape) for k, v in sd.items()} == fixture["state_dict"]
    assert list(CELEBAMASK_HQ_CLASSES) == fixture["classes"] and CELEBAMASK_HQ_CLASSES[17] == "hair"


@pytest.fixture(scope="module")
def saved_parser(tmp_path_factory):
    net = randomize_batchnorm(build_bisenet(seed=3), seed=3)
    path = tmp_path_factory.mktemp("parser") / "79999_iter.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_round_trip_reproduces_outputs_with_the_input_convention(saved_parser, isolated_weights):
    net, path = saved_parser
    (isolated_weights / "79999_iter.pth").write_bytes(path.read_bytes())
    parser = load_face_parser("bisenet-celebamaskhq")
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    # The released convention: RGB in [0, 1], ImageNet mean/std, 512 px; `out` of (out, out16, out32).
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net(((x + 1) / 2 - mean) / std)[0]
        got = parser(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_any_size_and_masks(saved_parser):
    net, _ = saved_parser
    parser = FaceParser(net)
    x = torch.rand(1, 3, 96, 80) * 2 - 1
    with torch.no_grad():
        logits = parser(x)
    masks = parser.masks_from_logits(logits)
    soft = parser.masks_from_logits(logits, soft=True)
    assert logits.shape == (1, 19, 96, 80)
    labels = logits.argmax(1, keepdim=True)
    torch.testing.assert_close(masks["hair"], (labels == 17).float())
    inner = sum((labels == c).float() for c in (1, 2, 3, 4, 5, 10, 11, 12, 13))
    torch.testing.assert_close(masks["face"], inner)
    total = masks["hair"] + masks["face"] + masks["background"]
    assert masks["face"].shape == (1, 1, 96, 80) and total.max() <= 1  # disjoint classes
    assert soft["face"].min() >= 0 and soft["face"].max() <= 1


def test_dataparallel_prefix_and_wrong_files(tmp_path, saved_parser):
    net, _ = saved_parser
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    load_face_parser(path)
    sd = net.state_dict()
    sd["conv_out.conv_out.weight"] = torch.zeros(18, 256, 1, 1)  # an 18-class parser
    torch.save(sd, path)
    with pytest.raises(CorruptWeightsError, match=r"wrong shape: conv_out.conv_out.weight"):
        load_face_parser(path)
    with pytest.raises(MissingWeightsError, match="154JgKpzCPW82qINcVieuPH3fZ2e0P812"):
        load_face_parser(None)  # None = registry default, absent here
