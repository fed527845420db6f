"""An independent, functional re-statement of HyperStyle's public forward passes, on raw state dicts.

Written from yuval-alaluf/hyperstyle (a723c73) directly, with ``torch.nn.functional`` only and no code of
``semedit.inversion.hyperstyle`` or of semedit's generator:

- ``decoder_forward``: rosinality's Generator as HyperStyle modified it (models/stylegan2/model.py: ModulatedConv2d
  lines 233-277 with ``weight = scale * (W * (1 + delta) * style)``, grouped convolution per sample; StyledConv
  335-341; ToRGB 354-363; Generator.forward 474-550 with ``weights_deltas`` indexed 0 = conv1, 1 = to_rgb1, then
  convs[2k], convs[2k+1], to_rgbs[k]), on a rosinality ``g_ema`` state dict, for W+ codes and fixed noise;
- ``hypernet_forward``: SharedWeightsHyperNetResNet(/Separable) (models/hypernetworks/hypernetwork.py,
  refinement_blocks.py, shared_weights_hypernet.py, encoders/helpers.py SeparableBlock);
- ``w_encoder_forward``: WEncoder (models/encoders/w_encoder.py);
- ``run_inversion``: models/hyperstyle.py forward + utils/inference_utils.py run_inversion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tests.inversion.psp_reference import _bn, _unit
from tests.stylegan2.rosinality_reference import _blur, _equal_linear

SHARED = [0, 2, 3, 5, 6, 8, 9, 11, 12]  # hypernetwork.py line 36


# ------------------------------------------------------------------------------------------------ decoder


def _modconv(x, sd, prefix, w_latent, delta=None, demodulate=True, upsample=False):
    batch, in_ch, h, w = x.shape
    weight = sd[f"{prefix}.conv.weight"]  # [1, O, I, k, k]
    out_ch, k = weight.shape[1], weight.shape[-1]
    scale = 1 / math.sqrt(in_ch * k * k)
    style = _equal_linear(w_latent, sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"])
    style = style.view(batch, 1, in_ch, 1, 1)
    if delta is None:
        weight = scale * weight * style
    else:
        weight = scale * (weight * (1 + delta) * style)  # model.py line 240
    if demodulate:
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
        weight = weight * demod.view(batch, out_ch, 1, 1, 1)
    weight = weight.reshape(batch * out_ch, in_ch, k, k)
    if upsample:
        x = x.reshape(1, batch * in_ch, h, w)
        weight = weight.view(batch, out_ch, in_ch, k, k).transpose(1, 2).reshape(batch * in_ch, out_ch, k, k)
        out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
        out = out.view(batch, out_ch, *out.shape[2:])
        return _blur(out, sd[f"{prefix}.conv.blur.kernel"], 1, 1)
    out = F.conv2d(x.reshape(1, batch * in_ch, h, w), weight, padding=k // 2, groups=batch)
    return out.view(batch, out_ch, *out.shape[2:])


def decoder_forward(sd, latent, weights_deltas=None):
    """Images of ``Generator([latent], input_is_latent=True, randomize_noise=False, weights_deltas=...)``."""
    n_rgbs = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
    deltas = weights_deltas if weights_deltas is not None else [None] * (2 + 3 * n_rgbs)

    def styled(h, prefix, noise_idx, w_latent, delta, upsample=False):
        h = _modconv(h, sd, prefix, w_latent, delta, upsample=upsample)
        h = h + sd[f"{prefix}.noise.weight"] * sd[f"noises.noise_{noise_idx}"]
        return F.leaky_relu(h + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def to_rgb(h, prefix, w_latent, skip, delta):
        out = _modconv(h, sd, prefix, w_latent, delta, demodulate=False) + sd[f"{prefix}.bias"]
        if skip is not None:
            out = out + _blur(skip, sd[f"{prefix}.upsample.kernel"], 2, 1, up=2)
        return out

    out = sd["input.input"].repeat(latent.shape[0], 1, 1, 1)
    out = styled(out, "conv1", 0, latent[:, 0], deltas[0])
    skip = to_rgb(out, "to_rgb1", latent[:, 1], None, deltas[1])
    i, idx = 1, 2
    for r in range(n_rgbs):
        out = styled(out, f"convs.{2 * r}", 2 * r + 1, latent[:, i], deltas[idx], upsample=True)
        out = styled(out, f"convs.{2 * r + 1}", 2 * r + 2, latent[:, i + 1], deltas[idx + 1])
        skip = to_rgb(out, f"to_rgbs.{r}", latent[:, i + 2], skip, deltas[idx + 2])
        i += 2
        idx += 3
    return skip


def layer_params(decoder_sd):
    """upstream's PARAMETERS table (refinement_blocks.py lines 9-37) for this decoder: [k, in, out] per index."""
    n_rgbs = len({k.split(".")[1] for k in decoder_sd if k.startswith("to_rgbs.")})
    names = ["conv1", "to_rgb1"] + [n for r in range(n_rgbs) for n in (f"convs.{2 * r}", f"convs.{2 * r + 1}", f"to_rgbs.{r}")]
    params = []
    for name in names:
        _, out_c, in_c, k, _ = decoder_sd[f"{name}.conv.weight"].shape
        params.append([k, in_c, out_c])
    return params


# ------------------------------------------------------------------------------------------------ hypernet


def _lrelu_convs(x, sd, p, first_stride):
    j = 0
    while f"{p}convs.{j}.weight" in sd:
        stride = first_stride if j == 0 else 2
        x = F.leaky_relu(F.conv2d(x, sd[f"{p}convs.{j}.weight"], sd[f"{p}convs.{j}.bias"], stride=stride, padding=1), 0.01)
        j += 2
    return x


def _basic_block(x, sd, p, stride):
    # torchvision BasicBlock
    out = F.relu(_bn(F.conv2d(x, sd[p + "conv1.weight"], stride=stride, padding=1), sd, p + "bn1."))
    out = _bn(F.conv2d(out, sd[p + "conv2.weight"], padding=1), sd, p + "bn2.")
    if p + "downsample.0.weight" in sd:
        x = _bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=stride), sd, p + "downsample.1.")
    return F.relu(out + x)


def hypernet_forward(sd, x, layers_to_tune, params, separable=False, units=(3, 4, 6, 3)):
    """SharedWeightsHyperNetResNet(/Separable).forward: a list with one delta (or None) per layer index."""
    x = F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)
    x = F.prelu(_bn(x, sd, "bn1."), sd["relu.weight"])
    starts = {sum(units[:k]) for k in range(1, len(units))}
    for i in range(sum(units)):
        x = _basic_block(x, sd, f"body.{i}.", 2 if i in starts else 1)
    tune = list(range(len(params))) if layers_to_tune == "" else [int(v) for v in layers_to_tune.split(",")]
    deltas = []
    for j, (k, c_in, c_out) in enumerate(params):
        p = f"refinement_blocks.{j}."
        if j not in tune:
            deltas.append(None)
        elif j in SHARED and params[j] == params[0]:
            # HyperRefinementBlock (refinement_blocks.py lines 81-101): stride-1 first conv, EqualLinear, hypernet.
            code = _lrelu_convs(x, sd, p, 1)
            w = sd[p + "linear.weight"]
            code = F.linear(code.reshape(-1, w.shape[1]), w / math.sqrt(w.shape[1]), sd[p + "linear.bias"])
            deltas.append(_shared_hypernet(code, sd, p + "hypernet.", params[0]))
        elif separable:
            t = _lrelu_convs(x, sd, p, 2)
            if k == 1:
                deltas.append(F.conv2d(t, sd[p + "output.0.weight"], sd[p + "output.0.bias"]).view(-1, c_out, c_in, k, k))
            else:
                deltas.append(_separable(t, sd, p + "output.0.", k, c_in, c_out))
        else:
            t = _lrelu_convs(x, sd, p, 2)
            if k == 1:
                t = F.conv2d(t, sd[p + "output.0.weight"], sd[p + "output.0.bias"])
                deltas.append(t.view(-1, c_out, c_in, k, k))
            else:
                t = F.conv2d(F.adaptive_avg_pool2d(t, 1), sd[p + "output.1.weight"], sd[p + "output.1.bias"])
                t = t.view(-1, c_out, c_in, 1, 1)
                deltas.append(t.expand(-1, -1, -1, k, k).clone())  # the value repeated over the k x k taps
    return deltas


def _shared_hypernet(z, sd, p, param0):
    k, c_in, c_out = param0
    b = z.shape[0]
    z_dim = sd[p + "w1"].shape[0]
    h_in = (z @ sd[p + "w2"] + sd[p + "b2"]).view(b, c_in, z_dim)
    return (h_in @ sd[p + "w1"] + sd[p + "b1"]).view(b, c_out, c_in, k, k)


def _separable(t, sd, p, k, c_in, c_out):
    f = t.reshape(t.shape[0], -1)
    kin = F.linear(f, sd[p + "make_kernel_in.weight"], sd[p + "make_kernel_in.bias"]).view(-1, k, k, 1, c_in)
    kout = F.linear(f, sd[p + "make_kernel_out.weight"], sd[p + "make_kernel_out.bias"]).view(-1, k, k, c_out, 1)
    kern = kout @ kin  # [B, k, k, out, in]
    kern = F.linear(kern, sd[p + "kernel_linear_in.weight"], sd[p + "kernel_linear_in.bias"]).permute(0, 1, 2, 4, 3)
    kern = F.linear(kern, sd[p + "kernel_linear_out.weight"], sd[p + "kernel_linear_out.bias"])
    return kern.permute(0, 4, 3, 1, 2)


# ------------------------------------------------------------------------------------------------ W encoder


def w_encoder_forward(sd, x, n_styles, units=(3, 4, 14, 3)):
    """WEncoder.forward: [B, n_styles, w_dim], the same w in every row."""
    x = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
    x = F.prelu(_bn(x, sd, "input_layer.1."), sd["input_layer.2.weight"])
    starts = {sum(units[:k]) for k in range(len(units))}
    for i in range(sum(units)):
        x = _unit(x, sd, f"body.{i}.", 2 if i in starts else 1)
    x = F.adaptive_avg_pool2d(x, 1).reshape(x.shape[0], -1)
    w = sd["linear.weight"]
    x = F.linear(x, w / math.sqrt(w.shape[1]), sd["linear.bias"])
    return x.repeat(n_styles, 1, 1).permute(1, 0, 2)


# ------------------------------------------------------------------------------------------------ inversion


def run_inversion(x, hyper_sd, decoder_sd, w_sd, latent_avg, layers_to_tune, n_iters, pool, separable=False,
                  hyper_units=(3, 4, 6, 3), w_units=(3, 4, 14, 3)):
    """(codes, final deltas, final full-resolution image, images of every iteration) for inputs ``x`` at the
    encoder's size; ``pool`` is the face_pool size (256 upstream)."""
    params = layer_params(decoder_sd)
    n_styles = latent_avg.shape[0]
    codes = w_encoder_forward(w_sd, x, n_styles, w_units) + latent_avg.repeat(x.shape[0], 1, 1)
    y_hat = F.adaptive_avg_pool2d(decoder_forward(decoder_sd, codes), pool)
    deltas, images = None, []
    for _ in range(n_iters):
        out = hypernet_forward(hyper_sd, torch.cat([x, y_hat], dim=1), layers_to_tune, params, separable, hyper_units)
        deltas = out if deltas is None else [d + o if d is not None else None for d, o in zip(deltas, out)]
        img = decoder_forward(decoder_sd, codes, deltas)
        images.append(img)
        y_hat = F.adaptive_avg_pool2d(img, pool)
    return codes, deltas, images[-1], images
