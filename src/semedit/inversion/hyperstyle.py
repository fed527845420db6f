"""HyperStyle (Alaluf, Tov, Mokady, Gal, Bermano, CVPR 2022) from its released checkpoints: a row of the
inversion tables.

HyperStyle keeps an initial W code and refines the *generator* per image: a hypernetwork predicts, for every
tuned convolution l, an offset Delta_l of the same shape as its weight, and the generator convolves with
``W_l * (1 + Delta_l)`` (before modulation and demodulation; semedit's ``G.synthesis(..., weight_deltas=...)``).
Sources: yuval-alaluf/hyperstyle at a723c7310312ca5b7f859340027f78e18965acbc, cited ``H:path lines``.

Inference (H:models/hyperstyle.py lines 63-101 and 151-173, H:utils/inference_utils.py lines 4-41):

1. the W code, once: ``codes = WEncoder(x) + latent_avg`` with x the 256 px input (3 channels); WEncoder is
   HyperStyle's e4e-into-W (H:models/encoders/w_encoder.py lines 9-41: IR-SE50, global average pool, one
   EqualLinear, the same w for every W+ entry); ``latent_avg`` is the HyperStyle checkpoint's;
2. the W reconstruction: codes rendered with fixed noise and no deltas, pooled to 256 px
   (``AdaptiveAvgPool2d((256, 256))``);
3. ``n_iters`` times (5 for the tables, H:options/test_options.py lines 32-33): the hypernetwork reads
   ``cat([x, previous reconstruction], dim=1)`` and its outputs are *added* to the deltas so far (layers it
   does not tune stay None); the codes are rendered with the accumulated deltas and fixed noise, and pooled
   to 256 px for the next iteration. The codes never change.

The hypernetwork (H:models/hypernetworks/hypernetwork.py lines 9-120): a ResNet-34 body (torchvision's
BasicBlocks of layer1..layer4) behind a 7x7 stride-2 stem on 6 channels with PReLU and no max-pool; then per
generator layer index j (the 26 style layers of a 1024 px generator in semedit's style-layer order, which is
rosinality's conv1, to_rgb1, convs[2k], convs[2k+1], to_rgbs[k]) either nothing (j not in ``layers_to_tune``),
a ``HyperRefinementBlock`` feeding the one ``SharedWeightsHypernet`` (j in 0, 2, 3, 5, 6, 8, 9, 11, 12: the
512 -> 512 convolutions), or a ``RefinementBlock`` (``RefinementBlockSeparable`` in the Separable variant).
The shared hypernet module is registered once as ``shared_weight_hypernet`` and again as ``hypernet`` inside
every shared refinement block, exactly as upstream, so the checkpoint's 10 aliases of its 4 tensors load
strictly (and are checked to be equal).

Editing with HyperStyle (H:editing/face_editor.py lines 17-38, H:editing/inference_face_editing.py lines
92-105): the direction is added to the W code and the edited code is rendered with the *same* final deltas
of that image::

    result = model.run(images)                                   # codes [N, num_ws, w_dim], weight_deltas
    edited = G.synthesis(result.codes + k * direction, noise_mode="const", weight_deltas=result.weight_deltas)

(one image's deltas ``[d[i:i + 1] if d is not None else None for d in result.weight_deltas]`` serve a batch of
edits of that image: a delta with batch 1 is shared by the whole batch).

Checkpoints: ``hyperstyle_ffhq.pt`` = ``{"state_dict": {"hypernet.*", "decoder.*"}, "opts": vars(opts),
"latent_avg", "global_step", "best_val_loss"}`` (H:training/coach_hyperstyle.py lines 305-313);
``faces_w_encoder.pt`` = a pSp-style checkpoint whose ``encoder.*`` keys are the WEncoder (H:models/encoders/
psp.py lines 14-18 and 42-48; its decoder and latent_avg are not used, H:models/hyperstyle.py lines 138-149).
Both are read with semedit.weights.load_torch_state_dict (weights only) and loaded strictly. Widths and depths
are read from the weights, so the same code loads the releases and the small random networks of the tiny
configurations.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from semedit.config import check
from semedit.inversion.base import (
    InversionOutput,
    Inverter,
    InverterContext,
    register_inverter,
    single_code_output,
)
from semedit.inversion.restyle import (
    ENCODER_INPUT,
    _latent_avg,
    _output_size,
    _prefixed,
    _random_spec,
    _render,
    _state,
    check_generator_against_decoder,
    checkpoint_opts,
    face_pool,
    generator_from_decoder,
    n_styles_for,
    resize_to_encoder,
)
from semedit.layers import IRSE_UNITS, FullyConnectedLayer, irse_body, irse_stage_layout, irse_stem
from semedit.stylegan2.checkpoints import rosinality_config, semedit_to_rosinality
from semedit.stylegan2.networks import Generator
from semedit.weights import (
    CorruptWeightsError,
    load_state_dict_strict,
    load_torch_state_dict,
    resolve_weights,
)

__all__ = ["HYPERNET_TYPES", "DEFAULT_LAYERS_TO_TUNE", "SHARED_LAYERS", "HyperNetwork", "WEncoder", "HyperStyle",
           "HyperStyleResult", "build_hypernetwork", "build_w_encoder", "load_hyperstyle", "hyperstyle_checkpoint",
           "w_encoder_checkpoint", "hypernet_outputs_for", "parse_layers_to_tune"]

log = logging.getLogger("semedit")

# encoder_type in the checkpoint's opts -> separable refinement blocks (H:models/hyperstyle.py lines 38-42)
HYPERNET_TYPES = {"SharedWeightsHyperNetResNet": False, "SharedWeightsHyperNetResNetSeparable": True}
# H:options/train_options.py lines 83-84 (and README line 191): every non-toRGB convolution of a 1024 px generator.
DEFAULT_LAYERS_TO_TUNE = "0,2,3,5,6,8,9,11,12,14,15,17,18,20,21,23,24"
SHARED_LAYERS = (0, 2, 3, 5, 6, 8, 9, 11, 12)  # H:models/hypernetworks/hypernetwork.py line 36
RESNET34_UNITS = (3, 4, 6, 3)  # torchvision resnet34 layer1..layer4
RESNET_WIDTHS = (64, 128, 256, 512)
REFINE_INNER, HYPER_INNER = 256, 128  # hypernetwork.py lines 44 and 46: inner_c of the two block kinds
W_ENCODER_TYPE = "WEncoder"  # H:options/test_options.py lines 37-40 (w_encoder_type)
DEFAULT_N_ITERS = 5  # H:options/test_options.py lines 32-33


def hypernet_outputs_for(output_size: int) -> int:
    """n_hypernet_outputs: 26 / 23 / 20 for 1024 / 512 / 256 px (H:models/hyperstyle.py lines 30-35), i.e. the
    style layers of the generator, 3 * log2(size) - 4 (semedit also allows other powers of two: tiny configs)."""
    return 3 * int(math.log2(output_size)) - 4


def parse_layers_to_tune(text: str, n_outputs: int) -> list[int]:
    """``opts.layers_to_tune``: comma-separated layer indices; empty = every layer (hypernetwork.py lines 31-34).
    Indices >= n_outputs are ignored, as upstream's loop over range(n_outputs) does (lines 41-49)."""
    if isinstance(text, (list, tuple)):
        layers = [int(v) for v in text]
    elif len(text) == 0:
        layers = list(range(n_outputs))
    else:
        try:
            layers = [int(v) for v in text.split(",")]
        except ValueError:
            raise ValueError(f"layers_to_tune {text!r} is not a comma-separated list of integers") from None
    return [j for j in layers if 0 <= j < n_outputs]


# ----------------------------------------------------------------------------------------------------
# The hypernetwork's pieces.


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` (same parameter names): conv3x3(stride)-BN-ReLU-conv3x3-BN, plus the
    input (or ``downsample`` = 1x1 conv(stride)-BN of it), then ReLU."""

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample: Optional[nn.Module] = None
        if stride != 1 or in_channels != width:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, width, 1, stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def resnet_body(units: Sequence[int], widths: Sequence[int], in_channels: int) -> nn.Sequential:
    """ResNet layer1..layer4 flattened into one Sequential (hypernetwork.py lines 18-29): the first block of
    stages 2-4 has stride 2."""
    blocks = []
    for stage, (count, width) in enumerate(zip(units, widths, strict=True)):
        for i in range(int(count)):
            blocks.append(BasicBlock(in_channels, int(width), 2 if stage > 0 and i == 0 else 1))
            in_channels = int(width)
    return nn.Sequential(*blocks)


def resnet_stage_layout(sd: Mapping[str, torch.Tensor], prefix: str = "body.") -> tuple[list[int], list[int]]:
    """(blocks per stage, width per stage) of a ``resnet_body`` state dict: a stage starts at block 0 and at
    every block with a ``downsample``."""
    ids = sorted({int(k[len(prefix):].split(".")[0]) for k in sd
                  if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()})
    if not ids or ids != list(range(len(ids))):
        raise CorruptWeightsError(f"ResNet blocks under '{prefix}' are missing or not numbered 0..n-1")
    units: list[int] = []
    widths: list[int] = []
    for i in ids:
        key = f"{prefix}{i}.conv1.weight"
        if key not in sd:
            raise CorruptWeightsError(f"ResNet block weight {key} is missing")
        if i == 0 or f"{prefix}{i}.downsample.0.weight" in sd:
            units.append(1)
            widths.append(int(sd[key].shape[0]))
        else:
            units[-1] += 1
    return units, widths


class SharedWeightsHypernet(nn.Module):
    """H:models/hypernetworks/shared_weights_hypernet.py lines 6-33 (mode None): z [B, z_dim] ->
    ``((z @ w2 + b2).view(B, in, z_dim) @ w1 + b1).view(B, out, in, f, f)``, a raw reinterpretation (no permute).
    Initialised as upstream (fmod(randn / 40, 2), lines 18-22) without its ``.cuda()``."""

    def __init__(self, f_size: int = 3, z_dim: int = 512, out_size: int = 512, in_size: int = 512):
        super().__init__()
        self.f_size, self.z_dim, self.out_size, self.in_size = f_size, z_dim, out_size, in_size
        self.w1 = nn.Parameter(torch.fmod(torch.randn(z_dim, out_size * f_size * f_size) / 40, 2))
        self.b1 = nn.Parameter(torch.fmod(torch.randn(out_size * f_size * f_size) / 40, 2))
        self.w2 = nn.Parameter(torch.fmod(torch.randn(z_dim, in_size * z_dim) / 40, 2))
        self.b2 = nn.Parameter(torch.fmod(torch.randn(in_size * z_dim) / 40, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        h_in = (torch.matmul(z, self.w2) + self.b2).view(batch, self.in_size, self.z_dim)  # lines 26-27
        h_final = torch.matmul(h_in, self.w1) + self.b1  # line 29
        return h_final.view(batch, self.out_size, self.in_size, self.f_size, self.f_size)  # line 30


def _strided_convs(n_channels: int, inner_c: int, out_c: int, n_middle: int, first_stride: int) -> nn.Sequential:
    """conv(n -> inner, first_stride), n_middle x conv(inner -> inner, 2), conv(inner -> out, 2): 3x3 convs
    with bias, each followed by ``nn.LeakyReLU()`` (slope 0.01); Sequential indices 0, 2, 4, ... are the convs."""
    modules: list[nn.Module] = [nn.Conv2d(n_channels, inner_c, 3, first_stride, 1), nn.LeakyReLU()]
    for _ in range(n_middle):
        modules += [nn.Conv2d(inner_c, inner_c, 3, 2, 1), nn.LeakyReLU()]
    modules += [nn.Conv2d(inner_c, out_c, 3, 2, 1), nn.LeakyReLU()]
    return nn.Sequential(*modules)


class RefinementBlock(nn.Module):
    """H:models/hypernetworks/refinement_blocks.py lines 41-78: the offset of one layer (k, in, out) from the
    feature map [B, n_channels, spatial, spatial].

    num_pools = log2(spatial) - 1, one less for 3x3 layers (lines 52-54); ``convs`` = stride-2 convs
    n_channels -> inner_c -> ... -> out_c (lines 55-60); ``output``: for toRGB layers (k = 1; upstream's
    TO_RGB_LAYERS, lines 38 and 62-64) a 1x1 conv to in*out channels viewed as [B, out, in, 1, 1]; otherwise an
    adaptive average pool to 1x1 and that conv (lines 65-68), viewed as [B, out, in] and repeated over the
    k x k taps (lines 76-77): one value per (out, in) pair.
    """

    def __init__(self, kernel_size: int, in_channels: int, out_channels: int, n_channels: int = 512,
                 inner_c: int = REFINE_INNER, out_c: int = 512, spatial: int = 16):
        super().__init__()
        self.kernel_size, self.in_channels, self.out_channels = kernel_size, in_channels, out_channels
        self.to_rgb = kernel_size == 1
        num_pools = int(math.log2(spatial)) - 1 - (1 if kernel_size == 3 else 0)
        self.convs = _strided_convs(n_channels, inner_c, out_c, max(num_pools - 1, 0), 2)
        conv = nn.Conv2d(out_c, in_channels * out_channels, 1, 1, 0)
        self.output = nn.Sequential(conv) if self.to_rgb else nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.convs(x))
        k = self.kernel_size
        if self.to_rgb:
            return x.view(-1, self.out_channels, self.in_channels, k, k)
        x = x.view(-1, self.out_channels, self.in_channels)
        return x.unsqueeze(3).repeat(1, 1, 1, k).unsqueeze(4).repeat(1, 1, 1, 1, k)


class HyperRefinementBlock(nn.Module):
    """H:models/hypernetworks/refinement_blocks.py lines 81-101: ``convs`` (a stride-1 conv n_channels ->
    inner_c, log2(spatial) - 1 stride-2 convs, a stride-2 conv to out_c: 16x16 -> 1x1), ``linear`` (EqualLinear,
    lr_mul 1), then the shared ``hypernet`` (registered here as well: upstream's state-dict keys)."""

    def __init__(self, hypernet: SharedWeightsHypernet, n_channels: int = 512, inner_c: int = HYPER_INNER,
                 out_c: int = 512, spatial: int = 16):
        super().__init__()
        self.out_c = out_c
        self.convs = _strided_convs(n_channels, inner_c, out_c, int(math.log2(spatial)) - 1, 1)
        self.linear = FullyConnectedLayer(out_c, out_c)
        self.hypernet = hypernet

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        code = self.linear(self.convs(features).view(-1, self.out_c))
        return self.hypernet(code)


class SeparableBlock(nn.Module):
    """H:models/encoders/helpers.py lines 156-185: a kernel [B, out, in, k, k] as the product of an out- and an
    in-factor per tap, each mixed by a plain ``nn.Linear`` over its channels."""

    def __init__(self, input_size: int, kernel_channels_in: int, kernel_channels_out: int, kernel_size: int):
        super().__init__()
        self.input_size, self.kernel_size = input_size, kernel_size
        self.kernel_channels_in, self.kernel_channels_out = kernel_channels_in, kernel_channels_out
        k2 = kernel_size * kernel_size
        self.make_kernel_in = nn.Linear(input_size, k2 * kernel_channels_in)
        self.make_kernel_out = nn.Linear(input_size, k2 * kernel_channels_out)
        self.kernel_linear_in = nn.Linear(kernel_channels_in, kernel_channels_in)
        self.kernel_linear_out = nn.Linear(kernel_channels_out, kernel_channels_out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        features = features.view(-1, self.input_size)
        kernel_in = self.make_kernel_in(features).view(-1, k, k, 1, self.kernel_channels_in)
        kernel_out = self.make_kernel_out(features).view(-1, k, k, self.kernel_channels_out, 1)
        kernel = torch.matmul(kernel_out, kernel_in)  # [B, k, k, out, in], line 179
        kernel = self.kernel_linear_in(kernel).permute(0, 1, 2, 4, 3)  # line 181
        kernel = self.kernel_linear_out(kernel)
        return kernel.permute(0, 4, 3, 1, 2)  # [B, out, in, k, k], line 183


class RefinementBlockSeparable(nn.Module):
    """H:models/hypernetworks/refinement_blocks.py lines 104-137: log2(spatial) stride-2 convs (no 3x3
    reduction, lines 114-120), then a 1x1 conv for toRGB layers or a ``SeparableBlock`` (lines 123-130)."""

    def __init__(self, kernel_size: int, in_channels: int, out_channels: int, n_channels: int = 512,
                 inner_c: int = REFINE_INNER, out_c: int = 512, spatial: int = 16):
        super().__init__()
        self.kernel_size, self.in_channels, self.out_channels = kernel_size, in_channels, out_channels
        self.to_rgb = kernel_size == 1
        self.convs = _strided_convs(n_channels, inner_c, out_c, max(int(math.log2(spatial)) - 2, 0), 2)
        if self.to_rgb:
            self.output = nn.Sequential(nn.Conv2d(out_c, in_channels * out_channels, 1, 1, 0))
        else:
            self.output = nn.Sequential(SeparableBlock(out_c, in_channels, out_channels, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output(self.convs(x))
        if self.to_rgb:
            x = x.view(-1, self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        return x


class HyperNetwork(nn.Module):
    """``SharedWeightsHyperNetResNet`` (``separable=False``) or ``...Separable`` (H:models/hypernetworks/
    hypernetwork.py lines 9-120), for a generator whose style layers have ``layer_shapes`` [(k, in, out)]
    (upstream's PARAMETERS table, refinement_blocks.py lines 9-37, is that list for a 1024 px generator).

    Shared layers: upstream's indices 0, 2, 3, 5, 6, 8, 9, 11, 12 (line 36), which are exactly the layers of
    layer 0's shape (512 -> 512, 3x3) in a 1024 px generator; semedit keeps those of them that have layer 0's
    shape, which is upstream's set for the released generators and lets narrower tiny generators work.
    The hypernet widths: ``feature_channels`` (512, the body's last width) is n_channels, out_c and z_dim of
    every block (upstream's hard-coded 512s); the shared hypernet's in/out sizes are layer 0's channels.
    Input [B, input_nc, S, S]; output one entry per layer: None (not tuned) or [B, out, in, k, k].
    """

    def __init__(self, layer_shapes: Sequence[tuple[int, int, int]], layers_to_tune: Sequence[int] | str,
                 separable: bool = False, input_nc: int = 6, units: Sequence[int] = RESNET34_UNITS,
                 widths: Sequence[int] = RESNET_WIDTHS, input_size: int = ENCODER_INPUT,
                 refine_inner: int = REFINE_INNER, hyper_inner: int = HYPER_INNER):
        super().__init__()
        if input_size % 16 or input_size < 32:
            raise ValueError(f"hypernetwork input size must be a multiple of 16 and >= 32, got {input_size}")
        self.layer_shapes = [tuple(int(v) for v in s) for s in layer_shapes]
        self.n_outputs = len(self.layer_shapes)
        self.layers_to_tune = parse_layers_to_tune(layers_to_tune, self.n_outputs)
        self.separable, self.input_nc, self.input_size = bool(separable), int(input_nc), int(input_size)
        self.units, self.widths = tuple(int(u) for u in units), tuple(int(w) for w in widths)
        spatial = self.input_size // 16
        feat = self.widths[-1]
        # lines 14-16: 7x7 stride-2 stem, BN, PReLU; no max-pool.
        self.conv1 = nn.Conv2d(self.input_nc, self.widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.widths[0])
        self.relu = nn.PReLU(self.widths[0])
        self.body = resnet_body(self.units, self.widths, self.widths[0])
        k0, c_in, c_out = self.layer_shapes[0]
        self.shared_layers = [j for j in SHARED_LAYERS if j < self.n_outputs and self.layer_shapes[j] == (k0, c_in, c_out)]
        self.shared_weight_hypernet = SharedWeightsHypernet(f_size=k0, z_dim=feat, out_size=c_out, in_size=c_in)
        block_cls = RefinementBlockSeparable if self.separable else RefinementBlock
        self.refinement_blocks = nn.ModuleList()
        for j, (k, cin, cout) in enumerate(self.layer_shapes):  # lines 39-49
            if j not in self.layers_to_tune:
                block = None
            elif j in self.shared_layers:
                block = HyperRefinementBlock(self.shared_weight_hypernet, feat, hyper_inner, feat, spatial)
            else:
                block = block_cls(k, cin, cout, feat, refine_inner, feat, spatial)
            self.refinement_blocks.append(block)

    @property
    def encoder_type(self) -> str:
        return next(t for t, sep in HYPERNET_TYPES.items() if sep == self.separable)

    def forward(self, x: torch.Tensor) -> list[Optional[torch.Tensor]]:
        x = self.body(self.relu(self.bn1(self.conv1(x))))  # lines 51-55
        return [None if block is None else block(x) for block in self.refinement_blocks]  # lines 56-63


class WEncoder(nn.Module):
    """HyperStyle's W encoder (H:models/encoders/w_encoder.py lines 9-41): IR-SE ``input_layer`` (3 channels)
    and ``body``, global average pool, ``linear`` (EqualLinear), the w repeated for every W+ entry."""

    def __init__(self, num_ws: int, w_dim: int = 512, units: Sequence[int] = IRSE_UNITS[50],
                 channels: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        self.num_ws, self.w_dim = int(num_ws), int(w_dim)
        self.units, self.channels = tuple(int(u) for u in units), tuple(int(c) for c in channels)
        self.input_layer = irse_stem(3, self.channels[0])  # lines 20-22
        self.output_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = FullyConnectedLayer(self.channels[-1], self.w_dim)  # line 24, EqualLinear(512, 512)
        self.body = irse_body(self.units, self.channels, self.channels[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_pool(self.body(self.input_layer(x))).view(-1, self.channels[-1])  # lines 36-39
        return self.linear(x).unsqueeze(1).repeat(1, self.num_ws, 1)  # lines 40-41


# ----------------------------------------------------------------------------------------------------
# The inverter.


@dataclass
class HyperStyleResult:
    """codes: the W code as W+ [N, num_ws, w_dim] (every row equal); weight_deltas: the accumulated offsets,
    one entry per style layer (None where not tuned), [N, O, I, k, k]; images: the final reconstruction at the
    generator's resolution; w_images: the W reconstruction (no deltas); iteration_images: every iteration's
    rendering (only when asked for)."""

    codes: torch.Tensor
    weight_deltas: list[Optional[torch.Tensor]]
    images: torch.Tensor
    w_images: torch.Tensor
    iteration_images: list[torch.Tensor] = field(default_factory=list)


class HyperStyle(nn.Module):
    """The hypernetwork, the W encoder, ``latent_avg`` [num_ws, w_dim] and the rendering generator."""

    def __init__(self, hypernet: HyperNetwork, w_encoder: WEncoder, latent_avg: torch.Tensor, generator,
                 source: str):
        super().__init__()
        shapes = [(k, i, o) for o, i, k, _ in generator.synthesis.style_layer_weight_shapes()]
        if shapes != hypernet.layer_shapes:
            raise ValueError("the hypernetwork was built for another generator: its layer shapes (k, in, out) "
                             f"{hypernet.layer_shapes[:3]}... differ from the generator's {shapes[:3]}...")
        if w_encoder.num_ws != generator.num_ws or w_encoder.w_dim != generator.w_dim:
            raise ValueError(f"the W encoder predicts {w_encoder.num_ws} x {w_encoder.w_dim} codes; the generator "
                             f"takes {generator.num_ws} x {generator.w_dim}")
        self.hypernet = hypernet
        self.w_encoder = w_encoder
        self.generator = generator
        self.register_buffer("latent_avg", latent_avg.float().reshape(-1, generator.w_dim)
                             .expand(generator.num_ws, -1).clone(), persistent=False)
        self.source = source

    @property
    def input_size(self) -> int:
        return self.hypernet.input_size

    @torch.no_grad()
    def w_inversion(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, full-resolution image) of the W encoder for encoder-sized inputs (H:models/hyperstyle.py lines
        156-168: codes = WEncoder(x) + latent_avg, rendered without deltas and with fixed noise)."""
        codes = self.w_encoder(x) + self.latent_avg.unsqueeze(0)
        return codes, _render(self.generator, codes).to(x.device)

    @torch.no_grad()
    def run(self, images: torch.Tensor, n_iters: int = DEFAULT_N_ITERS,
            keep_iteration_images: bool = False) -> HyperStyleResult:
        """Invert ``images`` [N, 3, R, R] in [-1, 1] (H:utils/inference_utils.py ``run_inversion`` with
        ``n_iters_per_batch = n_iters``). Tensors come back on the hypernetwork's device."""
        if n_iters < 1:
            raise ValueError(f"n_iters must be >= 1, got {n_iters}")
        device = self.latent_avg.device
        x = resize_to_encoder(images.to(device), self.input_size)
        codes, w_images = self.w_inversion(x)
        reference = face_pool(w_images, self.input_size)  # H:models/hyperstyle.py lines 169-170
        deltas: Optional[list[Optional[torch.Tensor]]] = None
        renders = []
        img = w_images
        for _ in range(n_iters):
            outputs = self.hypernet(torch.cat([x, reference], dim=1))  # lines 73-77
            if deltas is None:  # lines 78-82: accumulate; untuned layers stay None
                deltas = outputs
            else:
                deltas = [d + o if d is not None else None for d, o in zip(deltas, outputs)]
            img = _render(self.generator, codes, deltas).to(device)  # lines 85-89, randomize_noise=False
            reference = face_pool(img, self.input_size)  # inference_utils.py lines 33-37
            if keep_iteration_images:
                renders.append(img)
        return HyperStyleResult(codes, deltas, img, w_images, renders)

    @torch.no_grad()
    def render(self, codes: torch.Tensor, weight_deltas: list[Optional[torch.Tensor]]) -> torch.Tensor:
        """Codes [N, num_ws, w_dim] (e.g. edited) rendered with ``weight_deltas`` (batch N or 1) and fixed noise."""
        return _render(self.generator, codes, weight_deltas)


# ----------------------------------------------------------------------------------------------------
# Building, loading, writing.


def _generator_layer_shapes(G) -> list[tuple[int, int, int]]:
    return [(k, i, o) for o, i, k, _ in G.synthesis.style_layer_weight_shapes()]


def build_hypernetwork(G, layers_to_tune: Sequence[int] | str = DEFAULT_LAYERS_TO_TUNE, separable: bool = False,
                       units: Sequence[int] = (1, 1, 1, 1), widths: Sequence[int] = (8, 16, 24, 32),
                       input_size: int = 64, refine_inner: int = 16, hyper_inner: int = 8,
                       seed: Optional[int] = None) -> HyperNetwork:
    """A randomly initialised hypernetwork for generator ``G`` (deterministic for ``seed``; small by default,
    ``units=RESNET34_UNITS, widths=RESNET_WIDTHS, input_size=256, refine_inner=256, hyper_inner=128`` is the
    released architecture), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return HyperNetwork(_generator_layer_shapes(G), layers_to_tune, separable, 6, units, widths, input_size,
                            refine_inner, hyper_inner).eval()


def build_w_encoder(num_ws: int, w_dim: int, depth: int = 10, channels: Sequence[int] = (16, 32, 48, 64),
                    seed: Optional[int] = None) -> WEncoder:
    """A randomly initialised W encoder (IR-SE ``depth``), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return WEncoder(num_ws, w_dim, IRSE_UNITS[depth], channels).eval()


def _decoder_layer_shapes(decoder_sd: Mapping[str, torch.Tensor], what: str) -> tuple[list, int, int]:
    """(layer shapes (k, in, out), num_ws, w_dim) of the rosinality decoder in a checkpoint."""
    try:
        config = rosinality_config(dict(decoder_sd))
    except CorruptWeightsError as err:
        raise CorruptWeightsError(f"{what}: its decoder is not a rosinality StyleGAN2 generator ({err})") from None
    with torch.device("meta"):
        G = Generator(config)
    return _generator_layer_shapes(G), G.num_ws, G.w_dim


def _spatial_from_blocks(sd: Mapping[str, torch.Tensor], layer_shapes, separable: bool) -> int:
    """The hypernetwork's feature size (input / 16) from the number of convs of a tuned block (their count
    depends on it: see the block classes); 16 (a 256 px input) when no layer is tuned."""
    for j, (k, _, _) in enumerate(layer_shapes):
        convs = {k_.split(".")[3] for k_ in sd if k_.startswith(f"refinement_blocks.{j}.convs.")}
        if not convs:
            continue
        n = len(convs)  # the Sequential indices 0, 2, ... of the convs (weight and bias share one)
        if f"refinement_blocks.{j}.linear.weight" in sd:  # HyperRefinementBlock: log2(s) + 1 convs
            return 2 ** (n - 1)
        if separable or k == 1:  # log2(s) convs
            return 2 ** n
        return 2 ** (n + 1)  # RefinementBlock, 3x3: log2(s) - 1 convs
    return ENCODER_INPUT // 16


def _inner_width(sd: Mapping[str, torch.Tensor], hyper: bool, default: int) -> int:
    for key, value in sd.items():
        if key.startswith("refinement_blocks.") and key.endswith(".convs.0.weight"):
            j = key.split(".")[1]
            if (f"refinement_blocks.{j}.linear.weight" in sd) == hyper:
                return int(value.shape[0])
    return default


def _check_shared_aliases(hypernet: HyperNetwork, sd: Mapping[str, torch.Tensor], what: str) -> None:
    """The shared hypernet's tensors appear under ``shared_weight_hypernet.`` and ``refinement_blocks.j.hypernet.``
    for every shared tuned j; they are one module, so the file's copies must agree."""
    for name in ("w1", "b1", "w2", "b2"):
        ref = sd[f"shared_weight_hypernet.{name}"]
        for j in hypernet.shared_layers:
            if hypernet.refinement_blocks[j] is None:
                continue
            alias = sd[f"refinement_blocks.{j}.hypernet.{name}"]
            if alias.data_ptr() != ref.data_ptr() and not torch.equal(alias, ref):
                raise CorruptWeightsError(f"{what}: refinement_blocks.{j}.hypernet.{name} differs from "
                                          f"shared_weight_hypernet.{name}; they are one shared module")


def _w_encoder_from_spec(spec: str, num_ws: int, w_dim: int, what_main: str) -> WEncoder:
    """The W encoder of a path / registry name, or a small random one for ``"random[:seed]"``."""
    seed = _random_spec(spec)
    if seed is not None:
        return build_w_encoder(num_ws, w_dim, seed=seed + 21)
    path = resolve_weights(spec)
    what = f"{path} (HyperStyle W encoder)"
    ckpt = load_torch_state_dict(path, "HyperStyle W encoder")
    state = ckpt.get("state_dict", ckpt)  # get_keys, H:models/encoders/psp.py lines 14-18
    if not isinstance(state, dict):
        raise CorruptWeightsError(f"{what}: 'state_dict' is not a dict of tensors")
    sd = _prefixed(state, "encoder")
    if not sd:
        raise CorruptWeightsError(f"{what}: no 'encoder.*' keys in its state_dict (faces_w_encoder.pt layout)")
    if any(k.startswith("styles.") for k in sd) or "linear.weight" not in sd:
        raise CorruptWeightsError(f"{what}: its encoder is not HyperStyle's WEncoder (input_layer, body, linear; "
                                  "faces_w_encoder.pt), e.g. a pSp/e4e/ReStyle encoder with per-entry 'styles'")
    units, channels = irse_stage_layout(sd, "body.")
    if len(units) != 4:
        raise CorruptWeightsError(f"{what}: expected 4 IR-SE stages in the W encoder, found widths {channels}")
    enc_w_dim = int(sd["linear.weight"].shape[0])
    if enc_w_dim != w_dim:
        raise CorruptWeightsError(f"{what}: the W encoder predicts w of {enc_w_dim}, but {what_main} works with "
                                  f"{w_dim}")
    with torch.device("meta"):
        enc = WEncoder(num_ws, w_dim, units, channels)
    load_state_dict_strict(enc, sd, f"the W encoder of {path}", assign=True)
    return enc.eval().requires_grad_(False)


def load_hyperstyle(spec: str | os.PathLike | None = None, G=None, *, w_encoder: str | os.PathLike | None = None,
                    use_checkpoint_decoder: bool = False) -> HyperStyle:
    """The HyperStyle inverter.

    spec: a path, a registry name (None: ``hyperstyle-ffhq``, hyperstyle_ffhq.pt) or ``"random[:seed]"``: a small
    random hypernetwork and W encoder shaped for ``G`` (tiny configs and tests; the numbers only exercise the
    pipeline). w_encoder: the W encoder's path or registry name (None: ``hyperstyle-w-encoder-faces``,
    faces_w_encoder.pt; with a random spec, a random one). G: the semedit Generator that renders (the configured
    one); ``use_checkpoint_decoder`` converts and uses the checkpoint's ``decoder.*`` instead (G may be None).
    """
    if G is None and not use_checkpoint_decoder:
        raise ValueError("give the generator G that renders the codes, or use_checkpoint_decoder=True")
    text = os.fspath(spec) if spec is not None else "hyperstyle-ffhq"
    seed = _random_spec(text)
    if seed is not None:
        if G is None:
            raise ValueError("a random HyperStyle is shaped for a generator: pass G")
        hypernet = build_hypernetwork(G, seed=seed + 20)
        latent_avg = G.w_avg.detach().float().cpu().reshape(1, -1).expand(G.num_ws, -1).clone()
        enc = _w_encoder_from_spec(os.fspath(w_encoder) if w_encoder is not None else f"random:{seed}", G.num_ws,
                                   G.w_dim, "the generator")
        return HyperStyle(hypernet, enc, latent_avg, G, f"{text} (random weights)").eval()

    path = resolve_weights(text)
    what = f"{path} (HyperStyle checkpoint)"
    ckpt = load_torch_state_dict(path, "HyperStyle checkpoint")
    state = _state(ckpt, what)
    opts = checkpoint_opts(ckpt, what)
    encoder_type = opts.get("encoder_type")
    if encoder_type not in HYPERNET_TYPES:
        raise CorruptWeightsError(f"{what}: encoder_type {encoder_type!r} is not a HyperStyle hypernetwork; "
                                  f"supported: {', '.join(HYPERNET_TYPES)}")
    if "layers_to_tune" not in opts:
        raise CorruptWeightsError(f"{what}: its opts have no layers_to_tune (which layers the hypernetwork tunes)")
    output_size = _output_size(opts, what)
    decoder_sd = _prefixed(state, "decoder")
    if not decoder_sd:
        raise CorruptWeightsError(f"{what}: no 'decoder.*' weights in its state_dict (HyperStyle checkpoint layout)")
    layer_shapes, num_ws, w_dim = _decoder_layer_shapes(decoder_sd, what)
    if len(layer_shapes) != hypernet_outputs_for(output_size) or num_ws != n_styles_for(output_size):
        raise CorruptWeightsError(f"{what}: its decoder has {len(layer_shapes)} style layers, but output_size "
                                  f"{output_size} means {hypernet_outputs_for(output_size)}")
    sd = _prefixed(state, "hypernet")
    if not sd:
        raise CorruptWeightsError(f"{what}: no 'hypernet.*' keys in its state_dict (HyperStyle checkpoint layout)")
    for key in ("conv1.weight", "shared_weight_hypernet.w1"):
        if key not in sd:
            raise CorruptWeightsError(f"{what}: no hypernet.{key}; not a HyperStyle hypernetwork")
    separable = HYPERNET_TYPES[encoder_type]
    units, widths = resnet_stage_layout(sd, "body.")
    if len(units) != 4:
        raise CorruptWeightsError(f"{what}: expected 4 ResNet stages in the hypernetwork, found widths {widths}")
    try:
        with torch.device("meta"):  # no random initialisation of 330 M parameters that the file replaces
            hypernet = HyperNetwork(layer_shapes, opts["layers_to_tune"], separable, int(opts.get("input_nc", 6)),
                                    units, widths, 16 * _spatial_from_blocks(sd, layer_shapes, separable),
                                    _inner_width(sd, False, REFINE_INNER), _inner_width(sd, True, HYPER_INNER))
    except ValueError as err:
        raise CorruptWeightsError(f"{what}: {err}") from None
    # Built as upstream builds it from opts; the strict load then reports every layer the file tunes differently.
    load_state_dict_strict(hypernet, sd, f"the hypernetwork of {path} (encoder_type {encoder_type}, layers_to_tune "
                           f"{opts['layers_to_tune']!r})", assign=True)
    _check_shared_aliases(hypernet, sd, what)
    hypernet.requires_grad_(False)
    latent_avg = _latent_avg(ckpt, num_ws, w_dim, what)
    if use_checkpoint_decoder:
        G = generator_from_decoder(decoder_sd, latent_avg, what)
    else:
        if _generator_layer_shapes(G) != layer_shapes or G.num_ws != num_ws or G.w_dim != w_dim:
            raise CorruptWeightsError(f"{what}: the hypernetwork predicts offsets for a generator with layer shapes "
                                      f"{layer_shapes[:2]}... ({num_ws} x {w_dim} codes); the given generator has "
                                      f"{_generator_layer_shapes(G)[:2]}... ({G.num_ws} x {G.w_dim})")
        check_generator_against_decoder(G, decoder_sd, latent_avg, what)
    w_text = os.fspath(w_encoder) if w_encoder is not None else "hyperstyle-w-encoder-faces"
    enc = _w_encoder_from_spec(w_text, num_ws, w_dim, what)
    return HyperStyle(hypernet.eval(), enc, latent_avg, G, str(path)).eval()


def hyperstyle_checkpoint(hypernet: HyperNetwork, latent_avg: torch.Tensor, G: Optional[Generator] = None,
                          decoder_state: Optional[Mapping[str, torch.Tensor]] = None,
                          extra_opts: Optional[dict] = None) -> dict:
    """The dict HyperStyle's training code saves (H:training/coach_hyperstyle.py lines 305-313), for tests and
    tiny configs: ``hypernet.*`` (shared aliases included), ``decoder.*`` (``G`` in rosinality's names, or
    ``decoder_state``), ``opts``, ``latent_avg``, ``global_step``, ``best_val_loss``."""
    output_size = 2 ** ((hypernet.n_outputs + 4) // 3)
    opts = {"encoder_type": hypernet.encoder_type, "input_nc": hypernet.input_nc, "output_size": output_size,
            "layers_to_tune": ",".join(str(j) for j in hypernet.layers_to_tune),
            "n_hypernet_outputs": hypernet.n_outputs, "dataset_type": "ffhq_hypernet", "load_w_encoder": True,
            "w_encoder_type": W_ENCODER_TYPE, "n_iters_per_batch": DEFAULT_N_ITERS, **(extra_opts or {})}
    state = {f"hypernet.{k}": v.detach() for k, v in hypernet.state_dict().items()}
    if decoder_state is None and G is not None:
        decoder_state = semedit_to_rosinality(G)
    state.update({f"decoder.{k}": v.detach().clone() for k, v in (decoder_state or {}).items()})
    return {"state_dict": state, "opts": opts, "latent_avg": latent_avg.detach().clone(), "global_step": 0,
            "best_val_loss": None}


def w_encoder_checkpoint(encoder: WEncoder, latent_avg: Optional[torch.Tensor] = None,
                         G: Optional[Generator] = None, extra_opts: Optional[dict] = None) -> dict:
    """A pSp-style checkpoint of a W encoder in faces_w_encoder.pt's layout (``encoder.*``, ``decoder.*``,
    ``opts``, ``latent_avg``), for tests and tiny configs."""
    opts = {"encoder_type": W_ENCODER_TYPE, "input_nc": 3, "output_size": 2 ** ((encoder.num_ws + 2) // 2),
            **(extra_opts or {})}
    state = {f"encoder.{k}": v.detach().clone() for k, v in encoder.state_dict().items()}
    if G is not None:
        state.update({f"decoder.{k}": v.detach().clone() for k, v in semedit_to_rosinality(G).items()})
    ckpt = {"state_dict": state, "opts": opts}
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg.detach().clone()
    return ckpt


# ----------------------------------------------------------------------------------------------------
# The "HyperStyle - 5 iters" row of the tables, as a member of the Inverter family.


@dataclass
class HyperStyleSettings:
    """``methods.hyperstyle``: the released hypernetwork and W encoder, and how many iterations."""

    # Registry name or path (None: hyperstyle-ffhq), or "random[:seed]" (tiny configs only).
    weights: Optional[str] = None
    w_encoder: Optional[str] = None  # None: hyperstyle-w-encoder-faces (faces_w_encoder.pt)
    n_iters: int = DEFAULT_N_ITERS  # the tables' "5 iters" = H:options/test_options.py lines 32-33

    def validate(self, prefix: str = "") -> None:
        check(self.n_iters >= 1, f"{prefix}n_iters", "an integer >= 1", self.n_iters)


class HyperStyleRow(Inverter):
    """The W encoder's code and the hypernetwork's weight deltas after ``n_iters`` refinements: the output
    renders (and edits) with the deltas of each image (``InversionOutput.weight_deltas``)."""

    batch_size = 1  # the deltas of one 1024 px image are ~40 M numbers per tuned layer set

    def __init__(self, model: HyperStyle, n_iters: int):
        self.model, self.n_iters = model, n_iters

    def invert(self, images, names, indices, on_step=None, should_stop=None) -> InversionOutput:
        self.model.to(images.device)
        result = self.model.run(images, self.n_iters)
        deltas = [None if d is None else d.cpu() for d in result.weight_deltas]
        meta = {"recipe": "hyperstyle", "hypernetwork": self.model.source, "n_iters": self.n_iters}
        return single_code_output("wplus", [result.codes.cpu()], result.images.float().cpu(), weight_deltas=deltas,
                                  meta=[dict(meta) for _ in names])


def _describe(ctx: InverterContext) -> str:
    s = ctx.settings
    return (f"released HyperStyle `{s.weights or 'hyperstyle-ffhq'}` with W encoder "
            f"`{s.w_encoder or 'hyperstyle-w-encoder-faces'}`, {s.n_iters} iterations; codes and per-image weight "
            "deltas rendered by the configured generator; edits move the W code and render with the same deltas "
            "(hyperstyle editing/face_editor.py lines 17-38)")


@register_inverter("hyperstyle", group="Generator parameters modification", describe=_describe,
                   settings=HyperStyleSettings, modifies_generator=True,
                   rows=lambda key, cfg: {"n_iters": cfg.methods.hyperstyle.n_iters} if key == "hyperstyle" else None,
                   label=lambda row: f"HyperStyle - {row.get('n_iters', DEFAULT_N_ITERS)} iters")
def _build(ctx: InverterContext) -> HyperStyleRow:
    s = ctx.settings
    model = load_hyperstyle(s.weights, ctx.generator, w_encoder=s.w_encoder)
    return HyperStyleRow(model, s.n_iters)
