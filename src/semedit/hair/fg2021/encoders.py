"""Face and hair encoders (IR-SE backbones into W+) and their fusion, as in the released FG 2021 model.

The released model (Šubrtová, Čech, Franc, FG 2021) is pSp's ``BackboneEncoderUsingLastLayerIntoWPlus``
twice: an IR-SE50 backbone whose last feature map is pooled to 7x7, flattened, projected to 512 and
then, by an equalised linear layer, to ``num_ws * w_dim`` values read as a W+ code. One copy sees the
inner face, the other the hair. The fusion ``map`` concatenates both flattened codes and applies
``Linear(2 * num_ws * w_dim, num_ws * w_dim)`` and ``LeakyReLU(0.2)``; the result is the W+ code that
the frozen StyleGAN2 renders.

Module and parameter names follow the released checkpoint (``encoder_face.input_layer.0.weight``,
``encoder_hair.body.3.shortcut_layer.0.weight``, ``map.0.weight``...), so loading it is a key-for-key
copy (see ``fg2021.py``). Depth and widths are configurable so that tiny CPU configs stay small.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The IR-SE building blocks are ArcFace's; the released encoders use the same modules and names.
from semedit.hair.fg2021.config import EncoderConfig
from semedit.layers import IRSE_UNITS, FullyConnectedLayer, irse_body, irse_stem, units_for_depth

__all__ = [
    "WPlusEncoder",
    "HairTransferNet",
    "build_hair_net",
    "resize_for_encoder",
]


class WPlusEncoder(nn.Module):
    """IR-SE backbone -> pooled features -> W+ code (pSp ``BackboneEncoderUsingLastLayerIntoWPlus``).

    Args:
        num_ws: number of W+ entries of the generator (18 at 1024 px).
        w_dim: width of each W+ entry (512 for FFHQ).
        units: residual units per stage, e.g. ``units_for_depth(50) = (3, 4, 14, 3)``.
        channels: width of each stage (64, 128, 256, 512 in IR-SE50). The first unit of every stage
            halves the resolution, so an input of size R ends at R / 2**len(units).
        feature_dim: width of the pooled feature vector (512 in the released model).
        pool_size: the last feature map is average-pooled to ``pool_size`` x ``pool_size`` (7).
        se_reduction: squeeze-and-excitation reduction (16).
        in_channels: input image channels (3).

    Input ``x``: [N, in_channels, H, W]; output: [N, num_ws, w_dim].
    """

    def __init__(
        self,
        num_ws: int,
        w_dim: int,
        units: Sequence[int] = IRSE_UNITS[50],
        channels: Sequence[int] = (64, 128, 256, 512),
        feature_dim: int = 512,
        pool_size: int = 7,
        se_reduction: int = 16,
        in_channels: int = 3,
    ):
        super().__init__()
        if len(units) != len(channels):
            raise ValueError(f"units {list(units)} and channels {list(channels)} must have the same length")
        self.num_ws, self.w_dim = int(num_ws), int(w_dim)
        stem = int(channels[0])
        self.input_layer = irse_stem(in_channels, stem)
        self.body = irse_body(units, channels, stem, se_reduction)
        in_c = int(channels[-1])
        self.output_layer_2 = nn.Sequential(
            nn.BatchNorm2d(in_c),
            nn.AdaptiveAvgPool2d((pool_size, pool_size)),
            nn.Flatten(),
            nn.Linear(in_c * pool_size * pool_size, feature_dim),
        )
        self.linear = FullyConnectedLayer(feature_dim, self.num_ws * self.w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"encoder input must be [N, C, H, W], got shape {list(x.shape)}")
        x = self.output_layer_2(self.body(self.input_layer(x)))
        return self.linear(x).view(-1, self.num_ws, self.w_dim)


class HairTransferNet(nn.Module):
    """Face encoder + hair encoder + fusion into one W+ code (the released model's ``encoder``).

    ``forward(face, hair)`` takes the masked inner face of one image and the masked hair region of
    another, both [N, 3, S, S] in [-1, 1] at the encoder input size S (256 in the released model),
    and returns W+ codes [N, num_ws, w_dim]. The two embeddings are exposed separately
    (``encode_face``/``encode_hair`` -> [N, num_ws, w_dim], ``fuse``) so that inference can
    interpolate or edit one of them before fusing.
    """

    def __init__(
        self,
        num_ws: int,
        w_dim: int,
        units: Sequence[int] = IRSE_UNITS[50],
        channels: Sequence[int] = (64, 128, 256, 512),
        feature_dim: int = 512,
        pool_size: int = 7,
        se_reduction: int = 16,
    ):
        super().__init__()
        self.num_ws, self.w_dim = int(num_ws), int(w_dim)
        kwargs = dict(units=units, channels=channels, feature_dim=feature_dim, pool_size=pool_size,
                      se_reduction=se_reduction)
        self.encoder_face = WPlusEncoder(num_ws, w_dim, **kwargs)
        self.encoder_hair = WPlusEncoder(num_ws, w_dim, **kwargs)
        code = self.num_ws * self.w_dim
        self.map = nn.Sequential(nn.Linear(2 * code, code), nn.LeakyReLU(0.2))

    def encode_face(self, face: torch.Tensor) -> torch.Tensor:
        return self.encoder_face(face)

    def encode_hair(self, hair: torch.Tensor) -> torch.Tensor:
        return self.encoder_hair(hair)

    def fuse(self, face_code: torch.Tensor, hair_code: torch.Tensor) -> torch.Tensor:
        """Face and hair embeddings [N, num_ws, w_dim] each -> W+ [N, num_ws, w_dim]."""
        if face_code.shape != hair_code.shape or face_code.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"face and hair embeddings must both be [N, {self.num_ws}, {self.w_dim}], got "
                f"{list(face_code.shape)} and {list(hair_code.shape)}"
            )
        both = torch.cat([face_code.flatten(1), hair_code.flatten(1)], dim=1)
        return self.map(both).view(-1, self.num_ws, self.w_dim)

    def forward(self, face: torch.Tensor, hair: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.encode_face(face), self.encode_hair(hair))


def build_hair_net(cfg: EncoderConfig, num_ws: int, w_dim: int) -> HairTransferNet:
    """The encoders + fusion for a generator with ``num_ws`` W+ entries of width ``w_dim``."""
    return HairTransferNet(
        num_ws=num_ws,
        w_dim=w_dim,
        units=units_for_depth(cfg.num_layers),
        channels=list(cfg.channels),
        feature_dim=cfg.feature_dim,
        pool_size=cfg.pool_size,
        se_reduction=cfg.se_reduction,
    )


def resize_for_encoder(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size]; area averaging when shrinking (pSp's ``face_pool``)."""
    if images.shape[-2:] == (size, size):
        return images
    if images.shape[-1] > size:
        return F.adaptive_avg_pool2d(images, (size, size))
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
