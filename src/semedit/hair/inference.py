"""Hair transfer at inference time: load a model, transfer, interpolate, and edit hair embeddings.

A hair model is either a semedit training checkpoint (``<run>/checkpoints/last.ckpt``; its generator is
rebuilt from the spec stored in it) or the released FG 2021 checkpoint (its decoder is in the file).
Inputs are FFHQ-aligned images; raw photos are aligned first with ``align_photo`` (68 landmarks +
the FFHQ crop, through ``semedit.perception.landmarks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from semedit.hair.encoders import EncoderConfig, HairTransferNet, build_hair_net, resize_for_encoder

__all__ = [
    "HairModel",
    "HairModelError",
    "load_hair_model",
    "align_photo",
    "HairTransfer",
    "hair_pca_directions",
    "hair_classifier_direction",
]


class HairModelError(ValueError):
    """The file is neither a semedit hair-transfer checkpoint nor the released FG 2021 model."""


@dataclass
class HairModel:
    net: HairTransferNet
    generator: torch.nn.Module
    input_size: int  # encoder input size (256 for the released model)
    regions: str  # face/hair region strategy the model was trained with
    noise_mode: str
    source: str  # "semedit" | "fg2021"


def _generator_spec(d: Optional[dict]):
    from omegaconf import OmegaConf

    from semedit.config import GeneratorSpec

    base = OmegaConf.structured(GeneratorSpec)
    return OmegaConf.to_object(OmegaConf.merge(base, d or {}))


def load_hair_model(path: str | Path, device: str | torch.device = "cpu",
                    generator: Optional[torch.nn.Module] = None) -> HairModel:
    """Load a semedit hair checkpoint or the released FG 2021 model (never executes code from the file).

    ``generator`` overrides the generator (otherwise: the spec stored in a semedit checkpoint, or the
    decoder inside the FG 2021 file).
    """
    from semedit.weights import resolve_weights

    path = resolve_weights(path)  # a path, or a registry name such as hairstyle-fg2021
    try:
        import argparse

        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise HairModelError(f"{path} is not a weights-only torch checkpoint ({err})") from err
    if not isinstance(obj, dict):
        raise HairModelError(f"{path}: expected a checkpoint dict, got {type(obj).__name__}")
    hp = obj.get("hyper_parameters")
    if isinstance(hp, dict) and "encoder" in hp and "num_ws" in hp:
        net = build_hair_net(EncoderConfig(**hp["encoder"]), hp["num_ws"], hp["w_dim"])
        state = {k[len("net."):]: v for k, v in obj["state_dict"].items() if k.startswith("net.")}
        net.load_state_dict(state, strict=True)
        if generator is None:
            from semedit.stylegan2 import generator_from_spec

            generator = generator_from_spec(_generator_spec(hp.get("generator_spec")), device=device)
        if (generator.num_ws, generator.w_dim) != (hp["num_ws"], hp["w_dim"]):
            raise HairModelError(f"{path} was trained for W+ [{hp['num_ws']}, {hp['w_dim']}], the generator "
                                 f"has [{generator.num_ws}, {generator.w_dim}]")
        model = HairModel(net, generator, EncoderConfig(**hp["encoder"]).input_size, hp.get("regions", "ellipse"),
                          hp.get("noise_mode", "const"), "semedit")
    else:
        from semedit.hair.fg2021 import FG2021CheckpointError, flatten_checkpoint, load_fg2021

        try:
            loaded = load_fg2021(flatten_checkpoint(obj, source=str(path)), load_decoder=generator is None)
        except FG2021CheckpointError as err:
            raise HairModelError(f"{path}: not a semedit hair checkpoint (no hyper_parameters with an encoder) "
                                 f"and not the released FG 2021 model: {err}") from err
        model = HairModel(loaded.net, generator or loaded.generator, loaded.encoder.input_size, "hull", "const",
                          "fg2021")
    model.net.eval().requires_grad_(False).to(device)
    model.generator.eval().requires_grad_(False).to(device)
    return model


def align_photo(photo: np.ndarray, output_size: int, landmarks: str | None = None,
                detector: str | None = "detector-scrfd-10g", device: str | torch.device = "cpu") -> torch.Tensor:
    """A raw photo (uint8 RGB [H, W, 3]) -> FFHQ-aligned [1, 3, S, S] in [-1, 1] (largest face)."""
    from semedit.images import from_uint8
    from semedit.perception.landmarks import align_ffhq, load_landmarker

    landmarker = load_landmarker(landmarks, device=device, detector=detector)
    points = landmarker([photo])[0]
    return from_uint8(align_ffhq(photo, points, output_size=output_size))


def _feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Soften a mask [N, 1, H, W] with a box blur of ``radius`` pixels (seamless alpha blending)."""
    if radius < 1:
        return mask
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(mask, [radius] * 4, mode="replicate"), k, stride=1)


class HairTransfer:
    """Transfer, interpolation and hair editing with a loaded ``HairModel``.

    All images are FFHQ-aligned [N, 3, H, W] in [-1, 1] (any H = W); outputs are at the generator's
    resolution unless stated otherwise.
    """

    def __init__(self, model: HairModel, regions: Optional[str] = None, region_weights: Optional[str] = None,
                 device: str | torch.device = "cpu"):
        from semedit.perception.regions import make_region_splitter

        self.model = model
        self.device = torch.device(device)
        kwargs = {"weights": region_weights} if region_weights else {}
        self.splitter = make_region_splitter(regions or model.regions, device=self.device, **kwargs)

    def masks(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.splitter(images.to(self.device))

    @torch.no_grad()
    def embed_face(self, images: torch.Tensor) -> torch.Tensor:
        """Face embeddings [N, num_ws, w_dim] of the inner faces of ``images``."""
        images = images.to(self.device)
        face = resize_for_encoder(images * self.masks(images)["face"], self.model.input_size)
        return self.model.net.encode_face(face)

    @torch.no_grad()
    def embed_hair(self, images: torch.Tensor) -> torch.Tensor:
        """Hair embeddings [N, num_ws, w_dim] of the hair regions of ``images``."""
        images = images.to(self.device)
        hair = resize_for_encoder(images * self.masks(images)["hair"], self.model.input_size)
        return self.model.net.encode_hair(hair)

    @torch.no_grad()
    def render(self, face_code: torch.Tensor, hair_code: torch.Tensor) -> torch.Tensor:
        ws = self.model.net.fuse(face_code, hair_code)
        return self.model.generator.synthesis(ws, noise_mode=self.model.noise_mode).float().clamp(-1, 1)

    @torch.no_grad()
    def transfer(self, face_images: torch.Tensor, hair_images: torch.Tensor, alpha_blend: bool = False,
                 feather: float = 1 / 32) -> torch.Tensor:
        """The faces of ``face_images`` with the hair of ``hair_images`` -> [N, 3, R, R].

        ``alpha_blend`` pastes the original inner face back over the result through a feathered face
        mask (the paper's remedy for identity loss on real photos); the output then has the face
        image's size.
        """
        if face_images.shape[0] != hair_images.shape[0]:
            raise ValueError(f"{face_images.shape[0]} face images but {hair_images.shape[0]} hair images")
        out = self.render(self.embed_face(face_images), self.embed_hair(hair_images))
        if not alpha_blend:
            return out
        face_images = face_images.to(self.device)
        size = face_images.shape[-1]
        out = F.interpolate(out, size=face_images.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
        alpha = _feather(self.masks(face_images)["face"], max(int(round(size * feather)), 0))
        return alpha * face_images + (1 - alpha) * out

    @torch.no_grad()
    def interpolate(self, face_images: torch.Tensor, hair_images: torch.Tensor, other_images: torch.Tensor,
                    steps: int, what: str = "hair") -> torch.Tensor:
        """Linear interpolation of the hair (or face) embedding in ``steps`` steps -> [steps, N, 3, R, R].

        what="hair": face fixed, hair goes from ``hair_images`` to ``other_images``.
        what="face": hair of ``hair_images`` fixed, face goes from ``face_images`` to ``other_images``.
        """
        if steps < 2:
            raise ValueError(f"interpolation needs steps >= 2, got {steps}")
        face, hair = self.embed_face(face_images), self.embed_hair(hair_images)
        if what == "hair":
            start, end = hair, self.embed_hair(other_images)
        elif what == "face":
            start, end = face, self.embed_face(other_images)
        else:
            raise ValueError(f"what must be 'hair' or 'face', got {what!r}")
        frames = []
        for t in torch.linspace(0, 1, steps).tolist():
            mix = torch.lerp(start, end, t)
            frames.append(self.render(mix, hair) if what == "face" else self.render(face, mix))
        return torch.stack(frames)

    @torch.no_grad()
    def manipulate_hair(self, face_images: torch.Tensor, hair_images: torch.Tensor, direction,
                        strengths: Sequence[float]) -> torch.Tensor:
        """Move the hair embedding along ``direction`` by each strength -> [len(strengths), N, 3, R, R].

        ``direction``: a ``semedit.directions.io.Direction`` (or a tensor) over the hair embedding: a
        [w_dim] vector added to the entries in ``direction.layers`` (all if None), or a "wplus" vector
        [len(layers) * w_dim].
        """
        face, hair = self.embed_face(face_images), self.embed_hair(hair_images)
        step = direction_in_embedding(direction, hair.shape[1], hair.shape[2]).to(hair)
        return torch.stack([self.render(face, hair + s * step) for s in strengths])


def direction_in_embedding(direction, num_ws: int, w_dim: int) -> torch.Tensor:
    """A direction (``Direction`` or tensor) as a step [num_ws, w_dim] in the hair-embedding space."""
    vector = getattr(direction, "vector", direction)
    layers = getattr(direction, "layers", None)
    vector = torch.as_tensor(vector, dtype=torch.float32).flatten()
    layers = list(range(num_ws)) if layers is None else list(layers)
    if any(not 0 <= i < num_ws for i in layers):
        raise ValueError(f"direction layers {layers} exceed the embedding's {num_ws} entries")
    step = torch.zeros(num_ws, w_dim)
    if vector.numel() == w_dim:
        step[layers] = vector
    elif vector.numel() == len(layers) * w_dim:
        step[layers] = vector.view(len(layers), w_dim)
    else:
        raise ValueError(f"direction has {vector.numel()} entries; the hair embedding needs {w_dim} (one W vector) "
                         f"or {len(layers)} x {w_dim} (its layers)")
    return step


def hair_pca_directions(embeddings: torch.Tensor, num_components: int) -> tuple[list, torch.Tensor]:
    """GANSpace-style PCA of hair embeddings [N, num_ws, w_dim] -> (directions, explained variance ratio).

    Each direction is a unit "wplus" ``Direction`` over all entries, scaled in use by the component's
    standard deviation (``meta["std"]``), so strength 1 means one standard deviation of the data.
    """
    from semedit.directions.io import Direction

    n, num_ws, w_dim = embeddings.shape
    if num_components < 1 or num_components > min(n, num_ws * w_dim):
        raise ValueError(f"num_components must be in 1..{min(n, num_ws * w_dim)}, got {num_components}")
    flat = embeddings.reshape(n, -1).double()
    centered = flat - flat.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    var = s ** 2 / max(n - 1, 1)
    ratio = (var / var.sum())[:num_components].float()
    directions = [
        Direction.from_vector(vh[i].float(), space="wplus", layers=list(range(num_ws)),
                              meta={"method": "pca", "embedding": "hair", "component": i,
                                    "std": float(var[i].sqrt()), "explained_variance_ratio": float(ratio[i]),
                                    "samples": n})
        for i in range(num_components)
    ]
    return directions, ratio


def hair_classifier_direction(embeddings: torch.Tensor, scores: torch.Tensor, fraction: float = 0.1,
                              steps: int = 200, weight_decay: float = 1e-2):
    """InterFaceGAN-style direction in the hair-embedding space: the unit normal of a logistic
    regression separating the top and bottom ``fraction`` of ``scores`` (e.g. a hair-length scorer)."""
    from semedit.directions.io import Direction
    from semedit.directions.module import select_extremes

    n, num_ws, w_dim = embeddings.shape
    low, high = select_extremes(scores.detach().cpu().numpy(), fraction)
    x = embeddings.reshape(n, -1).float()[torch.as_tensor(np.concatenate([low, high]))]
    y = torch.cat([torch.zeros(len(low)), torch.ones(len(high))])
    # Centred but not whitened: whitening would turn the normal towards low-variance entries, where a
    # step of the same length changes the image far more than along the data's own spread.
    xs = x - x.mean(0)
    xs = xs / xs.norm(dim=1).mean().clamp_min(1e-12)
    w = torch.zeros(xs.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(xs @ w + b, y) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        accuracy = float((((xs @ w + b) > 0).float() == y).float().mean())
        normal = w.detach()
    return Direction.from_vector(normal, space="wplus", layers=list(range(num_ws)),
                                 meta={"method": "logistic", "embedding": "hair", "fraction": fraction,
                                       "samples": n, "train_accuracy": accuracy})
