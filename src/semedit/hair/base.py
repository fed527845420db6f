"""The HairTransferMethod family: one interface for hair-transfer models, reached through a registry.

A ``HairTransferMethod`` takes FFHQ-aligned face and hair images [N, 3, H, W] in [-1, 1] and returns the
face with the other image's hair, at its generator's resolution; it says which region it treats as the face
and which as the hair (``masks``), and renders with ``generator`` (eval-identity renders its gallery with
it). Methods with a latent hair embedding (``has_embeddings``) also interpolate and edit it. eval-identity,
eval-hair, the demo and the `semedit transfer` / `hair-*` commands use only this interface.

A model file names its method: ``load_hair_method(path)`` reads it once, weights-only, and asks each
registered method whether the file is one of its own (``reads``). Adding a method is one module with one
``@register_hair_method(...)`` (see ``fg2021/``, the first member).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from semedit.errors import CorruptWeightsError
from semedit.weights import load_weights_only, resolve_weights

__all__ = ["HairTransferMethod", "HairMethodEntry", "HAIR_METHODS", "register_hair_method", "load_hair_method",
           "HairModelError", "MethodOptions"]


class HairModelError(CorruptWeightsError):
    """The file is not a model of any registered hair-transfer method (or is damaged)."""


@dataclass(frozen=True)
class MethodOptions:
    """How a loaded method runs: its face/hair split, its synthesis noise and where."""

    regions: Optional[str] = None  # region splitter; None: the model's own
    region_weights: Optional[str] = None  # the splitter's weights (hull, parsing)
    noise_mode: Optional[str] = None  # "const" | "random" | "none"; None: the model's own
    noise_seed: int = 0  # random noise is drawn from this seed at every render (reproducible)
    device: str = "cpu"


class HairTransferMethod(ABC):
    """A loaded hair-transfer model (see the module docstring)."""

    name: str = "hair-transfer"
    source: str = ""  # what was loaded, for reports
    generator: torch.nn.Module
    noise_mode: str = "const"
    regions: str = ""  # the face/hair region strategy in use (the model's own unless MethodOptions chose one)
    device: torch.device = torch.device("cpu")
    has_embeddings: bool = False  # embed_face / embed_hair / render / interpolate / manipulate_hair
    # Ways to bring photos to the model: "semedit" (aligned at the generator's resolution) and any of its own.
    preprocess_modes: tuple[str, ...] = ("semedit",)

    def input_size(self, preprocess: str = "semedit") -> int:
        """The size aligned inputs should have for ``preprocess``."""
        return int(self.generator.img_resolution)

    @abstractmethod
    def transfer(self, face_images: torch.Tensor, hair_images: torch.Tensor, alpha_blend: bool = False,
                 noise_seed: Optional[int] = None, preprocess: str = "semedit") -> torch.Tensor:
        """The faces of ``face_images`` with the hair of ``hair_images`` -> [N, 3, R, R] in [-1, 1]; with
        ``alpha_blend`` the original inner face is pasted back (output at the face images' size).
        ``noise_seed`` overrides the method's noise seed for this call; ``preprocess`` is one of
        ``preprocess_modes``."""

    def to(self, device: str | torch.device) -> HairTransferMethod:
        """Move the method's networks to ``device``."""
        raise NotImplementedError

    @abstractmethod
    def masks(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"face": [N, 1, H, W], "hair": [N, 1, H, W]} in [0, 1]: the regions the method takes from each image."""

    def embed_face(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"the {self.name} hair-transfer method has no face embedding")

    def embed_hair(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"the {self.name} hair-transfer method has no hair embedding")

    def render(self, face_code: torch.Tensor, hair_code: torch.Tensor, noise_seed: Optional[int] = None) -> torch.Tensor:
        raise NotImplementedError(f"the {self.name} hair-transfer method has no embeddings to render")

    def paste_face(self, rendered: torch.Tensor, face_images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"the {self.name} hair-transfer method does not blend faces back")

    def interpolate(self, face_images: torch.Tensor, hair_images: torch.Tensor, other_images: torch.Tensor,
                    steps: int, what: str = "hair", preprocess: str = "semedit") -> torch.Tensor:
        raise NotImplementedError(f"the {self.name} hair-transfer method does not interpolate")

    def manipulate_hair(self, face_images: torch.Tensor, hair_images: torch.Tensor, direction,
                        strengths: Sequence[float], preprocess: str = "semedit") -> torch.Tensor:
        raise NotImplementedError(f"the {self.name} hair-transfer method has no hair embedding to edit")


@dataclass(frozen=True)
class HairMethodEntry:
    """A registered hair-transfer method."""

    name: str
    reads: Callable[[Any], bool]  # (checkpoint object) -> whether the file is one of this method's models
    load: Callable[[Any, Path, MethodOptions, Optional[torch.nn.Module]], HairTransferMethod]
    files: str  # which files it reads, for the message when none claims a file


HAIR_METHODS: dict[str, HairMethodEntry] = {}


def register_hair_method(name: str, *, reads: Callable[[Any], bool], files: str):
    """``@register_hair_method("name", reads=..., files=...)`` on ``load(obj, path, options, generator) ->
    HairTransferMethod``: ``obj`` is the file as the weights-only loader read it."""

    def add(load):
        if name in HAIR_METHODS:
            raise ValueError(f"hair-transfer method '{name}' is registered twice")
        HAIR_METHODS[name] = HairMethodEntry(name, reads, load, files)
        return load

    return add


def load_hair_method(spec: str | Path, options: MethodOptions | None = None,
                     generator: Optional[torch.nn.Module] = None) -> HairTransferMethod:
    """The hair-transfer method of a model file (a path, or a weights-registry name such as hairstyle-fg2021).

    The file is read once with the weights-only loader (nothing in it runs); the first registered method that
    ``reads`` it loads it. ``generator`` replaces the generator the model would bring or rebuild.
    """
    path = Path(resolve_weights(spec))
    where = "; ".join(f"{e.name}: {e.files}" for e in HAIR_METHODS.values())
    try:
        obj = load_weights_only(path, "hair model")
    except CorruptWeightsError as err:
        raise HairModelError(f"{err} Expected a hair-transfer model ({where})") from None
    for entry in HAIR_METHODS.values():
        if entry.reads(obj):
            return entry.load(obj, path, options or MethodOptions(), generator)
    raise HairModelError(f"{path} is not a model of any hair-transfer method semedit knows ({where})")
