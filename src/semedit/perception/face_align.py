"""insightface's 5-point ArcFace alignment (``norm_crop``) in torch, and an identity encoder that uses it.

insightface does not feed ArcFace a fixed crop: ``FaceAnalysis`` detects the face with SCRFD, takes its 5
keypoints (eye centres, nose tip, mouth corners) and ``face_align.norm_crop`` warps the image so that
they land on the ArcFace template (deepinsight/insightface ``python-package/insightface/utils/
face_align.py``, commit 7fadd42: ``arcface_dst`` lines 6-9; ``estimate_norm`` lines 11-25, a similarity
transform estimated with ``skimage.transform.SimilarityTransform.estimate``, i.e. Umeyama's least-squares
method; ``norm_crop`` lines 27-30, ``cv2.warpAffine(img, M, (112, 112), borderValue=0.0)``, bilinear).
semedit's own crop for ArcFace is pSp's fixed box (``identity.ffhq_face_crop``); this module gives the
insightface pipeline as the alternative for the identity-retrieval protocol.

Keypoints come from insightface's detector (SCRFD ``det_10g.onnx``, its ``kps`` output) or, for
FFHQ-aligned images without a detector, from a template: the ArcFace template placed by the similarity
that maps its eye centres and mouth centre onto the positions FFHQ alignment gives them (eyes at
(0.375, 0.475) and (0.625, 0.475), mouth at (0.5, 0.725) of the image; ``landmarks.FFHQ_EYE_LEFT`` ...).
The template is semedit's choice for tiny configs and tests, not insightface's.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semedit.perception.identity import IdentityEncoder, load_identity_encoder
from semedit.perception.landmarks import FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT, FFHQ_MOUTH, images_to_uint8
from semedit.perception.onnx import onnx_providers
from semedit.weights import resolve_weights

__all__ = [
    "ARCFACE_DST",
    "KEYPOINT_SOURCES",
    "umeyama",
    "estimate_norm",
    "norm_crop",
    "ffhq_template_keypoints",
    "NormCropIdentityEncoder",
]

# insightface face_align.py lines 6-9: where the 5 keypoints go in a 112 x 112 ArcFace crop.
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
KEYPOINT_SOURCES = ("detector", "ffhq")


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) src -> dst, [3, 3] homogeneous.

    scikit-image ``skimage/transform/_geometric.py`` ``_umeyama(src, dst, estimate_scale=True)`` (Umeyama,
    PAMI 1991, eqs. 38-43), which ``SimilarityTransform.estimate`` calls and insightface uses.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    num, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_demean, dst_demean = src - src_mean, dst - dst_mean
    A = dst_demean.T @ src_demean / num  # eq. (38)
    d = np.ones((dim,), dtype=np.float64)
    if np.linalg.det(A) < 0:  # eq. (39)
        d[dim - 1] = -1
    T = np.eye(dim + 1, dtype=np.float64)
    U, S, V = np.linalg.svd(A)
    tol = S.max() * max(A.shape) * np.finfo(float).eps
    rank = np.count_nonzero(S > tol)
    if rank == 0:
        return np.nan * T
    if rank == dim - 1:  # eqs. (40), (43)
        if np.linalg.det(U) * np.linalg.det(V) > 0:
            T[:dim, :dim] = U @ V
        else:
            s = d[dim - 1]
            d[dim - 1] = -1
            T[:dim, :dim] = U @ np.diag(d) @ V
            d[dim - 1] = s
    else:
        T[:dim, :dim] = U @ np.diag(d) @ V
    scale = 1.0 / src_demean.var(axis=0).sum() * (S @ d)  # eqs. (41), (42)
    T[:dim, dim] = dst_mean - scale * (T[:dim, :dim] @ src_mean.T)
    T[:dim, :dim] *= scale
    return T


def estimate_norm(keypoints: np.ndarray, image_size: int = 112) -> np.ndarray:
    """insightface ``estimate_norm`` (mode 'arcface'): the [2, 3] matrix taking image pixels to the crop."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape != (5, 2):
        raise ValueError(f"norm_crop needs 5 keypoints [5, 2] (x, y), got {keypoints.shape}")
    if image_size % 112 == 0:
        ratio, diff_x = image_size / 112.0, 0.0
    elif image_size % 128 == 0:
        ratio, diff_x = image_size / 128.0, 8.0 * image_size / 128.0
    else:
        raise ValueError(f"image_size must be a multiple of 112 or 128, got {image_size}")
    dst = ARCFACE_DST.astype(np.float64) * ratio
    dst[:, 0] += diff_x
    return umeyama(keypoints, dst)[:2]


def warp_affine(images: torch.Tensor, matrices: torch.Tensor, size: int) -> torch.Tensor:
    """``cv2.warpAffine(img, M, (size, size), borderValue=0)`` (bilinear, zeros outside) of a batch.

    images [N, C, H, W]; matrices [N, 2, 3] taking input pixel coordinates (x, y) to output ones, with
    integer coordinates at pixel centres (OpenCV's convention). Returns [N, C, size, size].
    """
    n, _, h, w = images.shape
    m = matrices.to(torch.float64)
    full = torch.zeros(n, 3, 3, dtype=torch.float64)
    full[:, :2] = m.cpu()
    full[:, 2, 2] = 1
    inverse = torch.linalg.inv(full)[:, :2].to(images.device)  # output pixel -> input pixel
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64, device=images.device),
                            torch.arange(size, dtype=torch.float64, device=images.device), indexing="ij")
    out_pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)  # [size*size, 3]
    src = torch.einsum("nij,pj->npi", inverse, out_pts)  # [N, P, 2] input pixel coordinates
    # grid_sample with align_corners=False: pixel i's centre is at (2i + 1) / W - 1.
    gx = (2 * src[..., 0] + 1) / w - 1
    gy = (2 * src[..., 1] + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1).reshape(n, size, size, 2).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def norm_crop(images: torch.Tensor, keypoints: torch.Tensor | np.ndarray, image_size: int = 112) -> torch.Tensor:
    """insightface ``norm_crop`` of a batch: images [N, C, H, W] in [-1, 1], keypoints [N, 5, 2] in pixels.

    Outside the image the crop is black (-1 here; OpenCV's ``borderValue=0.0`` on uint8 images). Unlike
    insightface's uint8 pipeline the result is not rounded to 8 bits.
    """
    keypoints = np.array(torch.as_tensor(np.array(keypoints)).detach().cpu(), dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[0] != images.shape[0]:
        raise ValueError(f"keypoints must be [N, 5, 2] for {images.shape[0]} images, got {keypoints.shape}")
    matrices = torch.from_numpy(np.stack([estimate_norm(k, image_size) for k in keypoints]))
    return warp_affine(images + 1, matrices, image_size) - 1


def ffhq_template_keypoints(size: int) -> np.ndarray:
    """The 5 ArcFace template points placed on an FFHQ-aligned image of side ``size`` -> [5, 2] pixels.

    The similarity maps the template's eye centres and mouth centre (mean of its mouth corners) onto FFHQ
    alignment's eye and mouth positions; the nose and mouth corners follow it. semedit's choice.
    """
    src = np.stack([ARCFACE_DST[0], ARCFACE_DST[1], ARCFACE_DST[3:5].mean(axis=0)]).astype(np.float64)
    dst = np.array([FFHQ_EYE_LEFT, FFHQ_EYE_RIGHT, FFHQ_MOUTH], dtype=np.float64) * size - 0.5  # pixel centres
    T = umeyama(src, dst)
    return ARCFACE_DST.astype(np.float64) @ T[:2, :2].T + T[:2, 2]


class _DetectorKeypoints:
    """SCRFD's 5 keypoints of the largest face, as insightface's FaceAnalysis takes them."""

    def __init__(self, weights: str | os.PathLike = "detector-scrfd-10g", device="cpu"):
        import insightface.model_zoo  # optional heavy dependency (onnxruntime): imported where used

        providers = onnx_providers(device)
        self.detector = insightface.model_zoo.get_model(str(resolve_weights(weights)), providers=providers)
        self.detector.prepare(-1 if providers[0] == "CPUExecutionProvider" else 0, input_size=(640, 640),
                              det_thresh=0.5)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        out = []
        for image in images_to_uint8(images):
            bboxes, kpss = self.detector.detect(np.ascontiguousarray(image[:, :, ::-1]), max_num=0)  # BGR
            if len(bboxes) == 0:
                raise ValueError("insightface's detector found no face; use keypoints='ffhq' for FFHQ-aligned "
                                 "images without a detectable face")
            areas = (bboxes[:, 2] - bboxes[:, 0]) * (bboxes[:, 3] - bboxes[:, 1])
            out.append(kpss[int(np.argmax(areas))])
        return np.stack(out).astype(np.float64)


class NormCropIdentityEncoder(IdentityEncoder):
    """ArcFace behind insightface's 5-point ``norm_crop`` (images [N, 3, H, W] in [-1, 1] -> [N, 512])."""

    def __init__(self, spec: str | os.PathLike, keypoints: str = "detector", device="cpu",
                 detector: str | os.PathLike = "detector-scrfd-10g"):
        super().__init__(crop="none")
        if keypoints not in KEYPOINT_SOURCES:
            raise ValueError(f"keypoints must be one of {KEYPOINT_SOURCES}, got {keypoints!r}")
        self.encoder: nn.Module = load_identity_encoder(spec, device=device, crop="none")
        self.differentiable = getattr(self.encoder, "differentiable", False)
        self.keypoint_source = keypoints
        self._detector = _DetectorKeypoints(detector, device) if keypoints == "detector" else None

    def keypoints(self, images: torch.Tensor) -> np.ndarray:
        if self._detector is not None:
            return self._detector(images)
        return np.broadcast_to(ffhq_template_keypoints(images.shape[-1]), (images.shape[0], 5, 2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        crops = norm_crop(images.float(), self.keypoints(images), 112)
        return F.normalize(self.encoder(crops).float(), dim=1)
