import logging

import numpy as np
import pytest
from PIL import Image

from semedit.inversion.data import (
    ImageSource,
    InputError,
    RealImageDataset,
    ShardSampler,
    frame_image,
    list_images,
    load_rgb,
)


def test_astronaut_centre_crop_and_range():
    src = ImageSource("astronaut", "skimage:astronaut")
    arr = load_rgb(src)
    assert arr.shape == (512, 512, 3)
    img = frame_image(arr, 32, "center-crop", src.location)
    assert img.shape == (3, 32, 32) and img.min() >= -1 and img.max() <= 1


def test_ffhq_alignment_falls_back_with_a_notice_when_unavailable(caplog, monkeypatch, tmp_path):
    # No landmark weights can exist at this path, so alignment is unavailable.
    ds = RealImageDataset([ImageSource("astronaut", "skimage:astronaut")], 16, align="ffhq",
                          align_fallback="center-crop", landmark_weights=str(tmp_path / "none.onnx"))
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert item["image"].shape == (3, 16, 16)
    assert "centre crop" in caplog.text
    strict = RealImageDataset([ImageSource("astronaut", "skimage:astronaut")], 16, align="ffhq",
                              align_fallback="error", landmark_weights=str(tmp_path / "none.onnx"))
    with pytest.raises(InputError, match="FFHQ alignment is unavailable"):
        strict[0]


def test_invalid_images_give_clear_errors(tmp_path):
    Image.fromarray(np.zeros((8, 12, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8)).save(tmp_path / "alpha.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    wide = ImageSource("wide", str(tmp_path / "wide.png"))
    with pytest.raises(InputError, match="12x8, not square"):
        frame_image(load_rgb(wide), 16, "none", wide.location)
    for name in ("gray", "alpha"):
        with pytest.raises(InputError, match="expected an RGB image with 3 channels"):
            load_rgb(ImageSource(name, str(tmp_path / f"{name}.png")))
    with pytest.raises(InputError, match="broken.png is not an image"):
        load_rgb(ImageSource("broken", str(tmp_path / "broken.png")))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        load_rgb(ImageSource("empty", str(tmp_path / "empty.png")))
    with pytest.raises(InputError, match="input not found"):
        list_images([str(tmp_path / "nope")], [".png"])
    with pytest.raises(InputError, match="no image called"):
        load_rgb(ImageSource("x", "skimage:not_an_image"))


def test_listing_is_sorted_and_names_unique(tmp_path):
    for name in ("b", "a"):
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    assert [s.name for s in list_images([str(tmp_path)], [".png"])] == ["a", "b"]
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    with pytest.raises(InputError, match="same output name 'a'"):
        list_images([str(tmp_path)], [".png", ".jpg"])


def test_shard_sampler_partitions_and_skips_finished():
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    done = {0, 4}
    sampler = ShardSampler(7, 1, 3, lambda i: i in done)
    assert list(sampler) == [1] and len(sampler) == 1  # owns 1 and 4; 4 is finished
