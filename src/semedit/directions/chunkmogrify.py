"""Import the edit directions shipped with Chunkmogrify (futscdav/Chunkmogrify, by the ChunkyGAN authors).

Format (w_directions.py line 10): a NumPy ``.npy`` array of shape (18, 512), one row per W+ entry of the
NVlabs FFHQ 1024 generator (float64; ``beard.npy`` is float32). An edit adds ``value * multiplier * d`` to
the W+ rows ``[start, end)`` of the code (synthesis.py lines 318-321), with the range given per direction
in ``known_directions`` (w_directions.py lines 23-41), e.g. smile 0-5, age 0-8, gender 0-5, beard 6-9,
yaw 0-5. The UI's value slider spans [-1, 1] (widgets/editor.py lines 148-150 and 191: (slider - 51) / 102
* 2 for slider 0..102) and the multiplier 0..20, default 1 (lines 154-157), so a UI edit moves the rows by
at most 20 d and, at the default multiplier, by at most 1 d.

semedit's direction files hold a unit vector, so the import keeps the rows [start, end) flattened and
normalised, and records the norm of those rows as ``meta["source_norm"]``: a Chunkmogrify edit of total
multiplier m (value x multiplier) is a semedit edit of strength ``m * source_norm``.

Files are read with ``np.load(allow_pickle=False)``: no code from them runs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from semedit.edits import Direction, DirectionFileError

__all__ = ["CHUNKMOGRIFY_DIRECTIONS", "UI_VALUE_RANGE", "UI_MULTIPLIER_MAX", "parse_layer_range",
           "import_chunkmogrify_npy"]

# name -> (file stem in Chunkmogrify's directions/, first W+ row, end row): w_directions.py lines 25-41.
CHUNKMOGRIFY_DIRECTIONS: dict[str, tuple[str, int, int]] = {
    "smile": ("smile_styleganv2", 0, 5),
    "age": ("age", 0, 8),
    "gender": ("gender", 0, 5),
    "beard": ("beard", 6, 9),
    "yaw": ("yaw", 0, 5),
}
UI_VALUE_RANGE = (-1.0, 1.0)  # widgets/editor.py line 191 with the slider's 0..102 range (line 149)
UI_MULTIPLIER_MAX = 20  # widgets/editor.py line 157 (default 1, line 156)


def parse_layer_range(text: str) -> tuple[int, int]:
    """"START-END" (END exclusive, as Chunkmogrify's [lower_n, upper_n)) -> (start, end)."""
    try:
        start_s, end_s = text.split("-")
        start, end = int(start_s), int(end_s)
    except ValueError:
        raise DirectionFileError(f"--layers must be START-END with END exclusive, e.g. 0-5; got {text!r}") from None
    if not 0 <= start < end:
        raise DirectionFileError(f"--layers {text!r}: need 0 <= START < END")
    return start, end


def import_chunkmogrify_npy(path: str | os.PathLike, layers: tuple[int, int], name: str | None = None) -> Direction:
    """A Chunkmogrify ``.npy`` direction as a semedit W+ direction over rows ``[start, end)``."""
    path = Path(path)
    if not path.is_file():
        raise DirectionFileError(f"direction file not found: {path} (Chunkmogrify ships them in directions/*.npy)")
    data = path.read_bytes()
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise DirectionFileError(f"{path} is not a plain .npy array ({err}); pickled arrays are refused") from err
    except Exception as err:  # truncated or not .npy at all
        raise DirectionFileError(f"{path} is not a readable .npy file: {type(err).__name__}: {err}") from err
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise DirectionFileError(f"{path}: expected a float array (num_ws, w_dim) such as (18, 512), got "
                                 f"{arr.dtype} {arr.shape}")
    start, end = layers
    if end > arr.shape[0]:
        raise DirectionFileError(f"{path}: layers {start}-{end} exceed its {arr.shape[0]} W+ rows")
    rows = torch.from_numpy(np.ascontiguousarray(arr[start:end], dtype=np.float64))
    norm = float(rows.norm())
    if not np.isfinite(norm) or norm == 0:
        raise DirectionFileError(f"{path}: rows {start}-{end} are zero or not finite")
    meta = {
        "method": "imported",
        "format": "chunkmogrify-npy",
        "name": name or path.stem,
        "source_file": path.name,
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "source_shape": list(arr.shape),
        "source_dtype": str(arr.dtype),
        "source_layers": [start, end],
        "source_norm": norm,
        "strength_note": "semedit strength = Chunkmogrify value x multiplier x source_norm",
    }
    return Direction.from_vector(rows.flatten().float(), space="wplus", layers=list(range(start, end)), meta=meta)
