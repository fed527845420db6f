"""The weights registry: resolution, clear errors for missing or corrupt files, verify, download, CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile

import pytest
import torch

from semedit import weights as W
from semedit.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("isolated_weights")  # an empty weights folder and torch hub


def test_registry_covers_every_pretrained_file():
    filenames = {e.filename for e in W.REGISTRY.values()}
    for name in ["stylegan2-ffhq-config-f.pt", "ffhq.pkl", "79999_iter.pth", "model_ir_se50.pth",
                 "w600k_r50.onnx", "1k3d68.onnx", "alexnet-owt-7be5be79.pth", "vgg16-397923af.pth"]:
        assert name in filenames
    assert "hairstyle-fg2021" in W.REGISTRY
    nvlabs = W.get_entry("stylegan2-ffhq-nvlabs")
    assert nvlabs.url == "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl"
    for e in W.REGISTRY.values():
        assert e.url.startswith("https://") and e.source and e.purpose
        assert e.sha256 is None or len(e.sha256) == 64


def test_resolve_by_name_alias_and_path(isolated_weights):
    target = isolated_weights / "model_ir_se50.pth"
    target.write_bytes(b"x")
    assert W.resolve_weights("arcface-irse50") == target
    assert W.resolve_weights("irse50") == target  # alias
    assert W.resolve_weights(str(target)) == target
    assert W.expected_path("lpips-alex-backbone").parent == W.torch_hub_checkpoints_dir()


def test_missing_registry_file_names_file_url_and_place(isolated_weights):
    with pytest.raises(W.MissingWeightsError) as info:
        W.resolve_weights("bisenet-celebamaskhq")
    msg = str(info.value)
    assert "79999_iter.pth" in msg
    assert "https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812" in msg
    assert str(isolated_weights / "79999_iter.pth") in msg


def test_missing_path_with_known_file_name_gets_the_url(tmp_path):
    with pytest.raises(W.MissingWeightsError) as info:
        W.resolve_weights(tmp_path / "elsewhere" / "w600k_r50.onnx")
    assert "buffalo_l.zip" in str(info.value) and "elsewhere" in str(info.value)
    with pytest.raises(W.MissingWeightsError, match="does not exist"):
        W.resolve_weights(tmp_path / "nothing.pth")


def test_unknown_name_lists_registry_names():
    with pytest.raises(W.UnknownWeightsError) as info:
        W.resolve_weights("arcface-irse51")
    assert "arcface-irse50" in str(info.value)


def test_corrupt_torch_file_is_a_clear_error(isolated_weights):
    bad = isolated_weights / "model_ir_se50.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(W.CorruptWeightsError) as info:
        W.load_torch_state_dict(bad)
    assert str(bad) in str(info.value) and "drive.google.com" in str(info.value)


class _Payload:
    """A custom class: a weights-only load must refuse to rebuild it (no code from checkpoints runs)."""


def test_checkpoints_with_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "obj": _Payload()}, path)
    with pytest.raises(W.UnsafePickleError, match="refusing to load") as info:
        W.load_torch_state_dict(path)
    assert "_Payload" in str(info.value) and "weights_only" not in str(info.value)


def test_verify_statuses(isolated_weights, monkeypatch):
    good = isolated_weights / "model_ir_se50.pth"
    torch.save({"a": torch.ones(2)}, good)
    assert W.verify_file("arcface-irse50")[0] == "unverified"
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    known = dataclasses.replace(W.get_entry("arcface-irse50"), sha256=digest)
    assert W.verify_file(known)[0] == "ok"
    wrong = dataclasses.replace(known, sha256="0" * 64)
    status, detail = W.verify_file(wrong)
    assert status == "corrupt" and "differs" in detail
    # torchvision files: the SHA-256 prefix in the name is checked.
    hub = W.expected_path("lpips-alex-backbone")
    hub.parent.mkdir(parents=True)
    torch.save({"a": torch.ones(1)}, hub)
    status, detail = W.verify_file("lpips-alex-backbone")
    assert status == "corrupt" and "7be5be79" in detail
    assert W.verify_file("arcface-w600k-r50")[0] == "missing"


def _patch_entry(monkeypatch, name, **changes):
    entry = dataclasses.replace(W.REGISTRY[name], **changes)
    monkeypatch.setitem(W.REGISTRY, name, entry)
    return entry


def test_download_verifies_and_removes_bad_files(tmp_path, isolated_weights, monkeypatch):
    source = tmp_path / "served.pth"
    torch.save({"a": torch.arange(3.0)}, source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    _patch_entry(monkeypatch, "arcface-irse50", url=source.as_uri(), download=True, sha256=digest)
    path = W.download_weights("arcface-irse50", progress=False)
    assert path == isolated_weights / "model_ir_se50.pth" and W.verify_file("arcface-irse50")[0] == "ok"

    _patch_entry(monkeypatch, "arcface-irse50", url=source.as_uri(), download=True, sha256="1" * 64)
    with pytest.raises(W.CorruptWeightsError, match="failed verification"):
        W.download_weights("arcface-irse50", force=True, progress=False)
    assert not path.exists()


def test_download_extracts_archive_member(tmp_path, isolated_weights, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model_file = tmp_path / "1k3d68.onnx"
    onnx.save(helper.make_model(graph), str(model_file))
    archive = tmp_path / "buffalo_l.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(model_file, "buffalo_l/1k3d68.onnx")
    _patch_entry(monkeypatch, "landmarks-1k3d68", url=archive.as_uri())
    path = W.download_weights("landmarks-1k3d68", progress=False)
    assert path.read_bytes() == model_file.read_bytes()
    assert W.verify_file("landmarks-1k3d68")[0] == "unverified"


def test_download_of_web_page_entries_explains_what_to_do():
    with pytest.raises(W.WeightsError, match="put it at"):
        W.download_weights("bisenet-celebamaskhq")


def test_cli_list_verify_download(isolated_weights, capsys):
    assert cli_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name in W.REGISTRY:
        assert name in out
    assert "[missing]" in out and "https://nvlabs-fi-cdn.nvidia.com" in out

    (isolated_weights / "79999_iter.pth").write_bytes(b"garbage")
    assert cli_main(["weights", "verify"]) == 1
    assert "bisenet-celebamaskhq: corrupt" in capsys.readouterr().out

    assert cli_main(["weights", "download", "arcface-irse50"]) == 2
    assert "drive.google.com" in capsys.readouterr().err
