"""`transfer`, `hair-interpolate` and `hair-edit` refuse bad inputs and unusable outputs with one line,
before any model is loaded: the checkpoint given here does not even exist."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from semedit.cli import main


def _commands(face: str, hair: str, out: str) -> dict[str, list[str]]:
    ckpt = ["--hair-model", "never-loaded.ckpt"]
    return {
        "transfer": ["transfer", *ckpt, "--face", face, "--hair", hair, "--out", out],
        "hair-interpolate": ["hair-interpolate", *ckpt, "--face", face, "--hair", hair, "--to", hair, "--out", out],
        "hair-edit": ["hair-edit", *ckpt, "--face", face, "--hair", hair, "--direction", "never-loaded.safetensors",
                      "--out", out],
    }


@pytest.fixture()
def good(tmp_path):
    path = tmp_path / "good.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(path)
    return str(path)


def _bad_inputs(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    bomb = tmp_path / "bomb.png"  # a bomb under the lowered pixel limit set below
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(bomb)
    return {"non-image": (str(text), "not an image"), "zero-byte": (str(empty), "empty file"),
            "bomb": (str(bomb), "too large to decode safely")}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", ["transfer", "hair-interpolate", "hair-edit"])
def test_bad_images_are_refused_before_any_work(tmp_path, good, command, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 64 x 64 = 4096 > 2 x 1500: a bomb; 32 x 32 is not
    for kind, (path, message) in _bad_inputs(tmp_path).items():
        for face, hair in ((path, good), (good, path)):
            argv = _commands(face, hair, str(tmp_path / "out.png"))[command]
            assert main(argv) == 2, (kind, argv)
            err = _one_line_error(capsys)
            assert message in err and path in err, (kind, err)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("command", ["transfer", "hair-interpolate", "hair-edit"])
def test_unusable_output_paths_are_refused_before_any_work(tmp_path, good, command, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(_commands(good, good, str(folder))[command]) == 2
    assert "is a folder" in _one_line_error(capsys)
    with read_only(tmp_path / "ro") as ro:
        assert main(_commands(good, good, str(ro / "out.png"))[command]) == 2
        assert "not writable" in _one_line_error(capsys)


def test_hair_pca_checks_its_output_folder_first(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["hair-pca", "--hair-model", "never-loaded.ckpt", "--out", str(afile)]) == 2
    assert "is a file" in _one_line_error(capsys)


class read_only:
    """A folder nobody may write into, root included (root ignores mode bits: the immutable flag instead)."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.path.mkdir()
        if os.geteuid() == 0:
            chattr = shutil.which("chattr")
            if chattr is None or subprocess.run([chattr, "+i", str(self.path)], capture_output=True).returncode:
                pytest.skip("running as root without chattr +i: no way to make a folder read-only")
            self.undo = [chattr, "-i", str(self.path)]
        else:
            os.chmod(self.path, 0o555)
            self.undo = None
        return self.path

    def __exit__(self, *exc):
        if self.undo:
            subprocess.run(self.undo, check=True)
        else:
            os.chmod(self.path, 0o755)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short"], ids=["empty", "truncated"])
def test_a_corrupt_hair_checkpoint_gets_an_explanation_not_pytorchs_advice(tmp_path, good, content, capsys):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(content)
    argv = ["transfer", "--hair-model", str(ckpt), "--face", good, "--hair", good, "--out", str(tmp_path / "o.png")]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "weights_only" not in err and "Re-running" not in err
    assert str(ckpt) in err and "semedit train hair" in err and "hairstyle-fg2021" in err
