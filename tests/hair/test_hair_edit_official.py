"""`semedit hair-edit` with the official latent_directions.pkl, `transfer --preprocess official`, and
`semedit train hair-direction` (a hair attribute, the direction classifier, the hair-embedding space)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from semedit.cli import main
from semedit.edits import load_direction
from semedit.hair import load_hair_method
from semedit.hair.fg2021.method import FG2021
from semedit.images import image_grid, save_image
from semedit.jobs import get_job
from semedit.perception.photos import load_image
from tests.hair.test_official_release import _released_state_dict


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    ckpt = folder / "best_model.pt"
    torch.save(_released_state_dict(), ckpt)
    model = load_hair_method(ckpt).model
    num_ws, w_dim = model.net.num_ws, model.net.w_dim
    rng = np.random.RandomState(0)
    directions = {"color": rng.randn(num_ws, w_dim) * 0.05, "structure": rng.randn(w_dim) * 0.05}
    pkl = folder / "latent_directions.pkl"
    pkl.write_bytes(pickle.dumps(directions, protocol=3))  # python 3.6's default protocol, like the release
    with torch.no_grad():
        img = model.generator(torch.randn(1, model.generator.z_dim, generator=torch.Generator().manual_seed(3)),
                              noise_mode="const").clamp(-1, 1)
    face = save_image(img[0], folder / "face.png")
    return folder, ckpt, pkl, directions, face


def test_hair_edit_reads_the_official_file_at_the_official_scale(release, capsys):
    folder, ckpt, pkl, directions, face = release
    out = folder / "color.png"
    assert main(["hair-edit", "--hair-model", str(ckpt), "--face", str(face), "--regions", "ellipse", "--direction", "color",
                 "--directions-file", str(pkl), "--precision", "none", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "strengths [10.0, 10.5, 11.0]" in text and "official 'color'" in text  # the README's default
    # The same edit by hand: hair embedding + c * direction (hairstyle_transfer_tool.py line 219), seeded noise.
    tool = FG2021(load_hair_method(ckpt).model, regions="ellipse")
    image = load_image(face, size=32)
    step = torch.from_numpy(directions["color"]).float()
    frames = tool.manipulate_hair(image, image, step, [10.0, 10.5, 11.0])
    expected = save_image(image_grid(frames[:, 0], ncols=3), folder / "expected.png")
    torch.testing.assert_close(load_image(out), load_image(expected), atol=0, rtol=0)
    # A [w_dim] direction (broadcast over the entries) and explicit strengths.
    assert main(["hair-edit", "--hair-model", str(ckpt), "--face", str(face), "--regions", "ellipse", "--direction",
                 "structure", "--directions-file", str(pkl), "--strengths", "-20", "20", "--out",
                 str(folder / "s.png")]) == 0


def test_hair_edit_refuses_a_planted_pickle_and_names_the_missing_file(release, tmp_path, capsys, monkeypatch):
    _, ckpt, _, _, face = release
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "latent_directions.pkl"

    class Planted:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    evil.write_bytes(pickle.dumps({"color": Planted()}, protocol=3))
    assert main(["hair-edit", "--hair-model", str(ckpt), "--face", str(face), "--regions", "ellipse", "--direction", "color",
                 "--directions-file", str(evil)]) == 2
    assert "refusing to load" in capsys.readouterr().err and not marker.exists()
    monkeypatch.setenv("SEMEDIT_WEIGHTS", str(tmp_path / "empty"))
    assert main(["hair-edit", "--hair-model", str(ckpt), "--face", str(face), "--regions", "ellipse", "--direction",
                 "structure"]) == 2
    err = capsys.readouterr().err
    assert "latent_directions.pkl" in err and "drive.google.com" in err
    assert main(["hair-edit", "--hair-model", str(ckpt), "--face", str(face), "--direction", "hue"]) == 2
    assert "color, structure" in capsys.readouterr().err


def test_transfer_official_preprocessing_from_the_command_line(release):
    folder, ckpt, _, _, face = release
    outs = {}
    for mode in ("semedit", "official"):
        outs[mode] = folder / f"transfer_{mode}.png"
        assert main(["transfer", "--hair-model", str(ckpt), "--face", str(face), "--hair", str(face), "--regions", "ellipse",
                     "--alpha-blend", "--preprocess", mode, "--official-size", "16", "--out", str(outs[mode])]) == 0
    a, b = (load_image(outs[m]) for m in ("semedit", "official"))
    assert a.shape == b.shape == (1, 3, 32, 32) and (a - b).abs().max() > 0


def test_train_hair_direction_job(release, tmp_path):

    _, ckpt, _, _, _ = release
    job = get_job("hair-direction")
    cfg = job.load_config(None, [f"hair_model={ckpt}", "regions=ellipse", f"run.output_dir={tmp_path}",
                                 "run.name=hd", "logger.wandb=false", "direction.num_samples=60",
                                 "direction.fraction=0.2", "direction.score_batch_size=30",
                                 "direction.lbfgs_iterations=10", "trainer.max_epochs=1"])
    result = job.run(cfg, [])
    d = load_direction(result.run_dir / "direction.safetensors")
    model = load_hair_method(ckpt).model
    assert d.space == "wplus" and d.layers == list(range(model.net.num_ws))
    assert d.dim == model.net.num_ws * model.net.w_dim
    assert d.meta["scorer"] == "hair_lightness" and d.meta["embedding"] == "hair"
    # it is a hair-edit direction file
    tool = FG2021(model, regions="ellipse")
    image = torch.zeros(1, 3, 32, 32)
    frames = tool.manipulate_hair(image, image, d, [0.0, 2.0])
    assert frames.shape == (2, 1, 3, 32, 32)
