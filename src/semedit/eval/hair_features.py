"""The feature extractors of eval-hair (FID, FID_CLIP) and the image preparation they share.

HairFastGAN's metric script (``scripts/fid_metric.py`` at 49e9801) computes FID with torchmetrics'
``FrechetInceptionDistance`` and its default TF-FID Inception (line 32) and FID_CLIP with the same class and a
CLIP ViT-B/32 image encoder as the feature extractor (line 30, ``models/Encoders.py`` lines 140-160), both on
uint8 images (``normalize=False``). Every image, real or generated, is first resized to 299 x 299 with PIL LANCZOS
(``utils/train.py`` line 105); ``metric_images`` does the same (converting to RGB first, which HairFast does not).

An extractor spec is a weights-registry name or a path (``inception-fid``: semedit.perception.inception;
``clip-vit-b32``: semedit.perception.clip), or ``random[:<seed>[:<dim>]]``: a small random convolutional network
taking the same uint8 input, so that tests and the tiny default run the same code path without weights. Its
numbers only exercise the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from semedit.eval.hair_config import parse_random_extractor
from semedit.images import to_uint8
from semedit.perception.clip import load_clip_vit_b32
from semedit.perception.inception import INCEPTION_WEIGHTS, load_inception_fid
from semedit.weights import resolve_weights

__all__ = ["METRIC_SIZE", "RandomFeatureExtractor", "Extractor", "load_extractor", "extractor_label",
           "metric_images", "check_extractor_files"]

METRIC_SIZE = 299  # HairFast utils/train.py line 105: Image.open(...).resize((299, 299), resample=Image.LANCZOS)


class RandomFeatureExtractor(nn.Module):
    """A random-weight stand-in for Inception / CLIP: uint8 images [N, 3, H, W] -> [N, dim] float32.

    Average-pooled to 64 x 64, two random convolutions with ReLU, a 4 x 4 average pool and a random linear map
    (its weights x10).
    Deterministic from ``seed`` (the global random state is left untouched).
    """

    def __init__(self, seed: int = 0, dim: int = 64):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.fc = nn.Linear(32 * 16, dim)
        # x10: the pooled random features vary little between images; scaled so that FIDs of image sets are of
        # order 1, readable in the table (semedit's choice; the stand-in's numbers mean nothing).
        self.fc.weight.data.mul_(10)
        self.fc.bias.data.mul_(10)
        self.num_features = int(dim)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> RandomFeatureExtractor:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"feature extractors take uint8 RGB batches [N, 3, H, W], got {images.dtype} "
                             f"{tuple(images.shape)}")
        x = F.adaptive_avg_pool2d(images.float() / 127.5 - 1, (64, 64))
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, (4, 4)).flatten(1)).float()


@dataclass
class Extractor:
    """A loaded extractor: the module, the name its Fréchet statistics carry (never mixed with another's) and
    whether it has random weights."""

    module: nn.Module
    name: str
    random: bool

    @property
    def dim(self) -> int:
        return int(self.module.num_features)


def load_extractor(spec: str, role: str, device: str | torch.device = "cpu", clip_preprocess: str = "hairfast",
                   clip_precision: str = "auto") -> Extractor:
    """The ``role`` ("fid" or "clip") extractor of a spec (see the module docstring) on ``device``.

    Raises MissingWeightsError (names the file, its source and where to put it) when the weights are absent.
    """
    device = torch.device(device)
    parsed = parse_random_extractor(spec)
    if parsed is not None:
        seed, dim = parsed
        return Extractor(RandomFeatureExtractor(seed, dim).to(device), f"random:{seed}:{dim}", True)
    if role == "fid":
        return Extractor(load_inception_fid(spec, device=device), INCEPTION_WEIGHTS, False)
    if role == "clip":
        module = load_clip_vit_b32(spec, preprocess=clip_preprocess, precision=clip_precision, device=device)
        precision = "fp16" if module.tower.dtype == torch.float16 else "fp32"
        return Extractor(module, f"clip-vit-b32/{clip_preprocess}/{precision}", False)
    raise ValueError(f"unknown extractor role {role!r}; choose fid or clip")


def extractor_label(spec: str, role: str, stats_name: str) -> str:
    """How the table names an extractor, from its spec and the name its statistics carry."""
    if parse_random_extractor(spec) is not None:
        return f"a random-weight stand-in for the {'Inception' if role == 'fid' else 'CLIP'} extractor ({stats_name})"
    if role == "fid":
        return "the TF-FID InceptionV3 (torch-fidelity's weights-inception-2015-12-05-6726825d.pth, 2048-d)"
    return f"CLIP ViT-B/32 image features ({stats_name}, 512-d, not L2-normalised)"


def check_extractor_files(spec: str) -> None:
    """Raise MissingWeightsError when a (non-random) extractor's file is absent, without loading it."""
    if parse_random_extractor(spec) is None:
        resolve_weights(spec)


def metric_images(images: torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
    """Images -> uint8 [N, 3, 299, 299], resized with PIL LANCZOS as HairFast does (utils/train.py line 105).

    ``images``: a float tensor [N, 3, H, W] in [-1, 1] (quantised to 8 bits first, as a saved PNG would be) or
    uint8 RGB arrays [H, W, 3].
    """
    arrays = list(to_uint8(images)) if isinstance(images, torch.Tensor) else [np.asarray(a) for a in images]
    out = []
    for arr in arrays:
        im = Image.fromarray(np.ascontiguousarray(arr[..., :3]))
        if im.size != (METRIC_SIZE, METRIC_SIZE):
            im = im.resize((METRIC_SIZE, METRIC_SIZE), resample=Image.LANCZOS)
        out.append(torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1))
    if not out:
        return torch.zeros(0, 3, METRIC_SIZE, METRIC_SIZE, dtype=torch.uint8)
    return torch.stack(out)
