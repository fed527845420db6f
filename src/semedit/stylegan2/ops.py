"""StyleGAN2's low-level operations in plain PyTorch: no custom CUDA or C++, nothing compiled.

The definitions follow NVlabs stylegan2-ada-pytorch's reference implementations (``impl='ref'`` in
``torch_utils/ops``), which is what makes converted checkpoints produce the same images:

- ``upfirdn2d``: upsample by zero insertion, pad, FIR-filter, downsample;
- ``bias_act``: bias + activation (with its gain) + optional clamp;
- ``modulated_conv2d``: the style-modulated, demodulated convolution, optionally upsampling by 2.

Modulation is executed by scaling activations before and after one ordinary convolution whose weight
is shared by the whole batch, rather than by a grouped convolution with per-sample weights. Both are
exact rewrites of the same formula; the shared-weight form runs the convolution as one large
GEMM-shaped kernel, which is markedly faster on CPUs and on GPUs alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F

from semedit.layers import LRELU_GAIN, LRELU_SLOPE, bias_act  # noqa: F401 - the ops of this package


def assert_shape(tensor: torch.Tensor, shape: Sequence[Optional[int]], name: str = "tensor") -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``shape``; ``None`` entries match any size."""
    if tensor.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, tensor.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} has shape {list(tensor.shape)}, expected {want}")


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The normalised 2-D FIR filter (outer product of ``taps``, summing to one), shape [k, k]."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad by ``padding`` = [x0, x1, y0, y1] (negative crops), filter, downsample.

    x: [N, C, H, W]; f: [kh, kw] (symmetric filters only, as StyleGAN2 uses; so no flip is needed).
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    symmetric = px0 == px1 >= 0 and py0 == py1 >= 0
    if not symmetric:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    # The filter is separable (an outer product); two 1-D passes cost 2k instead of k^2 per pixel.
    kh, kw = f.shape
    row = f.sum(dim=0)  # f = outer(a, b) -> row sums give b * sum(a)
    col = f.sum(dim=1) / row.sum()
    weight_v = col.reshape(1, 1, kh, 1).expand(c, 1, kh, 1)
    weight_h = row.reshape(1, 1, 1, kw).expand(c, 1, 1, kw)
    # Symmetric padding is left to the convolutions, which saves a padded copy of the activations.
    x = F.conv2d(x, weight_v, groups=c, padding=(py0, 0) if symmetric else 0)
    x = F.conv2d(x, weight_h, groups=c, padding=(0, px0) if symmetric else 0)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


# At most this many channels, a CPU upsamples by two with ``_upsample2x_polyphase`` instead of zero insertion and
# depthwise convolutions: oneDNN pads a depthwise convolution's channels to a block of 16, so the 3-channel RGB
# skip path paid for 16 (and reorders to that layout and back). Measured side by side on a 2-core AMD EPYC with
# AVX512-BF16: [1, 3, 512, 512] -> 1024 px, 110 ms as convolutions, 10 ms in phases (same values within 5e-7).
# semedit's choice from that measurement.
POLYPHASE_MAX_CHANNELS_CPU = 4


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample by ``up`` with the FIR filter, keeping the image centred (NVlabs ``upsample2d``)."""
    fw = f.shape[-1]
    p0 = (fw + up - 1) // 2
    p1 = (fw - up) // 2
    if up == 2 and fw % 2 == 0 and not x.is_cuda and x.shape[1] <= POLYPHASE_MAX_CHANNELS_CPU:
        return _upsample2x_polyphase(x, f, p0)
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def _upsample2x_polyphase(x: torch.Tensor, f: torch.Tensor, p0: int) -> torch.Tensor:
    """``upfirdn2d(x, f, up=2, padding=(p0, p0 - 1) per axis, gain=4)`` without the inserted zeros: output sample
    ``2i + r`` of a 1-D pass is the sum over taps k with ``r + k - p0`` even of ``g[k] * x[i + (r + k - p0) / 2]``
    (x zero outside), i.e. each output phase is a short filter of the input. Separable filters only, as
    ``upfirdn2d`` (the same row/column split and gain: 2 per axis)."""
    f = (f * 4).to(x.dtype)
    row = f.sum(dim=0)
    col = f.sum(dim=1) / row.sum()
    x = _upsample2x_polyphase_1d(x, row, p0, dim=3)
    return _upsample2x_polyphase_1d(x, col, p0, dim=2)


def _upsample2x_polyphase_1d(x: torch.Tensor, taps: torch.Tensor, p0: int, dim: int) -> torch.Tensor:
    n, size = x.shape[dim], taps.shape[0]
    lo, hi = (p0 + 1) // 2, (size - p0) // 2  # zeros the phases reach beyond each end of x
    pad = [0, 0] * (x.ndim - 1 - dim) + [lo, hi]
    xp = F.pad(x, pad)
    phases = []
    for r in (0, 1):
        out = None
        for k in range(size):
            if (r + k - p0) % 2 == 0:
                term = xp.narrow(dim, lo + (r + k - p0) // 2, n) * taps[k]
                out = term if out is None else out.add_(term)
        phases.append(out)
    return torch.stack(phases, dim=dim + 1).flatten(dim, dim + 1)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: Optional[torch.Tensor] = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: Optional[torch.Tensor] = None,
    demodulate: bool = True,
    out_gain: float = 1.0,
    weight_sq: Optional[torch.Tensor] = None,
    phase_weights: Optional[list[torch.Tensor]] = None,
    weight_delta: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Style-modulated convolution: ``conv(x * s, weight) * demod * out_gain + noise``.

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I]; noise: broadcastable to [N, O, H', W']
    (a bias can be folded into it). ``up=2`` runs a stride-2 transposed convolution followed by the FIR
    filter, exactly as NVlabs' ``conv2d_resample`` does, so the output is [N, O, 2H, 2W].
    ``weight_sq`` (``demodulation_weights(weight)``) and ``phase_weights`` (``phase_kernels(weight)``)
    may be passed precomputed: they depend on the weight alone, which is frozen in semedit.

    ``weight_delta`` (HyperStyle's per-sample weight offsets, [N or 1, O, I, k, k]): the convolution uses
    ``weight * (1 + weight_delta)`` instead of ``weight``, before modulation and demodulation, as HyperStyle's
    ``ModulatedConv2d.forward`` does (yuval-alaluf/hyperstyle models/stylegan2/model.py lines 237-244:
    ``weight = self.scale * (self.weight * (1 + weights_delta) * style)``, then demodulation). One delta for the
    whole batch ([1, ...]) modulates the shared weight; one per sample runs ``_modulated_conv2d_per_sample``.
    Without a delta nothing below changes.
    """
    n, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    assert_shape(x, [n, in_channels, None, None], "x")

    if weight_delta is not None:
        assert_shape(weight_delta, [None, out_channels, in_channels, kh, kw], "weight_delta")
        if weight_delta.shape[0] not in (1, n):
            raise ValueError(f"weight_delta has {weight_delta.shape[0]} samples for a batch of {n}")
        if weight_delta.shape[0] != 1:
            return _modulated_conv2d_per_sample(x, weight, styles, weight_delta, noise, up, padding,
                                                resample_filter, demodulate, out_gain)
        # One delta for every sample: the batch still shares one (offset) weight. The precomputed tensors
        # derive from the weight without the offset and are recomputed from the offset one.
        weight = weight.float() * (1 + weight_delta[0].float())
        weight_sq = phase_weights = None

    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise as NVlabs does, so that fp16 activations cannot overflow; demodulation undoes it.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    if x.dtype == torch.float16:
        weight_sq = phase_weights = None  # derived from the pre-normalised weight above
    dcoefs = None
    if demodulate:
        w_sq = demodulation_weights(weight) if weight_sq is None else weight_sq
        dcoefs = (styles.float().square() @ w_sq.t() + 1e-8).rsqrt()  # [N, O]

    # One sample, and a weight smaller than the activations (the high-resolution, low-channel layers): fold
    # style, demodulation and gain into the weight. Where the weight is the larger tensor (low resolutions,
    # 512 channels) scaling the activations is cheaper. Measured side by side at 256 px batch 1: folding
    # every layer ran at 0.85x the activation-scaling path; folding only these layers wins at 1024 px.
    if n == 1 and weight.numel() <= x[0].numel():
        return _modulated_conv2d_single(x, weight, styles, dcoefs, noise, up, padding, resample_filter, out_gain)

    x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
    w = weight.to(x.dtype)
    if up == 1:
        x = F.conv2d(x, w, padding=padding)
    else:
        if up != 2 or kh != 3 or kw != 3 or padding != 1 or resample_filter.shape[-1] != 4:
            raise ValueError("upsampling modulated convolutions support up=2 with 3x3 kernels and a 4-tap filter")
        x = _upconv3x3_fir(x, w, resample_filter, phase_weights)

    # One fused pass for demodulation, gain and noise (+ bias) instead of three.
    scale = dcoefs * out_gain if dcoefs is not None else None
    if scale is not None and noise is not None:
        # The output takes the layout of the first argument: give it the activations' layout.
        offset = noise.to(x.dtype)
        if offset.ndim == 4:
            offset = offset.contiguous(memory_format=_memory_format(x))
        scale = scale.to(x.dtype).reshape(n, -1, 1, 1)
        if x.requires_grad or torch.compiler.is_compiling():
            return torch.addcmul(offset, x, scale)
        # Into the convolution's output when no backward needs it: no new activation-sized tensor (page faults).
        return torch.addcmul(offset, x, scale, out=x)
    if scale is not None:
        return x * scale.to(x.dtype).reshape(n, -1, 1, 1)
    if out_gain != 1:
        x = x * out_gain
    return x if noise is None else x + noise.to(x.dtype)


def _modulated_conv2d_single(x, weight, styles, dcoefs, noise, up, padding, resample_filter, out_gain):
    """``modulated_conv2d`` for one sample: style, demodulation and gain are folded into the [O, I, k, k]
    weight (NVlabs' ``fused_modconv`` at batch 1, training/networks.py:51-60 and 74-82), which saves two passes over
    the activations, the largest tensors at the high resolutions. The FIR filter commutes with a scale per
    output channel, so folding is exact for the upsampling layers too."""
    w = weight.float() * styles.float().reshape(1, -1, 1, 1)
    scale = dcoefs * out_gain if dcoefs is not None else torch.full_like(w[:, 0, 0, 0], out_gain).unsqueeze(0)
    w = (w * scale.reshape(-1, 1, 1, 1)).to(x.dtype)
    if up == 1:
        x = F.conv2d(x, w, padding=padding)
    else:
        if up != 2 or w.shape[-1] != 3 or w.shape[-2] != 3 or padding != 1 or resample_filter.shape[-1] != 4:
            raise ValueError("upsampling modulated convolutions support up=2 with 3x3 kernels and a 4-tap filter")
        x = _upconv3x3_fir(x, w, resample_filter)
    if noise is None:
        return x
    # In place: x is the convolution's fresh output (its backward needs only the inputs), and a new tensor the
    # size of the high-resolution activations costs page faults on every call.
    return x.add_(noise.to(x.dtype))


def _modulated_conv2d_per_sample(x, weight, styles, weight_delta, noise, up, padding, resample_filter, demodulate,
                                 out_gain):
    """``modulated_conv2d`` with a weight offset per sample: ``weight * (1 + weight_delta[i])`` for sample i.

    The weights differ between samples, so they are built per sample (style, demodulation and gain folded in)
    and the batch runs as one grouped convolution with a group per sample, the formulation of rosinality's and
    HyperStyle's ``ModulatedConv2d`` (hyperstyle models/stylegan2/model.py lines 236-275: weight
    [N * O, I, k, k], ``groups=batch``; upsampling by a stride-2 grouped transposed convolution, then the blur).
    Demodulation is computed on the offset weight, so it normalises whatever the offset did to a filter's norm.
    """
    n, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    w = weight.float().unsqueeze(0) * (1 + weight_delta.float())  # [N, O, I, k, k]
    w = w * styles.float().reshape(n, 1, in_channels, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    if out_gain != 1:
        w = w * out_gain
    w = w.to(x.dtype)
    x = x.reshape(1, n * in_channels, x.shape[2], x.shape[3])
    if up == 1:
        y = F.conv2d(x, w.reshape(n * out_channels, in_channels, kh, kw), padding=padding, groups=n)
        y = y.reshape(n, out_channels, y.shape[2], y.shape[3])
    else:
        if up != 2 or kh != 3 or kw != 3 or padding != 1 or resample_filter.shape[-1] != 4:
            raise ValueError("upsampling modulated convolutions support up=2 with 3x3 kernels and a 4-tap filter")
        # [N, O, I, k, k] -> [N * I, O, k, k]: conv_transpose2d's grouped weight layout (model.py lines 252-258).
        y = F.conv_transpose2d(x, w.transpose(1, 2).reshape(n * in_channels, out_channels, kh, kw), stride=2,
                               groups=n)
        y = upfirdn2d(y.reshape(n, out_channels, y.shape[2], y.shape[3]), resample_filter, padding=(1, 1, 1, 1),
                      gain=4)
    return y if noise is None else y + noise.to(y.dtype)


def demodulation_weights(weight: torch.Tensor) -> torch.Tensor:
    """[O, I, k, k] -> [O, I]: sum over taps of w^2, so that sum_(I,k,k) (w * s)^2 = s^2 @ this.T and the
    demodulation needs no per-sample weights."""
    return weight.float().square().sum(dim=[2, 3])


def phase_kernels(weight: torch.Tensor) -> list[torch.Tensor]:
    """The four sub-kernels of a stride-2 transposed 3x3 convolution (see ``transposed_conv3x3_stride2``),
    for output phases (even, even), (even, odd), (odd, even), (odd, odd)."""
    even, odd = [2, 0], [1]  # kernel taps feeding even / odd outputs, in correlation order
    return [weight[:, :, rows][:, :, :, cols] for rows in (even, odd) for cols in (even, odd)]


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 \
        else torch.contiguous_format


def transposed_conv3x3_stride2(x: torch.Tensor, weight: torch.Tensor | list[torch.Tensor],
                               border: int = 0) -> torch.Tensor:
    """``conv_transpose2d(x, weight.transpose(0, 1), stride=2)`` as four ordinary convolutions.

    x: [N, I, H, W]; weight: [O, I, 3, 3] (or its ``phase_kernels``). Returns [N, O, 2H+1, 2W+1],
    surrounded by ``border`` zeros. Each output phase (even/odd row, even/odd column) of a stride-2
    transposed convolution is an ordinary convolution of the input with a sub-kernel (2x2, 2x1, 1x2, 1x1
    taps), so the work equals the transposed convolution's, but it runs on the fast convolution kernels:
    CPU libraries implement transposed convolutions through a much slower path.
    """
    kernels = phase_kernels(weight) if isinstance(weight, torch.Tensor) else weight
    n, _, h, w_ = x.shape
    out = torch.empty([n, kernels[0].shape[0], 2 * h + 1 + 2 * border, 2 * w_ + 1 + 2 * border], dtype=x.dtype,
                      device=x.device, memory_format=_memory_format(x))
    if border:
        out[:, :, :border].zero_()
        out[:, :, -border:].zero_()
        out[:, :, :, :border].zero_()
        out[:, :, :, -border:].zero_()
    end_y, end_x = out.shape[2] - border, out.shape[3] - border
    for kernel, (ry, rx) in zip(kernels, ((0, 0), (0, 1), (1, 0), (1, 1))):
        phase = F.conv2d(x, kernel, padding=(1 - ry, 1 - rx))
        out[:, :, border + ry:end_y:2, border + rx:end_x:2] = phase
    return out


# Below this many input channels a CPU runs the native transposed convolution faster than the four phase
# convolutions (and their strided copies): measured side by side on a 2-core AMD EPYC (Zen 3), 1024 px block,
# 64 -> 32 channels at 512 px input: native 0.81 s vs phases 1.20 s; 128 -> 64 at 256 px: 0.89 s vs 0.74 s.
# semedit's choice from that measurement.
NATIVE_TRANSPOSED_MAX_CHANNELS_CPU = 64


def _upconv3x3_fir(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor,
                   kernels: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
    """NVlabs ``conv2d_resample(up=2)`` for a 3x3 kernel and 4-tap filter: transposed conv, then FIR.

    ``weight`` [O, I, 3, 3] (``kernels``: its precomputed ``phase_kernels``). GPUs and the low-channel,
    high-resolution layers on CPUs use the native stride-2 transposed convolution, as NVlabs does
    (torch_utils/ops/conv2d_resample.py:124-139); the FIR's one-pixel border then comes from the filter's
    padding. Otherwise the transposed convolution runs as four ordinary ones (``transposed_conv3x3_stride2``).
    """
    if x.is_cuda or weight.shape[1] <= NATIVE_TRANSPOSED_MAX_CHANNELS_CPU:
        y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        return upfirdn2d(y, f, padding=(1, 1, 1, 1), gain=4)
    # The FIR needs one zero on each side of the (2H+1)-sized transposed output; write it in place.
    y = transposed_conv3x3_stride2(x, phase_kernels(weight) if kernels is None else kernels, border=1)
    return upfirdn2d(y, f, gain=4)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square (StyleGAN's pixel norm on z)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
