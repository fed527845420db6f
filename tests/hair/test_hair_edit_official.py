"""`semedit hair-edit` with the official latent_directions.pkl, `transfer --preprocess official`, and
`semedit train hair-direction` (a hair attribute, the direction classifier, the hair-embedding space)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semedit.cli import main
from semedit.edits import load_direction
from semedit.hair import load_hair_method
from semedit.hair.fg2021.encoders import resize_for_encoder
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


def test_official_manipulation_and_interpolation_follow_the_released_tool(release, capsys):
    """hairstyle_transfer_tool.py lines 140-189 (interpolation) and 214-251 (manipulation), transcribed: the
    256 px hard-masked inputs of utils.split_image, ``e + c * latent_dir`` / ``(1 - x) e1 + x e2`` on the hair
    embedding, ``forward_i_v(inner_face, e, resize=True)``: the image pooled to 256 px, clamped on conversion."""
    folder, ckpt, pkl, directions, face = release
    model = load_hair_method(ckpt).model
    tool = FG2021(model, regions="ellipse", noise_mode="const")
    image = load_image(face, size=16)  # the tool's 256 px inputs, scaled to this tiny model
    other = image.flip(-1)
    net, G = model.net, model.generator

    def split(x):  # utils.split_image: the filled hull is the inner face, the rest the hair
        mask = (tool.masks(x)["face"] > 0.5).float()
        return x * mask, x * (1 - mask)

    def forward_i_v(inner, e):
        ws = net.fuse(net.encode_face(resize_for_encoder(inner, 256)), e)
        return F.adaptive_avg_pool2d(G.synthesis(ws, noise_mode="const").float(), (256, 256)).clamp(-1, 1)

    inner, hair = split(image)
    step = torch.from_numpy(directions["color"]).float()
    coeffs = [-1.0, 0.0, 2.0]
    ours = tool.manipulate_hair(image, image, step, coeffs, preprocess="official")
    with torch.no_grad():
        e1 = net.encode_hair(resize_for_encoder(hair, 256))
        for c, frame in zip(coeffs, ours, strict=True):
            torch.testing.assert_close(frame, forward_i_v(inner, e1 + c * step))
    assert ours.shape == (3, 1, 3, 256, 256) and not torch.equal(ours[0], ours[2])

    frames = tool.interpolate(image, image, other, steps=4, preprocess="official")
    with torch.no_grad():
        e2 = net.encode_hair(resize_for_encoder(split(other)[1], 256))
        for x, frame in zip(np.linspace(0, 1, num=4), frames, strict=True):
            torch.testing.assert_close(frame, forward_i_v(inner, (1 - x) * e1 + x * e2))

    # From the command line: --preprocess official on hair-edit and hair-interpolate.
    for argv in (["hair-edit", "--direction", "color", "--directions-file", str(pkl), "--strengths", "0", "1"],
                 ["hair-interpolate", "--hair", str(face), "--to", str(face), "--steps", "2"]):
        out = folder / f"{argv[0]}-official.png"
        assert main([*argv, "--hair-model", str(ckpt), "--face", str(face), "--regions", "ellipse", "--preprocess",
                     "official", "--official-size", "16", "--out", str(out)]) == 0
        assert load_image(out).shape[-1] == 2 * 256  # two frames of the pooled 256 px image
