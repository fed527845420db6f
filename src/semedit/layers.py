"""Network pieces several models are built from: the equalised linear layer and the IR-SE body.

- ``FullyConnectedLayer``: the equalised-learning-rate linear layer of StyleGAN2 (NVlabs
  ``networks_stylegan2.py`` ``FullyConnectedLayer``; rosinality and pSp call the same maths ``EqualLinear``,
  with the same parameter names ``weight`` [out, in] and ``bias`` [out]). The mapping network, the affine
  style layers, the pSp/e4e style heads and the FG 2021 encoders all use it.
- The IR-SE body (InsightFace ``bottleneck_IR_SE`` units in stages), shared by ArcFace (identity), the pSp
  family of encoders and the FG 2021 hair encoders: ``irse_stem`` + ``irse_body`` build it,
  ``irse_stage_layout`` reads its shape back from a state dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from semedit.errors import CorruptWeightsError

__all__ = ["LRELU_SLOPE", "LRELU_GAIN", "bias_act", "FullyConnectedLayer", "IRSE_UNITS", "IRSE_DEPTHS", "IRSE_STAGE_CHANNELS", "units_for_depth", "SEModule",
           "BottleneckIRSE", "irse_stem", "irse_body", "irse_stage_layout", "irse_depth"]


LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def bias_act(
    x: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    act: str = "linear",
    gain: Optional[float] = None,
    clamp: Optional[float] = None,
) -> torch.Tensor:
    """``act(x + bias) * gain``, then clamp to [-clamp, clamp]. Bias is broadcast along dim 1."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        default_gain = LRELU_GAIN
    elif act == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unsupported activation '{act}' (expected 'lrelu' or 'linear')")
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate.

    weight: [out, in] stored divided by ``lr_multiplier``; used as weight * lr_multiplier / sqrt(in).
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


# Bottleneck units per stage (64, 128, 256, 512 channels). 50/100/152 are the InsightFace depths; 10/18/34
# follow the ResNet counts and exist for tiny configurations.
IRSE_UNITS: dict[int, tuple[int, int, int, int]] = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
}
IRSE_DEPTHS = tuple(sorted(IRSE_UNITS))
IRSE_STAGE_CHANNELS = (64, 128, 256, 512)


def units_for_depth(num_layers: int) -> tuple[int, ...]:
    """Units per stage of an IR-SE network with ``num_layers`` layers (10, 18, 34, 50, 100 or 152)."""
    if num_layers not in IRSE_UNITS:
        raise ValueError(f"unsupported IR-SE depth {num_layers}; valid depths: {sorted(IRSE_UNITS)}")
    return IRSE_UNITS[num_layers]


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from global average pooling (1x1 convs, no bias)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)  # narrow tiny-config widths keep at least one unit
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """IR-SE unit: BN-conv-PReLU-conv(stride)-BN-SE plus a shortcut (max-pool subsampling or conv-BN).

    in_channels -> depth channels; the spatial size is divided by ``stride``. ``se=False`` is the plain IR unit
    (pSp models/encoders/helpers.py ``bottleneck_IR``: the same layers without the SE module).
    """

    def __init__(self, in_channels: int, depth: int, stride: int, se_reduction: int = 16, se: bool = True):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            *([SEModule(depth, se_reduction)] if se else []),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def irse_stem(in_channels: int, width: int) -> nn.Sequential:
    """The ``input_layer`` of every IR-SE network: 3x3 conv (no bias), BatchNorm, PReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, width, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(width),
                         nn.PReLU(width))


def irse_body(units: Sequence[int], channels: Sequence[int], in_channels: int,
              se_reduction: int = 16, se: bool = True) -> nn.Sequential:
    """The ``body``: ``units[k]`` IR-SE units of width ``channels[k]`` per stage; the first unit of every stage
    halves the resolution (112 -> 56 -> 28 -> 14 -> 7 in ArcFace)."""
    if len(units) != len(channels):
        raise ValueError(f"units {list(units)} and channels {list(channels)} must have the same length")
    blocks: list[nn.Module] = []
    for count, depth in zip(units, channels, strict=True):
        for i in range(int(count)):
            blocks.append(BottleneckIRSE(in_channels, int(depth), stride=2 if i == 0 else 1, se_reduction=se_reduction,
                                         se=se))
            in_channels = int(depth)
    return nn.Sequential(*blocks)


def irse_stage_layout(state_dict: Mapping[str, torch.Tensor], prefix: str = "body.") -> tuple[list[int], list[int]]:
    """(units per stage, width per stage) of the IR-SE body whose weights are ``<prefix><i>.*``.

    A stage starts at unit 0, where the width changes, and wherever a unit has a conv shortcut (the strided
    first unit of a stage whose width equals the previous stage's). CorruptWeightsError when the units are
    missing or not numbered 0..n-1.
    """
    ids = sorted({int(k[len(prefix):].split(".")[0]) for k in state_dict
                  if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()})
    if not ids or ids != list(range(len(ids))):
        raise CorruptWeightsError(f"IR-SE units under '{prefix}' are missing or not numbered 0..n-1")
    units: list[int] = []
    channels: list[int] = []
    for i in ids:
        key = f"{prefix}{i}.res_layer.1.weight"
        if key not in state_dict:
            raise CorruptWeightsError(f"IR-SE unit weight {key} is missing")
        width = int(state_dict[key].shape[0])
        if i == 0 or width != channels[-1] or f"{prefix}{i}.shortcut_layer.0.weight" in state_dict:
            units.append(1)
            channels.append(width)
        else:
            units[-1] += 1
    return units, channels


def irse_depth(units: Sequence[int]) -> int:
    """The IR-SE depth of a stage layout; CorruptWeightsError when it is none of ``IRSE_UNITS``."""
    for depth, expected in IRSE_UNITS.items():
        if tuple(units) == expected:
            return depth
    raise CorruptWeightsError(f"IR-SE units per stage {list(units)} match no depth in {sorted(IRSE_UNITS)}")
