"""An independent re-statement of rosinality/stylegan2-pytorch's Generator.forward, on its state dict.

Written from rosinality's formulation (EqualLinear, ModulatedConv2d with grouped convolution and a
full 2-D blur kernel, NoiseInjection, FusedLeakyReLU, ToRGB with upsampled skip), not from semedit's
code, so that agreement checks semedit's renaming and its NVlabs-style operations together.
"""

import math

import torch
import torch.nn.functional as F


def _blur(x, kernel, pad0, pad1, up=1):
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    k = torch.flip(kernel, [0, 1]).to(x.dtype)
    return F.conv2d(x, k.expand(c, 1, *k.shape), groups=c)


def _equal_linear(x, weight, bias, lr_mul=1.0, activate=False):
    out = F.linear(x, weight * (1 / math.sqrt(weight.shape[1]) * lr_mul))
    out = out + bias * lr_mul
    return F.leaky_relu(out, 0.2) * math.sqrt(2) if activate else out


def _modulated_conv(x, sd, prefix, latent, demodulate=True, upsample=False):
    batch, in_ch, h, w = x.shape
    weight = sd[f"{prefix}.conv.weight"]  # [1, O, I, k, k]
    out_ch, k = weight.shape[1], weight.shape[-1]
    style = _equal_linear(latent, sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"])
    weight = (1 / math.sqrt(in_ch * k * k)) * weight * style.view(batch, 1, in_ch, 1, 1)
    if demodulate:
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
        weight = weight * demod.view(batch, out_ch, 1, 1, 1)
    weight = weight.view(batch * out_ch, in_ch, k, k)
    if upsample:
        x = x.view(1, batch * in_ch, h, w)
        weight = weight.view(batch, out_ch, in_ch, k, k).transpose(1, 2).reshape(batch * in_ch, out_ch, k, k)
        out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
        out = out.view(batch, out_ch, *out.shape[2:])
        return _blur(out, sd[f"{prefix}.conv.blur.kernel"], 1, 1)
    out = F.conv2d(x.view(1, batch * in_ch, h, w), weight, padding=k // 2, groups=batch)
    return out.view(batch, out_ch, *out.shape[2:])


def rosinality_forward(sd, z, truncation=1.0, truncation_latent=None):
    """Images [N, 3, size, size] of rosinality's Generator([z], randomize_noise=False)."""
    n_mlp = len([k for k in sd if k.startswith("style.") and k.endswith(".weight")])
    x = z * torch.rsqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        x = _equal_linear(x, sd[f"style.{i}.weight"], sd[f"style.{i}.bias"], lr_mul=0.01, activate=True)
    latent = x
    if truncation < 1:
        latent = truncation_latent + truncation * (latent - truncation_latent)

    def styled(h, prefix, noise_idx, upsample=False):
        h = _modulated_conv(h, sd, prefix, latent, upsample=upsample)
        h = h + sd[f"{prefix}.noise.weight"] * sd[f"noises.noise_{noise_idx}"]
        return F.leaky_relu(h + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def to_rgb(h, prefix, skip):
        out = _modulated_conv(h, sd, prefix, latent, demodulate=False) + sd[f"{prefix}.bias"]
        if skip is not None:
            out = out + _blur(skip, sd[f"{prefix}.upsample.kernel"], 2, 1, up=2)
        return out

    out = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    out = styled(out, "conv1", 0)
    skip = to_rgb(out, "to_rgb1", None)
    n_rgbs = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
    for i in range(n_rgbs):
        out = styled(out, f"convs.{2 * i}", 2 * i + 1, upsample=True)
        out = styled(out, f"convs.{2 * i + 1}", 2 * i + 2)
        skip = to_rgb(out, f"to_rgbs.{i}", skip)
    return skip
