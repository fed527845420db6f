"""Hair-transfer tab: plain functions (no Gradio) so they can be tested and reused.

``prepare_pair`` aligns the two photos and embeds them once; ``render_hair`` then renders any mix of
the face's own hair and the transferred hair (the interpolation slider), moved along hair directions
(the direction sliders), with optional alpha blending, from the cached embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from semedit.demo.framing import frame_face
from semedit.demo.limits import UploadLimits, read_upload
from semedit.demo.models import DemoModels
from semedit.edits import wplus_offset
from semedit.images import from_uint8, to_uint8
from semedit.perception.paste_back import CropGeometry, paste_back

__all__ = ["HairPair", "prepare_pair", "render_hair", "paste_into_photo", "region_overlay", "DISPLAY_SIZE"]

FACE_COLOUR = (60, 180, 75)  # green, as the first chunk colours of inversion.io
HAIR_COLOUR = (230, 25, 75)  # red
DISPLAY_SIZE = 256  # semedit's choice: crops are aligned at least this large so they are legible in the page


@dataclass
class HairPair:
    """Two aligned photos and their embeddings (kept per browser session)."""

    face: torch.Tensor  # [1, 3, R, R] in [-1, 1], R = the hair model's generator resolution
    hair: torch.Tensor
    face_crop: np.ndarray  # uint8 [S, S, 3] as shown
    hair_crop: np.ndarray
    face_code: torch.Tensor  # [1, num_ws, w_dim]
    own_hair_code: torch.Tensor  # the face image's own hair
    new_hair_code: torch.Tensor  # the hair image's hair
    notes: list[str]
    face_photo: Optional[np.ndarray] = None  # the face photo as uploaded (read_upload), for pasting back
    face_geometry: Optional[CropGeometry] = None  # where the face crop lies in it (None: the upload is the crop)


def _aligned_tensor(crop: np.ndarray, resolution: int) -> torch.Tensor:
    x = from_uint8(crop)
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="area" if x.shape[-1] > resolution else "bilinear")
    return x


def prepare_pair(models: DemoModels, face_path, hair_path, limits: UploadLimits,
                 aligned: bool = False) -> tuple[HairPair, np.ndarray, np.ndarray]:
    """Read, align and embed a face photo and a hair photo.

    Returns (pair, face-image overlay of its face region, hair-image overlay of its hair region).
    """
    tool = models.hair
    res = tool.generator.img_resolution
    size = max(res, DISPLAY_SIZE)
    notes, crops, framings, photos = [], [], [], []
    for path, what in ((face_path, "face photo"), (hair_path, "hair photo")):
        photo = read_upload(path, limits, what)
        framed = frame_face(photo, size, source=_name(path), aligned=aligned)
        notes.append(f"{what}: {framed.method}")
        crops.append(framed.image)
        framings.append(framed)
        photos.append(photo)
    face, hair = (_aligned_tensor(c, res).to(tool.device) for c in crops)
    pair = HairPair(face, hair, crops[0], crops[1], tool.embed_face(face), tool.embed_hair(face),
                    tool.embed_hair(hair), notes, photos[0] if framings[0].geometry else None, framings[0].geometry)
    # Shown on the crops as shown: the face region of the face photo, the hair region of the hair photo.
    face_view = region_overlay(crops[0], tool.masks(face)["face"], FACE_COLOUR)
    hair_view = region_overlay(crops[1], tool.masks(hair)["hair"], HAIR_COLOUR)
    return pair, face_view, hair_view


def region_overlay(crop: np.ndarray, mask: torch.Tensor, colour: Sequence[int], opacity: float = 0.5) -> np.ndarray:
    """uint8 crop [S, S, 3] with a soft region mask [1, 1, h, w] tinted in ``colour`` (RGB 0-255)."""
    size = crop.shape[:2]
    m = F.interpolate(mask.detach().float().cpu(), size=size, mode="bilinear", align_corners=False)[0, 0]
    m = (opacity * m.clamp(0, 1)).numpy()[..., None]
    return np.clip(crop * (1 - m) + np.asarray(colour, dtype=np.float32) * m, 0, 255).round().astype(np.uint8)


def render_hair(models: DemoModels, pair: HairPair, mix: float = 1.0, strengths: Sequence[float] = (),
                alpha_blend: bool = False) -> np.ndarray:
    """The face of ``pair`` with hair ``lerp(own, transferred, mix)`` moved along the hair directions.

    ``strengths[i]`` is in the unit of direction i (one std for PCA directions). Returns uint8 [R, R, 3]
    (the face crop's size with alpha blending).
    """
    tool = models.hair
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"the interpolation must be in [0, 1], got {mix}")
    if len(strengths) > len(models.hair_directions):
        raise ValueError(f"{len(strengths)} strengths for {len(models.hair_directions)} hair directions")
    code = torch.lerp(pair.own_hair_code, pair.new_hair_code, float(mix))
    num_ws, w_dim = code.shape[1:]
    for named, s in zip(models.hair_directions, strengths):
        if s:
            code = code + float(s) * named.scale * wplus_offset(named.direction, num_ws, w_dim).to(code)
    out = tool.render(pair.face_code, code)
    if alpha_blend:
        out = tool.paste_face(out, from_uint8(pair.face_crop).to(tool.device))
    return to_uint8(out)[0]


def paste_into_photo(models: DemoModels, pair: HairPair, result: np.ndarray) -> Optional[np.ndarray]:
    """The result (uint8 crop) pasted back into the uploaded face photo at its own size: only the face and hair
    regions of the crop and of the result change. None when the upload was an aligned crop already."""
    if pair.face_geometry is None or pair.face_photo is None:
        return None
    tool = models.hair
    generated = _aligned_tensor(result, pair.face.shape[-1]).to(tool.device)
    before, after = tool.masks(pair.face), tool.masks(generated)
    region = torch.maximum(before["face"] + before["hair"], after["face"] + after["hair"]).clamp(0, 1)
    return paste_back(pair.face_photo, pair.face_geometry, result, region[0, 0].cpu().numpy())


def _name(path) -> str:
    return Path(str(path)).name if path else "photo"
