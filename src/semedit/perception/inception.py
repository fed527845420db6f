"""The TF-FID InceptionV3 feature extractor (2048-d pool features), as torch-fidelity computes them.

A plain re-implementation of torch-fidelity 0.4.0's ``FeatureExtractorInceptionV3``
(``torch_fidelity/feature_extractor_inceptionv3.py``, commit 5e211a9; the same architecture and preprocessing
since v0.3.0), which itself ports the TensorFlow FID graph ``inception-2015-12-05``. It reads the PyTorch file
torch-fidelity publishes, ``weights-inception-2015-12-05-6726825d.pth`` (registry entry ``inception-fid``),
with the file's own tensor names, strictly and without unpickling anything but tensors.

What makes it the *TF* Inception rather than torchvision's (all cited from that file):

* input uint8 [N, 3, H, W] (lines 103-104), resized to 299 x 299 with TensorFlow 1.x bilinear interpolation,
  ``align_corners=False`` (lines 111-115; ``interpolate_compat_tensorflow.py``, method "slow", lines 115-138);
* normalised as ``(x - 128) / 128`` (line 119);
* every convolution is bias-free and followed by BatchNorm with ``eps=0.001`` and ReLU (lines 230-241);
* the pool branches of Mixed_5b-5d, 6b-6e and 7b average with ``count_include_pad=False`` (lines 270-271,
  335-336, 406-407), and Mixed_7c's pool branch is a *max* pool (lines 450-454);
* the FID feature is the global average pool after Mixed_7c, flattened, in float32 (lines 179-189).

torchmetrics 1.9.0 resizes with antialiased ``F.interpolate`` by default (``image/fid.py`` lines 88-95) and
matches this module only with ``antialias=False`` (lines 96-101) or on inputs that are already 299 x 299 (then
both resizes are the identity; HairFast pre-resizes every image to 299 with PIL LANCZOS).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from semedit.errors import CorruptWeightsError
from semedit.weights import load_state_dict_strict, load_torch_state_dict, resolve_weights

__all__ = [
    "INCEPTION_INPUT_SIZE",
    "INCEPTION_WEIGHTS",
    "InceptionV3FID",
    "load_inception_fid",
    "resize_bilinear_tf1",
]

INCEPTION_WEIGHTS = "inception-fid"  # registry name of weights-inception-2015-12-05-6726825d.pth
INCEPTION_INPUT_SIZE = 299  # FeatureExtractorInceptionV3.INPUT_IMAGE_SIZE (line 25)
_BN_EPS = 0.001  # line 236


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)`` of float images [N, C, H, W] -> [N, C, *size].

    TF1 (without half-pixel centres) samples output pixel i at source coordinate ``i * in / out`` and blends the
    two neighbours ``floor`` and ``min(floor + 1, in - 1)``: no antialiasing and a shift towards the top-left,
    which is what the TF FID graph saw. Follows torch-fidelity's epsilon-exact "slow" method
    (``interpolate_compat_tensorflow.py`` lines 83-93 for the scale and 115-138 for the sampling), including its
    float32 scale factor, so the values are bit-identical to it on CPU.
    """
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"resize_bilinear_tf1 needs a float [N, C, H, W] tensor, got {x.dtype} {tuple(x.shape)}")
    out_h, out_w = size

    def coords(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(in_size / out_size, dtype=torch.float32)  # line 93, then lines 117 / 123
        pos = torch.arange(0, out_size, 1, dtype=x.dtype, device=x.device) * scale
        lo = pos.long()  # truncation = floor for these non-negative positions
        hi = (lo + 1).clamp_max(in_size - 1)
        return lo, hi, pos - lo.float()

    x_lo, x_hi, dx = coords(x.shape[3], out_w)
    y_lo, y_hi, dy = coords(x.shape[2], out_h)
    top, bottom = x[:, :, y_lo, :], x[:, :, y_hi, :]
    top = top[:, :, :, x_lo] + (top[:, :, :, x_hi] - top[:, :, :, x_lo]) * dx.view(1, 1, 1, out_w)
    bottom = bottom[:, :, :, x_lo] + (bottom[:, :, :, x_hi] - bottom[:, :, :, x_lo]) * dx.view(1, 1, 1, out_w)
    return top + (bottom - top) * dy.view(1, 1, out_h, 1)


class _FrozenBatchNorm2d(nn.Module):
    """Inference-only BatchNorm (eps 0.001): exactly the four tensors the converted TF file stores per layer
    (torch-fidelity ``utils/util_convert_inception_weights.py`` lines 237-241), no ``num_batches_tracked``."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, _BN_EPS)


class _ConvBN(nn.Module):
    """``BasicConv2d``: bias-free conv, BN, ReLU (lines 230-241); tensor names ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = _FrozenBatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool ignores the zero padding (torch-fidelity lines 270-271).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    """InceptionA (lines 244-275): Mixed_5b/5c/5d."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = _ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = _ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_tf(x)),
        ], 1)


class _MixedB(nn.Module):
    """InceptionB (lines 278-299): Mixed_6a, the 35 -> 17 reduction."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = _ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class _MixedC(nn.Module):
    """InceptionC (lines 302-340): Mixed_6b..6e with factorised 7x7 convolutions."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_tf(x))], 1)


class _MixedD(nn.Module):
    """InceptionD (lines 343-367): Mixed_7a, the 17 -> 8 reduction."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedE(nn.Module):
    """InceptionE_1 / InceptionE_2 (lines 370-458): Mixed_7b averages in its pool branch, Mixed_7c takes the
    maximum (``max_pool``: the TF graph's quirk, lines 450-454)."""

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = _ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_tf(x)
        return torch.cat([
            self.branch1x1(x),
            torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1),
            torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1),
            self.branch_pool(pooled),
        ], 1)


class InceptionV3FID(nn.Module):
    """TF-FID InceptionV3: uint8 images [N, 3, H, W] -> 2048-d pool features [N, 2048] float32.

    Submodule names are those of torch-fidelity's module (lines 66-89), so the published file loads strictly.
    ``fc`` (2048 -> 1008, the TF graph's classifier) is in the file and kept for that reason; the FID feature
    does not use it. ``internal_dtype`` float64 mirrors torch-fidelity's ``feature_extractor_internal_dtype``
    (lines 56-64, 98, 108). Always in eval mode and without gradients.
    """

    num_features = 2048  # read by torchmetrics' FrechetInceptionDistance for custom extractors (fid.py 355-357)

    def __init__(self, internal_dtype: torch.dtype = torch.float32):
        super().__init__()
        if internal_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"internal_dtype must be torch.float32 or torch.float64, got {internal_dtype}")
        self.internal_dtype = internal_dtype
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.MaxPool_1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.MaxPool_2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = _MixedA(192, pool_features=32)
        self.Mixed_5c = _MixedA(256, pool_features=64)
        self.Mixed_5d = _MixedA(288, pool_features=64)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, channels_7x7=128)
        self.Mixed_6c = _MixedC(768, channels_7x7=160)
        self.Mixed_6d = _MixedC(768, channels_7x7=160)
        self.Mixed_6e = _MixedC(768, channels_7x7=192)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280, max_pool=False)
        self.Mixed_7c = _MixedE(2048, max_pool=True)
        self.AvgPool = nn.AdaptiveAvgPool2d(output_size=(1, 1))
        self.fc = nn.Linear(2048, 1008)
        self.to(internal_dtype)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionV3FID:
        return super().train(False)  # a frozen metric network: BN statistics must never be updated

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, 3, H, W] -> float [N, 3, 299, 299] in [-1, 1): TF1 bilinear resize, then (x - 128) / 128
        (torch-fidelity lines 102-119; 128 / 128 is bit-identical to the graph's * 0.0078125, line 118)."""
        if not torch.is_tensor(images) or images.dtype != torch.uint8:
            raise ValueError("the FID Inception takes uint8 images in [0, 255] (as torch-fidelity and torchmetrics "
                             f"with normalize=False do); got {getattr(images, 'dtype', type(images).__name__)}. "
                             "Convert with (x * 255).round().to(torch.uint8) for [0, 1] floats")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"the FID Inception takes RGB batches [N, 3, H, W], got {tuple(images.shape)}")
        x = images.to(self.internal_dtype)
        x = resize_bilinear_tf1(x, (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE))
        return (x - 128) / 128

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        x = self.MaxPool_1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))  # N x 64 x 73 x 73
        x = self.MaxPool_2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))  # N x 192 x 35 x 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # ... N x 2048 x 8 x 8
        return torch.flatten(self.AvgPool(x), 1).to(torch.float32)  # lines 179-186


def load_inception_fid(weights: str | os.PathLike = INCEPTION_WEIGHTS, device: str | torch.device = "cpu",
                       internal_dtype: torch.dtype = torch.float32) -> InceptionV3FID:
    """The TF-FID Inception with torch-fidelity's published weights.

    ``weights``: the registry name ``inception-fid`` (file ``weights-inception-2015-12-05-6726825d.pth`` in the
    weights folder) or a path. Raises MissingWeightsError (absent: names the file, its URL and where to put it),
    UnsafePickleError / CorruptWeightsError (not a plain file of tensors, or not this network's tensors).
    The file is read with ``weights_only=True``; nothing in it is executed.
    """
    path = resolve_weights(weights)
    what = f"FID Inception weights {path}"
    state = load_torch_state_dict(path, what="FID Inception weights")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    # A file saved from a module built with nn.BatchNorm2d (torch-fidelity's own, a converter run on another
    # torch) also carries BN step counters; they play no part at inference and the published file has none.
    state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    if not all(torch.is_tensor(v) for v in state.values()):
        raise CorruptWeightsError(f"{what} holds non-tensor entries; expected the 472 tensors of the converted "
                                  "TF Inception (torch-fidelity's file)")
    model = InceptionV3FID(internal_dtype)
    load_state_dict_strict(model, state, what)
    return model.to(device)
