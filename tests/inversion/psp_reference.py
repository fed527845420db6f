"""An independent, functional re-statement of the public pSp / e4e encoder forward passes.

Written from eladrich/pixel2style2pixel models/encoders/{helpers,psp_encoders}.py and
omertov/encoder4editing models/encoders/psp_encoders.py directly on an original-layout state dict
(``encoder.`` prefix stripped) with ``torch.nn.functional`` only. It shares no code with
``semedit.inversion.encoders``; the stage layout is passed in explicitly (``get_blocks(50)`` =
3, 4, 14, 3 units) and the feature taps are the public constants 6, 20, 23.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PUBLIC_TAPS = (6, 20, 23)  # psp_encoders.py lines 97-102: c1, c2, c3
COARSE, MIDDLE = 3, 7


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"],
                        training=False, eps=1e-5)


def _unit(x, sd, p, stride):
    # helpers.py bottleneck_IR_SE (lines 97-119)
    if p + "shortcut_layer.0.weight" in sd:
        short = _bn(F.conv2d(x, sd[p + "shortcut_layer.0.weight"], stride=stride), sd, p + "shortcut_layer.1.")
    else:
        short = F.max_pool2d(x, kernel_size=1, stride=stride)
    r = _bn(x, sd, p + "res_layer.0.")
    r = F.conv2d(r, sd[p + "res_layer.1.weight"], padding=1)
    r = F.prelu(r, sd[p + "res_layer.2.weight"])
    r = F.conv2d(r, sd[p + "res_layer.3.weight"], stride=stride, padding=1)
    r = _bn(r, sd, p + "res_layer.4.")
    g = F.adaptive_avg_pool2d(r, 1)
    g = F.conv2d(F.relu(F.conv2d(g, sd[p + "res_layer.5.fc1.weight"])), sd[p + "res_layer.5.fc2.weight"])
    return r * torch.sigmoid(g) + short


def _style_block(x, sd, p):
    # psp_encoders.py GradualStyleBlock (lines 11-32); convs at Sequential indices 0, 2, 4, ...
    j = 0
    while p + f"convs.{j}.weight" in sd:
        x = F.leaky_relu(F.conv2d(x, sd[p + f"convs.{j}.weight"], sd[p + f"convs.{j}.bias"], stride=2, padding=1), 0.01)
        j += 2
    w = sd[p + "linear.weight"]
    x = x.reshape(-1, w.shape[1])
    return F.linear(x, w * (1 / math.sqrt(w.shape[1])), sd[p + "linear.bias"])  # EqualLinear, lr_mul = 1


def _up_add(x, y):
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


def reference_forward(kind: str, sd: dict, x: torch.Tensor, units=(3, 4, 14, 3), taps=PUBLIC_TAPS) -> torch.Tensor:
    """codes [N, n_styles, w_dim] of the public encoder (before latent_avg)."""
    x = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
    x = F.prelu(_bn(x, sd, "input_layer.1."), sd["input_layer.2.weight"])
    starts = {sum(units[:k]) for k in range(len(units))}
    feats = {}
    for i in range(sum(units)):
        x = _unit(x, sd, f"body.{i}.", 2 if i in starts else 1)
        feats[i] = x
    c1, c2, c3 = (feats[t] for t in taps)
    p2 = _up_add(c3, F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"]))
    p1 = _up_add(p2, F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"]))
    n_styles = len({k.split(".")[1] for k in sd if k.startswith("styles.")})

    def feat(i):
        return c3 if i < COARSE else p2 if i < MIDDLE else p1

    if kind == "psp":
        return torch.stack([_style_block(feat(i), sd, f"styles.{i}.") for i in range(n_styles)], dim=1)
    # e4e (lines 186-199): w0 repeated, plus a delta for every later entry.
    w0 = _style_block(c3, sd, "styles.0.")
    w = w0.unsqueeze(1).repeat(1, n_styles, 1)
    for i in range(1, n_styles):
        w[:, i] += _style_block(feat(i), sd, f"styles.{i}.")
    return w
