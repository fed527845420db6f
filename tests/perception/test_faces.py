"""dlib faces on two real photos that ship inside packages: skimage's astronaut (Eileen Collins) and
matplotlib's Grace Hopper. Detection, FFHQ alignment, the 128-d descriptor, the FG 2021 hull regions,
the weights registry entries and the alignment path of inversion and hair transfer."""

from __future__ import annotations

import functools
import io
import logging
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import ConvexHull

pytest.importorskip("dlib", reason="dlib-bin is a dependency of semedit (make install)")

from semedit.errors import ImageError  # noqa: E402
from semedit.images import from_uint8  # noqa: E402
from semedit.perception import faces  # noqa: E402
from semedit.perception.landmarks import FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT  # noqa: E402
from semedit.perception.photos import read_photo  # noqa: E402
from semedit.weights import CorruptWeightsError  # noqa: E402

if not faces.environment_allows_dlib():
    pytest.skip("face-recognition-models is a dependency of semedit (make install)", allow_module_level=True)

SIZE = 256  # alignment size of the tests (the transform then runs at 1024, 4x as FFHQ's 4096 for 1024)


@functools.cache
def photo(name: str) -> np.ndarray:
    return read_photo("skimage:astronaut" if name == "astronaut" else "matplotlib:grace_hopper")


@functools.cache
def aligned(name: str) -> faces.AlignedFace:
    found = faces.align_photo(photo(name), SIZE, source=name)
    assert len(found) == 1
    return found[0]


def _eyes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points[36:42].mean(axis=0), points[42:48].mean(axis=0)


def _variants(image: np.ndarray) -> dict[str, np.ndarray]:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=30)
    h, w = image.shape[:2]
    return {
        "flipped": np.ascontiguousarray(image[:, ::-1]),
        "rescaled": np.asarray(Image.fromarray(image).resize((w * 2 // 3, h * 2 // 3), Image.LANCZOS)),
        "jpeg-q30": np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")),
    }


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_photos_align_with_the_eyes_where_ffhq_puts_them(name):
    face = aligned(name)
    assert face.image.shape == (SIZE, SIZE, 3) and face.image.dtype == np.uint8
    assert face.landmarks.shape == (68, 2) and face.source == name
    template = np.array([FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT]) * SIZE
    # The 68 landmarks carried into the aligned image, and dlib run afresh on the aligned image itself.
    redetected = faces.predict_landmarks([face.image], faces.detect_faces(face.image)[:1])[0]
    for points in (face.landmarks, redetected):
        np.testing.assert_array_less(np.abs(np.stack(_eyes(points)) - template), 4.0)  # pixels at 256
    assert np.abs(face.landmarks - redetected).max() < 8.0
    # The detected box is in photo pixels and holds both eyes of the photo's own landmarks.
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= photo(name).shape[1] and 0 <= y0 < y1 <= photo(name).shape[0]


def test_largest_face_first_and_all_faces():
    # dlib's HOG detector also reports a weak second box on the astronaut photo; the face comes first.
    boxes = faces.detect_faces(photo("astronaut"))
    assert len(boxes) >= 2
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert np.all(np.diff(areas) <= 0)
    every = faces.align_photo(photo("astronaut"), 64, all_faces=True, source="astronaut")
    assert [f.index for f in every] == list(range(len(boxes)))
    np.testing.assert_array_equal(every[0].box, aligned("astronaut").box)


def test_known_face_box_gives_the_detected_landmarks_on_aligned_faces():
    for name in ("astronaut", "grace_hopper"):
        face = aligned(name)
        known = faces.known_box_landmarks([face.image], size=None)[0]
        detected = faces.predict_landmarks([face.image], faces.detect_faces(face.image)[:1])[0]
        assert np.abs(known - detected).max() < 8.0, name
    # Tensors at another size: coordinates come back in the input's pixels.
    big = torch.nn.functional.interpolate(from_uint8(aligned("astronaut").image), size=(512, 512), mode="bilinear")
    pts = faces.known_box_landmarks(big)[0]
    np.testing.assert_array_less(np.abs(np.stack(_eyes(pts)) - np.array([FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT]) * 512), 8.0)


def test_descriptor_same_person_under_flip_rescale_and_jpeg_and_different_people():
    ref = {name: faces.photo_descriptors(photo(name), source=name)[0] for name in ("astronaut", "grace_hopper")}
    for name, descriptor in ref.items():
        assert descriptor.shape == (128,)
        for variant, image in _variants(photo(name)).items():
            d = float(faces.descriptor_distance(descriptor, faces.photo_descriptors(image, source=variant)[0]))
            assert d < faces.SAME_PERSON_DISTANCE, (name, variant, d)
    assert float(faces.descriptor_distance(ref["astronaut"], ref["grace_hopper"])) > faces.SAME_PERSON_DISTANCE


def test_dlib_resnet_identity_encoder_on_aligned_images():
    from semedit.perception.identity import identity_metric, load_identity_encoder

    enc = load_identity_encoder("dlib-resnet")
    assert enc.metric == "euclidean" and identity_metric("dlib-resnet") == "euclidean"
    assert identity_metric("arcface-irse50") == "cosine"
    images = torch.cat([from_uint8(aligned(n).image) for n in ("astronaut", "grace_hopper")])
    copies = torch.cat([from_uint8(faces.align_photo(_variants(photo(n))["jpeg-q30"], SIZE)[0].image)
                        for n in ("astronaut", "grace_hopper")])
    e, c = enc(images), enc(copies)
    assert e.shape == (2, 128)
    same = enc.distance(e, c)
    assert torch.all(same < 0.6), same
    assert float(enc.distance(e[:1], e[1:])) > 0.6
    # eval-inversion's identity column takes the encoder's own convention (Euclidean here, not 1 - cos).
    from semedit.eval.inversion import image_identity_distance

    torch.testing.assert_close(image_identity_distance(enc, images, copies), same)
    # Images without a face (a random tiny generator's) still give well-defined, repeatable descriptors.
    noise = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = enc(noise)
    assert out.shape == (3, 128) and torch.isfinite(out).all()
    torch.testing.assert_close(out, enc(noise))


def test_plain_colour_image_gives_the_no_face_error_naming_the_photo():
    grey = np.full((300, 240, 3), 127, dtype=np.uint8)
    with pytest.raises(faces.NoFaceError, match="grey.png") as info:
        faces.align_photo(grey, SIZE, source="grey.png")
    assert isinstance(info.value, ImageError) and "mmod" in str(info.value)
    with pytest.raises(ImageError, match="uint8 RGB"):
        faces.align_photo(np.zeros((32, 32), dtype=np.float32), SIZE, source="float.tif")


def test_dlib_hull_regions_follow_the_fg2021_recipe():
    from semedit.perception.regions import REGION_SPLITTERS, make_region_splitter

    assert "dlib-hull" in REGION_SPLITTERS
    splitter = make_region_splitter("dlib-hull")
    images = torch.cat([from_uint8(aligned(n).image) for n in ("astronaut", "grace_hopper")])
    masks = splitter(images)
    face, hair = masks["face"], masks["hair"]
    assert face.shape == (2, 1, SIZE, SIZE)
    torch.testing.assert_close(hair, 1 - face)
    assert set(face.unique().tolist()) <= {0.0, 1.0}  # binary at 256 px, as cv2.fillConvexPoly
    points = splitter.landmarks(images)
    for i, pts in enumerate(points):
        # The hull is the polygon of the landmarks: every landmark's pixel is inside, and the area is the
        # polygon's (shoelace) area up to the rasterised border.
        assert all(face[i, 0, int(y), int(x)] == 1 for x, y in pts)
        hull_area = ConvexHull(pts).volume
        assert abs(float(face[i].sum()) - hull_area) < 0.08 * hull_area
        assert 0.15 < float(face[i].mean()) < 0.35
    # The batch equals the images one by one, and the 1024 px masks are the 256 px masks scaled up.
    torch.testing.assert_close(splitter(images[1:])["face"], face[1:])
    big = splitter(torch.nn.functional.interpolate(images, size=(1024, 1024), mode="bilinear"))["face"]
    assert big.shape == (2, 1, 1024, 1024)
    small_again = torch.nn.functional.avg_pool2d(big, 4)
    assert (small_again - face).abs().mean() < 0.02


def test_registry_lists_the_dlib_files_as_present_with_their_digests():
    from semedit.weights import REGISTRY, expected_path, verify_file

    names = ["dlib-landmarks-68", "dlib-landmarks-5", "dlib-mmod-detector", "dlib-resnet-v1"]
    for name in names:
        entry = REGISTRY[name]
        assert expected_path(entry).is_file(), name
        assert "face-recognition-models" in entry.source
        assert verify_file(entry, deep=False)[0] == "ok", name
    assert verify_file("dlib-landmarks-5", deep=True)[0] == "ok"


def test_insightface_stays_an_option_and_needs_its_files():
    from semedit.weights import MissingWeightsError

    assert faces.landmarker_for(None) == "dlib"
    assert faces.landmarker_for("landmarks-1k3d68") == "insightface"
    assert faces.landmarker_for("/w/1k3d68.onnx") == "insightface"
    assert faces.landmarker_for(None, "insightface") == "insightface"
    with pytest.raises(ValueError, match="dlib, insightface"):
        faces.landmarker_for(None, "mediapipe")
    # The weights folder of the perception tests is empty: the error names the file and where it goes.
    with pytest.raises(MissingWeightsError, match="1k3d68.onnx"):
        faces.align_photo(photo("astronaut"), 64, landmarker="insightface")


def test_missing_model_package_names_the_pip_package(monkeypatch):
    from semedit.weights import MissingWeightsError

    monkeypatch.setitem(sys.modules, "face_recognition_models", None)  # "not installed"
    with pytest.raises(MissingWeightsError, match="pip install face-recognition-models"):
        faces.dlib_model_path("resnet")
    faces.hog_detector.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(faces.DlibMissingError, match="pip install dlib-bin"):
        faces.hog_detector()


def test_inversion_dataset_aligns_raw_photos_through_dlib(tmp_path, caplog):
    from semedit.inversion.data import ImageSource, InputError, RealImageDataset

    ds = RealImageDataset([ImageSource("astronaut", "skimage:astronaut")], 64, align="ffhq")
    item = ds[0]["image"]
    expected = np.asarray(Image.fromarray(faces.align_photo(photo("astronaut"), 256)[0].image)
                          .resize((64, 64), Image.LANCZOS), dtype=np.float32) / 127.5 - 1
    np.testing.assert_allclose(item.permute(1, 2, 0).numpy(), expected, atol=1e-6)
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "wall.png")
    wall = ImageSource("wall", str(tmp_path / "wall.png"))
    with pytest.raises(InputError, match="wall.png"):
        RealImageDataset([wall], 32, align="ffhq", align_fallback="error")[0]
    with caplog.at_level(logging.WARNING):
        out = RealImageDataset([wall], 32, align="ffhq", align_fallback="center-crop")[0]["image"]
    assert out.shape == (3, 32, 32) and "wall.png" in caplog.text


def test_hair_raw_inputs_use_the_same_alignment_and_name_the_photo(tmp_path):
    import matplotlib.cbook

    from semedit.cli.hair import _load_inputs

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    tensor = _load_inputs([str(path)], raw=True, size=SIZE, device="cpu")
    torch.testing.assert_close(tensor, from_uint8(aligned("grace_hopper").image))
    Image.new("RGB", (100, 100)).save(tmp_path / "blank.jpg")
    with pytest.raises(faces.NoFaceError, match="blank.jpg"):
        _load_inputs([str(tmp_path / "blank.jpg")], raw=True, size=64, device="cpu")


@pytest.mark.parametrize("load, expected", [
    (lambda path: faces.shape_predictor(68, path), "not a dlib shape predictor \\(shape_predictor_68_face_landmarks"),
    (faces.face_recognizer, "not a dlib face recognition model \\(dlib_face_recognition_resnet_model_v1"),
    (faces.mmod_detector, "not a dlib MMOD face detector \\(mmod_human_face_detector"),
])
def test_a_file_that_is_not_the_dlib_model_names_the_expected_format(tmp_path, load, expected):
    path = tmp_path / "model.dat"
    path.write_bytes(b"not a dlib model")
    with pytest.raises(CorruptWeightsError, match=expected):
        load(str(path))
