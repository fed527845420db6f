"""Load the released checkpoint of *Hairstyle Transfer between Face Images* (FG 2021).

Format (see ``../shared/fixtures/perception/hairstyle_fg2021.json``): ``torch.save`` of a dict whose
weights sit at the top level or under ``"state_dict"``; names start with ``encoder.`` (two IR-SE50
backbones ``encoder_face``/``encoder_hair`` and the fusion ``map``) or ``decoder.`` (a rosinality
``Generator(1024, 512, 8, channel_multiplier=2)`` called with W+ codes). semedit's ``HairTransferNet``
uses the same names, so the encoder is copied key for key after checking that the key sets and every
shape agree; the decoder goes through semedit's rosinality converter. The file is read with
``torch.load(weights_only=True)``: loading never executes code from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from semedit.errors import CorruptWeightsError
from semedit.hair.fg2021.config import EncoderConfig
from semedit.hair.fg2021.encoders import HairTransferNet, build_hair_net
from semedit.layers import IRSE_UNITS, irse_stage_layout
from semedit.stylegan2 import Generator
from semedit.stylegan2.checkpoints import rosinality_config, rosinality_to_semedit
from semedit.weights import load_state_dict_strict, load_weights_only

__all__ = [
    "FG2021CheckpointError",
    "FG2021Model",
    "read_fg2021_state_dict",
    "split_fg2021_state_dict",
    "infer_encoder_config",
    "load_fg2021",
]

RELEASED_W_DIM = 512
RELEASED_INPUT_SIZE = 256  # the released model sees 256x256 crops (pSp's face_pool)


class FG2021CheckpointError(CorruptWeightsError):
    """The file is not a released FG 2021 hairstyle-transfer checkpoint (or is damaged)."""


@dataclass
class FG2021Model:
    """A loaded released model: encoders + fusion, the decoder (or None) and the encoder config."""

    net: HairTransferNet
    generator: Optional[torch.nn.Module]
    encoder: EncoderConfig
    num_ws: int
    w_dim: int


def read_fg2021_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the flat name -> tensor dict from a released checkpoint file (no code is executed)."""
    # pSp-style checkpoints may carry their training options as an argparse.Namespace (allowed).
    return flatten_checkpoint(load_weights_only(path, "FG 2021 hairstyle checkpoint"), source=str(path))


def flatten_checkpoint(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint dict whose weights sit at top level or under ``state_dict``."""
    if not isinstance(obj, Mapping):
        raise FG2021CheckpointError(f"{source}: expected a dict of weights, got {type(obj).__name__}")
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith("encoder.") for k in tensors):
        raise FG2021CheckpointError(
            f"{source}: no 'encoder.' weights found; this is not a released FG 2021 hairstyle-transfer "
            f"checkpoint (first keys: {list(obj)[:5]})"
        )
    return tensors


def split_fg2021_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Split into (encoder weights without ``encoder.``, decoder weights without ``decoder.``)."""
    encoder, decoder, other = {}, {}, []
    for key, value in state_dict.items():
        if key.startswith("encoder."):
            encoder[key[len("encoder."):]] = value
        elif key.startswith("decoder."):
            decoder[key[len("decoder."):]] = value
        else:
            other.append(key)
    if other:
        raise FG2021CheckpointError(
            f"unexpected weights outside 'encoder.' and 'decoder.': {other[:8]}"
            + (f" (+{len(other) - 8} more)" if len(other) > 8 else "")
        )
    return encoder, decoder


def infer_encoder_config(encoder_sd: Mapping[str, torch.Tensor], w_dim: int = RELEASED_W_DIM
                         ) -> tuple[EncoderConfig, int]:
    """The ``EncoderConfig`` and ``num_ws`` that the encoder weights were made with."""
    try:
        units, channels = irse_stage_layout(encoder_sd, "encoder_face.body.")
        proj = encoder_sd["encoder_face.output_layer_2.3.weight"]  # [feature_dim, C * pool * pool]
        code = int(encoder_sd["encoder_face.linear.weight"].shape[0])  # num_ws * w_dim
        # [C / reduction, C, 1, 1] of the widest (last) unit: narrow units clamp C / reduction at 1.
        fc1 = encoder_sd[f"encoder_face.body.{sum(units) - 1}.res_layer.5.fc1.weight"]
    except KeyError as err:
        raise FG2021CheckpointError(f"encoder weight {err} missing; not an FG 2021 encoder") from err
    except CorruptWeightsError as err:
        raise FG2021CheckpointError(f"{err}; not an FG 2021 encoder") from err
    depth = next((d for d, u in IRSE_UNITS.items() if list(u) == units), None)
    if depth is None:
        raise FG2021CheckpointError(f"backbone has {units} units per stage, which is no IR-SE depth "
                                    f"({ {d: list(u) for d, u in IRSE_UNITS.items()} })")
    pool = int(round((proj.shape[1] / channels[-1]) ** 0.5))
    if code % w_dim:
        raise FG2021CheckpointError(f"encoder output width {code} is not a multiple of w_dim={w_dim}")
    cfg = EncoderConfig(
        num_layers=depth,
        channels=channels,
        feature_dim=int(proj.shape[0]),
        pool_size=pool,
        se_reduction=int(fc1.shape[1]) // int(fc1.shape[0]),
        input_size=RELEASED_INPUT_SIZE,
    )
    return cfg, code // w_dim


def _decoder_w_dim(decoder_sd: Mapping[str, torch.Tensor]) -> int:
    weight = decoder_sd.get("style.1.weight")  # rosinality mapping layer [w_dim, z_dim]
    return int(weight.shape[0]) if weight is not None else RELEASED_W_DIM


def load_fg2021(
    source: str | Path | Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    load_decoder: bool = True,
) -> FG2021Model:
    """Build semedit's hair model from a released FG 2021 checkpoint (path or flat state dict).

    The encoder architecture is read from the weights (depth, widths, W+ size), every key and shape is
    checked, and the decoder becomes a semedit ``Generator`` (``load_decoder=False`` skips it).
    """
    state_dict = read_fg2021_state_dict(source) if isinstance(source, (str, Path)) else flatten_checkpoint(source)
    encoder_sd, decoder_sd = split_fg2021_state_dict(state_dict)
    w_dim = _decoder_w_dim(decoder_sd)
    enc_cfg, num_ws = infer_encoder_config(encoder_sd, w_dim=w_dim)
    # Built on the meta device: the fusion alone has 170M weights, and initialising them only to
    # overwrite them would cost seconds; assign=True adopts the checkpoint tensors instead.
    with torch.device("meta"):
        net = build_hair_net(enc_cfg, num_ws, w_dim)
    load_state_dict_strict(net, {k: v.float() if v.is_floating_point() else v for k, v in encoder_sd.items()},
                           "FG 2021 encoder weights", error=FG2021CheckpointError, assign=True, cast=False)
    net.eval().requires_grad_(False).to(device)

    generator = None
    if load_decoder:
        if not decoder_sd:
            raise FG2021CheckpointError("checkpoint has no 'decoder.' weights; pass load_decoder=False "
                                        "and give the generator separately")
        generator = decoder_from_rosinality(decoder_sd, device=device)
        if generator.num_ws != num_ws or generator.w_dim != w_dim:
            raise FG2021CheckpointError(
                f"decoder has num_ws={generator.num_ws}, w_dim={generator.w_dim} but the encoder produces "
                f"[{num_ws}, {w_dim}]"
            )
    return FG2021Model(net=net, generator=generator, encoder=enc_cfg, num_ws=num_ws, w_dim=w_dim)


def decoder_from_rosinality(decoder_sd: Mapping[str, torch.Tensor], device: str | torch.device = "cpu"):
    """The decoder (a rosinality ``g_ema`` state dict) as a frozen semedit ``Generator``."""

    decoder_sd = {k: v.float() if v.is_floating_point() else v for k, v in decoder_sd.items()}
    config = rosinality_config(decoder_sd)
    state = rosinality_to_semedit(decoder_sd, config)  # fails loudly on unexpected/missing keys
    generator = Generator(config)
    # The released decoder has no latent_avg: the hair model renders W+ codes directly and needs none,
    # but truncation in galleries does, so it is estimated the way load_generator does for such files.
    state["mapping.w_avg"] = torch.zeros(config.w_dim)
    load_state_dict_strict(generator, state, "FG 2021 decoder weights", error=FG2021CheckpointError)
    generator.compute_w_avg()
    return generator.eval().requires_grad_(False).to(device)

