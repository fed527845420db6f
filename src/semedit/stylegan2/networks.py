"""StyleGAN2 generator as plain ``nn.Module``s: mapping network, synthesis network, generator.

Module and parameter names follow NVlabs stylegan2-ada-pytorch (``mapping.fc0``, ``synthesis.b64.conv0``,
...), so an NVlabs ``G_ema`` state dict loads as it is and rosinality checkpoints are renamed onto it
(see ``checkpoints.py``). Both families' layouts are covered: per-resolution channel counts are explicit
(``GeneratorConfig.channels``), and the ``orig``, ``skip`` (configs E/F) and ``resnet`` architectures exist.

Latent spaces:
- Z: ``z [N, z_dim]``, normalised then mapped;
- W / W+: ``ws [N, num_ws, w_dim]`` (W is W+ with every row equal);
- S (StyleSpace): one style vector per modulated layer, ``styles[l] [N, C_l]`` = affine_l(ws[:, i_l]).
  ``synthesis(ws)`` is literally ``synthesize_from_styles(ws_to_styles(ws))``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

from semedit.layers import FullyConnectedLayer
from semedit.stylegan2 import autotune
from semedit.stylegan2.compile import compiled_entry, normalize_compile_setting, resolve_precision
from semedit.stylegan2.ops import (
    LRELU_SLOPE,
    assert_shape,
    bias_act,
    demodulation_weights,
    modulated_conv2d,
    normalize_2nd_moment,
    phase_kernels,
    setup_filter,
    upsample2d,
)

NOISE_MODES = ("const", "random", "none")
REDUCED_PRECISIONS = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# NVlabs stylegan2-ada-pytorch train.py:181-182 pairs reduced precision (num_fp16_res = 4) with conv_clamp = 256.
REDUCED_PRECISION_CLAMP = 256.0


@dataclass
class GeneratorConfig:
    """Everything needed to build a generator; stored in checkpoints and printed by `semedit info`."""

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024  # a power of two >= 8
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    # Channels of the block at each resolution {4: 512, 8: 512, ...}; JSON turns the keys into strings.
    channels: dict = field(default_factory=dict)
    architecture: str = "skip"  # "orig" | "skip" | "resnet"
    conv_clamp: Optional[float] = None  # NVlabs pickles: 256; rosinality: None
    num_fp16_res: int = 0  # how many top resolutions the checkpoint's authors ran in fp16 (informational)
    source_format: str = "semedit"

    def __post_init__(self):
        self.channels = {int(k): int(v) for k, v in self.channels.items()}
        log2 = math.log2(self.img_resolution) if self.img_resolution > 0 else 0
        if self.img_resolution < 8 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {self.img_resolution}")
        if self.architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got '{self.architecture}'")
        missing = [r for r in self.block_resolutions if r not in self.channels]
        if missing:
            raise ValueError(f"channels has no entry for resolutions {missing}")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @staticmethod
    def channels_from_base(resolution: int, channel_base: int, channel_max: int) -> dict:
        """NVlabs' rule: min(channel_base // res, channel_max) at each resolution."""
        return {2**i: min(channel_base // 2**i, channel_max) for i in range(2, int(math.log2(resolution)) + 1)}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        return d


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim] (unconditional; ``w_avg`` is the tracked mean of w)."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_multiplier: float = 0.01):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        features = [z_dim] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

        self.compile_setting = "off"  # see semedit.stylegan2.compile; set by Generator.set_compile

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        assert_shape(z, [None, self.z_dim], "z")
        return compiled_entry(self, "_forward", z.device)(z, truncation_psi, truncation_cutoff)

    def _forward(self, z: torch.Tensor, truncation_psi: float, truncation_cutoff: Optional[int]) -> torch.Tensor:
        x = normalize_2nd_moment(z.to(torch.float32))
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            truncated = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
            x = torch.cat([truncated, x[:, cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (+ optional 2x upsampling), noise, bias, leaky ReLU, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: Optional[float] = None, kernel_size: int = 3):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.base_conv_clamp = conv_clamp  # the checkpoint's; set_reduced_precision may add one
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)  # w -> style [N, in_channels]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", setup_filter())
        self._derived: dict = {}

    def _frozen(self, key: tuple, compute, *params: torch.Tensor):
        """``compute()``, cached while ``params`` are frozen and unchanged: the generator is frozen in semedit,
        so tensors derived from its weights alone need not be rebuilt at every call.

        Under ``torch.compile`` the cache is bypassed: its key (data pointers, version counters) cannot be
        traced and would break the graph at every layer; the compiled graph recomputes these small tensors
        and fuses them with their consumers instead."""
        if torch.compiler.is_compiling() or any(p.requires_grad for p in params):
            return compute()
        version = tuple((p.data_ptr(), p._version, p.device) for p in params)
        hit = self._derived.get(key)
        if hit is None or hit[0] != version:
            hit = (version, compute())
            self._derived[key] = hit
        return hit[1]

    def _static_offset(self, noise_mode: str, dtype: torch.dtype, layout: torch.memory_format,
                       act_gain: float) -> torch.Tensor:
        """(bias + const noise) * gain, [1, O, R, R] ([1, O, 1, 1] without noise), in the activations' layout."""
        offset = self.bias.reshape(1, -1, 1, 1)
        if noise_mode == "const":
            offset = offset + self.noise_const * self.noise_strength
        offset = (offset * act_gain).to(dtype)
        return offset.contiguous(memory_format=layout) if offset.shape[-1] > 1 else offset

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise_mode: str = "const", gain: float = 1.0,
                noise: Optional[torch.Tensor] = None, weight_delta: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``noise`` [N, 1, R, R]: the random noise to use in "random" mode (None: draw it here).
        ``weight_delta`` [N or 1, O, I, k, k]: HyperStyle's offset, the convolution uses weight * (1 + delta)
        (see ``modulated_conv2d``); None leaves the computation exactly as without the argument."""
        # noise + bias, added in the same pass as demodulation. lrelu(a) * g == lrelu(a * g) for g > 0,
        # so the activation gain is applied there too and the activation runs in place afterwards.
        act_gain = math.sqrt(2) * gain
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        if noise_mode == "random":
            if noise is None:
                noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            offset = (self.bias.reshape(1, -1, 1, 1) + noise * self.noise_strength).to(x.dtype) * act_gain
        else:
            offset = self._frozen(("offset", noise_mode, x.dtype, layout, act_gain),
                                  lambda: self._static_offset(noise_mode, x.dtype, layout, act_gain),
                                  self.bias, self.noise_const, self.noise_strength)
        if weight_delta is None:
            x = modulated_conv2d(
                x, self.weight, style, noise=offset, up=self.up, padding=self.padding,
                resample_filter=self.resample_filter, out_gain=act_gain,
                weight_sq=self._frozen(("weight_sq",), lambda: demodulation_weights(self.weight), self.weight),
                phase_weights=self._frozen(("phases", x.dtype), lambda: phase_kernels(self.weight.to(x.dtype)),
                                           self.weight) if self.up == 2 else None,
            )
        else:
            # The cached tensors derive from the weight without the offset: none is passed.
            x = modulated_conv2d(x, self.weight, style, noise=offset, up=self.up, padding=self.padding,
                                 resample_filter=self.resample_filter, out_gain=act_gain, weight_delta=weight_delta)
        x = torch.nn.functional.leaky_relu(x, LRELU_SLOPE, inplace=not torch.is_grad_enabled())
        if self.conv_clamp is not None:
            clamp = self.conv_clamp * gain
            x = x.clamp_(-clamp, clamp) if not torch.is_grad_enabled() else x.clamp(-clamp, clamp)
        return x


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to RGB, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.out_channels, self.conv_clamp = in_channels, out_channels, conv_clamp
        self.base_conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, weight_delta: Optional[torch.Tensor] = None) -> torch.Tensor:
        # weight_gain (rosinality's ``scale`` = 1/sqrt(fan_in) of a 1x1 kernel) multiplies the style, so a
        # delta scales the same stored weight as in rosinality/HyperStyle: scale * (W * (1 + delta) * s).
        x = modulated_conv2d(x, self.weight, style * self.weight_gain, demodulate=False, weight_delta=weight_delta)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Unmodulated 1x1 convolution with 2x upsampling (the resnet architecture's skip branch)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.register_buffer("resample_filter", setup_filter())
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # A 1x1 convolution commutes with upsampling; convolve at the lower resolution first (cheaper).
        x = torch.nn.functional.conv2d(x, (self.weight * self.weight_gain).to(x.dtype))
        return upsample2d(x, self.resample_filter) * gain


class SynthesisBlock(nn.Module):
    """One resolution: [conv0 (up)] conv1 [torgb]; consumes ``num_conv + num_torgb`` style vectors."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.is_last, self.architecture = resolution, is_last, architecture
        self.register_buffer("resample_filter", setup_filter())
        self.num_conv = 0
        self.num_torgb = 0
        self.compute_dtype: Optional[torch.dtype] = None  # reduced precision, set by Generator
        self.precision_setting = "none"  # what was asked for ("auto" resolves per device at each call)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels)

    def style_layers(self) -> list[nn.Module]:
        """The modulated layers of this block, in the order they consume styles."""
        layers = [] if self.in_channels == 0 else [self.conv0]
        layers.append(self.conv1)
        if self.num_torgb:
            layers.append(self.torgb)
        return layers

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], styles: list[torch.Tensor],
                noise_mode: str = "const", noises: Optional[list[torch.Tensor]] = None,
                weight_deltas: Optional[list[Optional[torch.Tensor]]] = None):
        """``noises``: one [N, 1, R, R] tensor per convolution of the block for "random" mode, or None.
        ``weight_deltas``: one entry (None or a weight offset) per style layer of the block, or None."""
        noises = noises if noises is not None else [None, None]
        deltas = weight_deltas if weight_deltas is not None else [None, None, None]
        # NVlabs training/networks.py:382 picks the block's dtype the same way (use_fp16 -> float16). bf16 runs
        # on any device; fp16 only on a GPU (CPU convolution libraries have no fast fp16 kernels).
        dtype = self.compute_dtype
        if dtype is None or (dtype == torch.float16 and not styles[0].is_cuda):
            dtype = torch.float32
        styles = [s.to(dtype) for s in styles]
        if self.in_channels == 0:
            # Activations are kept channels-last: convolution libraries run their fastest kernels on that
            # layout (about 1.3x for the 3x3 convolutions and 2.5x for the depthwise filters on CPU).
            x = self.const.to(dtype).unsqueeze(0).repeat([styles[0].shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=torch.channels_last)
            x = self.conv1(x, styles[0], noise_mode, noise=noises[0], weight_delta=deltas[0])
            next_style = 1
        else:
            x = x.to(dtype).contiguous(memory_format=torch.channels_last)
            if self.architecture == "resnet":
                y = self.skip(x, gain=math.sqrt(0.5))
                x = self.conv0(x, styles[0], noise_mode, noise=noises[0], weight_delta=deltas[0])
                x = self.conv1(x, styles[1], noise_mode, gain=math.sqrt(0.5), noise=noises[1], weight_delta=deltas[1])
                x = y + x
            else:
                x = self.conv0(x, styles[0], noise_mode, noise=noises[0], weight_delta=deltas[0])
                x = self.conv1(x, styles[1], noise_mode, noise=noises[1], weight_delta=deltas[1])
            next_style = 2
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, styles[next_style], weight_delta=deltas[next_style]).to(torch.float32)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] (through the styles of every layer)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channels: dict,
                 architecture: str = "skip", conv_clamp: Optional[float] = None):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                in_channels=channels[res // 2] if res > 4 else 0,
                out_channels=channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=res == img_resolution,
                architecture=architecture,
                conv_clamp=conv_clamp,
            )
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += getattr(self, f"b{img_resolution}").num_torgb
        # Which ws row feeds each style layer: a block's torgb shares its row with the next block's conv0.
        self.style_ws_index: list[int] = []
        self.style_layer_names: list[str] = []
        w_idx = 0
        for res in self.block_resolutions:
            block = self.block(res)
            names = (["conv0"] if block.in_channels else []) + ["conv1"] + (["torgb"] if block.num_torgb else [])
            for i, name in enumerate(names):
                self.style_ws_index.append(w_idx + i)
                self.style_layer_names.append(f"b{res}.{name}")
            w_idx += block.num_conv
        self.style_dims: list[int] = [layer.in_channels for b in self.blocks() for layer in b.style_layers()]
        self.compile_setting = "off"  # see semedit.stylegan2.compile; set by Generator.set_compile
        self._weight_deltas: Optional[list[Optional[torch.Tensor]]] = None  # see using_weight_deltas
        # "auto" by measurement (semedit.stylegan2.autotune): the jobs' declared calls by gradient mode, the
        # decisions, the candidate the current call runs (None: the static rules) and whether it is measuring.
        self.autotune_workloads: dict[bool, autotune.Workload] = {}
        self.autotune_choices: dict[bool, Optional[autotune.Decision]] = {}
        self.autotune_active: Optional[autotune.Candidate] = None
        self.autotune_busy = False

    def block(self, res: int) -> SynthesisBlock:
        return getattr(self, f"b{res}")

    def blocks(self) -> list[SynthesisBlock]:
        return [self.block(res) for res in self.block_resolutions]

    @property
    def num_style_layers(self) -> int:
        return len(self.style_dims)

    def ws_to_styles(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """W+ -> StyleSpace: ``styles[l] [N, C_l]`` = affine_l(ws[:, style_ws_index[l]])."""
        assert_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        ws = ws.to(torch.float32)
        layers = [layer for b in self.blocks() for layer in b.style_layers()]
        return [layer.affine(ws[:, i]) for layer, i in zip(layers, self.style_ws_index)]

    def synthesize_from_styles(self, styles: list[torch.Tensor], noise_mode: str = "const",
                               generator: Optional[torch.Generator] = None,
                               weight_deltas: Optional[list[Optional[torch.Tensor]]] = None) -> torch.Tensor:
        """Image from StyleSpace styles; ``weight_deltas`` as in ``forward``."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got '{noise_mode}'")
        if len(styles) != self.num_style_layers:
            raise ValueError(f"expected {self.num_style_layers} style vectors, got {len(styles)}")
        for i, (s, dim) in enumerate(zip(styles, self.style_dims)):
            assert_shape(s, [styles[0].shape[0], dim], f"styles[{i}] ({self.style_layer_names[i]})")
        device = styles[0].device
        noises = self._seeded_noise(styles[0].shape[0], device, noise_mode, generator)
        weight_deltas = self._weight_deltas if weight_deltas is None else weight_deltas
        if weight_deltas is not None:
            self.apply_autotune_precision(device)
            return self._synthesize(styles, noise_mode, noises,
                                    self._check_weight_deltas(weight_deltas, styles[0].shape[0], device))
        self._prepare(device, styles, lambda inputs: self._entry("_synthesize", device)(list(inputs), noise_mode, noises))
        return self._entry("_synthesize", device)(styles, noise_mode, noises)

    @contextlib.contextmanager
    def using_weight_deltas(self, weight_deltas: Optional[list[Optional[torch.Tensor]]]) -> Iterator[None]:
        """Inside the block every render that passes no ``weight_deltas`` of its own uses these (entries
        [1, O, I, k, k] are shared by the batch): an image rendered as a HyperStyle inversion renders it
        with its deltas wherever the code that renders it does not know about them (edits, the demo)."""
        previous, self._weight_deltas = self._weight_deltas, weight_deltas
        try:
            yield
        finally:
            self._weight_deltas = previous

    def style_layer_weight_shapes(self) -> list[tuple[int, ...]]:
        """[O, I, k, k] of every style layer's convolution weight, in style-layer order (the shapes of
        ``weight_deltas`` entries without their batch dimension)."""
        return [tuple(layer.weight.shape) for b in self.blocks() for layer in b.style_layers()]

    def _check_weight_deltas(self, weight_deltas: list, n: int,
                             device: torch.device) -> list[Optional[torch.Tensor]]:
        """One entry per style layer, each None or [n or 1, O, I, k, k] ([O, I, k, k] is taken as [1, ...])."""
        if len(weight_deltas) != self.num_style_layers:
            raise ValueError(f"expected {self.num_style_layers} weight deltas (one per style layer, None where "
                             f"unchanged), got {len(weight_deltas)}")
        out: list[Optional[torch.Tensor]] = []
        for i, (delta, shape) in enumerate(zip(weight_deltas, self.style_layer_weight_shapes())):
            if delta is not None:
                delta = delta.unsqueeze(0) if delta.ndim == 4 else delta
                assert_shape(delta, [None, *shape], f"weight_deltas[{i}] ({self.style_layer_names[i]})")
                if delta.shape[0] not in (1, n):
                    raise ValueError(f"weight_deltas[{i}] ({self.style_layer_names[i]}) has {delta.shape[0]} "
                                     f"samples for a batch of {n}")
                delta = delta.to(device)
            out.append(delta)
        return out

    def _seeded_noise(self, n: int, device: torch.device, noise_mode: str,
                      generator: Optional[torch.Generator]) -> Optional[list[torch.Tensor]]:
        """Random noise from a seeded ``generator``, one [n, 1, R, R] per convolution in layer order, drawn
        before the (possibly compiled) synthesis: torch.compile cannot trace a ``torch.Generator``."""
        if noise_mode != "random" or generator is None:
            return None
        return [torch.randn([n, 1, block.resolution, block.resolution], device=device, generator=generator)
                for block in self.blocks() for _ in range(block.num_conv)]

    def _prepare(self, device: torch.device, inputs: list[torch.Tensor], run) -> None:
        """Decide "auto" for this call (``autotune.prepare``: measured once per job and gradient mode, or the
        static rules) and set the blocks' dtypes accordingly."""
        self.autotune_active = autotune.prepare(self, device, inputs, run)
        self.apply_autotune_precision(device)

    def _entry(self, name: str, device: torch.device):
        """The (possibly compiled) implementation ``name``, as the current "auto" decision says."""
        active = self.autotune_active
        enabled = active.compiled if active is not None and self.compile_setting == "auto" else None
        return compiled_entry(self, name, device, enabled=enabled)

    def apply_autotune_precision(self, device: torch.device, all_fp32: bool = False) -> None:
        """Each block's dtype from its setting: forced ones as forced, "auto" ones as the current decision says
        (or, without one, bf16 where ``device`` multiplies it natively). ``all_fp32``: every block in fp32 (the
        reference of a measurement). Decided outside the compiled graph (the probe reads /proc/cpuinfo), and the
        graph then sees a constant dtype."""
        active = self.autotune_active
        for block in self.blocks():
            setting = block.precision_setting
            if all_fp32 or setting == "none":
                block.compute_dtype = None
            elif setting == "auto":
                precision = active.precision if active is not None else resolve_precision("auto", device)
                block.compute_dtype = REDUCED_PRECISIONS[precision]
            else:
                block.compute_dtype = REDUCED_PRECISIONS[setting]

    def _synthesize(self, styles: list[torch.Tensor], noise_mode: str, noises: Optional[list[torch.Tensor]],
                    weight_deltas: Optional[list[Optional[torch.Tensor]]] = None) -> torch.Tensor:
        x = img = None
        k = j = 0
        for block in self.blocks():
            n = len(block.style_layers())
            x, img = block(x, img, styles[k:k + n], noise_mode=noise_mode,
                           noises=None if noises is None else noises[j:j + block.num_conv],
                           weight_deltas=None if weight_deltas is None else weight_deltas[k:k + n])
            k += n
            j += block.num_conv
        return img.contiguous()

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", generator: Optional[torch.Generator] = None,
                weight_deltas: Optional[list[Optional[torch.Tensor]]] = None) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, C, R, R].

        ``weight_deltas``: HyperStyle's per-sample offsets of the convolution weights, one entry per style layer
        in ``style_layer_names`` order (b4.conv1, b4.torgb, then per block conv0, conv1, torgb: the order of
        rosinality's/HyperStyle's 26 ``weights_deltas`` at 1024 px, conv1, to_rgb1, convs[2k], convs[2k+1],
        to_rgbs[k], hyperstyle models/stylegan2/model.py lines 530-541). Each is None (layer unchanged) or a
        tensor [N, O, I, k, k] (or [1, O, I, k, k] / [O, I, k, k], shared by the batch); layer l then
        convolves with ``weight_l * (1 + delta_l)`` before modulation and demodulation (model.py line 240).
        semedit stores rosinality's weights unscaled (checkpoints.rosinality_to_semedit copies ``conv.weight[0]``)
        and applies rosinality's constant 1/sqrt(fan_in) elsewhere (to the style of the toRGB layers; for the
        demodulated layers it cancels), so the elementwise factor (1 + delta) means the same in both.
        The delta path runs eagerly (not through torch.compile); without deltas nothing changes.
        """
        assert_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got '{noise_mode}'")
        device = ws.device
        # ws -> styles -> image as one compiled graph (the affine layers fuse with the first convolutions).
        noises = self._seeded_noise(ws.shape[0], device, noise_mode, generator)
        weight_deltas = self._weight_deltas if weight_deltas is None else weight_deltas
        if weight_deltas is not None:
            self.apply_autotune_precision(device)
            deltas = self._check_weight_deltas(weight_deltas, ws.shape[0], device)
            return self._synthesize(self.ws_to_styles(ws), noise_mode, noises, deltas)
        self._prepare(device, [ws], lambda inputs: self._entry("_forward", device)(inputs[0], noise_mode, noises))
        return self._entry("_forward", device)(ws, noise_mode, noises)

    def _forward(self, ws: torch.Tensor, noise_mode: str, noises: Optional[list[torch.Tensor]]) -> torch.Tensor:
        return self._synthesize(self.ws_to_styles(ws), noise_mode, noises)


class Generator(nn.Module):
    """G = mapping + synthesis. ``G(z) == G.synthesis(G.mapping(z))``."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.z_dim, self.w_dim = config.z_dim, config.w_dim
        self.img_resolution, self.img_channels = config.img_resolution, config.img_channels
        self.synthesis = SynthesisNetwork(config.w_dim, config.img_resolution, config.img_channels,
                                          config.channels, config.architecture, config.conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, self.num_ws, config.mapping_layers,
                                      config.mapping_lr_multiplier)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None,
                noise_mode: str = "const", generator: Optional[torch.Generator] = None) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, generator=generator)

    def mean_ws(self, n: int = 1) -> torch.Tensor:
        """w_avg broadcast to W+: [n, num_ws, w_dim]."""
        return self.w_avg.reshape(1, 1, -1).expand(n, self.num_ws, -1).clone()

    def mean_styles(self) -> list[torch.Tensor]:
        """StyleSpace mean: the styles of w_avg, each [1, C_l]."""
        return self.synthesis.ws_to_styles(self.mean_ws(1))

    def set_reduced_precision(self, precision: str = "none", num_res: int = 4) -> None:
        """Run the ``num_res`` highest-resolution synthesis blocks in reduced precision, as NVlabs does.

        precision: "none" | "bf16" | "fp16" | "auto" (a job that declared its calls with
        ``autotune.expect_calls`` measures bf16 against fp32 and keeps bf16 where it is faster within the error
        budget; otherwise bf16 where the device has bf16 matrix units, decided at each call from the input's
        device, see ``semedit.stylegan2.compile.bf16_capable``). bf16 runs on CPUs and GPUs; fp16 on GPUs only
        (a CPU keeps those blocks in fp32).
        Which blocks: NVlabs training/networks.py:442 and :448, ``fp16_resolution = max(2 ** (log2(R) + 1 -
        num_fp16_res), 8)`` and ``use_fp16 = res >= fp16_resolution``. Those blocks' layers clamp their
        outputs to +-256 when the checkpoint sets no clamp (train.py:182 pairs conv_clamp=256 with reduced
        precision); mapping, affine layers, demodulation coefficients and the RGB skip path stay fp32.
        """
        if precision not in REDUCED_PRECISIONS and precision != "auto":
            raise ValueError(f"precision must be one of {list(REDUCED_PRECISIONS) + ['auto']}, got '{precision}'")
        threshold = max(2 ** (int(math.log2(self.img_resolution)) + 1 - num_res), 8)
        for block in self.synthesis.blocks():
            reduced = precision != "none" and num_res > 0 and block.resolution >= threshold
            block.precision_setting = precision if reduced else "none"
            block.compute_dtype = REDUCED_PRECISIONS[precision] if reduced and precision != "auto" else None
            for layer in block.style_layers():
                layer.conv_clamp = layer.base_conv_clamp
                if reduced and layer.conv_clamp is None:
                    layer.conv_clamp = REDUCED_PRECISION_CLAMP
        self.synthesis.autotune_choices.clear()  # settings changed: "auto" decides again

    def set_compile(self, setting: str | bool = "auto") -> None:
        """Compile mapping and synthesis with ``torch.compile`` ("auto": measured for a job that declared its
        calls, see stylegan2/autotune.py; otherwise on CUDA, see stylegan2/compile.py). Decided at each call
        from the input's device, so the generator can be moved after this."""
        setting = normalize_compile_setting(setting)
        self.mapping.compile_setting = self.synthesis.compile_setting = setting
        self.synthesis.autotune_choices.clear()  # settings changed: "auto" decides again

    @torch.no_grad()
    def compute_w_avg(self, num_samples: int = 10_000, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
        """Mean of w over ``num_samples`` z drawn from a fixed seed (reproducible), stored in ``w_avg``."""
        gen = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64)
        done = 0
        device = self.w_avg.device
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            z = torch.randn([n, self.z_dim], generator=gen).to(device)
            total += self.mapping(z)[:, 0].double().sum(dim=0).cpu()
            done += n
        self.mapping.w_avg.copy_((total / num_samples).to(self.w_avg.dtype))
        return self.w_avg
