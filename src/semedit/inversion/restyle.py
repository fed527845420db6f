"""ReStyle (Alaluf, Patashnik, Cohen-Or, ICCV 2021) from its released checkpoints: a row of the inversion tables.

ReStyle inverts an image in ``n_iters`` steps of one encoder that sees the image next to the current
reconstruction and predicts a residual in W+. The two FFHQ models (yuval-alaluf/restyle-encoder at
5e80276228cc5d9e0a39a16119210ee49ce2c975; ``R:`` below cites its files and line numbers):

- ReStyle-pSp, ``encoder_type`` ``BackboneEncoder`` (R:models/encoders/restyle_psp_encoders.py lines 10-50):
  an IR-SE50 body on a 6-channel input, and one ``GradualStyleBlock(512, 512, 16)`` per W+ entry on the final
  16x16 map (no feature pyramid, unlike pSp's GradualStyleEncoder).
- ReStyle-e4e, ``encoder_type`` ``ProgressiveBackboneEncoder`` (R:models/encoders/restyle_e4e_encoders.py lines
  32-89): the same modules; entry 0 is ``styles[0](x)`` repeated, and entries i = 1..min(18, n) - 1 add
  ``styles[i](x)`` (progressive stage ``Inference`` = 18, lines 10-29, 65 and 85-88).

Iterations (R:utils/inference_utils.py lines 4-50, R:models/psp.py lines 55-95, identical in models/e4e.py):

- the encoder input is ``cat([image, reference], dim=1)``, both 256x256 in [-1, 1]; iteration 0's reference is
  the *average image*: the decoder's rendering of ``latent_avg`` as a W+ code with fixed noise
  (``randomize_noise=False``), pooled to 256 px by ``AdaptiveAvgPool2d((256, 256))`` (inference_utils.py lines
  4-13, psp.py lines 23 and 79-90);
- codes = encoder(input) + ``latent_avg`` at iteration 0, + the previous codes after it (psp.py lines 60-67);
- each iteration renders its codes with fixed noise (inference_utils.py line 29); the next reference is that
  rendering after the 256 px adaptive average pool (lines 44-48);
- ``n_iters_per_batch`` is 5 (R:options/test_options.py line 28), the value of the tables.

semedit renders with a semedit ``Generator``: the configured one (for the FFHQ configurations the same
network as the checkpoint's ``decoder``, rosinality's conversion of NVlabs' FFHQ config-f), or, with
``use_checkpoint_decoder=True``, the checkpoint's own ``decoder.*`` weights converted onto semedit's modules.
A given generator that differs from the checkpoint's decoder (shapes, weights, w_avg against latent_avg) is
used as given, with one logged warning. "Fixed noise" is semedit's ``noise_mode="const"``: the converted
``noises.noise_i`` buffers.

Checkpoint layout (R:training/coach_restyle_psp.py lines 316-322, coach_restyle_e4e.py lines 405-417):
``{"state_dict": {"encoder.<...>": ..., "decoder.<...>": ...}, "opts": vars(opts), "latent_avg": [18, 512]}``;
it is read with semedit.weights.load_torch_state_dict (weights only, no code from the file runs) and the
encoder is loaded strictly (upstream uses ``strict=False`` for the encoder, psp.py line 44: semedit
requires every key and shape to match). Stage widths, depth and the input size are read from the weights,
so the same code loads the IR-SE50 releases and the small random encoders of the tiny configurations.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from semedit.config import check
from semedit.inversion.base import (
    InversionOutput,
    Inverter,
    InverterContext,
    register_inverter,
    single_code_output,
)
from semedit.inversion.encoders import GradualStyleBlock
from semedit.layers import IRSE_UNITS, irse_body, irse_stage_layout, irse_stem
from semedit.stylegan2.checkpoints import rosinality_config, rosinality_to_semedit, semedit_to_rosinality
from semedit.stylegan2.networks import Generator
from semedit.weights import (
    CorruptWeightsError,
    load_state_dict_strict,
    load_torch_state_dict,
    resolve_weights,
)

__all__ = ["RESTYLE_KINDS", "BackboneEncoder", "ProgressiveBackboneEncoder", "ReStyle", "ReStyleResult",
           "build_restyle_encoder", "load_restyle", "restyle_checkpoint", "generator_from_decoder",
           "check_generator_against_decoder", "face_pool", "resize_to_encoder", "checkpoint_opts"]

log = logging.getLogger("semedit")

# row name -> (public encoder_type, registry name of the released FFHQ checkpoint)
RESTYLE_KINDS = {"psp": ("BackboneEncoder", "restyle-psp-ffhq-encode"),
                 "e4e": ("ProgressiveBackboneEncoder", "restyle-e4e-ffhq-encode")}
# The other encoder types ReStyle's training code knows (R:utils/model_utils.py lines 2-5), not supported here.
OTHER_ENCODER_TYPES = {
    "ResNetBackboneEncoder": "ReStyle-pSp over a ResNet-34 backbone (the non-face domains)",
    "ResNetProgressiveBackboneEncoder": "ReStyle-e4e over a ResNet-34 backbone (the non-face domains)",
    "GradualStyleEncoder": "ReStyle-pSp over pSp's feature-pyramid encoder",
    "ResNetGradualStyleEncoder": "ReStyle-pSp over a ResNet-34 feature pyramid",
}
ENCODER_INPUT = 256  # AdaptiveAvgPool2d((256, 256)) and the Resize((256, 256)) test transform
RESTYLE_INPUT_NC = 6  # R:options/train_options.py lines 17-18: image + reference
INFERENCE_STAGE = 18  # R:models/encoders/restyle_e4e_encoders.py line 29, ProgressiveStage.Inference
DEFAULT_N_ITERS = 5  # R:options/test_options.py line 28
NOISE_MODE = "const"  # randomize_noise=False everywhere at inference


# ----------------------------------------------------------------------------------------------------
# Encoders.


class BackboneEncoder(nn.Module):
    """ReStyle-pSp's ``BackboneEncoder`` (R:models/encoders/restyle_psp_encoders.py lines 10-50).

    ``input_layer`` (3x3 conv from ``input_nc`` channels, BN, PReLU), ``body`` (IR-SE units, stages of
    ``units`` x ``channels``), ``styles`` (one ``GradualStyleBlock(channels[-1], w_dim, input_size / 16)`` per
    W+ entry, all on the last feature map). Input [N, input_nc, S, S]; output [N, n_styles, w_dim] (before the
    residual addition). The units are semedit's ``BottleneckIRSE`` (= R:models/encoders/helpers.py
    ``bottleneck_IR_SE``, lines 97-119; IR-SE50 = ``get_blocks(50)``, 3/4/14/3 units, lines 29-36) and the heads
    semedit's ``GradualStyleBlock`` (= R:models/encoders/map2style.py lines 8-29: log2(spatial) stride-2 convs
    with ``nn.LeakyReLU()``, slope 0.01, then an EqualLinear).
    """

    progressive = False

    def __init__(self, n_styles: int, w_dim: int = 512, input_nc: int = RESTYLE_INPUT_NC,
                 units: Sequence[int] = IRSE_UNITS[50], channels: Sequence[int] = (64, 128, 256, 512),
                 input_size: int = ENCODER_INPUT):
        super().__init__()
        if len(units) != 4 or len(channels) != 4:
            raise ValueError("the IR-SE body has 4 stages (input / 16 at its end): give 4 units and 4 widths")
        if input_size % 16 or input_size < 32:
            raise ValueError(f"encoder input size must be a multiple of 16 and >= 32, got {input_size}")
        self.n_styles, self.w_dim, self.input_nc = int(n_styles), int(w_dim), int(input_nc)
        self.units, self.channels = tuple(int(u) for u in units), tuple(int(c) for c in channels)
        self.input_size = int(input_size)
        self.input_layer = irse_stem(self.input_nc, self.channels[0])  # lines 26-28
        self.body = irse_body(self.units, self.channels, self.channels[0])  # lines 29-35
        # lines 37-41: GradualStyleBlock(512, 512, 16) for every entry, on the 16x16 map of a 256 px input.
        self.styles = nn.ModuleList(GradualStyleBlock(self.channels[-1], self.w_dim, self.input_size // 16)
                                    for _ in range(self.n_styles))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return torch.stack([style(x) for style in self.styles], dim=1)  # lines 43-50


class ProgressiveBackboneEncoder(BackboneEncoder):
    """ReStyle-e4e's ``ProgressiveBackboneEncoder`` (R:models/encoders/restyle_e4e_encoders.py lines 32-89): the
    modules of ``BackboneEncoder``; w0 = styles[0](x) for every entry, plus styles[i](x) for i = 1 ..
    min(18, n_styles) - 1 (the inference stage, lines 80-88)."""

    progressive = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        w0 = self.styles[0](x)
        last = min(INFERENCE_STAGE + 1, self.n_styles)
        deltas = [torch.zeros_like(w0)] + [self.styles[i](x) for i in range(1, last)]
        deltas += [torch.zeros_like(w0)] * (self.n_styles - last)
        return w0.unsqueeze(1) + torch.stack(deltas, dim=1)


def build_restyle_encoder(kind: str, n_styles: int, w_dim: int, depth: int = 50,
                          channels: Sequence[int] = (64, 128, 256, 512), input_size: int = ENCODER_INPUT,
                          seed: Optional[int] = None) -> BackboneEncoder:
    """A randomly initialised ReStyle encoder (deterministic for ``seed``), in eval mode."""
    if kind not in RESTYLE_KINDS:
        raise ValueError(f"unknown ReStyle kind {kind!r}; valid: {', '.join(RESTYLE_KINDS)}")
    if depth not in IRSE_UNITS:
        raise ValueError(f"unsupported IR-SE depth {depth}; valid: {sorted(IRSE_UNITS)}")
    cls = BackboneEncoder if kind == "psp" else ProgressiveBackboneEncoder
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return cls(n_styles, w_dim, RESTYLE_INPUT_NC, IRSE_UNITS[depth], channels, input_size).eval()


# ----------------------------------------------------------------------------------------------------
# Image plumbing shared with HyperStyle.


def resize_to_encoder(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images [N, 3, R, R] in [-1, 1] at the encoder's input size: ReStyle's and HyperStyle's test transform is
    ``Resize((256, 256))`` of the PIL image (bilinear, antialiased when shrinking), R:configs/transforms_config.py
    lines 28-35."""
    x = images.float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def face_pool(images: torch.Tensor, size: int) -> torch.Tensor:
    """``torch.nn.AdaptiveAvgPool2d((size, size))``, ReStyle's ``face_pool`` (R:models/psp.py line 23; 256 px:
    a 4x4 mean of a 1024 px image)."""
    return F.adaptive_avg_pool2d(images, (size, size))


def _render(G, codes: torch.Tensor, weight_deltas=None) -> torch.Tensor:
    """W+ codes through the synthesis network with fixed noise, in float32."""
    device = G.w_avg.device
    kwargs = {} if weight_deltas is None else {"weight_deltas": weight_deltas}
    return G.synthesis(codes.to(device), noise_mode=NOISE_MODE, **kwargs).float()


# ----------------------------------------------------------------------------------------------------
# The iterative inverter.


@dataclass
class ReStyleResult:
    """codes: W+ codes after each iteration, [N, num_ws, w_dim] each (codes[-1] is the inversion);
    images: the final reconstruction at the generator's resolution [N, C, R, R];
    iteration_images: every iteration's rendering (only when asked for)."""

    codes: list[torch.Tensor]
    images: torch.Tensor
    iteration_images: list[torch.Tensor] = field(default_factory=list)


class ReStyle(nn.Module):
    """ReStyle-pSp / ReStyle-e4e: an encoder, its ``latent_avg`` [n_styles, w_dim] and the rendering generator."""

    def __init__(self, encoder: BackboneEncoder, latent_avg: torch.Tensor, generator, source: str):
        super().__init__()
        if latent_avg.ndim != 2 or latent_avg.shape[-1] != encoder.w_dim or latent_avg.shape[0] not in (1, encoder.n_styles):
            raise ValueError(f"latent_avg must be [{encoder.n_styles} or 1, {encoder.w_dim}], got {list(latent_avg.shape)}")
        if generator.num_ws != encoder.n_styles or generator.w_dim != encoder.w_dim:
            raise ValueError(f"the encoder predicts {encoder.n_styles} x {encoder.w_dim} codes; the generator takes "
                             f"{generator.num_ws} x {generator.w_dim}")
        self.encoder = encoder
        self.generator = generator
        self.register_buffer("latent_avg", latent_avg.float().expand(encoder.n_styles, -1).clone(), persistent=False)
        self.source = source
        self.kind = "e4e" if encoder.progressive else "psp"

    @property
    def input_size(self) -> int:
        return self.encoder.input_size

    @torch.no_grad()
    def average_image(self) -> torch.Tensor:
        """[1, C, S, S]: ``latent_avg`` rendered as a W+ code with fixed noise and pooled to the encoder's input
        size (R:utils/inference_utils.py lines 4-13)."""
        return face_pool(_render(self.generator, self.latent_avg.unsqueeze(0)), self.input_size)

    @torch.no_grad()
    def run(self, images: torch.Tensor, n_iters: int = DEFAULT_N_ITERS,
            keep_iteration_images: bool = False) -> ReStyleResult:
        """Invert ``images`` [N, 3, R, R] in [-1, 1] in ``n_iters`` ReStyle steps (R:utils/inference_utils.py
        ``run_on_batch``, lines 16-50). Tensors come back on the encoder's device."""
        if n_iters < 1:
            raise ValueError(f"n_iters must be >= 1, got {n_iters}")
        device = self.latent_avg.device
        x = resize_to_encoder(images.to(device), self.input_size)
        reference = self.average_image().to(device).expand(x.shape[0], -1, -1, -1)  # lines 21-23
        codes: Optional[torch.Tensor] = None
        all_codes, renders = [], []
        img = None
        for _ in range(n_iters):
            residual = self.encoder(torch.cat([x, reference], dim=1))
            # psp.py lines 62-67: the first step is relative to latent_avg, later ones to the previous codes.
            codes = residual + (self.latent_avg.unsqueeze(0) if codes is None else codes)
            img = _render(self.generator, codes).to(device)
            reference = face_pool(img, self.input_size)  # lines 44-48
            all_codes.append(codes)
            if keep_iteration_images:
                renders.append(img)
        return ReStyleResult(all_codes, img, renders)

    @torch.no_grad()
    def invert(self, images: torch.Tensor, n_iters: int = DEFAULT_N_ITERS, batch_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """(final codes [N, num_ws, w_dim], final reconstructions [N, C, R, R]) on the CPU, in batches."""
        codes, recon = [], []
        for i in range(0, images.shape[0], batch_size):
            result = self.run(images[i:i + batch_size], n_iters)
            codes.append(result.codes[-1].cpu())
            recon.append(result.images.cpu())
        return torch.cat(codes), torch.cat(recon)


# ----------------------------------------------------------------------------------------------------
# Checkpoints.


def checkpoint_opts(ckpt: Mapping, what: str) -> dict:
    """``ckpt["opts"]`` as a dict (the training code saves ``vars(opts)``; an argparse.Namespace is accepted)."""
    opts = ckpt.get("opts")
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, dict):
        raise CorruptWeightsError(f"{what}: no 'opts' dict (the training options every released checkpoint holds)")
    return opts


def _state(ckpt: Mapping, what: str) -> dict:
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptWeightsError(f"{what}: 'state_dict' is missing or is not a dict of tensors")
    return state


def _prefixed(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The ``<prefix>.*`` tensors with the prefix removed (upstream ``__get_keys``, R:models/psp.py lines 136-141)."""
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def n_styles_for(output_size: int) -> int:
    """W+ entries of a generator of ``output_size`` px: ``int(log2(size)) * 2 - 2`` (R:models/psp.py line 19)."""
    return int(math.log(output_size, 2)) * 2 - 2


def _output_size(opts: dict, what: str) -> int:
    size = opts.get("output_size", 1024)  # R:options/train_options.py line 19
    if not isinstance(size, int) or size < 8 or size & (size - 1):
        raise CorruptWeightsError(f"{what}: opts output_size {size!r} is not a power of two >= 8")
    return size


def _latent_avg(ckpt: Mapping, n_styles: int, w_dim: int, what: str) -> torch.Tensor:
    latent_avg = ckpt.get("latent_avg")
    if not isinstance(latent_avg, torch.Tensor):
        raise CorruptWeightsError(f"{what}: no 'latent_avg' tensor (the first iteration starts from it)")
    if latent_avg.shape[-1] != w_dim or latent_avg.numel() not in (w_dim, n_styles * w_dim):
        raise CorruptWeightsError(f"{what}: latent_avg has shape {list(latent_avg.shape)}, expected "
                                  f"[{n_styles}, {w_dim}] or [{w_dim}]")
    return latent_avg.float().reshape(-1, w_dim).expand(n_styles, -1).clone()


def generator_from_decoder(decoder_sd: Mapping[str, torch.Tensor], latent_avg: Optional[torch.Tensor],
                           what: str) -> Generator:
    """A checkpoint's ``decoder.*`` (a rosinality ``g_ema`` state dict) as a frozen semedit Generator, with
    ``w_avg`` = the checkpoint's latent_avg (rosinality's converter stores dlatent_avg there)."""
    if not decoder_sd:
        raise CorruptWeightsError(f"{what}: no 'decoder.*' weights in its state_dict")
    decoder_sd = {k: v.float() if v.is_floating_point() else v for k, v in decoder_sd.items()}
    try:
        config = rosinality_config(decoder_sd)
        state = rosinality_to_semedit(decoder_sd, config)
    except CorruptWeightsError as err:
        raise CorruptWeightsError(f"{what}: its decoder is not a rosinality StyleGAN2 generator ({err})") from None
    G = Generator(config)
    state["mapping.w_avg"] = (latent_avg[0].clone() if latent_avg is not None else torch.zeros(config.w_dim))
    load_state_dict_strict(G, state, f"{what}: decoder weights")
    return G.eval().requires_grad_(False)


def check_generator_against_decoder(G, decoder_sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor,
                                    what: str) -> list[str]:
    """What differs between generator ``G`` and the checkpoint's decoder (and latent_avg vs G.w_avg); logs one
    warning line when anything does. Returns the differences."""
    problems = []
    try:
        config = rosinality_config(dict(decoder_sd))
        theirs = rosinality_to_semedit(dict(decoder_sd), config)
    except CorruptWeightsError as err:
        raise CorruptWeightsError(f"{what}: its decoder is not a rosinality StyleGAN2 generator ({err})") from None
    ours = {k: v for k, v in G.state_dict().items() if k != "mapping.w_avg"}
    wrong_shape = [k for k in ours if k in theirs and tuple(ours[k].shape) != tuple(theirs[k].shape)]
    missing = set(ours) ^ set(theirs)
    if wrong_shape or missing:
        problems.append(f"{len(wrong_shape) + len(missing)} tensors differ in name or shape "
                        f"(e.g. {sorted(wrong_shape or missing)[0]})")
    else:
        differ = [k for k in ours if not torch.allclose(ours[k].detach().float().cpu(), theirs[k].float(),
                                                        rtol=1e-4, atol=1e-5)]
        if differ:
            problems.append(f"{len(differ)} tensors differ in value (e.g. {differ[0]})")
    w_avg = G.w_avg.detach().float().cpu()
    if w_avg.shape[-1] != latent_avg.shape[-1] or not torch.allclose(w_avg, latent_avg.cpu(), rtol=1e-4, atol=1e-4):
        problems.append("its w_avg differs from the checkpoint's latent_avg")
    # Not in the weights, but also not the decoder's computation: rosinality's decoder runs in float32, unclamped.
    reduced = sorted({block.precision_setting for block in G.synthesis.blocks() if block.precision_setting != "none"})
    if reduced:
        problems.append(f"it renders some blocks in reduced precision ({', '.join(reduced)}), the decoder in float32")
    if G.config.conv_clamp is not None:
        problems.append(f"it clamps convolution outputs at {G.config.conv_clamp:g}, the decoder does not")
    if problems:
        log.warning("%s: the given generator is not the checkpoint's decoder (%s); rendering with the given "
                    "generator (use_checkpoint_decoder=True renders with the checkpoint's own)", what,
                    "; ".join(problems))
    return problems


def _random_spec(spec: str) -> Optional[int]:
    m = re.fullmatch(r"random(?::(\d+))?", spec)
    return None if m is None else int(m.group(1) or 0)


def _encoder_type_error(found, expected: str, kind: str, what: str) -> CorruptWeightsError:
    supported = ", ".join(f"{t} (ReStyle-{k}, {name})" for k, (t, name) in RESTYLE_KINDS.items())
    if found in OTHER_ENCODER_TYPES:
        return CorruptWeightsError(f"{what}: encoder_type {found!r} ({OTHER_ENCODER_TYPES[found]}) is not supported; "
                                   f"supported: {supported}")
    if found in (t for t, _ in RESTYLE_KINDS.values()):
        return CorruptWeightsError(f"{what}: its encoder_type is {found!r}, but the restyle-{kind} row needs "
                                   f"{expected!r}; pass the ReStyle-{kind} checkpoint")
    return CorruptWeightsError(f"{what}: encoder_type {found!r} is not a ReStyle encoder; supported: {supported}")


def load_restyle(kind: str, spec: str | os.PathLike | None = None, G=None, *,
                 use_checkpoint_decoder: bool = False) -> ReStyle:
    """The ReStyle-pSp (``kind="psp"``) or ReStyle-e4e (``"e4e"``) inverter.

    spec: a path, a registry name (None: the released FFHQ checkpoint, ``restyle-psp-ffhq-encode`` /
    ``restyle-e4e-ffhq-encode``) or ``"random[:seed]"``: a small random-weight encoder (IR-SE10, stages
    16/32/48/64 wide, 64 px input) shaped for ``G``, whose numbers only exercise the pipeline (tiny configs, tests).
    G: the semedit Generator that renders the feedback images and the result (the configured one). With
    ``use_checkpoint_decoder`` the checkpoint's ``decoder.*`` is converted and used instead (G may then be None).
    """
    if kind not in RESTYLE_KINDS:
        raise ValueError(f"unknown ReStyle kind {kind!r}; valid: {', '.join(RESTYLE_KINDS)}")
    if G is None and not use_checkpoint_decoder:
        raise ValueError("give the generator G that renders the codes, or use_checkpoint_decoder=True")
    enc_type, registry_name = RESTYLE_KINDS[kind]
    text = os.fspath(spec) if spec is not None else registry_name
    seed = _random_spec(text)
    if seed is not None:
        if G is None:
            raise ValueError("a random ReStyle encoder is shaped for a generator: pass G")
        enc = build_restyle_encoder(kind, G.num_ws, G.w_dim, depth=10, channels=(16, 32, 48, 64), input_size=64,
                                    seed=seed + (10 if kind == "psp" else 11))
        latent_avg = G.w_avg.detach().float().cpu().reshape(1, -1).expand(G.num_ws, -1).clone()
        return ReStyle(enc, latent_avg, G, f"{text} (random weights)").eval()

    path = resolve_weights(text)  # MissingWeightsError names the file, its source and where to put it
    what = f"{path} (ReStyle-{kind} checkpoint)"
    ckpt = load_torch_state_dict(path, f"ReStyle-{kind} checkpoint")
    state = _state(ckpt, what)
    opts = checkpoint_opts(ckpt, what)
    found = opts.get("encoder_type")
    if found != enc_type:
        raise _encoder_type_error(found, enc_type, kind, what)
    if opts.get("input_nc", RESTYLE_INPUT_NC) != RESTYLE_INPUT_NC:
        raise CorruptWeightsError(f"{what}: trained with input_nc={opts['input_nc']}; ReStyle's iterative encoders "
                                  f"take {RESTYLE_INPUT_NC} channels (image + reference)")
    n_styles = n_styles_for(_output_size(opts, what))
    sd = _prefixed(state, "encoder")
    if not sd:
        raise CorruptWeightsError(f"{what}: no 'encoder.*' keys in its state_dict (ReStyle checkpoint layout)")
    if "styles.0.linear.weight" not in sd:
        raise CorruptWeightsError(f"{what}: no encoder.styles.0.linear.weight; not a ReStyle backbone encoder")
    w_dim = int(sd["styles.0.linear.weight"].shape[0])
    heads = len({k.split(".")[1] for k in sd if k.startswith("styles.")})
    if heads != n_styles:
        raise CorruptWeightsError(f"{what}: opts output_size {opts.get('output_size')} means {n_styles} W+ entries, "
                                  f"but the encoder has {heads} style heads")
    if G is not None and not use_checkpoint_decoder and (G.num_ws != n_styles or G.w_dim != w_dim):
        raise CorruptWeightsError(f"{what}: the encoder predicts {n_styles} W+ entries of {w_dim} but the "
                                  f"generator has num_ws={G.num_ws}, w_dim={G.w_dim}; use the generator the "
                                  "encoder was trained for")
    units, channels = irse_stage_layout(sd, "body.")
    if len(units) != 4:
        raise CorruptWeightsError(f"{what}: expected 4 IR-SE stages in the encoder, found widths {channels}")
    n_convs = len({k.split(".")[3] for k in sd if k.startswith("styles.0.convs.") and k.endswith(".weight")})
    enc_cls = BackboneEncoder if kind == "psp" else ProgressiveBackboneEncoder
    with torch.device("meta"):  # the file replaces every tensor: no random initialisation of 200 M parameters
        enc = enc_cls(n_styles, w_dim, RESTYLE_INPUT_NC, units, channels, input_size=16 * 2 ** n_convs)
    load_state_dict_strict(enc, sd, f"the ReStyle-{kind} encoder of {path}", assign=True)
    enc.requires_grad_(False)
    latent_avg = _latent_avg(ckpt, n_styles, w_dim, what)
    decoder_sd = _prefixed(state, "decoder")
    if not decoder_sd:
        raise CorruptWeightsError(f"{what}: no 'decoder.*' weights in its state_dict (ReStyle checkpoint layout)")
    if use_checkpoint_decoder:
        G = generator_from_decoder(decoder_sd, latent_avg, what)
        if G.num_ws != n_styles or G.w_dim != w_dim:
            raise CorruptWeightsError(f"{what}: its decoder takes {G.num_ws} x {G.w_dim} codes, its encoder "
                                      f"predicts {n_styles} x {w_dim}")
    else:
        check_generator_against_decoder(G, decoder_sd, latent_avg, what)
    return ReStyle(enc.eval(), latent_avg, G, str(path)).eval()


def restyle_checkpoint(encoder: BackboneEncoder, latent_avg: torch.Tensor, G: Optional[Generator] = None,
                       decoder_state: Optional[Mapping[str, torch.Tensor]] = None,
                       extra_opts: Optional[dict] = None) -> dict:
    """The dict ReStyle's training code saves (see module docstring), for tests and tiny configs: the encoder
    under ``encoder.``, the decoder (``G`` converted to rosinality's names, or ``decoder_state`` as given) under
    ``decoder.``, ``opts`` and ``latent_avg``."""
    enc_type = RESTYLE_KINDS["e4e" if encoder.progressive else "psp"][0]
    output_size = 2 ** ((encoder.n_styles + 2) // 2)
    opts = {"encoder_type": enc_type, "input_nc": encoder.input_nc, "output_size": output_size,
            "dataset_type": "ffhq_encode", "start_from_latent_avg": True, "n_iters_per_batch": DEFAULT_N_ITERS,
            **(extra_opts or {})}
    state = {f"encoder.{k}": v.detach().clone() for k, v in encoder.state_dict().items()}
    if decoder_state is None and G is not None:
        decoder_state = semedit_to_rosinality(G)
    state.update({f"decoder.{k}": v.detach().clone() for k, v in (decoder_state or {}).items()})
    return {"state_dict": state, "opts": opts, "latent_avg": latent_avg.detach().clone()}


# ----------------------------------------------------------------------------------------------------
# The "ReStyle - 5 iters" row of the tables, as a member of the Inverter family.


@dataclass
class ReStyleSettings:
    """``methods.restyle``: which released ReStyle model, and how many iterations."""

    # The ChunkyGAN tables do not say which ReStyle they ran. "e4e" is semedit's choice: ReStyle-e4e is the one
    # HyperStyle builds on (H:configs/paths_config.py line 40), and the tables' ReStyle row has e4e's LPIPS.
    kind: str = "e4e"  # "psp" (ReStyle-pSp, BackboneEncoder) | "e4e" (ReStyle-e4e, ProgressiveBackboneEncoder)
    # Registry name or path (None: the released FFHQ model of ``kind``), or "random[:seed]" (tiny configs only).
    weights: Optional[str] = None
    n_iters: int = DEFAULT_N_ITERS  # the tables' "5 iters" = R:options/test_options.py line 28

    def validate(self, prefix: str = "") -> None:
        check(self.kind in RESTYLE_KINDS, f"{prefix}kind", " | ".join(RESTYLE_KINDS), self.kind)
        check(self.n_iters >= 1, f"{prefix}n_iters", "an integer >= 1", self.n_iters)


class ReStyleRow(Inverter):
    """W+ codes after ``n_iters`` ReStyle steps, rendered by the configured generator."""

    batch_size = 4

    def __init__(self, model: ReStyle, n_iters: int):
        self.model, self.n_iters = model, n_iters

    def invert(self, images, names, indices, on_step=None, should_stop=None) -> InversionOutput:
        self.model.to(images.device)
        result = self.model.run(images, self.n_iters)
        meta = {"recipe": f"restyle-{self.model.kind}", "encoder": self.model.source, "n_iters": self.n_iters}
        return single_code_output("wplus", [result.codes[-1].cpu()], result.images.float().cpu(),
                                  meta=[dict(meta) for _ in names])


def _describe(ctx: InverterContext) -> str:
    s = ctx.settings
    spec = s.weights or RESTYLE_KINDS[s.kind][1]
    return (f"released ReStyle-{s.kind} `{spec}`, {s.n_iters} iterations from the average image, codes rendered "
            "by the configured generator")


@register_inverter("restyle", group="Encoders", describe=_describe, settings=ReStyleSettings,
                   rows=lambda key, cfg: {"n_iters": cfg.methods.restyle.n_iters} if key == "restyle" else None,
                   label=lambda row: f"ReStyle - {row.get('n_iters', DEFAULT_N_ITERS)} iters")
def _build(ctx: InverterContext) -> ReStyleRow:
    s = ctx.settings
    model = load_restyle(s.kind, s.weights, ctx.generator)
    return ReStyleRow(model, s.n_iters)
