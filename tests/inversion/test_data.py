import logging

import numpy as np
import pytest
from PIL import Image

from semedit.errors import ImageError
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
    with pytest.raises(ImageError, match="broken.png is not an image"):
        load_rgb(ImageSource("broken", str(tmp_path / "broken.png")))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_rgb(ImageSource("empty", str(tmp_path / "empty.png")))
    with pytest.raises(ImageError, match="input not found"):
        list_images([str(tmp_path / "nope")], [".png"])
    with pytest.raises(ImageError, match="no image called"):
        load_rgb(ImageSource("x", "skimage:not_an_image"))


def test_greyscale_alpha_and_16_bit_photos_are_read_as_8_bit_rgb(tmp_path):
    # The package's one photo reader converts them (semedit.perception.photos), for inversion as elsewhere.
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 7)])).save(tmp_path / "alpha.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit: v * 257 -> v
    for name in ("gray", "alpha", "deep"):
        rgb = load_rgb(ImageSource(name, str(tmp_path / f"{name}.png")))
        assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
        np.testing.assert_array_equal(rgb, np.dstack([grey] * 3))


def test_listing_is_sorted_and_names_unique(tmp_path):
    for name in ("b", "a"):
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    assert [s.name for s in list_images([str(tmp_path)], [".png"])] == ["a", "b"]
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    with pytest.raises(ImageError, match="same output name 'a'"):
        list_images([str(tmp_path)], [".png", ".jpg"])


def test_shard_sampler_partitions_and_skips_finished():
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    done = {0, 4}
    sampler = ShardSampler(7, 1, 3, lambda i: i in done)
    assert list(sampler) == [1] and len(sampler) == 1  # owns 1 and 4; 4 is finished
