"""The demo's tab functions and upload limits, without a browser (the embedded default, CPU)."""

from __future__ import annotations

import json
import pickle
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from semedit.demo import chunky_tab, generate_tab, hair_tab
from semedit.demo.app import Workspace, build_app, example_photos
from semedit.demo.framing import frame_face
from semedit.demo.limits import read_upload, upload_limits
from semedit.demo.models import load_models
from semedit.edits import Direction, DirectionFileError, save_direction
from semedit.errors import ImageError
from semedit.images import to_uint8
from semedit.inversion.io import load_inversion


@pytest.fixture(scope="module")
def models():
    return load_models(hair_pca_samples=16, latent_pca_samples=256)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return example_photos(tmp_path_factory.mktemp("photos"))


LIMITS = upload_limits()


# ------------------------------------------------------------------------------------------ upload limits
def test_read_photo_returns_rgb(photos):
    rgb = read_upload(photos[1], LIMITS)
    assert rgb.dtype == np.uint8 and rgb.shape == (600, 512, 3)


def test_upload_over_the_byte_limit_is_refused_with_the_flag_to_change_it(photos):
    with pytest.raises(ImageError, match=r"astronaut.png is 0\.\d MB; .*up to 0\.1 MB.*--max-upload-mb"):
        read_upload(photos[0], upload_limits(0.1))


def test_upload_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (10_000, 10_000)).save(path)  # 100 megapixels in a few kB of PNG
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageError, match=r"huge.png is 10000x10000 = 100.0 megapixels.*--max-pixels"):
        read_upload(path, LIMITS)
    with pytest.raises(ImageError, match="megapixels"):
        read_upload(path, upload_limits(max_pixels=99_999_999))


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(path)  # more than twice PIL's own limit
    with pytest.raises(ImageError, match="bomb.png"):
        read_upload(path, upload_limits(max_pixels=10**10))


@pytest.mark.parametrize("content, message", [
    (b"this is not a photo\n", "notes.txt is not an image"),
    (b"", "notes.txt is empty"),
])
def test_non_images_are_refused(tmp_path, content, message):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_upload(path, LIMITS)


def test_truncated_image_is_refused(tmp_path, photos):
    path = tmp_path / "cut.png"
    data = photos[0].read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="cut.png is a corrupt or truncated image"):
        read_upload(path, LIMITS)


def test_missing_upload_says_what_to_do():
    with pytest.raises(ImageError, match="no face photo: upload one"):
        read_upload(None, LIMITS, "face photo")


# ------------------------------------------------------------------------------------------ framing
def test_photo_is_ffhq_aligned(photos):
    framed = frame_face(read_upload(photos[1], LIMITS), 64, "grace_hopper.jpg")
    assert framed.image.shape == (64, 64, 3) and framed.method.startswith("FFHQ-aligned")


def test_photo_without_a_face_is_an_error_naming_it():
    blank = np.full((200, 160, 3), 128, np.uint8)
    with pytest.raises(ImageError, match="wall.png"):
        frame_face(blank, 64, "wall.png")


def test_already_aligned_must_be_square():
    with pytest.raises(ImageError, match="not a square aligned face"):
        frame_face(np.zeros((40, 30, 3), np.uint8), 32, "x.png", aligned=True)
    assert frame_face(np.zeros((40, 40, 3), np.uint8), 32, "x.png", aligned=True).image.shape == (32, 32, 3)


# ------------------------------------------------------------------------------------------ hair tab
def test_hair_transfer_interpolation_directions_and_alpha_blend(models, photos, tmp_path):
    pair, face_view, hair_view = hair_tab.prepare_pair(models, photos[0], photos[1], LIMITS)
    assert face_view.shape == hair_view.shape == (256, 256, 3)
    tool = models.hair
    transferred = hair_tab.render_hair(models, pair, 1.0)
    assert transferred.shape == (32, 32, 3)
    assert np.array_equal(transferred, to_uint8(tool.render(pair.face_code, pair.new_hair_code))[0])
    own = hair_tab.render_hair(models, pair, 0.0)
    assert np.array_equal(own, to_uint8(tool.render(pair.face_code, pair.own_hair_code))[0])
    assert not np.array_equal(own, transferred)
    assert len(models.hair_directions) == 3
    edited = hair_tab.render_hair(models, pair, 1.0, [2.0, 0.0, 0.0])
    assert not np.array_equal(edited, transferred)
    blended = hair_tab.render_hair(models, pair, 1.0, alpha_blend=True)
    assert blended.shape == pair.face_crop.shape
    # The inner face (mask = 1 at the centre of the ellipse) is the uploaded face itself.
    c = blended.shape[0] // 2
    assert np.abs(blended[c, c].astype(int) - pair.face_crop[c, c].astype(int)).max() <= 1
    with pytest.raises(ValueError, match="interpolation"):
        hair_tab.render_hair(models, pair, 1.5)
    # The download "in your photo": the result pasted back into the uploaded photo at its own size.
    pasted = hair_tab.paste_into_photo(models, pair, transferred)
    photo = read_upload(photos[0], LIMITS, "face photo")
    assert pasted.shape == photo.shape
    changed = np.abs(pasted.astype(int) - photo).max(axis=2) > 0
    assert 0 < changed.mean() < 0.9 and not changed[:4, :4].any()
    square = tmp_path / "aligned.png"
    Image.fromarray(pair.face_crop).save(square)
    aligned_pair, _, _ = hair_tab.prepare_pair(models, square, square, LIMITS, aligned=True)
    assert hair_tab.paste_into_photo(models, aligned_pair, transferred) is None  # the upload is the crop


def test_hair_tab_refuses_a_text_file(models, photos, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ImageError, match="notes.txt is not an image"):
        hair_tab.prepare_pair(models, photos[0], bad, LIMITS)


# ------------------------------------------------------------------------------------------ ChunkyGAN tab
def test_inversion_previews_files_and_per_chunk_edits(models, photos, tmp_path):
    updates = list(chunky_tab.invert_photo(models, photos[0], 2, "wplus", 12, LIMITS, tmp_path, preview_every=5))
    assert [u.step for u in updates] == [0, 1, 6, 11, 12, 12]  # the last two: saving, then the result
    assert all(u.preview.shape == (32, 32, 3) for u in updates)
    result = updates[-1].result
    assert result is not None and result.n == 2 and all(u.result is None for u in updates[:-1])
    names = {p.name for p in result.files}
    assert {"codes.safetensors", "masks.png", "reconstruction.png", "target.png", "result.json"} <= names
    assert f"{result.name}.zip" in names
    saved = load_inversion(result.folder)  # what `semedit edit-real` reads
    assert saved.space == "wplus" and saved.masks.shape[1] == 2
    unedited = chunky_tab.recomposite(models, result, [[0.0] * 3, [0.0] * 3])
    with Image.open(result.folder / "reconstruction.png") as im:
        assert np.abs(unedited.astype(int) - np.asarray(im).astype(int)).max() <= 1
    edited = chunky_tab.recomposite(models, result, [[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert not np.array_equal(edited, unedited)
    with pytest.raises(ValueError, match="3 chunks"):
        chunky_tab.recomposite(models, result, [[0.0] * 3] * 3)


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("semedit-demo-invert")]


def _gone(deadline: float = 20.0) -> bool:
    end = time.monotonic() + deadline
    while _workers() and time.monotonic() < end:
        time.sleep(0.05)
    return not _workers()


def test_closing_the_page_stops_the_inversion(models, photos, tmp_path):
    gen = chunky_tab.invert_photo(models, photos[0], 2, "w", 100_000, LIMITS, tmp_path, preview_every=1)
    next(gen), next(gen)  # the optimisation is running
    assert _workers()
    gen.close()  # what Gradio does with the generator of a disconnected page
    assert _gone()
    assert not list(tmp_path.glob("invert-*"))  # nothing was written for the cancelled run


def test_stop_ends_the_inversion_with_its_partial_result(models, photos, tmp_path):
    cancel = threading.Event()
    gen = chunky_tab.invert_photo(models, photos[0], 2, "s", 100_000, LIMITS, tmp_path, 1, cancel=cancel)
    next(gen), next(gen)
    cancel.set()  # Stop
    rest = list(gen)
    last = rest[-1]
    assert last.stopped and last.result is not None and 0 < last.step < 100_000
    assert rest[-2].saving and rest[-2].step == last.step  # "saving the result" between the two
    assert f"stopped at step {last.step} / 100000" in last.status and "partial" in last.status
    saved = json.loads((last.result.folder / "result.json").read_text())
    assert saved["steps"] == last.step  # the file says how far it got
    assert _gone()


def test_status_line_is_the_one_progress_display(models, photos, tmp_path):
    updates = list(chunky_tab.invert_photo(models, photos[0], 2, "wplus", 12, LIMITS, tmp_path, preview_every=5))
    assert updates[1].status.startswith("inverting: step 1 / 12 (8 %)")
    assert updates[-2].status.startswith("saving the result: step 12 / 12 (100 %)")
    assert updates[-1].status.startswith("done: 12 steps, n = 2")


def test_inversion_settings_are_checked(models, photos, tmp_path):
    with pytest.raises(ValueError, match="n chunks"):
        next(chunky_tab.invert_photo(models, photos[0], 9, "w", 10, LIMITS, tmp_path))
    with pytest.raises(ValueError, match="latent space"):
        next(chunky_tab.invert_photo(models, photos[0], 2, "q", 10, LIMITS, tmp_path))


# ------------------------------------------------------------------------------------------ generate tab
def test_generate_seeds_truncation_and_spaces(models):
    G = models.generator
    plain = generate_tab.generate(models, "0-2", 0.7, "W")
    assert [c for _, c in plain] == ["seed 0", "seed 1", "seed 2"]
    from semedit.stylegan2 import zs_from_seeds

    with torch.no_grad():
        ref = to_uint8(G.synthesis(G.mapping(zs_from_seeds([0, 1, 2], G.z_dim), truncation_psi=0.7),
                                   noise_mode="const").clamp(-1, 1))
    assert all(np.array_equal(a, b) for (a, _), b in zip(plain, ref))
    w_edit = generate_tab.generate(models, "0", 0.7, "W", "", [2.0])[0][0]
    layer_edit = generate_tab.generate(models, "0", 0.7, "W+ layers", "0", [2.0])[0][0]
    s_edit = generate_tab.generate(models, "0", 0.7, "S", "", [2.0])[0][0]
    assert not np.array_equal(w_edit, plain[0][0]) and not np.array_equal(layer_edit, w_edit)
    # A W direction mapped into S on all style layers is the same edit as in W (styles are affine in w).
    assert np.abs(s_edit.astype(int) - w_edit.astype(int)).max() <= 2
    with pytest.raises(ValueError, match="at most 16"):
        generate_tab.generate(models, "0-99", 0.7, "W")
    with pytest.raises(ValueError, match="out of range"):
        generate_tab.generate(models, "0", 0.7, "W+ layers", "0-99", [1.0])


# ------------------------------------------------------------------------------------------ models, app
def test_directions_folder_is_split_between_tabs(tmp_path, models):
    G = models.generator
    save_direction(tmp_path / "smile.safetensors", Direction.from_vector(torch.randn(G.w_dim), "w"))
    hair = models.hair_directions[0].direction
    save_direction(tmp_path / "hair_pc00.safetensors", hair)
    loaded = load_models(directions=str(tmp_path), hair_pca_samples=0, latent_pca_samples=0)
    assert [d.name for d in loaded.hair_directions] == ["hair_pc00"]
    assert [d.name for d in loaded.latent_directions] == ["smile"]
    # The FG 2021 release's latent_directions.pkl (a pickled dict of numpy arrays), on its own scale.
    num_ws, w_dim = models.hair.model.net.num_ws, models.hair.model.net.w_dim
    color = np.random.default_rng(0).standard_normal((1, num_ws, w_dim)).astype(np.float32)
    with open(tmp_path / "latent_directions.pkl", "wb") as f:
        pickle.dump({"color": color}, f)
    with_official = load_models(directions=str(tmp_path), hair_pca_samples=0, latent_pca_samples=0)
    official = with_official.hair_directions[-1]
    assert official.name == "official color" and official.limit == 27.5
    step = official.scale * official.direction.vector.view(num_ws, w_dim)
    assert torch.allclose(step, torch.from_numpy(color[0]), atol=1e-5)  # strength 1 = the stored step
    save_direction(tmp_path / "wrong.safetensors", Direction.from_vector(torch.randn(G.w_dim + 1), "w"))
    with pytest.raises(DirectionFileError, match="wrong"):
        load_models(directions=str(tmp_path), hair_pca_samples=0, latent_pca_samples=0)
    with pytest.raises(DirectionFileError, match="not a folder"):
        load_models(directions=str(tmp_path / "nope"))


def test_app_queues_heavy_work_and_writes_only_to_its_workspace(models, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    workspace = Workspace(tmp_path / "ws")
    demo = build_app(models, LIMITS, workspace)
    fns = list(demo.fns.values())
    heavy = [f for f in fns if getattr(f, "concurrency_id", None) == "semedit-heavy"]
    assert len(heavy) == 1 and heavy[0].concurrency_limit == 1
    # Stop sets the session's event (the inversion ends at its next step and shows its partial result);
    # it does not kill the event through Gradio's cancels=, which would lose that result.
    assert not any(f.cancels for f in fns)
    assert {p.name for p in workspace.examples.iterdir()} == {"astronaut.png", "grace_hopper.jpg"}
    workspace.remove()
    assert not workspace.root.exists()


def test_cli_binds_localhost_and_shares_nothing_by_default():
    from semedit.cli import build_parser

    args = build_parser("demo").parse_args(["demo"])
    assert args.host == "127.0.0.1" and args.share is False
    assert args.max_upload_mb > 0 and args.max_pixels > 0


def test_browser_tests_skip_without_chromium_but_fail_under_ci(monkeypatch):
    from tests.demo import test_demo_browser as browser_tests

    monkeypatch.setattr(browser_tests, "CHROMIUM", "/nonexistent/chromium-xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium-xyz.*CI is set"):
        browser_tests._require_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chromium-xyz"):
        browser_tests._require_browser()
