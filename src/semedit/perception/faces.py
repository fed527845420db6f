"""Real faces offline with dlib: detection, 68/5-point landmarks, the 128-d descriptor, FFHQ alignment.

The four model files ship in the pip package ``face-recognition-models`` (Davis King's dlib models,
https://github.com/davisking/dlib-models, also published at http://dlib.net/files/<name>.bz2) and
are found through that package's functions (``pose_predictor_model_location()`` ...), so nothing is
downloaded:

- ``shape_predictor_68_face_landmarks.dat``: the 68-point (iBUG) predictor that FFHQ was aligned with
  (NVlabs/ffhq-dataset README.md line 138: "68 face landmarks reported by dlib"). dlib-models' README:
  trained on iBUG 300-W, whose licence excludes commercial use, and made for the boxes of dlib's HOG
  detector (it works less well on the MMOD detector's boxes);
- ``shape_predictor_5_face_landmarks.dat``: the 5-point predictor that dlib's face-recognition example
  uses to cut the descriptor's face chip (davisking/dlib python_examples/face_recognition.py);
- ``mmod_human_face_detector.dat``: dlib's CNN (MMOD) face detector, ``detector="mmod"``;
- ``dlib_face_recognition_resnet_model_v1.dat``: the 128-d face descriptor. Two faces are the same person
  when the Euclidean distance of their descriptors is below 0.6 (99.38 % on LFW; same example file).

The default detector is dlib's HOG frontal face detector (``dlib.get_frontal_face_detector()``, built
into dlib). Of several faces the largest box is taken (ties: the higher detector score), since the HOG
detector can return a second, spurious detection (it does on skimage's astronaut photo).

:func:`align_photo` FFHQ-aligns a photo with ``semedit.perception.landmarks.align_ffhq`` (ffhq-dataset's
``recreate_aligned_images``) on dlib's 68 landmarks; the intermediate quad transform is 4 x the output
size, as FFHQ's 4096 for 1024 (download_ffhq.py line 259: ``output_size=1024, transform_size=4096``,
lines 370-372: transform, then an antialiased resize).

FFHQ-aligned images (generated ones, or photos after :func:`align_photo`) have the face at a known
place, :data:`DLIB_FFHQ_FACE_BOX`; :func:`known_box_landmarks` runs the predictor there without
detection, so it also gives (meaningless but well-defined) points on images without a face, such as the
tiny random generator's.

dlib and the model files are optional heavy dependencies: they are imported where used, and a missing
package raises an error naming the pip package to install.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semedit.errors import ImageError, SemeditError
from semedit.images import to_uint8
from semedit.perception.landmarks import align_ffhq, ffhq_quad, load_landmarker, quad_to_aligned
from semedit.weights import (
    DLIB_MODEL_FILES,
    CorruptWeightsError,
    MissingWeightsError,
    package_model_path,
    register_parse_check,
    weights_dir,
)

__all__ = [
    "NoFaceError",
    "DlibMissingError",
    "AlignedFace",
    "DETECTORS",
    "LANDMARKERS",
    "DLIB_FFHQ_FACE_BOX",
    "SAME_PERSON_DISTANCE",
    "DESCRIPTOR_SIZE",
    "dlib_model_path",
    "load_dlib_model",
    "hog_detector",
    "mmod_detector",
    "shape_predictor",
    "face_recognizer",
    "detect_faces",
    "predict_landmarks",
    "known_face_box",
    "known_box_landmarks",
    "face_descriptors",
    "photo_descriptors",
    "descriptor_distance",
    "DlibLandmarker",
    "aligned_uint8",
    "insightface_landmarker",
    "environment_allows_dlib",
    "landmarker_for",
    "align_photo",
]

DETECTORS = ("hog", "mmod")
LANDMARKERS = ("dlib", "insightface")

# model kind -> (function of face_recognition_models that returns its path, file name in that package)

# Where dlib's HOG detector puts the face box on FFHQ-aligned images (x0, y0, x1, y1 as fractions of
# the size). Measured here: the detector returns this box on the 1024 px alignments of skimage's
# astronaut, matplotlib's Grace Hopper and their mirror images (all four identical, since alignment puts
# every face in the same place). Used for generated and already aligned images, without detection.
DLIB_FFHQ_FACE_BOX = (0.228, 0.349, 0.771, 0.891)
# dlib's decision threshold for the descriptor (python_examples/face_recognition.py): Euclidean distance
# below 0.6 = same person.
SAME_PERSON_DISTANCE = 0.6
DESCRIPTOR_SIZE = 128
# The descriptor's face chip: 150 px with 0.25 padding, dlib's defaults (get_face_chip,
# compute_face_descriptor); dlib's own example cuts it with the 5-point predictor.
_CHIP_SIZE = 150
_CHIP_PADDING = 0.25
# Photos with a longer side above this are detected on a downscaled copy (semedit's choice: HOG with one
# upsampling takes ~2.7 s at 1600 px and ~9 s at 3000 px here; faces down to ~40 px of the copy, i.e.
# 2.5 % of its longer side, are still found). Landmarks always use the full-resolution photo.
DETECT_MAX_SIDE = 1600
# Aligned images are brought to this size before the predictor runs on the known box (semedit's choice:
# the 256 px of FG 2021's hull masks; the face is then ~140 px wide, about the 150 px descriptor chip).
KNOWN_BOX_SIZE = 256


class NoFaceError(ImageError):
    """No face was found in a photo; the message names the photo and what to try."""


class DlibMissingError(SemeditError, ModuleNotFoundError):
    """dlib is not installed; the message names the pip package (the CLI prints it on one line)."""


@dataclass
class AlignedFace:
    """One FFHQ-aligned face of a photo.

    image: uint8 RGB [size, size, 3]. landmarks: [68, 2] float (x, y) in pixels of ``image`` (pixel centres
    at integer coordinates, dlib's convention). box: the detected face box (x0, y0, x1, y1) in pixels of the
    photo. quad: the FFHQ crop quad [4, 2] in the photo. index: rank of the face in the photo (0 = largest).
    source: the photo's name (for messages and output file names).
    """

    image: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray
    quad: np.ndarray
    index: int = 0
    source: str = "<image>"


# ----------------------------------------------------------------------------------------------------
# Model files and cached model objects.


def _dlib():
    """The dlib module, or an error naming the pip package (dlib is an optional heavy dependency)."""
    try:
        import dlib  # heavy optional dependency: imported where used
    except ModuleNotFoundError as err:
        raise DlibMissingError(
            "dlib is not installed: `pip install dlib-bin` (a prebuilt wheel, no compiler needed), or run "
            "`make install`", name="dlib"
        ) from err
    return dlib


def _read_dlib_model(factory: str, path: str, what: str, file_format: str):
    """``dlib.<factory>(path)``; dlib's deserialisation error becomes a CorruptWeightsError naming the format."""
    try:
        return getattr(_dlib(), factory)(path)
    except RuntimeError as err:  # dlib's deserialisation errors
        raise CorruptWeightsError(f"{path} is not {what} ({file_format} format): {err}") from err


def dlib_model_path(kind: str) -> Path:
    """Path of one of the four dlib model files (``DLIB_MODEL_FILES`` keys): the face_recognition_models
    package's file, else the same file name in the semedit weights folder; an error naming the pip package
    otherwise."""
    if kind not in DLIB_MODEL_FILES:
        raise ValueError(f"unknown dlib model {kind!r}; choose one of {', '.join(DLIB_MODEL_FILES)}")
    filename = DLIB_MODEL_FILES[kind][1]
    path = package_model_path(filename)
    if path is not None and path.is_file():
        return path
    fallback = weights_dir() / filename
    if fallback.is_file():
        return fallback
    if path is None:
        raise MissingWeightsError(
            f"the dlib model file {filename} comes with the pip package face-recognition-models, which is not "
            f"installed: `pip install face-recognition-models` (or `make install`); or download "
            f"http://dlib.net/files/{filename}.bz2, decompress it and put it at {fallback}"
        )
    raise MissingWeightsError(
        f"dlib model file {path} is missing although face_recognition_models is installed; reinstall it: "
        "`pip install --force-reinstall face-recognition-models`"
    )


@register_parse_check("dlib")
def load_dlib_model(path: str | Path):
    """Load a dlib model file by its published name (shape predictor, MMOD detector or ResNet descriptor);
    CorruptWeightsError when dlib cannot read it. Used by ``semedit weights verify``."""
    name = Path(path).name
    if name.startswith("shape_predictor_5"):
        return shape_predictor(5, str(path))
    if name.startswith("shape_predictor"):
        return shape_predictor(68, str(path))
    if name.startswith("mmod"):
        return mmod_detector(str(path))
    return face_recognizer(str(path))


@functools.cache
def hog_detector():
    """dlib's HOG + linear SVM frontal face detector (built into dlib), loaded once per process."""
    return _dlib().get_frontal_face_detector()


@functools.cache
def mmod_detector(path: str | None = None):
    """dlib's CNN (MMOD) face detector from mmod_human_face_detector.dat (or ``path``), loaded once per process."""
    path = path or str(dlib_model_path("mmod"))
    return _read_dlib_model("cnn_face_detection_model_v1", path, "a dlib MMOD face detector",
                            "mmod_human_face_detector.dat")


@functools.cache
def shape_predictor(points: int = 68, path: str | None = None):
    """dlib's 68- or 5-point shape predictor (or the predictor file at ``path``), loaded once per process."""
    if points not in (68, 5):
        raise ValueError(f"dlib ships 68- and 5-point shape predictors, not {points}")
    if path is not None and not Path(path).is_file():
        raise MissingWeightsError(f"dlib shape predictor {path} does not exist (shape_predictor_{points}_face_landmarks"
                                  ".dat format; leave the landmark weights unset to use face-recognition-models' file)")
    path = path or str(dlib_model_path(f"landmarks-{points}"))
    predictor = _read_dlib_model("shape_predictor", path, "a dlib shape predictor",
                                 f"shape_predictor_{points}_face_landmarks.dat")
    # The Python binding does not expose the number of parts: count them on a blank image.
    parts = predictor(np.zeros((16, 16, 3), np.uint8), _dlib().rectangle(0, 0, 15, 15)).num_parts
    if parts != points:
        raise CorruptWeightsError(f"{path} predicts {parts} points, expected {points}")
    return predictor


@functools.cache
def face_recognizer(path: str | None = None):
    """dlib's ResNet face descriptor (dlib_face_recognition_resnet_model_v1.dat, or the file at ``path``),
    loaded once per process."""
    path = path or str(dlib_model_path("resnet"))
    return _read_dlib_model("face_recognition_model_v1", path, "a dlib face recognition model",
                            "dlib_face_recognition_resnet_model_v1.dat")


@functools.lru_cache(maxsize=4)
def insightface_landmarker(weights: str, detector: str):
    """insightface's 1k3d68 landmarker with its SCRFD detector (registry names or paths), loaded once."""
    return load_landmarker(weights, detector=detector)


# ----------------------------------------------------------------------------------------------------
# Detection, landmarks, descriptors.


def _check_image(image: np.ndarray, source: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"{source}: expected a uint8 RGB image [H, W, 3], got {image.dtype} "
                         f"{list(image.shape)}; convert it to 8-bit RGB")
    return np.ascontiguousarray(image)


def _rect(box):
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return _dlib().rectangle(x0, y0, x1 - 1, y1 - 1)  # dlib rectangles include their right/bottom pixel


def detect_faces(image: np.ndarray, detector: str = "hog", upsample: int = 1) -> np.ndarray:
    """Face boxes [K, 4] float (x0, y0, x1, y1; x1/y1 exclusive) in a uint8 RGB image, largest first.

    ``upsample``: times the image is doubled before detection (dlib's examples use 1: faces down to
    ~40 px). Ties in area are broken by the detector's score.
    """
    image = _check_image(image, "detect_faces")
    if detector == "hog":
        rects, scores, _ = hog_detector().run(image, upsample, 0.0)
        rects, scores = list(rects), list(scores)
    elif detector == "mmod":
        found = mmod_detector()(image, upsample)
        rects, scores = [d.rect for d in found], [d.confidence for d in found]
    else:
        raise ValueError(f"unknown face detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], dtype=np.float64)
    if not len(boxes):
        return boxes.reshape(0, 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = sorted(range(len(boxes)), key=lambda i: (-areas[i], -scores[i]))
    return boxes[order]


def _shape_to_array(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def predict_landmarks(images: np.ndarray | Sequence[np.ndarray], boxes: np.ndarray, points: int = 68,
                      predictor_path: str | None = None) -> np.ndarray:
    """dlib landmarks of one box per image: images uint8 [N, H, W, 3] (or a list), boxes [N, 4] -> [N, P, 2]."""
    images = list(images)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(len(images), 4)
    predictor = shape_predictor(points, predictor_path)
    return np.stack([_shape_to_array(predictor(_check_image(im, "predict_landmarks"), _rect(box)))
                     for im, box in zip(images, boxes, strict=True)]) if images else np.zeros((0, points, 2))


def known_face_box(size: int, height: int | None = None) -> np.ndarray:
    """:data:`DLIB_FFHQ_FACE_BOX` in pixels of an FFHQ-aligned image of width ``size`` (and ``height``)."""
    height = height or size
    return np.array(DLIB_FFHQ_FACE_BOX, dtype=np.float64) * [size, height, size, height]


def aligned_uint8(images: torch.Tensor | np.ndarray | Sequence[np.ndarray], size: int | None) -> list[np.ndarray]:
    """FFHQ-aligned images (tensor [N, 3, H, W] in [-1, 1], or uint8 [N, H, W, 3]) -> uint8 list, resized."""

    if isinstance(images, torch.Tensor):
        x = images.detach().float()
        if size is not None and x.shape[-1] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                                antialias=True)
        return list(to_uint8(x))
    out = [np.asarray(im) for im in images]
    if size is not None:
        out = [im if im.shape[:2] == (size, size) else
               np.asarray(Image.fromarray(im).resize((size, size), Image.LANCZOS)) for im in out]
    return out


def known_box_landmarks(images: torch.Tensor | np.ndarray | Sequence[np.ndarray], points: int = 68,
                        size: int | None = KNOWN_BOX_SIZE) -> np.ndarray:
    """Landmarks of FFHQ-aligned images on the known face box, without detection, in one batched call.

    images: [N, 3, H, W] in [-1, 1] or uint8 [N, H, W, 3]; they are resized to ``size`` (None: as they
    are) for the predictor. Returns [N, P, 2] (x, y) in pixels of the *input* size.
    """
    arrays = aligned_uint8(images, size)
    if not arrays:
        return np.zeros((0, points, 2))
    height, width = arrays[0].shape[:2]
    pts = predict_landmarks(arrays, np.stack([known_face_box(width, height)] * len(arrays)), points)
    in_w = images.shape[-1] if isinstance(images, torch.Tensor) else np.asarray(images[0]).shape[1]
    scale = in_w / width
    return (pts + 0.5) * scale - 0.5  # pixel centres at integer coordinates in both sizes


def face_descriptors(images: Sequence[np.ndarray], boxes: np.ndarray, model_path: str | None = None) -> np.ndarray:
    """dlib 128-d descriptors of one face box per image: 5-point landmarks in the box, the 150 px face chip
    (padding 0.25), the ResNet; all chips of the batch go through the network in one call. -> [N, 128]."""
    dlib = _dlib()
    images = [_check_image(im, "face_descriptors") for im in images]
    if not images:
        return np.zeros((0, DESCRIPTOR_SIZE))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(len(images), 4)
    predictor = shape_predictor(5)
    chips = [dlib.get_face_chip(im, predictor(im, _rect(box)), size=_CHIP_SIZE, padding=_CHIP_PADDING)
             for im, box in zip(images, boxes, strict=True)]
    descriptors = face_recognizer(model_path).compute_face_descriptor(chips)
    return np.asarray(descriptors, dtype=np.float64).reshape(-1, DESCRIPTOR_SIZE)


def photo_descriptors(image: np.ndarray, detector: str = "hog", all_faces: bool = False,
                      source: str = "<image>") -> np.ndarray:
    """Descriptors of the faces found in a photo (largest first; only the largest unless ``all_faces``)."""
    image = _check_image(image, source)
    boxes = detect_faces(image, detector)
    if not len(boxes):
        raise _no_face(source, detector)
    boxes = boxes if all_faces else boxes[:1]
    return face_descriptors([image] * len(boxes), boxes)


def descriptor_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Euclidean distance of dlib descriptors along the last axis; below 0.6 = same person (dlib's rule)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.linalg.vector_norm(torch.as_tensor(a) - torch.as_tensor(b), dim=-1)
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)


class DlibLandmarker:
    """68 (or 5) dlib landmarks, called like ``landmarks.Landmarker``: ``(images, boxes=None) -> [N, P, 2]``.

    images: uint8 RGB [N, H, W, 3] (or a list) or a tensor [N, 3, H, W] in [-1, 1]. Without boxes the
    images are taken as FFHQ-aligned and the predictor runs on the known face box (no detection), at
    ``KNOWN_BOX_SIZE`` px; with ``detect=True`` the largest detected face is used instead (NoFaceError
    when there is none).
    """

    def __init__(self, points: int = 68, detect: bool = False, detector: str = "hog"):
        self.points, self.detect, self.detector = points, detect, detector
        shape_predictor(points)  # load now: a missing package fails at construction, not mid-run

    def __call__(self, images, boxes: np.ndarray | None = None) -> np.ndarray:
        if boxes is None and not self.detect:
            return known_box_landmarks(images, self.points).astype(np.float32)
        arrays = aligned_uint8(images, None)
        if boxes is None:
            boxes = []
            for i, im in enumerate(arrays):
                found = detect_faces(im, self.detector)
                if not len(found):
                    raise _no_face(f"image {i} of the batch", self.detector)
                boxes.append(found[0])
        return predict_landmarks(arrays, np.stack(boxes), self.points).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Alignment of photos: the one path every command takes.


def _no_face(source: str, detector: str) -> NoFaceError:
    hint = ("; dlib's CNN detector finds more turned or small faces: `semedit align --detector mmod PHOTO --out DIR`, "
            "then use the aligned image" if detector == "hog" else "")
    return NoFaceError(f"no face found in {source} (dlib {detector} detector). Use a photo with a clearly visible, "
                       f"roughly frontal face of at least ~40 px{hint}")


def _insightface_faces(image: np.ndarray, all_faces: bool, source: str, weights: str | None,
                       detector_weights: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(box, 68 landmarks) of the faces insightface's SCRFD + 1k3d68 find, largest first."""
    landmarker = insightface_landmarker(weights or "landmarks-1k3d68", detector_weights)
    bboxes, _ = landmarker.detector.detect(np.ascontiguousarray(image[:, :, ::-1]), max_num=0)
    if len(bboxes) == 0:
        raise NoFaceError(f"no face found in {source} (insightface SCRFD detector); use a photo with a "
                          "clearly visible face, or landmarker='dlib'")
    boxes = bboxes[:, :4].astype(np.float64)
    boxes = boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")]
    boxes = boxes if all_faces else boxes[:1]
    points = landmarker([image] * len(boxes), boxes=boxes)
    return list(zip(boxes, points.astype(np.float64), strict=True))


def _detect_scaled(image: np.ndarray, detector: str, max_side: int | None) -> np.ndarray:
    """detect_faces on a copy no longer than ``max_side`` px, boxes in pixels of ``image``."""
    scale = max(image.shape[:2]) / max_side if max_side else 1.0
    if scale <= 1.0:
        return detect_faces(image, detector)
    small = Image.fromarray(image).resize((round(image.shape[1] / scale), round(image.shape[0] / scale)),
                                          Image.BILINEAR, reducing_gap=2.0)
    return detect_faces(np.asarray(small), detector) * scale


def landmarker_for(landmark_weights: str | None, landmarker: str | None = None) -> str:
    """The landmarker a config selects: ``landmarker`` when given, else "insightface" when the weights name
    an insightface ONNX model (a ``.onnx`` file or the registry's landmarks-1k3d68), else "dlib"."""
    if landmarker is not None:
        if landmarker not in LANDMARKERS:
            raise ValueError(f"unknown landmarker {landmarker!r}; choose one of {', '.join(LANDMARKERS)}")
        return landmarker
    text = os.fspath(landmark_weights) if landmark_weights is not None else ""
    if text.endswith(".onnx") or text in ("landmarks-1k3d68", "1k3d68", "landmarks"):
        return "insightface"
    return "dlib"


# The FFHQ transform runs at 4 x the output size: 4096 px out means a 16k x 16k intermediate (768 MB as uint8
# RGB), the most a desktop can be asked for. FFHQ itself is 1024.
MAX_ALIGN_SIZE = 4096


def check_align_size(size: int, what: str = "the aligned size") -> int:
    """``size`` if it is an aligned output size semedit can make (8 .. MAX_ALIGN_SIZE px), else ImageError."""
    if not 8 <= int(size) <= MAX_ALIGN_SIZE:
        raise ImageError(f"{what} must be from 8 to {MAX_ALIGN_SIZE} px (FFHQ: 1024; the alignment works at 4x "
                         f"that size), got {size}")
    return int(size)


def align_photo(image: np.ndarray, size: int = 1024, *, detector: str = "hog", all_faces: bool = False,
                source: str = "<image>", landmarker: str = "dlib", landmark_weights: str | None = None,
                detector_weights: str = "detector-scrfd-10g",
                detect_max_side: int | None = DETECT_MAX_SIDE) -> list[AlignedFace]:
    """FFHQ-align the faces of a photo (uint8 RGB [H, W, 3]) -> [AlignedFace], largest face first.

    Only the largest face unless ``all_faces``. ``detector``: "hog" (default) or "mmod" (dlib's CNN).
    ``landmarker``: "dlib" (default: dlib's detector + 68-point predictor, as FFHQ; ``landmark_weights``: a
    predictor file in its format, None for face-recognition-models' file) or "insightface" (SCRFD + 1k3d68,
    when those files are in the weights folder; ``landmark_weights`` / ``detector_weights`` name them). The
    FFHQ transform runs at 4 x ``size`` before an antialiased resize. dlib detects on a copy whose longer
    side is at most ``detect_max_side`` px (None: the photo as it is); landmarks use the full photo.

    Raises NoFaceError (an ImageError) naming ``source`` when no face is found; ImageError when the
    array is not a uint8 RGB image.
    """
    image = _check_image(image, source)
    check_align_size(size)
    if landmarker == "dlib":
        boxes = _detect_scaled(image, detector, detect_max_side)
        if not len(boxes):
            raise _no_face(source, detector)
        boxes = boxes if all_faces else boxes[:1]
        points = predict_landmarks([image] * len(boxes), boxes, 68, predictor_path=landmark_weights)
        faces = list(zip(boxes, points, strict=True))
    elif landmarker == "insightface":
        faces = _insightface_faces(image, all_faces, source, landmark_weights, detector_weights)
    else:
        raise ValueError(f"unknown landmarker {landmarker!r}; choose one of {', '.join(LANDMARKERS)}")
    out = []
    for k, (box, points) in enumerate(faces):
        quad, _ = ffhq_quad(points)
        aligned = align_ffhq(image, points, output_size=size, transform_size=4 * size)
        # Photo pixel centres -> aligned pixel centres: the quad maps continuous coordinates, where a pixel
        # centre sits at +0.5 (PIL's QUAD transform gets quad + 0.5 in align_ffhq).
        mapped = quad_to_aligned(points + 0.5, quad + 0.5, size) - 0.5
        out.append(AlignedFace(np.array(aligned), mapped, np.asarray(box, dtype=np.float64), quad, k, source))
    return out


def environment_allows_dlib() -> bool:
    """Whether dlib and the face_recognition_models files are installed (for optional paths and tests)."""
    if importlib.util.find_spec("dlib") is None:
        return False
    try:
        return all(dlib_model_path(kind).is_file() for kind in DLIB_MODEL_FILES)
    except (MissingWeightsError, OSError):
        return False

