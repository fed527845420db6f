"""An independent, functional re-statement of the released FG 2021 encoder forward pass.

Written from the released architecture (pSp ``BackboneEncoderUsingLastLayerIntoWPlus`` x2 + fusion
``map``) directly on an original-layout state dict with ``torch.nn.functional`` only; it shares no code
with ``semedit.hair`` so that the equivalence test compares two separate implementations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"],
                        training=False, eps=1e-5)


def _prelu(x, sd, p):
    return F.prelu(x, sd[p + "weight"])


def _unit(x, sd, p):
    # A stage starts where the width changes or at unit 0; the strided conv is res_layer.3.
    stride = 2 if _is_stage_start(sd, p, x.shape[1]) else 1
    if p + "shortcut_layer.0.weight" in sd:
        short = _bn(F.conv2d(x, sd[p + "shortcut_layer.0.weight"], stride=stride), sd, p + "shortcut_layer.1.")
    else:
        short = x[:, :, ::stride, ::stride]  # MaxPool2d(kernel 1, stride)
    r = _bn(x, sd, p + "res_layer.0.")
    r = F.conv2d(r, sd[p + "res_layer.1.weight"], padding=1)
    r = _prelu(r, sd, p + "res_layer.2.")
    r = F.conv2d(r, sd[p + "res_layer.3.weight"], stride=stride, padding=1)
    r = _bn(r, sd, p + "res_layer.4.")
    g = F.adaptive_avg_pool2d(r, 1)
    g = torch.sigmoid(F.conv2d(F.relu(F.conv2d(g, sd[p + "res_layer.5.fc1.weight"])), sd[p + "res_layer.5.fc2.weight"]))
    return r * g + short


def _is_stage_start(sd, p, in_channels):
    # IR-SE50 stages: units 0, 3, 7, 21 start a stage (stride 2); unit 0 keeps the width (64), the
    # others widen and therefore carry a 1x1 shortcut conv.
    return p.endswith("body.0.") or p + "shortcut_layer.0.weight" in sd


def backbone_into_wplus(x, sd, p, num_ws, w_dim):
    x = F.conv2d(x, sd[p + "input_layer.0.weight"], padding=1)
    x = _prelu(_bn(x, sd, p + "input_layer.1."), sd, p + "input_layer.2.")
    i = 0
    while f"{p}body.{i}.res_layer.1.weight" in sd:
        x = _unit(x, sd, f"{p}body.{i}.")
        i += 1
    x = _bn(x, sd, p + "output_layer_2.0.")
    pool = round((sd[p + "output_layer_2.3.weight"].shape[1] / x.shape[1]) ** 0.5)  # 7 in the released model
    x = F.adaptive_avg_pool2d(x, (pool, pool)).flatten(1)
    x = F.linear(x, sd[p + "output_layer_2.3.weight"], sd[p + "output_layer_2.3.bias"])
    w = sd[p + "linear.weight"]
    x = F.linear(x, w * (1.0 / math.sqrt(w.shape[1])), sd[p + "linear.bias"])  # EqualLinear, lr_mul 1
    return x.view(-1, num_ws, w_dim)


def released_encoder_forward(face, hair, sd, num_ws=18, w_dim=512):
    """``sd`` holds original names (``encoder.encoder_face...``); returns W+ [N, num_ws, w_dim]."""
    f = backbone_into_wplus(face, sd, "encoder.encoder_face.", num_ws, w_dim)
    h = backbone_into_wplus(hair, sd, "encoder.encoder_hair.", num_ws, w_dim)
    z = torch.cat([f.flatten(1), h.flatten(1)], dim=1)
    z = F.leaky_relu(F.linear(z, sd["encoder.map.0.weight"], sd["encoder.map.0.bias"]), 0.2)
    return z.view(-1, num_ws, w_dim)


def random_original_state_dict(shapes: dict, seed: int = 0, prefix: str = "encoder.") -> dict:
    """Random tensors for every key under ``prefix`` of a fixture name -> shape map.

    Scales keep activations O(1) through 24 units so the comparison is meaningful in float32.
    """
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        if not key.startswith(prefix):
            continue
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BN gammas and PReLU slopes
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            scale = 1.0 if key.endswith("linear.weight") else 1.0 / math.sqrt(fan_in)  # EqualLinear scales itself
            # uniform with the variance of randn: as good here, and several times faster for 170M values
            sd[key] = (scale * math.sqrt(3.0)) * (2 * torch.rand(shape, generator=g) - 1)
    return sd
