"""ArcFace identity embeddings: IR-SE50 in torch (differentiable, for losses) and insightface ONNX (eval).

Both sit behind :class:`IdentityEncoder`: ``enc(images [N, 3, H, W] in [-1, 1], FFHQ-aligned, any H = W)
-> [N, 512]`` L2-normalised embeddings. Identity similarity is the cosine of two embeddings.

IR-SE50 is the network of TreB1eN/InsightFace_Pytorch in the ``model_ir_se50.pth`` format that pSp, e4e,
ReStyle and HyperStyle use for their identity loss (fixture ``perception/irse50_arcface.json``). pSp feeds
it ``x[:, :, 35:223, 32:220]`` of a 256 px FFHQ-aligned image, average-pooled to 112 x 112; here that crop
box is scaled to the image size, so 256 px and 1024 px inputs give exactly pSp's numbers.

The insightface ArcFace ONNX models (buffalo_l ``w600k_r50.onnx``) are loaded through
``insightface.model_zoo.get_model`` and run batched on onnxruntime (CPU or CUDA provider). They are not
differentiable; use them for evaluation at scale.

``dlib-resnet`` is dlib's 128-d face descriptor (``dlib_face_recognition_resnet_model_v1.dat`` from the pip
package face-recognition-models), available offline. Its distance convention differs from ArcFace's: the
*Euclidean* distance of the raw (not normalised) descriptors, same person below 0.6 (dlib's threshold,
99.38 % on LFW). Every encoder carries its convention: ``enc.metric`` is "cosine" (ArcFace: distance
1 - cos, similarity cos) or "euclidean" (dlib: distance ||a - b||, similarity -||a - b||), and
``enc.distance(a, b)`` applies it. It is not differentiable (evaluation only, not a training loss).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semedit.layers import (
    IRSE_STAGE_CHANNELS,
    IRSE_UNITS,
    irse_body,
    irse_depth,
    irse_stage_layout,
    irse_stem,
)
from semedit.perception import faces
from semedit.perception.checkpoints import load_checked_state_dict
from semedit.perception.onnx import onnx_providers
from semedit.weights import CorruptWeightsError, load_torch_state_dict, resolve_weights

__all__ = [
    "IRSEBackbone",
    "build_irse",
    "irse_depth_from_state_dict",
    "ffhq_face_crop",
    "IdentityEncoder",
    "TorchIdentityEncoder",
    "OnnxIdentityEncoder",
    "DlibIdentityEncoder",
    "DLIB_IDENTITY_NAMES",
    "identity_metric",
    "embedding_distance",
    "load_identity_encoder",
    "load_irse",
    "onnx_providers",
    "cosine_similarity",
    "cosine_similarity_matrix",
    "identity_distance",
]

EMBEDDING_DIM = 512

# pSp's identity crop of a 256 px FFHQ-aligned image: rows 35:223, columns 32:220 (188 x 188).
_PSP_SIZE = 256
_PSP_ROWS = (35, 223)
_PSP_COLS = (32, 220)


class IRSEBackbone(nn.Module):
    """ArcFace IR-SE backbone, parameter names of ``Backbone(112, num_layers, mode="ir_se")``.

    Args:
        num_layers: depth, a key of IRSE_UNITS (50 for ``model_ir_se50.pth``).
        drop_ratio: dropout before the embedding layer (inactive in eval mode).
        mode: "ir_se" (SE units) or "ir" (plain IR units, ``bottleneck_IR``).
        affine: whether the final BatchNorm1d has weight and bias (``affine=False`` in pSp's ``IR_101``, the
            CurricularFace network of its identity metric, models/encoders/model_irse.py lines 57-60).
    Input: [N, 3, 112, 112] in [-1, 1]. Output: [N, 512], L2-normalised.
    """

    def __init__(self, num_layers: int = 50, drop_ratio: float = 0.6, mode: str = "ir_se", affine: bool = True):
        super().__init__()
        if num_layers not in IRSE_UNITS:
            raise ValueError(f"unsupported IR-SE depth {num_layers}; valid depths: {sorted(IRSE_UNITS)}")
        if mode not in ("ir", "ir_se"):
            raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
        self.num_layers, self.mode = num_layers, mode
        self.input_layer = irse_stem(3, 64)
        # Declared before the body, as in the original, so state_dict keys come in the checkpoint's order.
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(), nn.Linear(512 * 7 * 7, EMBEDDING_DIM),
            nn.BatchNorm1d(EMBEDDING_DIM, affine=affine),
        )
        self.body = irse_body(IRSE_UNITS[num_layers], IRSE_STAGE_CHANNELS, 64, se=mode == "ir_se")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and (x.ndim != 4 or tuple(x.shape[1:]) != (3, 112, 112)):
            raise ValueError(f"IR-SE expects [N, 3, 112, 112] face crops, got {tuple(x.shape)}")
        feat = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(feat, dim=1, eps=1e-12)


def build_irse(num_layers: int = 50, seed: int | None = None) -> IRSEBackbone:
    """A randomly initialised IR-SE (deterministic for a given ``seed``), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = IRSEBackbone(num_layers)
    return net.eval()


def irse_depth_from_state_dict(sd: dict[str, torch.Tensor]) -> int:
    """The IR-SE depth whose unit counts match the ``body.<i>`` entries of a state_dict."""
    try:
        units, channels = irse_stage_layout(sd, "body.")
        if tuple(channels) != IRSE_STAGE_CHANNELS:
            raise CorruptWeightsError(f"stage widths {channels}, not {list(IRSE_STAGE_CHANNELS)}")
        return irse_depth(units)
    except CorruptWeightsError as err:
        raise CorruptWeightsError(f"not an IR-SE (model_ir_se50.pth format) state_dict: {err}") from None


def ffhq_face_crop(images: torch.Tensor, size: int = 112) -> torch.Tensor:
    """The pSp identity crop of FFHQ-aligned images at any resolution.

    images: [N, C, R, R]. The crop box of pSp (rows 35:223, cols 32:220 of 256 px) is scaled by R / 256,
    average-pooled to 188 px (pSp's crop size; exact area pooling when R is a multiple of 256) and then
    adaptively pooled to ``size`` as pSp does. Images smaller than 188 px are bilinearly resized instead.
    Returns [N, C, size, size].
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square FFHQ-aligned images [N, C, R, R], got {tuple(images.shape)}")
    res = images.shape[-1]
    scale = res / _PSP_SIZE
    top, bottom = round(_PSP_ROWS[0] * scale), round(_PSP_ROWS[1] * scale)
    left, right = round(_PSP_COLS[0] * scale), round(_PSP_COLS[1] * scale)
    crop = images[:, :, top:bottom, left:right]
    psp_crop = _PSP_ROWS[1] - _PSP_ROWS[0]
    if crop.shape[-1] >= psp_crop:
        if crop.shape[-1] != psp_crop:
            crop = F.adaptive_avg_pool2d(crop, (psp_crop, psp_crop))
        return F.adaptive_avg_pool2d(crop, (size, size))
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


class IdentityEncoder(nn.Module):
    """Common interface: ``forward(images [N, 3, H, W] in [-1, 1]) -> [N, 512]`` unit-norm embeddings.

    ``crop``: "ffhq" (images are FFHQ-aligned, the pSp crop is taken) or "none" (images already are
    112 x 112 ArcFace-aligned crops). ``differentiable`` tells whether gradients reach the input.
    """

    embedding_dim: int = EMBEDDING_DIM
    differentiable: bool = False
    # Distance convention of the embeddings: "cosine" (1 - cos; ArcFace) or "euclidean" (dlib).
    metric: str = "cosine"

    def __init__(self, crop: str = "ffhq"):
        super().__init__()
        if crop not in ("ffhq", "none"):
            raise ValueError(f"crop must be 'ffhq' or 'none', got {crop!r}")
        self.crop = crop

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, 3, 112, 112] face crops in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        if self.crop == "ffhq":
            return ffhq_face_crop(images, 112)
        if images.shape[-2:] != (112, 112):
            raise ValueError(f"crop='none' needs 112 x 112 ArcFace crops, got {tuple(images.shape[-2:])}")
        return images

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Row-wise identity distance of embeddings [N, D] under this encoder's ``metric`` -> [N]."""
        return embedding_distance(a, b, self.metric)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Embeddings of many images, ``batch_size`` at a time, without gradients. [N, 512]."""
        return torch.cat([self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


class TorchIdentityEncoder(IdentityEncoder):
    """IR-SE backbone behind the identity interface; frozen weights, differentiable w.r.t. the input."""

    differentiable = True

    def __init__(self, backbone: IRSEBackbone, crop: str = "ffhq"):
        super().__init__(crop)
        self.backbone = backbone.eval()
        self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> TorchIdentityEncoder:
        # The batch norms must keep their pretrained statistics inside a training LightningModule.
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.preprocess(images))


class OnnxIdentityEncoder(IdentityEncoder):
    """An insightface ArcFace ONNX model (e.g. buffalo_l ``w600k_r50.onnx``), batched on onnxruntime.

    Not differentiable: outputs are computed in numpy and returned on the input's device.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", crop: str = "ffhq",
                 providers: Sequence[str] | None = None):
        super().__init__(crop)
        import insightface.model_zoo
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        path = Path(path)
        try:
            model = insightface.model_zoo.get_model(str(path), providers=list(providers or onnx_providers(device)))
        except Exception as err:
            raise CorruptWeightsError(f"{path} could not be loaded by insightface/onnxruntime "
                                      f"({type(err).__name__}: {err}); expected an ArcFace ONNX model") from err
        if not isinstance(model, ArcFaceONNX):
            raise CorruptWeightsError(
                f"{path} is not an ArcFace recognition model (insightface routed it to "
                f"{type(model).__name__}); expected input [N, 3, 112, 112] and one output [N, 512]"
            )
        if tuple(model.input_size) != (112, 112):
            raise CorruptWeightsError(f"{path}: ArcFace input size {model.input_size}, expected (112, 112)")
        self.model = model
        self.path = path
        batch = model.input_shape[0]
        # Fixed-batch exports run in chunks of their batch size; dynamic ones take any batch.
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        crops = self.preprocess(images.detach().float())
        # ArcFaceONNX.forward normalises (pixel - input_mean) / input_std with pixels in [0, 255], RGB.
        pixels = ((crops.clamp(-1, 1) + 1) * 127.5).cpu().numpy().astype(np.float32)
        step = self.fixed_batch or len(pixels)
        out = np.concatenate([self.model.forward(pixels[i:i + step]) for i in range(0, len(pixels), step)])
        if out.ndim != 2 or out.shape[1] != EMBEDDING_DIM:
            raise CorruptWeightsError(f"{self.path}: output shape {out.shape}, expected [N, {EMBEDDING_DIM}]")
        return F.normalize(torch.from_numpy(out).float(), dim=1).to(images.device)


class DlibIdentityEncoder(IdentityEncoder):
    """dlib's 128-d ResNet face descriptor on FFHQ-aligned images, without detection.

    Aligned images have their face at a known place, so the 5-point predictor runs on that box
    (``faces.DLIB_FFHQ_FACE_BOX``) at 256 px, dlib cuts its 150 px face chip and the ResNet embeds all chips
    of the batch in one call. This works on any image, faces or not (the tiny random generator's images get
    well-defined, meaningless descriptors). Output: [N, 128] raw descriptors; compare them with
    :meth:`distance` (Euclidean; same person below 0.6). Not differentiable.
    """

    embedding_dim = 128
    metric = "euclidean"

    def __init__(self, model_path: str | Path | None = None, crop: str = "ffhq"):
        super().__init__(crop)
        if crop != "ffhq":
            raise ValueError("dlib-resnet cuts its own face chip from FFHQ-aligned images: use crop='ffhq' "
                             "(eval-identity: identity_crop=ffhq), not ArcFace crops")

        self.model_path = str(model_path) if model_path is not None else None
        faces.face_recognizer(self.model_path)  # load now: a missing package fails here with its pip name
        faces.shape_predictor(5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
        arrays = faces.aligned_uint8(images, faces.KNOWN_BOX_SIZE)
        boxes = [faces.known_face_box(faces.KNOWN_BOX_SIZE)] * len(arrays)
        out = faces.face_descriptors(arrays, boxes, model_path=self.model_path)
        return torch.from_numpy(out).float().to(images.device)


# Specs that select dlib's descriptor (the package's file; a path to a .dat file works too).
DLIB_IDENTITY_NAMES = ("dlib-resnet", "dlib")


def identity_metric(spec: str | os.PathLike | None) -> str:
    """The distance convention of the encoder a spec selects: "euclidean" (dlib) or "cosine" (ArcFace)."""
    text = os.fspath(spec) if spec is not None else ""
    return "euclidean" if text in DLIB_IDENTITY_NAMES or text.endswith(".dat") else "cosine"


def embedding_distance(a: torch.Tensor, b: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Row-wise identity distance: 1 - cos (metric "cosine") or ||a - b|| ("euclidean") -> [N]."""
    if metric == "cosine":
        return 1.0 - cosine_similarity(a, b)
    if metric == "euclidean":
        return torch.linalg.vector_norm(a.float() - b.float(), dim=-1)
    raise ValueError(f"unknown identity metric {metric!r}; choose cosine or euclidean")


def load_identity_encoder(spec: str | os.PathLike, device: str | torch.device = "cpu",
                          crop: str = "ffhq") -> IdentityEncoder:
    """An identity encoder from a spec.

    spec: a registry name (``"arcface-irse50"``, ``"arcface-w600k-r50"``), a ``.pth``/``.pt`` file in the
    ``model_ir_se50.pth`` format, an insightface ``.onnx`` file, ``"dlib-resnet"`` (dlib's 128-d descriptor
    from face-recognition-models; Euclidean distance, or a path to a ``.dat`` file in its format), or
    ``"random-irse50"`` / ``"random-irse:<depth>[:<seed>]"`` (random init, seed 0 by default; for tests
    only: its numbers mean nothing).
    """
    text = os.fspath(spec)
    if text in DLIB_IDENTITY_NAMES:
        return DlibIdentityEncoder(crop=crop)
    if text.endswith(".dat"):
        return DlibIdentityEncoder(resolve_weights(text), crop=crop)
    m = re.fullmatch(r"random-irse(?::(\d+)(?::(\d+))?|(\d+))", text)
    if m:
        depth = int(m.group(1) or m.group(3))
        seed = int(m.group(2) or 0)
        if depth not in IRSE_UNITS:
            raise ValueError(f"{text!r}: unsupported IR-SE depth {depth}; valid depths: {sorted(IRSE_UNITS)}")
        return TorchIdentityEncoder(build_irse(depth, seed=seed), crop=crop).to(device)
    path = resolve_weights(text)
    if path.suffix == ".onnx":
        return OnnxIdentityEncoder(path, device=device, crop=crop)
    return TorchIdentityEncoder(load_irse(path), crop=crop).to(device)


def load_irse(source: str | Path | dict) -> IRSEBackbone:
    """An IR-SE backbone from a ``model_ir_se50.pth``-format file or state_dict (depth read from the keys; IR
    units without SE and a final BatchNorm1d without affine parameters, as pSp's ``IR_101`` for
    CurricularFace_Backbone.pth, are recognised from the keys too)."""

    sd = load_torch_state_dict(source) if not isinstance(source, dict) else source
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not any(k.startswith("body.") for k in sd):
        raise CorruptWeightsError(
            f"{source if not isinstance(source, dict) else 'state_dict'} is not an IR-SE ArcFace checkpoint "
            "(model_ir_se50.pth format: keys input_layer.*, body.<i>.*, output_layer.*)"
        )
    mode = "ir_se" if any(".res_layer.5." in k for k in sd) else "ir"
    net = IRSEBackbone(irse_depth_from_state_dict(sd), mode=mode, affine="output_layer.4.weight" in sd)
    return load_checked_state_dict(net, sd, "an IR-SE ArcFace state_dict (model_ir_se50.pth format)").eval()


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of [N, D] and [N, D] (or broadcastable) -> [N]."""
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def cosine_similarity_matrix(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """All pairwise cosine similarities: [Q, D] x [G, D] -> [Q, G]."""
    return F.normalize(queries, dim=-1) @ F.normalize(gallery, dim=-1).T


def identity_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity, row-wise -> [N]; the identity loss of pSp/e4e (averaged by the caller)."""
    return 1.0 - cosine_similarity(a, b)
