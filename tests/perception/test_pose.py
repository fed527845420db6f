"""semedit.perception.pose: head pose from landmarks via solvePnP, and yaw-difference buckets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from semedit.perception.pose import (
    DEFAULT_YAW_BUCKET_EDGES,
    IBUG68_POSE_INDICES,
    MODEL_POINTS_3D,
    angles_from_rotation,
    bucket_labels,
    head_pose_from_landmarks,
    head_poses,
    yaw_difference,
    yaw_difference_buckets,
)


def _rot(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _landmarks(yaw: float, pitch: float = 0.0, roll: float = 0.0, size=(1024, 1024), shift=(0.0, 0.0)) -> np.ndarray:
    """68 landmarks whose six pose points are the generic model turned by (yaw, pitch, roll) and projected with
    LearnOpenCV's camera (focal = width, centre of the image); the other 62 points are junk."""
    height, width = size
    # In the model frame (y up, z out of the face): yaw about y, then looking up = rotating about x by -pitch.
    rotation = np.diag([1.0, -1.0, -1.0]) @ _rot("y", yaw) @ _rot("x", -pitch) @ _rot("z", roll)
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    t = np.array([[shift[0]], [shift[1]], [3000.0]])
    points, _ = cv2.projectPoints(MODEL_POINTS_3D, cv2.Rodrigues(rotation)[0], t, camera, np.zeros((4, 1)))
    landmarks = np.random.default_rng(0).uniform(0, width, size=(68, 2))
    landmarks[list(IBUG68_POSE_INDICES)] = points.reshape(6, 2)
    return landmarks


@pytest.mark.parametrize("yaw", [0.0, 7.5, -20.0, 35.0, -50.0, 65.0])
def test_recovers_known_yaw_within_a_degree(yaw):
    pose = head_pose_from_landmarks(_landmarks(yaw), (1024, 1024))
    assert abs(pose.yaw - yaw) < 1.0
    assert abs(pose.pitch) < 1.0 and abs(pose.roll) < 1.0


def test_recovers_combined_poses_off_centre_in_a_non_square_image():
    for yaw, pitch, roll in [(25.0, 10.0, -5.0), (-40.0, -15.0, 8.0), (10.0, 20.0, 12.0)]:
        pose = head_pose_from_landmarks(_landmarks(yaw, pitch, roll, size=(768, 1024), shift=(150.0, -80.0)),
                                        (768, 1024))
        assert np.allclose(pose, (yaw, pitch, roll), atol=1.0), (pose, yaw, pitch, roll)


def test_sign_conventions_and_no_rqdecomp_wrap():
    frontal = _landmarks(0.0)
    turned = _landmarks(30.0)
    eyes_mid = (turned[36, 0] + turned[45, 0]) / 2
    assert turned[30, 0] > eyes_mid  # yaw > 0: the nose moves towards the image's right
    up = _landmarks(0.0, pitch=20.0)
    assert up[30, 1] - up[36, 1] < frontal[30, 1] - frontal[36, 1]  # pitch > 0: the nose rises towards the eyes
    tilted = _landmarks(0.0, roll=15.0)
    assert tilted[45, 1] < tilted[36, 1]  # roll > 0 (counter-clockwise): the image-right eye goes up
    # cv2.RQDecomp3x3 on the same frontal rotation reports x near +-180 degrees; ours reports 0.
    rotation = np.diag([1.0, -1.0, -1.0])
    assert abs(abs(cv2.RQDecomp3x3(rotation)[0][0]) - 180.0) < 1e-6
    assert np.allclose(angles_from_rotation(rotation), (0.0, 0.0, 0.0))


def test_batch_and_input_checks():
    poses = head_poses(np.stack([_landmarks(10.0), _landmarks(-25.0)]), (1024, 1024))
    assert poses.shape == (2, 3) and np.allclose(poses[:, 0], [10.0, -25.0], atol=1.0)
    six = _landmarks(12.0)[list(IBUG68_POSE_INDICES)]
    assert abs(head_pose_from_landmarks(six, (1024, 1024)).yaw - 12.0) < 1.0
    with pytest.raises(ValueError, match=r"\[68, 2\]"):
        head_pose_from_landmarks(np.zeros((5, 2)), (1024, 1024))
    with pytest.raises(ValueError, match="N, 68, 2"):
        head_poses(np.zeros((68, 2)), (1024, 1024))


def test_yaw_difference_buckets():
    assert DEFAULT_YAW_BUCKET_EDGES == (15.0, 30.0)
    yaw_a = np.array([0.0, 10.0, -10.0, 20.0, 5.0, 170.0, 0.0, np.nan, 40.0])
    yaw_b = np.array([14.9, -5.0, 10.0, -20.0, 5.0, -170.0, 30.0, 0.0, 0.0])
    # |delta|:         14.9, 15, 20, 40, 0, 20 (wrapped), 30, nan, 40
    assert np.allclose(yaw_difference(170.0, -170.0), 20.0)
    assert yaw_difference_buckets(yaw_a, yaw_b).tolist() == [0, 1, 1, 2, 0, 1, 2, -1, 2]
    assert bucket_labels() == ["easy", "medium", "hard"]
    # Configurable edges: four buckets, labelled by range unless named.
    assert yaw_difference_buckets(yaw_a, yaw_b, edges=(10, 20, 35)).tolist() == [1, 1, 2, 3, 0, 2, 2, -1, 3]
    assert bucket_labels((10, 20, 35)) == ["0-10", "10-20", "20-35", ">=35"]
    assert bucket_labels((25,), names=("near", "far")) == ["near", "far"]
    with pytest.raises(ValueError, match="strictly increasing"):
        yaw_difference_buckets(yaw_a, yaw_b, edges=(30, 15))
    with pytest.raises(ValueError, match="3 buckets"):
        bucket_labels((10, 20), names=("a", "b"))
