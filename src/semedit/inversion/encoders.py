"""The encoder rows of the ChunkyGAN projection table: pSp and e4e, from their released checkpoints.

Both are an IR-SE50 backbone with a feature pyramid and one ``GradualStyleBlock`` per W+ entry:

- pSp ``GradualStyleEncoder`` (eladrich/pixel2style2pixel models/encoders/psp_encoders.py lines 11-116):
  every W+ entry is predicted on its own; entries 0-2 from the coarsest map c3 (16x16 for a 256 px input),
  3-6 from p2 = c3 upsampled + latlayer1(c2), 7.. from p1 = p2 upsampled + latlayer2(c1) (lines 104-113);
  c1, c2, c3 are the outputs of body units 6, 20 and 23 (lines 95-102).
- e4e ``Encoder4Editing`` (omertov/encoder4editing models/encoders/psp_encoders.py lines 124-200): one w
  from styles[0](c3) repeated to every entry, plus a delta per entry i >= 1 from the same pyramid
  (lines 186-199); at inference the progressive stage is 18 (line 31), so every delta is used.

Codes are ``encoder(x) + latent_avg`` when the checkpoint was trained with ``start_from_latent_avg``
(pSp models/psp.py lines 74-80, e4e models/psp.py lines 62-68). Inputs are the aligned face resized to
256 px and scaled to [-1, 1] (pSp's test transform: Resize((256, 256)), ToTensor, Normalize(0.5, 0.5)).

Checkpoint layout, as the public training code writes it (pSp training/coach.py lines 282-290, e4e
training/coach.py lines 323-330): ``{"state_dict": {"encoder.<...>": ..., "decoder.<...>": ...},
"opts": vars(opts), "latent_avg": [n_styles, 512]}``; the encoder's keys are read with the ``encoder.``
prefix stripped (pSp models/psp.py lines 15-19 and 51). The file is read with ``torch.load(...,
weights_only=True)``: no code from it runs. The decoder weights in the file are not used: semedit renders
the codes with the configured generator, which for the paper configs is the same FFHQ config-f network
(NVlabs ``ffhq.pkl`` is "FFHQ at 1024x1024, trained using original StyleGAN2", stylegan2-ada-pytorch
README line 48; pSp/e4e use rosinality's conversion of that network).

The IR-SE units are semedit's ``BottleneckIRSE`` (semedit/layers.py), whose parameter names are the
public ``bottleneck_IR_SE``'s; stage widths, depth and input size are read from the state dict, so the
same code loads IR-SE50 checkpoints and the small random encoders of the tiny configuration.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from semedit.inversion.base import (
    InversionOutput,
    Inverter,
    InverterContext,
    register_inverter,
    single_code_output,
)
from semedit.layers import IRSE_UNITS, FullyConnectedLayer, irse_body, irse_stage_layout, irse_stem
from semedit.weights import (
    CorruptWeightsError,
    load_state_dict_strict,
    load_torch_state_dict,
    resolve_weights,
)

__all__ = ["ENCODER_KINDS", "GradualStyleBlock", "PyramidEncoder", "EncoderInverter", "build_encoder",
           "load_encoder", "encoder_state_dict_checkpoint", "encode_images"]

# row name -> (public encoder_type in opts, registry name of the released checkpoint)
ENCODER_KINDS = {"psp": ("GradualStyleEncoder", "psp-ffhq-encode"), "e4e": ("Encoder4Editing", "e4e-ffhq-encode")}
COARSE_IND, MIDDLE_IND = 3, 7  # psp_encoders.py lines 58-59 (pSp) and 148-149 (e4e)
ENCODER_INPUT = 256  # the resolution both encoders were trained on


class GradualStyleBlock(nn.Module):
    """pSp psp_encoders.py lines 11-32: log2(spatial) stride-2 convs with LeakyReLU, then the equalised linear layer (EqualLinear)."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        num_pools = int(math.log2(spatial))
        modules: list[nn.Module] = [nn.Conv2d(in_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            modules += [nn.Conv2d(out_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*modules)
        self.linear = FullyConnectedLayer(out_c, out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).view(-1, self.out_c))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """pSp psp_encoders.py lines 71-88: bilinear (align_corners=True) upsampling of x to y's size, plus y."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class PyramidEncoder(nn.Module):
    """pSp's GradualStyleEncoder (``kind="psp"``) or e4e's Encoder4Editing (``kind="e4e"``).

    Args:
        kind: "psp" or "e4e".
        n_styles: W+ entries (18 at 1024 px; pSp computes log2(output_size) * 2 - 2, models/psp.py line 28).
        w_dim: width of each entry (512; the style blocks are GradualStyleBlock(512, 512, .)).
        units: IR-SE units per stage ((3, 4, 14, 3) for IR-SE50, helpers.get_blocks(50)).
        channels: stage widths ((64, 128, 256, 512)).
        input_size: input resolution (256); the style blocks' spatial sizes are input/16, /8, /4.
    Input [N, 3, input_size, input_size] in [-1, 1]; output [N, n_styles, w_dim] (before latent_avg).
    """

    def __init__(self, kind: str, n_styles: int, w_dim: int = 512, units: Sequence[int] = IRSE_UNITS[50],
                 channels: Sequence[int] = (64, 128, 256, 512), input_size: int = ENCODER_INPUT):
        super().__init__()
        if kind not in ENCODER_KINDS:
            raise ValueError(f"unknown encoder kind {kind!r}; valid: {', '.join(ENCODER_KINDS)}")
        if len(units) != 4 or len(channels) != 4:
            raise ValueError("the pyramid taps the last unit of stages 2, 3 and 4: give 4 stages")
        if input_size % 16 or input_size < 32:
            raise ValueError(f"encoder input size must be a multiple of 16 and >= 32, got {input_size}")
        self.kind, self.n_styles, self.w_dim, self.input_size = kind, int(n_styles), int(w_dim), int(input_size)
        self.units, self.channels = tuple(int(u) for u in units), tuple(int(c) for c in channels)
        stem = self.channels[0]
        self.input_layer = irse_stem(3, stem)
        self.body = irse_body(self.units, self.channels, stem)
        ends = [sum(self.units[:k + 1]) - 1 for k in range(4)]
        self.taps = (ends[1], ends[2], ends[3])  # c1, c2, c3: units 6, 20, 23 in IR-SE50
        top = self.channels[3]
        spatial = input_size // 16
        self.styles = nn.ModuleList(
            GradualStyleBlock(top, self.w_dim, spatial if i < COARSE_IND else 2 * spatial if i < MIDDLE_IND else 4 * spatial)
            for i in range(self.n_styles))
        self.latlayer1 = nn.Conv2d(self.channels[2], top, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(self.channels[1], top, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats[i] = x
        c1, c2, c3 = (feats[t] for t in self.taps)
        p2 = _upsample_add(c3, self.latlayer1(c2))
        p1 = _upsample_add(p2, self.latlayer2(c1))

        def level(i):
            return c3 if i < COARSE_IND else p2 if i < MIDDLE_IND else p1

        if self.kind == "psp":
            return torch.stack([self.styles[i](level(i)) for i in range(self.n_styles)], dim=1)
        w0 = self.styles[0](c3)
        deltas = [torch.zeros_like(w0)] + [self.styles[i](level(i)) for i in range(1, self.n_styles)]
        return w0.unsqueeze(1) + torch.stack(deltas, dim=1)


class EncoderInverter(nn.Module):
    """Image -> W+ code: resize to the encoder's input, encode, add latent_avg (when trained with it)."""

    def __init__(self, encoder: PyramidEncoder, latent_avg: torch.Tensor | None, source: str):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("latent_avg", latent_avg if latent_avg is not None else torch.zeros(0), persistent=False)
        self.source = source

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.encoder.input_size
        x = images.float()
        if x.shape[-1] != size or x.shape[-2] != size:
            # pSp resizes the PIL image (bilinear with antialiasing when shrinking) before ToTensor.
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        codes = self.encoder(x)
        if self.latent_avg.numel():
            codes = codes + self.latent_avg.reshape(-1, codes.shape[-1]).expand_as(codes[0])
        return codes


def _stage_layout(sd: dict[str, torch.Tensor]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """IR-SE units per stage and stage widths of the encoder body (four stages)."""
    units, channels = irse_stage_layout(sd, "body.")
    if len(units) != 4:
        raise CorruptWeightsError(f"expected 4 IR-SE stages in the encoder, found widths {channels}")
    return tuple(units), tuple(channels)


def build_encoder(kind: str, num_ws: int, w_dim: int, depth: int = 50, channels: Sequence[int] = (64, 128, 256, 512),
                  input_size: int = ENCODER_INPUT, seed: int | None = None) -> PyramidEncoder:
    """A randomly initialised encoder (deterministic for ``seed``), in eval mode."""
    if depth not in IRSE_UNITS:
        raise ValueError(f"unsupported IR-SE depth {depth}; valid: {sorted(IRSE_UNITS)}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return PyramidEncoder(kind, num_ws, w_dim, IRSE_UNITS[depth], channels, input_size).eval()


def encoder_state_dict_checkpoint(encoder: PyramidEncoder, latent_avg: torch.Tensor | None,
                                  decoder_state: dict[str, torch.Tensor] | None = None,
                                  extra_opts: dict | None = None) -> dict:
    """The dict the public training code saves (see module docstring), for tests and tiny configs."""
    enc_type = ENCODER_KINDS[encoder.kind][0]
    opts = {"encoder_type": enc_type, "start_from_latent_avg": latent_avg is not None, "input_nc": 3,
            "output_size" if encoder.kind == "psp" else "stylegan_size": 2 ** ((encoder.n_styles + 2) // 2),
            **(extra_opts or {})}
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in (decoder_state or {}).items()})
    ckpt = {"state_dict": state, "opts": opts}
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    return ckpt


def _random_spec(spec: str):
    m = re.fullmatch(r"random(?::(\d+))?", spec)
    return None if m is None else int(m.group(1) or 0)


def load_encoder(kind: str, spec: str | os.PathLike | None, G) -> EncoderInverter:
    """The pSp or e4e inverter for generator ``G``.

    spec: a path, a registry name (None = the released checkpoint, ``psp-ffhq-encode`` /
    ``e4e-ffhq-encode``), or ``"random[:seed]"``: a small random-weight encoder (IR-SE10, stages 16/32/48/64 wide,
    64 px input) shaped for ``G`` whose numbers only exercise the pipeline (tiny configs and tests).
    """
    if kind not in ENCODER_KINDS:
        raise ValueError(f"unknown encoder kind {kind!r}; valid: {', '.join(ENCODER_KINDS)}")
    enc_type, registry_name = ENCODER_KINDS[kind]
    text = os.fspath(spec) if spec is not None else registry_name
    seed = _random_spec(text)
    if seed is not None:
        enc = build_encoder(kind, G.num_ws, G.w_dim, depth=10, channels=(16, 32, 48, 64), input_size=64,
                            seed=seed + (0 if kind == "psp" else 1))
        return EncoderInverter(enc, G.w_avg.detach().cpu().reshape(1, -1).expand(G.num_ws, -1).clone(),
                               f"{text} (random weights)").eval()
    path = resolve_weights(text)  # MissingWeightsError names the file, its source and where to put it
    ckpt = load_torch_state_dict(path)
    what = f"{path} ({kind} checkpoint)"
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise CorruptWeightsError(f"{what}: 'state_dict' is not a dict of tensors")
    opts = ckpt.get("opts") or {}
    if not isinstance(opts, dict):
        raise CorruptWeightsError(f"{what}: 'opts' is not a dict")
    if opts.get("encoder_type", enc_type) != enc_type:
        raise CorruptWeightsError(f"{what}: its encoder_type is {opts['encoder_type']!r}, but the {kind} row "
                                  f"needs {enc_type!r}; pass the {kind} checkpoint")
    sd = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not sd:
        raise CorruptWeightsError(f"{what}: no 'encoder.*' keys in its state_dict (pSp/e4e checkpoint layout)")
    n_styles = len({k.split(".")[1] for k in sd if k.startswith("styles.")})
    if n_styles != G.num_ws:
        raise CorruptWeightsError(f"{what}: the encoder predicts {n_styles} W+ entries but the generator has "
                                  f"num_ws={G.num_ws}; use the generator the encoder was trained for")
    w_dim = int(sd["styles.0.linear.weight"].shape[0])
    if w_dim != G.w_dim:
        raise CorruptWeightsError(f"{what}: encoder w_dim {w_dim} != generator w_dim {G.w_dim}")
    units, channels = _stage_layout(sd)
    n_convs = len({k.split(".")[3] for k in sd if k.startswith("styles.0.convs.") and k.endswith(".weight")})
    enc = PyramidEncoder(kind, n_styles, w_dim, units, channels, input_size=16 * 2 ** n_convs)
    load_state_dict_strict(enc, sd, f"the {kind} encoder of {path}")
    latent_avg = ckpt.get("latent_avg")
    if opts.get("start_from_latent_avg", latent_avg is not None):
        if latent_avg is None:
            # e4e models/psp.py lines 97-100 computes the mean latent of its decoder; G's w_avg is that mean.
            latent_avg = G.w_avg.detach().cpu().reshape(1, -1).expand(n_styles, -1).clone()
        latent_avg = latent_avg.float().reshape(-1, w_dim)
        if latent_avg.shape[0] not in (1, n_styles):
            raise CorruptWeightsError(f"{what}: latent_avg has shape {tuple(latent_avg.shape)}")
    else:
        latent_avg = None
    return EncoderInverter(enc.eval(), latent_avg, str(path)).eval()


@torch.no_grad()
def encode_images(inverter: EncoderInverter, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """W+ codes [N, num_ws, w_dim] of images [N, 3, R, R] in [-1, 1]."""
    device = next(inverter.encoder.parameters()).device
    return torch.cat([inverter(images[i:i + batch].to(device)).cpu() for i in range(0, images.shape[0], batch)])



# ----------------------------------------------------------------------------------------------------
# The encoder rows of the tables, as members of the Inverter family.


@dataclass
class EncoderSettings:
    """``methods.psp`` / ``methods.e4e``: which released checkpoint."""

    # Registry name or path (None: the released FFHQ checkpoint, psp-ffhq-encode / e4e-ffhq-encode), or
    # "random[:seed]": a small random-weight encoder shaped for the generator (tiny configs only).
    weights: Optional[str] = None


class EncoderRow(Inverter):
    """Codes from a released encoder (+ latent_avg), rendered by the configured generator."""

    batch_size = 8  # images per encoder call (as ``encode_images``)

    def __init__(self, G, inverter: EncoderInverter, kind: str):
        self.G, self.encoder, self.kind = G, inverter, kind

    def invert(self, images, names, indices, on_step=None, should_stop=None) -> InversionOutput:
        self.encoder.to(images.device)
        codes = encode_images(self.encoder, images)
        with torch.no_grad():
            recons = torch.cat([self.G.synthesis(codes[j:j + 1].to(images.device), noise_mode="const").cpu()
                                for j in range(codes.shape[0])])
        return single_code_output("wplus", [codes], recons,
                                  meta=[{"recipe": self.kind, "encoder": self.encoder.source} for _ in names])


def _register(kind: str, label: str) -> None:
    def describe(ctx: InverterContext) -> str:
        spec = ctx.settings.weights or ENCODER_KINDS[kind][1]
        return f"released encoder `{spec}`, codes + latent_avg, rendered by the configured generator"

    @register_inverter(kind, group="Encoders", label=label, describe=describe, settings=EncoderSettings)
    def build(ctx: InverterContext) -> EncoderRow:
        return EncoderRow(ctx.generator, load_encoder(kind, ctx.settings.weights, ctx.generator), kind)


_register("psp", "pSp")
_register("e4e", "e4e")
