"""Head pose (yaw, pitch, roll in degrees) from 68 iBUG landmarks, and pose-difference buckets of pairs.

The pose is the rotation that maps a generic 3-D face onto the 2-D landmarks through a pinhole camera,
solved by OpenCV ``solvePnP``, as in LearnOpenCV's head-pose tutorial (spmallick/learnopencv
``HeadPose/headPose.py`` at commit 0971c7587617173ab2a68c9a98de5053115ec5bd): six model points (nose tip, chin,
outer eye corners, mouth corners) in an arbitrary unit, focal length = image width, principal point = image
centre, no lens distortion, ``SOLVEPNP_ITERATIVE``. In the iBUG 68-point scheme (0-based, as dlib and semedit
number them) those points are 30, 8, 36, 45, 48 and 54.

Angles. The model's y axis points up and its z axis out of the face, while the camera's y points down and z
into the scene, so a frontal face has the camera rotation diag(1, -1, -1). Decomposing that rotation with
``cv2.RQDecomp3x3`` gives x angles near +-180 degrees for frontal faces (the wrap flips sign between
neighbouring faces) and a negated yaw. Here the flip is removed first, ``M = diag(1, -1, -1) @ R`` (the
identity for a frontal face), and M is decomposed as ``Ry(yaw) @ Rx(pitch) @ Rz(roll)``: no wrap for any
|pitch| < 90 degrees. Conventions: yaw > 0 when the face turns towards the image's right side (the subject's
left), pitch > 0 when it looks up, roll > 0 when it tilts counter-clockwise in the image.

Buckets. HairFastGAN reports realism on pose-difference buckets, but its public code has no pose split; the
thresholds are only in the paper and are not known here. :data:`DEFAULT_YAW_BUCKET_EDGES` is therefore
semedit's own choice, made configurable: |delta yaw| < 15 degrees "easy", 15-30 "medium", >= 30 "hard".
15 degrees is a clearly visible turn, well above the few degrees of error of a generic-model fit; from about 30
degrees one cheek and ear of the face are largely hidden, so the hair must be re-synthesised for another view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

__all__ = [
    "DEFAULT_YAW_BUCKET_EDGES",
    "DEFAULT_YAW_BUCKET_NAMES",
    "IBUG68_POSE_INDICES",
    "MODEL_POINTS_3D",
    "HeadPose",
    "angles_from_rotation",
    "bucket_labels",
    "head_pose_from_landmarks",
    "head_poses",
    "yaw_difference",
    "yaw_difference_buckets",
]

# LearnOpenCV HeadPose/headPose.py (commit 0971c758): "3D model points", same order as below.
MODEL_POINTS_3D = np.array([
    (0.0, 0.0, 0.0),  # nose tip
    (0.0, -330.0, -65.0),  # chin
    (-225.0, 170.0, -135.0),  # left eye left corner (image left)
    (225.0, 170.0, -135.0),  # right eye right corner
    (-150.0, -150.0, -125.0),  # left mouth corner
    (150.0, -150.0, -125.0),  # right mouth corner
], dtype=np.float64)
# The same six points in the iBUG 68-point scheme, 0-based.
IBUG68_POSE_INDICES = (30, 8, 36, 45, 48, 54)

# semedit's choice (see the module docstring): bucket i holds |delta yaw| in [edges[i-1], edges[i]) degrees,
# with 0 below the first edge and infinity above the last.
DEFAULT_YAW_BUCKET_EDGES = (15.0, 30.0)
DEFAULT_YAW_BUCKET_NAMES = ("easy", "medium", "hard")

# Model frame (y up, z out of the face) -> camera frame (y down, z into the scene) for a frontal face.
_FLIP = np.diag([1.0, -1.0, -1.0])


class HeadPose(NamedTuple):
    """Head pose in degrees (conventions in the module docstring)."""

    yaw: float
    pitch: float
    roll: float


def angles_from_rotation(rotation: np.ndarray) -> HeadPose:
    """(yaw, pitch, roll) in degrees of a solvePnP camera rotation [3, 3] (model -> camera coordinates)."""
    m = _FLIP @ np.asarray(rotation, dtype=np.float64)  # identity for a frontal face
    # M = Ry(yaw) Rx(pitch) Rz(roll):  M[0,2] = cos p sin y, M[2,2] = cos p cos y, M[1,2] = -sin p,
    # M[1,0] = cos p sin r, M[1,1] = cos p cos r. Pitch is negated so that looking up is positive (Rx turns
    # the face's forward axis towards -y, i.e. down, for a positive angle).
    yaw = np.degrees(np.arctan2(m[0, 2], m[2, 2]))
    pitch = -np.degrees(np.arcsin(np.clip(-m[1, 2], -1.0, 1.0)))
    roll = np.degrees(np.arctan2(m[1, 0], m[1, 1]))
    return HeadPose(float(yaw), float(pitch), float(roll))


def _camera(image_size: tuple[int, int]) -> np.ndarray:
    height, width = image_size
    focal = float(width)  # LearnOpenCV: focal_length = size[1], centre = (size[1] / 2, size[0] / 2)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def head_pose_from_landmarks(landmarks: np.ndarray, image_size: tuple[int, int]) -> HeadPose:
    """Pose of one face from its landmarks.

    Args:
        landmarks: [68, 2] iBUG landmarks (x, y) in pixels, or [6, 2] already in ``IBUG68_POSE_INDICES`` order.
        image_size: (height, width) of the image the landmarks are in (it sets the camera).

    Returns NaNs when solvePnP fails or puts the face behind the camera.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape == (68, 2):
        points = points[list(IBUG68_POSE_INDICES)]
    if points.shape != (6, 2) or not np.isfinite(points).all():
        raise ValueError(f"head pose needs finite [68, 2] (or [6, 2]) landmarks, got shape {points.shape}")
    ok, rvec, tvec = cv2.solvePnP(MODEL_POINTS_3D, points.reshape(6, 1, 2), _camera(image_size), np.zeros((4, 1)),
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or tvec[2, 0] <= 0:
        return HeadPose(float("nan"), float("nan"), float("nan"))
    rotation, _ = cv2.Rodrigues(rvec)
    return angles_from_rotation(rotation)


def head_poses(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Poses of many faces: landmarks [N, 68, 2] -> [N, 3] (yaw, pitch, roll) in degrees, NaN rows for
    failures (see :func:`head_pose_from_landmarks`)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3:
        raise ValueError(f"head_poses needs landmarks [N, 68, 2], got shape {landmarks.shape}")
    return np.array([head_pose_from_landmarks(points, image_size) for points in landmarks],
                    dtype=np.float64).reshape(-1, 3)


def yaw_difference(yaw_a, yaw_b) -> np.ndarray:
    """|yaw_a - yaw_b| in degrees, wrapped to [0, 180] (so 170 and -170 are 20 apart). Shapes broadcast."""
    delta = np.asarray(yaw_a, dtype=np.float64) - np.asarray(yaw_b, dtype=np.float64)
    return np.abs((delta + 180.0) % 360.0 - 180.0)


def _check_edges(edges: Sequence[float]) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or not np.isfinite(edges).all() or (edges <= 0).any() or (np.diff(edges) <= 0).any():
        raise ValueError(f"yaw bucket edges must be positive, finite and strictly increasing degrees, got {edges.tolist()}")
    return edges


def yaw_difference_buckets(yaw_a, yaw_b, edges: Sequence[float] = DEFAULT_YAW_BUCKET_EDGES) -> np.ndarray:
    """Bucket of each pair by |delta yaw|: [N] int64, bucket i covering [edges[i-1], edges[i]) degrees (bucket 0
    from 0, the last to infinity), so ``len(edges) + 1`` buckets; -1 where a yaw is NaN (pose not estimated).

    With the default edges (15, 30): 0 = easy (< 15), 1 = medium (15-30), 2 = hard (>= 30); see
    :func:`bucket_labels`. The paper's exact thresholds are unknown; pass the edges from the config.
    """
    edges = _check_edges(edges)
    delta = yaw_difference(yaw_a, yaw_b)
    buckets = np.searchsorted(edges, delta, side="right").astype(np.int64)
    return np.where(np.isnan(delta), -1, buckets)


def bucket_labels(edges: Sequence[float] = DEFAULT_YAW_BUCKET_EDGES, names: Sequence[str] | None = None) -> list[str]:
    """One label per bucket: ``names`` when given (``DEFAULT_YAW_BUCKET_NAMES`` for two edges), else the
    ranges ("0-15", "15-30", ">=30")."""
    edges = _check_edges(edges)
    if names is None and len(edges) == 2:
        names = DEFAULT_YAW_BUCKET_NAMES
    if names is not None:
        if len(names) != len(edges) + 1:
            raise ValueError(f"{len(edges)} edges make {len(edges) + 1} buckets, got {len(names)} names")
        return list(names)
    bounds = [0.0, *edges.tolist()]
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(bounds[:-1], bounds[1:])] + [f">={bounds[-1]:g}"]
