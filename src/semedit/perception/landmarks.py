"""68-point facial landmarks (insightface ``1k3d68.onnx``), FFHQ alignment of real photos, hull masks.

Landmarks: the insightface landmark model is loaded through ``insightface.model_zoo.get_model`` and run
batched on onnxruntime. Its preprocessing is insightface's ``Landmark.get``: a square crop of
1.5 x the face box around the box centre, resized to 192 px, (pixel - 127.5) / 128 in RGB; the last 68
of its 1103 3-D points are the 68-point (iBUG) layout, of which x, y are used.

Face boxes come from an insightface SCRFD detector when one is given, else from the caller; FFHQ-aligned
images use a fixed prior box (:data:`FFHQ_FACE_BOX`), since alignment puts every face in the same place.

FFHQ alignment is ``recreate_aligned_images`` of NVlabs/ffhq-dataset: an oriented square from the eye
and mouth landmarks (the "quad"), shrink, crop, reflect-pad with blur, quad transform, resize.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
import PIL.Image
import scipy.ndimage
import torch
from scipy.spatial import ConvexHull

from semedit.images import to_uint8
from semedit.perception.onnx import onnx_providers
from semedit.weights import CorruptWeightsError, resolve_weights

__all__ = [
    "FFHQ_FACE_BOX",
    "FFHQ_EYE_LEFT",
    "FFHQ_EYE_RIGHT",
    "FFHQ_MOUTH",
    "Landmarker",
    "load_landmarker",
    "ffhq_quad",
    "quad_to_aligned",
    "align_ffhq",
    "convex_hull_mask",
    "images_to_uint8",
]

# Face box of an FFHQ-aligned image as fractions of its size (x0, y0, x1, y1): centred between the eyes
# and the chin, about as wide as a detector's box on such images.
FFHQ_FACE_BOX = (0.225, 0.3, 0.775, 0.85)
# Where FFHQ alignment puts the eye centres and the mouth centre of a frontal face (fractions of the size;
# exact when 2 |eye_to_eye| >= 1.8 |eye_to_mouth| and the face is upright).
FFHQ_EYE_LEFT = (0.375, 0.475)
FFHQ_EYE_RIGHT = (0.625, 0.475)
FFHQ_MOUTH = (0.5, 0.725)


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3] RGB."""

    return to_uint8(images)


class Landmarker:
    """68 landmarks from an insightface landmark ONNX model, batched.

    Call with uint8 RGB images [N, H, W, 3] (or a list of them) or a tensor [N, 3, H, W] in [-1, 1], and
    face boxes [N, 4] (x0, y0, x1, y1) in pixels; without boxes the detector finds the largest face, or,
    with no detector, ``FFHQ_FACE_BOX`` is used (FFHQ-aligned inputs). Returns [N, 68, 2] float32 (x, y)
    in pixels of each input image.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu",
                 detector_path: str | os.PathLike | None = None, providers: Sequence[str] | None = None):
        import insightface.model_zoo
        from insightface.model_zoo.landmark import Landmark

        providers = list(providers or onnx_providers(device))
        try:
            model = insightface.model_zoo.get_model(str(path), providers=providers)
        except Exception as err:
            raise CorruptWeightsError(f"{path} could not be loaded by insightface/onnxruntime "
                                      f"({type(err).__name__}: {err}); expected 1k3d68.onnx") from err
        if not isinstance(model, Landmark) or model.lmk_num != 68:
            raise CorruptWeightsError(
                f"{path} is not a 68-point insightface landmark model (got {type(model).__name__}"
                f"{'' if not isinstance(model, Landmark) else f' with {model.lmk_num} points'}); expected "
                "1k3d68.onnx (input [N, 3, 192, 192], output [N, 3309])"
            )
        self.model = model
        self.input_size = int(model.input_size[0])
        batch = model.input_shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        self.detector = None
        if detector_path is not None:
            detector = insightface.model_zoo.get_model(str(detector_path), providers=providers)
            if detector is None or detector.taskname != "detection":
                raise CorruptWeightsError(f"{detector_path} is not an insightface face detector (SCRFD)")
            detector.prepare(-1 if providers[0] == "CPUExecutionProvider" else 0, input_size=(640, 640),
                             det_thresh=0.5)
            self.detector = detector

    def detect_box(self, image: np.ndarray) -> np.ndarray:
        """The box (x0, y0, x1, y1) of the largest face in a uint8 RGB image; ValueError if none."""
        if self.detector is None:
            raise ValueError("no face detector loaded: pass face boxes, or load_landmarker(detector=...)")
        bboxes, _ = self.detector.detect(np.ascontiguousarray(image[:, :, ::-1]), max_num=0)
        if len(bboxes) == 0:
            raise ValueError("no face found in the image")
        areas = (bboxes[:, 2] - bboxes[:, 0]) * (bboxes[:, 3] - bboxes[:, 1])
        return bboxes[int(np.argmax(areas)), :4].astype(np.float64)

    def _crop(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """insightface Landmark.get's crop: 1.5 x the box around its centre -> [192, 192, 3], and its matrix."""
        from insightface.utils import face_align

        w, h = box[2] - box[0], box[3] - box[1]
        center = ((box[2] + box[0]) / 2, (box[3] + box[1]) / 2)
        scale = self.input_size / (max(w, h) * 1.5)
        return face_align.transform(image, center, self.input_size, scale, 0)

    def __call__(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
                 boxes: np.ndarray | None = None) -> np.ndarray:
        if isinstance(images, torch.Tensor):
            images = images_to_uint8(images)
        images = list(images)
        if boxes is None:
            if self.detector is not None:
                boxes = np.stack([self.detect_box(im) for im in images])
            else:
                boxes = np.stack([np.array(FFHQ_FACE_BOX) * ([im.shape[1], im.shape[0]] * 2) for im in images])
        boxes = np.asarray(boxes, dtype=np.float64).reshape(len(images), 4)
        crops, matrices = zip(*(self._crop(im, box) for im, box in zip(images, boxes, strict=True)), strict=True)
        blob = (np.stack(crops).astype(np.float32) - self.model.input_mean) / self.model.input_std
        blob = np.ascontiguousarray(blob.transpose(0, 3, 1, 2))
        step = self.fixed_batch or len(blob)
        preds = np.concatenate([
            self.model.session.run(self.model.output_names, {self.model.input_name: blob[i:i + step]})[0]
            for i in range(0, len(blob), step)
        ])
        out = np.empty((len(images), 68, 2), dtype=np.float32)
        half = self.input_size // 2
        for i, (pred, matrix) in enumerate(zip(preds, matrices, strict=True)):
            pts = pred.reshape(-1, 3 if pred.shape[0] >= 3000 else 2)[-68:, :2].astype(np.float64)
            pts = (pts + 1) * half  # from [-1, 1] crop coordinates to crop pixels
            inverse = cv2.invertAffineTransform(matrix)
            out[i] = pts @ inverse[:, :2].T + inverse[:, 2]
        return out


def load_landmarker(weights: str | os.PathLike | None = "landmarks-1k3d68", device: str | torch.device = "cpu",
                    detector: str | os.PathLike | None = None) -> Landmarker:
    """A Landmarker from a registry name or path (``None``: registry default), optionally with a detector
    (registry name ``"detector-scrfd-10g"`` or a path) for photos whose face boxes are unknown."""
    path = resolve_weights(weights or "landmarks-1k3d68")
    detector_path = resolve_weights(detector) if detector is not None else None
    return Landmarker(path, device=device, detector_path=detector_path)


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ crop quad of a face from its 68 landmarks [68, 2] (x, y).

    Returns (quad [4, 2]: top-left, bottom-left, bottom-right, top-right corners of the oriented square
    in the photo; qsize: its side length in pixels), exactly as ffhq-dataset's recreate_aligned_images.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks [68, 2], got {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def quad_to_aligned(points: np.ndarray, quad: np.ndarray, output_size: int) -> np.ndarray:
    """Map photo points [K, 2] into the aligned image of ``quad`` (side ``output_size``) -> [K, 2]."""
    origin, x_end, y_end = quad[0], quad[3], quad[1]
    ex, ey = x_end - origin, y_end - origin
    rel = np.asarray(points, dtype=np.float64) - origin
    return np.stack([rel @ ex / (ex @ ex), rel @ ey / (ey @ ey)], axis=-1) * output_size


def align_ffhq(image: np.ndarray, landmarks: np.ndarray, output_size: int = 1024,
               transform_size: int | None = None, enable_padding: bool = True) -> np.ndarray:
    """FFHQ-align one photo (uint8 RGB [H, W, 3]) from its 68 landmarks -> uint8 [S, S, 3].

    ``transform_size`` is the size of the intermediate quad transform (FFHQ: 4096 for 1024 output;
    default 4 x output_size), later reduced with an antialiasing filter as in the original.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    transform_size = transform_size or 4 * output_size
    quad, qsize = ffhq_quad(landmarks)
    img = PIL.Image.fromarray(image, "RGB")

    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, PIL.Image.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
           int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.size[0] + border, 0), max(pad[3] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        y, x, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                          1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
        blur = qsize * 0.02
        arr += (scipy.ndimage.gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = PIL.Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]

    img = img.transform((transform_size, transform_size), PIL.Image.QUAD, (quad + 0.5).flatten(),
                        PIL.Image.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), PIL.Image.LANCZOS)
    return np.asarray(img)


def convex_hull_mask(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Filled convex hull of point sets, rasterised at pixel centres.

    points: [N, K, 2] (x, y) in pixels, pixel centres at integer coordinates (the OpenCV/insightface
    convention of the landmarks). Returns [N, 1, height, width] float masks in {0, 1}.
    """

    points = torch.as_tensor(points, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                            torch.arange(width, dtype=torch.float64), indexing="ij")
    masks = torch.zeros(len(points), 1, height, width)
    for i, pts in enumerate(points):
        hull = pts[torch.as_tensor(ConvexHull(pts.numpy()).vertices)]  # counter-clockwise in (x, y)
        edges = hull.roll(-1, dims=0) - hull
        # Inside <=> on the left of (or on) every edge of the counter-clockwise polygon.
        cross = (edges[:, 0, None, None] * (ys[None] - hull[:, 1, None, None])
                 - edges[:, 1, None, None] * (xs[None] - hull[:, 0, None, None]))
        masks[i, 0] = (cross >= 0).all(dim=0).float()
    return masks
