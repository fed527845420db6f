"""Paste an edited FFHQ crop back into the user's photo (``--paste-back``).

A face of a photo is edited in its FFHQ-aligned crop (:func:`semedit.perception.faces.align_photo`); this
module maps the generated crop back through the inverse of the alignment transform into the photo at the
photo's own resolution and blends it in with a feathered mask over the region the method changed, so that
every other pixel is the user's original.

Geometry (:class:`CropGeometry`)
--------------------------------
``align_ffhq`` (semedit/perception/landmarks.py lines 189-239) is NVlabs/ffhq-dataset's
``recreate_aligned_images`` (download_ffhq.py lines 338-372 at commit 4826aa6): shrink (lines 338-344), crop
(346-352), reflect-pad with blur (354-367), then ``PIL.Image.QUAD`` at ``transform_size`` with the data
``quad + 0.5`` (370) and an antialiased resize to the output size (371-372).

- ``AlignedFace.quad`` is in the ORIGINAL photo's pixel coordinates: ``align_photo`` (faces.py line 500) calls
  ``ffhq_quad(points)`` on the photo's landmarks and keeps that array; ``align_ffhq`` computes its own copy
  (landmarks.py line 199) and shrinks/crops/pads only that copy (lines 206, 216, 233).
- Crop and pad move the quad and the image by the same integers, so they cancel. PIL's QUAD transform maps
  output corner coordinates (pixel ``i`` spans ``[i, i + 1]``) linearly onto the 4 source corners; for the
  FFHQ quad (a square) that map is affine. The ``+ 0.5`` turns the quad from pixel-centre coordinates (dlib's
  landmarks: pixel ``i`` centred at ``i``) into PIL's corner coordinates, and the final resize maps corners
  onto corners. Hence, in pixel-centre coordinates, the crop pixel ``(x, y)`` of a crop of side ``n`` sits at
  ``quad[0] + (quad[3] - quad[0]) (x + 0.5) / n + (quad[1] - quad[0]) (y + 0.5) / n`` of the photo: the
  quad's corners are the crop's outer corners. This is the inverse of ``faces.align_photo``'s landmark map
  ``quad_to_aligned(points + 0.5, quad + 0.5, size) - 0.5`` (faces.py line 504).
- Shrink (only for faces whose quad is at least 4x the aligned size, e.g. a 4,096 px face aligned at 1024):
  the photo is resized to ``rint(W / shrink) x rint(H / shrink)`` and the quad divided by ``shrink``
  (download_ffhq.py lines 341-343). In corner coordinates the resize scales by ``rint(W / shrink) / W``, not
  ``1 / shrink``, and the ``+ 0.5`` is applied after the division; :class:`CropGeometry` carries the exact
  map back (taking ``AlignedFace.quad`` as the crop's corners would be off by ``(shrink - 1) / 2`` photo
  pixels plus the rounding's scale error: 1.0 and 2.0 px measured at shrink 4 on a 1303 x 1501 photo; the
  landmark map of ``align_photo`` ignores this).

Conventions: points are ``(x, y)`` float in pixel-centre coordinates (pixel ``i`` centred at ``i``), of the
photo or of a crop of side ``n`` (the aligned size ``S``, or any resolution ``S'`` of a generated crop: the
geometry scales with ``n``). Photos and crops are uint8 RGB ``[H, W, 3]``; masks float32 in ``[0, 1]``.

The padded region
-----------------
Where the quad reaches beyond the photo, align_ffhq pads (download_ffhq.py lines 357-366): reflect padding,
a Gaussian blur (sigma 0.02 qsize) that fades in over the outer third of the padding and continues *into the
photo* over ``pad / 3`` pixels (``clip(3 mask + 1, 0, 1)`` of line 364 is positive for ``mask > -1/3``), and a
fade to the median colour. :meth:`CropGeometry.padding_weight` is that blur weight in photo coordinates,
pushed outwards by the resampling footprint (the Lanczos-3 resize from ``4 S`` to ``S`` reads 3 crop pixels
around a point, the bilinear QUAD sampling one more source pixel). The blend mask is multiplied by
``1 - padding_weight``: photo pixels whose crop pixels saw padding (or black beyond an unpadded crop) keep
the original, and the edit fades out across the blurred band next to a photo border that the crop crossed.

The blend mask
--------------
``region_mask`` (crop coordinates, any square resolution) is warped into the photo, thresholded at 0.5,
dilated by ``dilate_px`` and feathered linearly (smoothstep) to 0 over ``feather_px`` beyond that, with an
exact Euclidean distance transform; soft values of the warped mask are kept where they are larger. Both
sizes are in pixels of a 1024 px FFHQ crop, i.e. relative to the face (a crop spans about 1.8 widths of
dlib's face box): in the photo they become ``px * side / 1024`` photo pixels, ``side`` being the crop's side in the
photo (a 250 px face in a 4,000 px photo gets the same relative seam as a 2,000 px face). The mask is also
faded to 0 over ``feather_px`` towards the crop's edge, so that a region cut by the crop does not end in a
hard seam: beyond the crop there is nothing generated. Outside the feathered region the output is the
photo, bit for bit.

Everything works in the bounding box of the crop in the photo: a 4,000 px photo with a small face costs
what the face costs (the output is one copy of the photo).

Antialiasing
------------
A 1024 px generated crop pasted onto a 250 px face is sampled every ~4 crop pixels; plain bilinear point
sampling aliases the generator's fine detail (hair). With ``antialias=True`` (default) a crop denser than
1.25 x :data:`ANTIALIAS_CROP_PX` crop pixels per photo pixel is first Lanczos-resized (PIL, in float) to
:data:`ANTIALIAS_CROP_PX` (2: twice the photo's sampling rate, so the bilinear warp has little left to alias).
It softens what is pasted a little. Pasting the aligned crop itself back (an identity edit, mask of ones), the
mean over the crop of the largest channel difference to the photo is, measured here: skimage's astronaut
aligned at 1024 (5.9 crop pixels per photo pixel) 2.25 grey levels with antialiasing, 1.0 without (max 58
and 17); matplotlib's Grace Hopper (3.1 crop pixels per photo pixel) 2.1 and 1.5 (max 48 and 32).
Without antialiasing what remains is the FFHQ resampling itself (a ~0.4 px blur of the photo, and PIL's 8-bit
bilinear QUAD transform darkens by ~0.45 grey levels on average), not the geometry, which a coordinate-ramp
photo checks to 0.05 px (tests/perception/test_paste_back.py); the tests use ``antialias=False`` for it.

EXIF orientation: photos come from :func:`semedit.perception.photos.read_photo`, which applies it; the output
is in that (displayed) orientation and must be saved without the original Orientation tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from semedit.images import to_uint8
from semedit.perception.faces import AlignedFace

__all__ = [
    "REFERENCE_CROP",
    "DILATE_PX",
    "FEATHER_PX",
    "ANTIALIAS_CROP_PX",
    "HEAD_BOX_SCALE",
    "CropGeometry",
    "crop_geometry",
    "blend_mask",
    "paste_back",
    "paste_back_all",
    "head_box",
    "outside_crop_fraction",
    "crop_border_coverage",
]

# dilate_px / feather_px are in pixels of a crop of this side (FFHQ's), i.e. relative to the face.
REFERENCE_CROP = 1024
# Defaults (semedit's choice): a parsing mask's boundary is uncertain by ~1.5 % of the crop, and a seam over
# ~2.3 % of the crop (about 4 % of the face box's width) does not show on skin and hair.
DILATE_PX = 16.0
FEATHER_PX = 24.0
# Antialiasing: crop pixels per photo pixel kept before the bilinear warp (2 = the photo's Nyquist rate).
ANTIALIAS_CROP_PX = 2.0
# head_box: the face box scaled about its centre (see outside_crop_fraction).
HEAD_BOX_SCALE = 2.0
# Lanczos-3 of the resize from transform_size (4 S) to S (landmarks.py line 238): 3 output pixels.
_LANCZOS_SUPPORT = 3.0


@dataclass(frozen=True)
class CropGeometry:
    """Where an FFHQ crop lies in its photo, and which of its pixels came from padding.

    quad: [4, 2] where the crop's outer corners lie in the photo, in photo pixel-centre coordinates
    (top-left, bottom-left, bottom-right, top-right; ``AlignedFace.quad`` unless align_ffhq shrank the
    photo). size: the aligned size ``S``. photo_size: ``(H, W)``. The rest replays align_ffhq's steps (in
    pixels of the shrunk photo): shrink (1 = none), shrunk_size ``(h, w)``, crop ``(x0, y0, x1, y1)`` kept,
    pad ``(left, top, right, bottom)`` or None when not padded, qsize (the quad's side).
    """

    quad: np.ndarray
    size: int
    photo_size: tuple[int, int]
    shrink: int
    shrunk_size: tuple[int, int]
    crop: tuple[int, int, int, int]
    pad: tuple[int, int, int, int] | None
    qsize: float

    @property
    def side(self) -> float:
        """The crop's side in photo pixels (the longer one when a shrink made it a little anisotropic)."""
        return float(max(np.hypot(*(self.quad[3] - self.quad[0])), np.hypot(*(self.quad[1] - self.quad[0]))))

    def crop_to_photo_matrix(self, resolution: int | None = None) -> np.ndarray:
        """[2, 3] affine map: crop pixel centres (side ``resolution``, default ``size``) -> photo pixel centres."""
        n = float(resolution or self.size)
        ex, ey = self.quad[3] - self.quad[0], self.quad[1] - self.quad[0]
        return np.column_stack([ex / n, ey / n, self.quad[0] + (ex + ey) * 0.5 / n])

    def photo_to_crop_matrix(self, resolution: int | None = None) -> np.ndarray:
        """[2, 3] affine map: photo pixel centres -> crop pixel centres (side ``resolution``)."""
        return cv2.invertAffineTransform(self.crop_to_photo_matrix(resolution))

    def crop_to_photo(self, points: np.ndarray, resolution: int | None = None) -> np.ndarray:
        """Crop points [..., 2] -> photo points [..., 2] (pixel-centre coordinates)."""
        m = self.crop_to_photo_matrix(resolution)
        return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]

    def photo_to_crop(self, points: np.ndarray, resolution: int | None = None) -> np.ndarray:
        """Photo points [..., 2] -> crop points [..., 2] (pixel-centre coordinates)."""
        m = self.photo_to_crop_matrix(resolution)
        return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]

    def bbox(self) -> tuple[int, int, int, int]:
        """Photo pixels ``[x0, x1) x [y0, y1)`` whose centres may lie in the crop (clipped to the photo;
        empty when the crop misses the photo)."""
        h, w = self.photo_size
        lo = np.floor(self.quad.min(axis=0)).astype(int)
        hi = np.ceil(self.quad.max(axis=0)).astype(int) + 1
        x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        return x0, y0, max(min(int(hi[0]), w), x0), max(min(int(hi[1]), h), y0)

    def crop_coords(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised crop coordinates ``(u, v)`` (0..1 from the crop's left/top edge to its right/bottom edge)
        of photo pixel centres ``(xs, ys)``."""
        m = [float(c) for c in self.photo_to_crop_matrix(1).ravel()]  # side 1: pixel centre 0 sits at 0.5
        u = m[0] * xs + m[1] * ys + (m[2] + 0.5)  # Python floats: float32 grids stay float32
        v = m[3] * xs + m[4] * ys + (m[5] + 0.5)
        return u, v

    def padding_weight(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """How much the crop at photo pixel centres ``(xs, ys)`` came from align_ffhq's padding instead of the
        photo (0: the photo's own pixels, 1: padding or fill) -- the blur weight ``clip(3 mask + 1, 0, 1)`` of
        download_ffhq.py lines 362-364 (landmarks.py lines 227-230), pushed out by the resampling footprint;
        without padding, 1 within that footprint of the kept crop's edge (PIL fills beyond it with black)."""
        h, w = self.photo_size
        sh, sw = self.shrunk_size
        # Photo pixel centres -> pixel centres of the shrunk photo (corner coordinates scale by sw / w), then
        # of the kept crop.
        xc = (np.asarray(xs, np.float32) + 0.5) * np.float32(sw / w) - 0.5 - self.crop[0]
        yc = (np.asarray(ys, np.float32) + 0.5) * np.float32(sh / h) - 0.5 - self.crop[1]
        cw, ch = self.crop[2] - self.crop[0], self.crop[3] - self.crop[1]
        reach = np.float32(_LANCZOS_SUPPORT * self.qsize / self.size + 1.0)
        near = [xc - reach, (cw - 1) - xc - reach, yc - reach, (ch - 1) - yc - reach]  # distance inside each edge
        if self.pad is None:
            return (np.minimum(np.minimum(near[0], near[1]), np.minimum(near[2], near[3])) < 0).astype(np.float32)
        left, top, right, bottom = (np.float32(p) for p in self.pad)
        # x / pad[0] of the padded array = (xc + pad[0]) / pad[0] = 1 + xc / pad[0].
        mask = np.maximum(-np.minimum(near[0] / left, near[1] / right), -np.minimum(near[2] / top, near[3] / bottom))
        return np.clip(mask * 3.0 + 1.0, 0.0, 1.0).astype(np.float32)


def centre_square_quad(photo_shape: Sequence[int]) -> np.ndarray:
    """The quad (as ``AlignedFace.quad``: corners in photo pixel-centre coordinates) of the centred square
    ``photo[top:top + side, left:left + side]``, side = min(H, W): the crop of a photo framed by a centre crop
    (or of a square photo taken as it is). Its geometry: ``crop_geometry(quad, shape, side,
    enable_padding=False)``."""
    h, w = int(photo_shape[0]), int(photo_shape[1])
    side = min(h, w)
    x0, y0 = (w - side) // 2 - 0.5, (h - side) // 2 - 0.5
    return np.array([[x0, y0], [x0, y0 + side], [x0 + side, y0 + side], [x0 + side, y0]], dtype=np.float64)


def crop_geometry(face: AlignedFace | np.ndarray, photo_shape: Sequence[int], size: int | None = None,
                  enable_padding: bool = True) -> CropGeometry:
    """The :class:`CropGeometry` of a face in its photo.

    face: an AlignedFace (its quad and its image's size), or a quad [4, 2] in photo pixel-centre coordinates
    with ``size``. photo_shape: the photo's ``(H, W, ...)`` -- the photo the face was aligned from, as
    ``read_photo`` returned it. ``enable_padding`` as given to align_ffhq (align_photo: True).
    """
    if isinstance(face, AlignedFace):
        quad, size = face.quad, size or face.image.shape[0]
    else:
        quad = face
        if size is None:
            raise ValueError("crop_geometry: give the aligned size with a bare quad")
    quad = np.array(quad, dtype=np.float64).reshape(4, 2)
    h, w = int(photo_shape[0]), int(photo_shape[1])
    size = int(size)
    # The steps of align_ffhq (landmarks.py lines 199-233 = download_ffhq.py lines 317-367), on a copy.
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    shrink = int(np.floor(qsize / size * 0.5))  # download_ffhq.py line 339
    effective, sw, sh = quad.copy(), w, h
    if shrink > 1:  # lines 340-344
        sw, sh = int(np.rint(float(w) / shrink)), int(np.rint(float(h) / shrink))
        quad = quad / shrink
        qsize /= shrink
        # Back to the photo through the resize's corner-to-corner scale (not exactly x shrink).
        effective = (quad + 0.5) * [w / sw, h / sh] - 0.5
    else:
        shrink = 1
    border = max(int(np.rint(qsize * 0.1)), 3)  # line 347
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, sw), min(crop[3] + border, sh))
    if crop[2] - crop[0] < sw or crop[3] - crop[1] < sh:  # lines 350-352
        quad = quad - crop[0:2]
    else:
        crop = (0, 0, sw, sh)
    cw, ch = crop[2] - crop[0], crop[3] - crop[1]
    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
           int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))  # lines 355-356
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0), max(pad[2] - cw + border, 0), max(pad[3] - ch + border, 0))
    padded = None
    if enable_padding and max(pad) > border - 4:  # lines 357-358
        padded = tuple(int(p) for p in np.maximum(pad, int(np.rint(qsize * 0.3))))
    return CropGeometry(effective, size, (h, w), shrink, (sh, sw), crop, padded, qsize)


# ----------------------------------------------------------------------------------------------------
# Inputs.


def _generated_uint8(generated: np.ndarray | torch.Tensor) -> np.ndarray:
    """A generated crop as uint8 [n, n, 3]: uint8 HWC as it is, a tensor [3, n, n] / [1, 3, n, n] in [-1, 1]
    through semedit.images.to_uint8."""
    if isinstance(generated, torch.Tensor):
        x = generated.detach()
        x = x[0] if x.ndim == 4 and x.shape[0] == 1 else x
        if x.ndim != 3 or x.shape[0] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a generated image tensor [3, n, n] in [-1, 1], got {x.dtype} {list(x.shape)}")
        arr = to_uint8(x)
    else:
        arr = np.asarray(generated)
        if arr.dtype != np.uint8:
            raise ValueError(f"expected a uint8 generated image [n, n, 3] (or a tensor in [-1, 1]), got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"expected a square RGB crop [n, n, 3], got {list(arr.shape)}")
    return np.ascontiguousarray(arr)


def _mask_float(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """A region mask as float32 [n, n] in [0, 1] (accepts [n, n], [1, n, n], [1, 1, n, n], [n, n, 1])."""
    arr = mask.detach().float().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, np.float32)
    arr = np.squeeze(arr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"expected a square region mask [n, n], got {list(np.shape(mask))}")
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def _check_photo(photo: np.ndarray) -> np.ndarray:
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB photo [H, W, 3], got {photo.dtype} {list(photo.shape)}")
    return photo


def _warp(src: np.ndarray, geometry: CropGeometry, box: tuple[int, int, int, int], border: int) -> np.ndarray:
    """Sample ``src`` (a crop of any side n, float32) at the photo pixel centres of ``box``: inverse map,
    bilinear."""
    x0, y0, x1, y1 = box
    m = geometry.photo_to_crop_matrix(src.shape[0])
    m[:, 2] += m[:, :2] @ [x0, y0]  # box-local pixel (i, j) is photo pixel (x0 + i, y0 + j)
    return cv2.warpAffine(src, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0)


def _grid(box: tuple[int, int, int, int], step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Photo pixel centres (ys, xs) of ``box`` (every ``step``-th pixel), float32 [h, w] each."""
    x0, y0, x1, y1 = box
    return np.meshgrid(np.arange(y0, y1, step, dtype=np.float32), np.arange(x0, x1, step, dtype=np.float32),
                       indexing="ij")


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


# ----------------------------------------------------------------------------------------------------
# Paste back.


def blend_mask(face: AlignedFace | CropGeometry, photo_shape: Sequence[int], region_mask: np.ndarray | torch.Tensor,
               dilate_px: float = DILATE_PX, feather_px: float = FEATHER_PX
               ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The blend weights of :func:`paste_back`: ``(box, m)`` with box ``(x0, y0, x1, y1)`` in photo pixels and
    m float32 [y1 - y0, x1 - x0] in [0, 1]; the weight is 0 everywhere outside the box.

    m = (region warped, dilated, feathered) x (fade towards the crop's edge) x (1 - padding weight).
    """
    geometry = face if isinstance(face, CropGeometry) else crop_geometry(face, photo_shape)
    box = geometry.bbox()
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return box, np.zeros((y1 - y0, x1 - x0), np.float32)
    to_photo = geometry.side / REFERENCE_CROP
    dilate, feather = max(dilate_px, 0.0) * to_photo, max(feather_px, 0.0) * to_photo
    if feather_px > 0:
        feather = max(feather, 1.0)  # at least one photo pixel of seam on tiny faces

    soft = _warp(_mask_float(region_mask), geometry, box, cv2.BORDER_CONSTANT)
    inside = soft >= 0.5
    if inside.any() and (dilate > 0 or feather > 0):
        # Distance of every pixel to the region (0 inside it), exact Euclidean.
        dist = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        if feather > 0:
            ramp = _smoothstep(np.clip((dilate + feather - dist) / feather, 0.0, 1.0))
        else:
            ramp = (dist <= dilate).astype(np.float32)
        m = np.maximum(ramp, soft)
    else:
        m = soft

    ys, xs = _grid(box)
    u, v = geometry.crop_coords(xs, ys)
    # Distance (photo pixels) to the crop's edge; the QUAD is square, so each axis scales by the side.
    side_u, side_v = (float(np.hypot(*(geometry.quad[i] - geometry.quad[0]))) for i in (3, 1))
    edge = np.minimum(np.minimum(u, 1.0 - u) * side_u, np.minimum(v, 1.0 - v) * side_v)
    valid = np.clip(edge / feather, 0.0, 1.0) if feather > 0 else (edge > 0).astype(np.float32)
    valid *= 1.0 - geometry.padding_weight(xs, ys)
    return box, (m * valid).astype(np.float32)


def paste_back(photo: np.ndarray, face: AlignedFace | CropGeometry, generated: np.ndarray | torch.Tensor,
               region_mask: np.ndarray | torch.Tensor, dilate_px: float = DILATE_PX,
               feather_px: float = FEATHER_PX, *, antialias: bool = True) -> np.ndarray:
    """Paste a generated crop of ``face`` back into ``photo`` -> uint8 [H, W, 3] (a new array).

    face: the AlignedFace the crop belongs to, or the :class:`CropGeometry` of any crop of ``photo``.

    photo: uint8 RGB [H, W, 3], the photo ``face`` was aligned from (``read_photo``'s orientation).
    generated: uint8 [n, n, 3], or a tensor [3, n, n] / [1, 3, n, n] in [-1, 1], any side n (the geometry
    scales). region_mask: [m, m] float in [0, 1] in crop coordinates (any side m): the region the method
    changed (e.g. hair + face, old and new hair). dilate_px, feather_px: in pixels of a 1024 px crop (see the
    module docstring). ``out = photo (1 - w) + warped w`` with the weights of :func:`blend_mask`; pixels with
    w = 0 (outside the feathered region, outside the crop, over padding) are the photo's, unchanged.
    """
    photo = _check_photo(photo)
    geometry = face if isinstance(face, CropGeometry) else crop_geometry(face, photo.shape)
    box, m = blend_mask(geometry, photo.shape, region_mask, dilate_px, feather_px)
    out = photo.copy()
    if not m.size or not (m > 0).any():
        return out
    crop = _generated_uint8(generated)
    n = crop.shape[0]
    if antialias and n > ANTIALIAS_CROP_PX * geometry.side * 1.25:
        # PIL's Lanczos (antialiased when reducing; corners onto corners, as the geometry assumes), in float,
        # one channel at a time.
        n = int(np.ceil(ANTIALIAS_CROP_PX * geometry.side))
        crop = np.stack([np.asarray(Image.fromarray(crop[..., c].astype(np.float32), "F").resize((n, n), Image.LANCZOS))
                         for c in range(3)], axis=-1)
    warped = _warp(crop.astype(np.float32, copy=False), geometry, box, cv2.BORDER_REPLICATE)
    x0, y0, x1, y1 = box
    region = out[y0:y1, x0:x1]
    w = m[..., None]
    blended = region.astype(np.float32) * (1.0 - w) + warped * w
    changed = m > 0
    region[changed] = np.clip(np.rint(blended[changed]), 0, 255).astype(np.uint8)
    return out


def paste_back_all(photo: np.ndarray, faces: Sequence[AlignedFace], generated: Sequence[np.ndarray | torch.Tensor],
                   masks: Sequence[np.ndarray | torch.Tensor], dilate_px: float = DILATE_PX,
                   feather_px: float = FEATHER_PX, *, antialias: bool = True) -> np.ndarray:
    """:func:`paste_back` of every face in turn (later faces over earlier ones) -> uint8 [H, W, 3]."""
    if not len(faces) == len(generated) == len(masks):
        raise ValueError(f"paste_back_all: {len(faces)} faces, {len(generated)} generated crops and "
                         f"{len(masks)} masks; give one of each per face")
    out = _check_photo(photo)
    for face, crop, mask in zip(faces, generated, masks, strict=True):
        out = paste_back(out, face, crop, mask, dilate_px, feather_px, antialias=antialias)
    return out if len(faces) else out.copy()


# ----------------------------------------------------------------------------------------------------
# What the crop cannot see.


def head_box(face: AlignedFace, scale: float = HEAD_BOX_SCALE) -> np.ndarray:
    """The face's detected box (``AlignedFace.box``: x0, y0, x1, y1 in photo pixels, x1/y1 exclusive) scaled by
    ``scale`` about its centre: a rough head-with-hair box (dlib's box spans brows to chin)."""
    box = np.asarray(face.box, dtype=np.float64)
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * scale
    return np.concatenate([centre - half, centre + half])


def outside_crop_fraction(face: AlignedFace, photo_shape: Sequence[int],
                          region: np.ndarray | Sequence[float] | None = None, *,
                          head_scale: float = HEAD_BOX_SCALE) -> float:
    """Fraction (0..1) of a region of the photo whose pixels lie outside the face's FFHQ crop, i.e. that the
    generator can neither see nor change (a hairstyle reaching beyond the crop stays as it is there).

    region: a mask [H, W] over the photo (bool or weights in [0, 1], e.g. a hair mask propagated into the
    photo), or a box (x0, y0, x1, y1) in photo pixels, or None: :func:`head_box` (the face box scaled by
    ``head_scale``). Only the part inside the photo counts (beyond it there is nothing to change); a pixel is
    inside the crop when its centre is. 0.0 for an empty region.

    With the default head box the number is mostly geometry, since the crop is itself placed by the face:
    for upright faces fully inside the photo it is 0.15 (skimage's astronaut) to 0.26 (matplotlib's Grace
    Hopper), the box reaching below the chin and beside the ears; it drops where the photo ends. A hair mask
    of the photo (or :func:`crop_border_coverage` of the crop's hair mask) is the measurement to warn on.
    """
    h, w = int(photo_shape[0]), int(photo_shape[1])
    geometry = crop_geometry(face, (h, w))
    if region is None or (np.ndim(region) == 1 and np.size(region) == 4):
        box = head_box(face, head_scale) if region is None else np.asarray(region, dtype=np.float64)
        # The pixels i with x0 <= i < x1 (centres inside the box), within the photo.
        x0, y0 = max(int(np.ceil(box[0])), 0), max(int(np.ceil(box[1])), 0)
        x1, y1 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
        if x1 <= x0 or y1 <= y0:
            return 0.0
        # On a grid of at most ~512 x 512 samples (a fraction needs no more).
        step = max(1, int(np.ceil(max(x1 - x0, y1 - y0) / 512)))
        ys, xs = _grid((x0, y0, x1, y1), step)
        u, v = geometry.crop_coords(xs, ys)
        return float(((u < 0) | (u > 1) | (v < 0) | (v > 1)).mean())
    mask = np.asarray(region)
    if mask.shape != (h, w):
        raise ValueError(f"outside_crop_fraction: the region mask must be [H, W] = [{h}, {w}], got {list(mask.shape)}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0.0
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    total = outside = 0.0
    for r0 in range(int(rows[0]), int(rows[-1]) + 1, 256):  # row bands: no full-size float arrays
        r1 = min(r0 + 256, int(rows[-1]) + 1)
        weights = np.clip(mask[r0:r1, x0:x1].astype(np.float32), 0.0, 1.0)
        ys, xs = _grid((x0, r0, x1, r1))
        u, v = geometry.crop_coords(xs, ys)
        total += float(weights.sum())
        outside += float(weights[(u < 0) | (u > 1) | (v < 0) | (v > 1)].sum())
    return outside / total if total > 0 else 0.0


def crop_border_coverage(region_mask: np.ndarray | torch.Tensor, band: float = 0.02) -> float:
    """Fraction (0..1) of the crop's outer ring (``band`` x its side wide) that a crop-space region mask covers
    (mask >= 0.5): > 0 when e.g. the hair of the aligned crop reaches the crop's edge, so it continues beyond
    the crop into the photo, where the generator cannot change it."""
    mask = _mask_float(region_mask) >= 0.5
    n = mask.shape[0]
    k = max(1, int(round(band * n)))
    ring = np.ones_like(mask)
    ring[k:n - k, k:n - k] = False
    return float(mask[ring].mean())
