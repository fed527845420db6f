"""Attribute scorers: a batch of synthesised samples -> one score per sample.

A scorer is called with the datamodule's batch dict (``index`` [N], ``z`` [N, z_dim], ``ws`` [N, num_ws,
w_dim] and, when ``needs_images``, ``image`` [N, 3, R, R] in [-1, 1]) and returns float [N] on the batch's
device. A score that cannot be computed (no face found) is NaN; the direction classifier drops those.

Scorers (``ScorerConfig.name``):
- ``centroid_x``: horizontal centre of mass of image brightness in [-1, 1]; needs no weights, so the
  whole direction pipeline runs on a random tiny generator.
- ``landmarks_yaw``: yaw from 68 landmarks, the nose tip's offset from the jaw line's midpoint.
- ``parsing_yaw``: yaw from a face parsing, the nose's offset from the middle of the skin region.
- ``torch``: a user classifier, ``module: "package.module:factory"`` building an ``nn.Module`` (+ optional
  ``weights``, a safetensors file or a state dict read with ``weights_only=True``).
- ``onnx``: a user classifier as an ONNX file (``weights``), run by onnxruntime.
- ``file``: precomputed scores, ``path`` to a ``.npy`` [M] (score of index i = row i) or a ``.npz`` with
  arrays ``index`` and ``score``.
- ``projection``: ``w · v`` (or ``z · v``) for a unit vector v from a direction file (``path``) or drawn
  from ``vector_seed``; a known ground truth for testing the classifier.
- ``hair_lightness``, ``hair_hue``, ``hair_area``, ``hair_length``: hair attributes measured in the hair
  mask of a region splitter (``regions``, default ellipse; ``weights``: its model), see
  ``semedit.data.hair_scores``. Used by ``semedit train hair-direction``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from semedit.config import ConfigError, check
from semedit.data.hair_scores import HAIR_ATTRIBUTES, hair_attribute
from semedit.edits import load_direction
from semedit.perception.landmarks import load_landmarker
from semedit.perception.parsing import load_face_parser
from semedit.perception.regions import REGION_SPLITTERS, make_region_splitter
from semedit.registry import registrar
from semedit.weights import load_state_dict_strict, load_torch_state_dict, resolve_weights

# name -> builder(cfg, device); filled by @register_scorer below.
SCORERS: dict[str, Callable[[Any, Any], Scorer]] = {}


class ScorerError(ConfigError):
    """A scorer is misconfigured or its inputs are missing."""


@dataclass
class ScorerConfig:
    name: Optional[str] = None  # None: no scores; else one of SCORERS
    weights: Optional[str] = None  # model file or weights-registry name (landmarks, parsing, torch, onnx)
    module: Optional[str] = None  # name=torch: "package.module:factory" returning an nn.Module
    path: Optional[str] = None  # name=file: score file; name=projection: direction file
    output_index: int = 0  # which output column of a user classifier is the score
    input_size: Optional[int] = None  # resize images to this size before a user classifier (None: as is)
    input_range: str = "-1,1"  # a user classifier's input convention: "-1,1" | "0,1" | "imagenet"
    space: str = "w"  # name=projection: project "w" (ws[:, 0]) or "z"
    vector_seed: int = 0  # name=projection without path: v = a random unit vector from this seed
    # hair_*: the region splitter whose hair mask is measured (None: ellipse; hair-direction: the hair
    # model's), its weights in `weights`; hue_angle (degrees in CIELAB a*b*) of hair_hue; background_delta:
    # pixels within this Delta E of the border colour are background, not hair (0: keep the whole mask).
    regions: Optional[str] = None
    hue_angle: float = 45.0
    background_delta: float = 10.0

    def validate(self, prefix: str = "") -> None:
        if self.name is None:
            return
        check(self.name in SCORERS, f"{prefix}name", "null or one of " + ", ".join(sorted(SCORERS)), self.name)
        # An option the chosen scorer does not read would be ignored without a word: refuse it instead.
        uses = SCORER_OPTIONS[self.name]
        for key in OPTIONAL_SCORER_FIELDS:
            if getattr(self, key) is not None and key not in uses:
                raise ConfigError(f"{prefix}{key}={getattr(self, key)!r} is not used by scorer '{self.name}' "
                                  f"(it reads {', '.join(f'{prefix}{k}' for k in uses) or 'no options'}); "
                                  f"remove it, or choose a scorer that takes it")
        for key in ("weights", "module", "path"):
            check(key not in SCORER_REQUIRES.get(self.name, ()) or bool(getattr(self, key)), f"{prefix}{key}",
                  f"a value: scorer '{self.name}' needs it", getattr(self, key))
        check(self.input_range in INPUT_RANGES, f"{prefix}input_range", " | ".join(INPUT_RANGES), self.input_range)
        check(self.space in ("w", "z"), f"{prefix}space", "w or z", self.space)
        check(self.regions is None or self.regions in REGION_SPLITTERS, f"{prefix}regions",
              "null or one of " + ", ".join(REGION_SPLITTERS), self.regions)
        if self.name == "file":
            read_score_file(self.path)  # a bad file stops here, at config load


# Options of ScorerConfig that only some scorers read (None = unset).
OPTIONAL_SCORER_FIELDS = ("weights", "module", "path", "regions")
INPUT_RANGES = ("-1,1", "0,1", "imagenet")


class Scorer:
    """Base class: ``scorer(batch) -> [N]``; ``needs_images`` says whether ``batch['image']`` is used."""

    needs_images = True
    name = "scorer"

    def __call__(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def _images(self, batch: dict) -> torch.Tensor:
        if "image" not in batch:
            raise ScorerError(f"scorer '{self.name}' needs images, but the batch has none "
                              "(set data.synthesize_images=true)")
        return batch["image"]


# ----------------------------------------------------------------------------------------------------
# Pure functions (testable without any model).


def centroid_x(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> [N] horizontal centre of mass of brightness, -1 (left) .. 1 (right)."""
    brightness = ((images.float() + 1) / 2).clamp(min=0).mean(dim=1)  # [N, H, W]
    w = brightness.shape[-1]
    xs = torch.linspace(-1, 1, w, device=images.device)
    column_mass = brightness.sum(dim=1)  # [N, W]
    return (column_mass * xs).sum(dim=1) / column_mass.sum(dim=1).clamp(min=1e-8)


def yaw_from_landmarks(points: torch.Tensor) -> torch.Tensor:
    """68 iBUG landmarks [N, 68, 2] (x, y) -> [N] yaw proxy in about [-1, 1].

    The nose tip (point 30) moves towards the side the face turns to, while the jaw's end points (0 and
    16, at the ears) stay near the head's outline: the nose tip's offset from the jaw midpoint, divided by
    half the jaw width, is 0 for a frontal face and grows with yaw. Positive = nose towards image right.
    """
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ScorerError(f"expected landmarks [N, 68, 2], got {list(points.shape)}")
    x = points[..., 0].float()
    half_width = (x[:, 16] - x[:, 0]).abs() / 2
    mid = (x[:, 16] + x[:, 0]) / 2
    yaw = (x[:, 30] - mid) / half_width.clamp(min=1e-6)
    return torch.where(half_width > 1e-6, yaw, torch.full_like(yaw, float("nan")))


# CelebAMask-HQ labels (BiSeNet face parser): 1 skin, 10 nose.
PARSING_SKIN, PARSING_NOSE = 1, 10


def yaw_from_parsing(labels: torch.Tensor) -> torch.Tensor:
    """Face parsing labels [N, H, W] (CelebAMask-HQ classes) -> [N] yaw proxy in about [-1, 1].

    The nose's centroid relative to the middle of the skin region's horizontal extent, divided by half that
    extent. NaN where there is no skin or no nose.
    """
    if labels.ndim != 3:
        raise ScorerError(f"expected parsing labels [N, H, W], got {list(labels.shape)}")
    n, h, w = labels.shape
    xs = torch.arange(w, device=labels.device, dtype=torch.float32).expand(n, h, w)
    skin = labels == PARSING_SKIN
    nose = labels == PARSING_NOSE
    big = torch.full_like(xs, float(w))
    left = torch.where(skin, xs, big).flatten(1).min(dim=1).values
    right = torch.where(skin, xs, -big).flatten(1).max(dim=1).values
    nose_count = nose.flatten(1).sum(dim=1)
    nose_x = (xs * nose).flatten(1).sum(dim=1) / nose_count.clamp(min=1)
    half = (right - left) / 2
    yaw = (nose_x - (left + right) / 2) / half.clamp(min=1e-6)
    ok = (nose_count > 0) & (skin.flatten(1).sum(dim=1) > 0) & (half > 0)
    return torch.where(ok, yaw, torch.full_like(yaw, float("nan")))


def random_unit_vector(dim: int, seed: int) -> torch.Tensor:
    """float32 [dim], unit norm, from np.random.RandomState(seed)."""
    v = torch.from_numpy(np.random.RandomState(seed).randn(dim)).to(torch.float32)
    return v / v.norm()


# ----------------------------------------------------------------------------------------------------
# Scorers.


class CentroidXScorer(Scorer):
    name = "centroid_x"

    def __call__(self, batch: dict) -> torch.Tensor:
        return centroid_x(self._images(batch))


class ProjectionScorer(Scorer):
    """Score = latent · v, v a unit vector in W (``ws[:, 0]``) or Z."""

    needs_images = False
    name = "projection"

    def __init__(self, vector: Optional[torch.Tensor] = None, space: str = "w", seed: int = 0):
        if space not in ("w", "z"):
            raise ScorerError(f"projection scorer space must be 'w' or 'z', got '{space}'")
        self.vector, self.space, self.seed = vector, space, seed

    def __call__(self, batch: dict) -> torch.Tensor:
        latent = batch["ws"][:, 0] if self.space == "w" else batch["z"]
        if self.vector is None:
            self.vector = random_unit_vector(latent.shape[1], self.seed)
        if self.vector.numel() != latent.shape[1]:
            raise ScorerError(f"projection vector has {self.vector.numel()} entries but {self.space} has "
                              f"{latent.shape[1]}")
        return latent.float() @ self.vector.to(latent.device, torch.float32)


class ScoreFileScorer(Scorer):
    """Precomputed scores looked up by sample index."""

    needs_images = False
    name = "file"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index, scores = read_score_file(self.path)
        order = np.argsort(index, kind="stable")
        self.index, self.scores = index[order], scores[order]

    def __call__(self, batch: dict) -> torch.Tensor:
        wanted = batch["index"].detach().cpu().numpy().astype(np.int64)
        pos = np.searchsorted(self.index, wanted).clip(max=len(self.index) - 1)
        missing = self.index[pos] != wanted
        if missing.any():
            raise ScorerError(f"score file {self.path} has no score for sample index {int(wanted[missing][0])}")
        return torch.from_numpy(self.scores[pos]).to(batch["index"].device, torch.float32)


def read_score_file(path: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(index int64 [M], score float64 [M]) of a score file: a .npy [M] of scores (index = row), or a .npz
    with arrays ``index`` and ``score``. Never unpickles: an array of Python objects is refused."""
    example = "a .npy of M numbers (the score of sample i in row i) or a .npz with arrays 'index' and 'score'"
    if not path:
        raise ScorerError(f"scorer 'file' needs data.scorer.path: {example}")
    path = Path(path)
    if not path.is_file():
        raise ScorerError(f"score file not found: {path} (data.scorer.path); expected {example}")
    if path.suffix not in (".npy", ".npz"):
        raise ScorerError(f"score file {path.name} must be .npy or .npz: {example}")
    try:
        if path.suffix == ".npy":
            scores = np.load(path, allow_pickle=False)
            index = np.arange(scores.size, dtype=np.int64)
        else:
            with np.load(path, allow_pickle=False) as data:
                if "index" not in data or "score" not in data:
                    raise ScorerError(f"{path} must hold arrays 'index' and 'score', found {list(data.keys())}")
                index, scores = data["index"], data["score"]
        if not (np.issubdtype(np.asarray(scores).dtype, np.number) and np.issubdtype(np.asarray(index).dtype, np.integer)):
            raise ValueError("not numeric")
        index = np.asarray(index).astype(np.int64).reshape(-1)
        scores = np.asarray(scores).astype(np.float64).reshape(-1)
    except ScorerError:
        raise
    except (ValueError, OSError, EOFError) as err:
        why = ("it holds Python objects (a pickle), which semedit never loads" if "allow_pickle" in str(err)
               else "it is not a readable array of numbers")
        raise ScorerError(f"score file {path}: {why}; expected {example}") from None
    if len(index) != len(scores):
        raise ScorerError(f"{path}: 'index' has {len(index)} entries but 'score' has {len(scores)}")
    return index, scores


def _prepare(images: torch.Tensor, size: Optional[int], input_range: str) -> torch.Tensor:
    x = images.float()
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if input_range == "-1,1":
        return x
    x = (x + 1) / 2
    if input_range == "0,1":
        return x
    if input_range == "imagenet":
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std
    raise ScorerError(f"input_range must be '-1,1', '0,1' or 'imagenet', got '{input_range}'")


def _column(output, index: int) -> torch.Tensor:
    output = torch.as_tensor(output).float()
    if output.ndim == 1:
        return output
    if output.ndim != 2 or not 0 <= index < output.shape[1]:
        raise ScorerError(f"classifier output of shape {list(output.shape)} has no column {index}")
    return output[:, index]


class TorchModuleScorer(Scorer):
    """A user torch classifier: images -> [N] or [N, C] (column ``output_index``)."""

    name = "torch"

    def __init__(self, module: torch.nn.Module, output_index: int = 0, input_size: Optional[int] = None,
                 input_range: str = "-1,1"):
        self.module = module.eval().requires_grad_(False)
        self.output_index, self.input_size, self.input_range = output_index, input_size, input_range

    @torch.no_grad()
    def __call__(self, batch: dict) -> torch.Tensor:
        images = self._images(batch)
        self.module.to(images.device)
        return _column(self.module(_prepare(images, self.input_size, self.input_range)), self.output_index)


class OnnxScorer(Scorer):
    """A user classifier in ONNX, run by onnxruntime (CUDA provider when the batch is on a GPU)."""

    name = "onnx"

    def __init__(self, path: str | Path, output_index: int = 0, input_size: Optional[int] = None,
                 input_range: str = "-1,1"):
        import onnxruntime as ort  # optional heavy dependency: only user ONNX classifiers need it

        self.path = Path(path)
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ScorerError(f"cannot load ONNX classifier {self.path}: {err}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.output_index, self.input_size, self.input_range = output_index, input_size, input_range

    def __call__(self, batch: dict) -> torch.Tensor:
        images = self._images(batch)
        x = _prepare(images, self.input_size, self.input_range).detach().cpu().numpy().astype(np.float32)
        output = self.session.run(None, {self.input_name: x})[0]
        return _column(torch.from_numpy(np.asarray(output)), self.output_index).to(images.device)


class LandmarksYawScorer(Scorer):
    name = "landmarks_yaw"

    def __init__(self, weights: Optional[str], device):
        self.landmarker = load_landmarker(weights, device=device) if weights else load_landmarker(device=device)

    @torch.no_grad()
    def __call__(self, batch: dict) -> torch.Tensor:
        images = self._images(batch)
        points = self.landmarker(images)
        if isinstance(points, tuple):  # (points, found) style outputs
            points = points[0]
        return yaw_from_landmarks(torch.as_tensor(points).to(images.device))


class ParsingYawScorer(Scorer):
    name = "parsing_yaw"

    def __init__(self, weights: Optional[str], device):
        self.parser = load_face_parser(weights, device=device) if weights else load_face_parser(device=device)

    @torch.no_grad()
    def __call__(self, batch: dict) -> torch.Tensor:
        images = self._images(batch)
        out = self.parser(images)
        labels = out.argmax(dim=1) if out.is_floating_point() and out.ndim == 4 else out
        return yaw_from_parsing(labels.long())


def _import_factory(spec: str) -> Callable[[], torch.nn.Module]:
    if not spec or ":" not in spec:
        raise ScorerError(f"scorer.module must look like 'package.module:factory', got {spec!r}")
    module_name, attr = spec.split(":", 1)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ScorerError(f"cannot import scorer.module {spec!r}: {err}") from err


def _load_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = load_torch_state_dict(path, "scorer classifier weights")  # never runs pickled code
    return state.get("state_dict", state)


_register_builder = registrar(SCORERS, "scorer")
SCORER_OPTIONS: dict[str, tuple[str, ...]] = {}  # scorer name -> the optional fields it reads
SCORER_REQUIRES: dict[str, tuple[str, ...]] = {}  # scorer name -> the optional fields it cannot do without


def register_scorer(name: str, uses: tuple[str, ...] = (), requires: tuple[str, ...] = ()):
    """``@register_scorer("name", uses=(...))`` makes ``builder(cfg, device) -> Scorer`` the scorer called
    ``name`` in configs; ``uses`` lists the optional ScorerConfig fields it reads (any other one set is
    refused at config load), ``requires`` those it needs."""
    SCORER_OPTIONS[name] = tuple(uses)
    SCORER_REQUIRES[name] = tuple(requires)
    return _register_builder(name)


@register_scorer("centroid_x")
def _centroid_x(cfg: ScorerConfig, device) -> Scorer:
    return CentroidXScorer()


@register_scorer("landmarks_yaw", uses=("weights",))
def _landmarks_yaw(cfg: ScorerConfig, device) -> Scorer:
    return LandmarksYawScorer(cfg.weights, device)


@register_scorer("parsing_yaw", uses=("weights",))
def _parsing_yaw(cfg: ScorerConfig, device) -> Scorer:
    return ParsingYawScorer(cfg.weights, device)


@register_scorer("torch", uses=("module", "weights"), requires=("module",))
def _torch_module(cfg: ScorerConfig, device) -> Scorer:
    module = _import_factory(cfg.module)()
    if cfg.weights:
        load_state_dict_strict(module, _load_state_dict(resolve_weights(cfg.weights)),
                               f"data.scorer.weights {cfg.weights} (for {cfg.module})")
    return TorchModuleScorer(module, cfg.output_index, cfg.input_size, cfg.input_range)


@register_scorer("onnx", uses=("weights",), requires=("weights",))
def _onnx(cfg: ScorerConfig, device) -> Scorer:
    if not cfg.weights:
        raise ScorerError("scorer 'onnx' needs scorer.weights (an .onnx file)")
    return OnnxScorer(resolve_weights(cfg.weights), cfg.output_index, cfg.input_size, cfg.input_range)


@register_scorer("file", uses=("path",), requires=("path",))
def _score_file(cfg: ScorerConfig, device) -> Scorer:
    if not cfg.path:
        raise ScorerError("scorer 'file' needs scorer.path (a .npy or .npz score file)")
    return ScoreFileScorer(cfg.path)


@register_scorer("projection", uses=("path",))
def _projection(cfg: ScorerConfig, device) -> Scorer:
    vector = None
    if cfg.path:
        direction = load_direction(cfg.path)
        if direction.space != cfg.space:
            raise ScorerError(f"projection scorer: direction {cfg.path} is in '{direction.space}', "
                              f"scorer.space is '{cfg.space}'")
        vector = direction.vector
    return ProjectionScorer(vector, cfg.space, cfg.vector_seed)


class HairAttributeScorer(Scorer):
    """A hair attribute (``hair_scores.HAIR_ATTRIBUTES``) in the hair mask of a region splitter.

    With a face parser (regions=parsing) the parser's own hair class is the mask; the ellipse and hull
    splitters give "everything outside the inner face", from which the background is removed by colour.
    """

    def __init__(self, attribute: str, regions: str = "ellipse", weights: Optional[str] = None, device="cpu",
                 hue_angle: float = 45.0, background_delta: float = 10.0):
        if attribute not in HAIR_ATTRIBUTES:
            raise ScorerError(f"unknown hair attribute '{attribute}'; choose one of {', '.join(HAIR_ATTRIBUTES)}")
        self.name, self.attribute = attribute, attribute
        kwargs = {"weights": weights} if weights else {}
        self.splitter = make_region_splitter(regions, device=device, **kwargs)
        self.hue_angle, self.background_delta = float(hue_angle), float(background_delta)

    @torch.no_grad()
    def hair_mask(self, images: torch.Tensor) -> torch.Tensor:
        parser = getattr(self.splitter, "parser", None)
        if parser is not None and hasattr(parser, "masks"):
            return parser.masks(images)["hair"].float()
        return self.splitter(images)["hair"].float()

    @torch.no_grad()
    def __call__(self, batch: dict) -> torch.Tensor:
        images = self._images(batch).float()
        return hair_attribute(images, self.hair_mask(images).to(images.device), self.attribute,
                              self.hue_angle, self.background_delta)


def _hair_builder(attribute: str):
    def build(cfg: ScorerConfig, device) -> Scorer:
        return HairAttributeScorer(attribute, cfg.regions or "ellipse", cfg.weights, device, cfg.hue_angle,
                                   cfg.background_delta)

    return build


for _attribute in HAIR_ATTRIBUTES:
    register_scorer(_attribute, uses=("regions", "weights"))(_hair_builder(_attribute))


def build_scorer(cfg: ScorerConfig, device="cpu") -> Optional[Scorer]:
    """The scorer described by ``cfg`` (None when ``cfg.name`` is None)."""
    if cfg.name is None:
        return None
    if cfg.name not in SCORERS:
        raise ScorerError(f"unknown scorer '{cfg.name}'; valid scorers: {', '.join(sorted(SCORERS))}")
    return SCORERS[cfg.name](cfg, device)
