"""The official hair-manipulation directions of the FG 2021 release (``latent_directions.pkl``), read safely.

The authors' tool (github.com/subrtade662/hairstyle_transfer, ``hairstyle_transfer_tool.py``) opens
``./latent_directions.pkl`` with a plain ``pickle.load`` (lines 240-241), takes ``directions[name]`` for
``name`` in ``('color', 'structure')`` (lines 225, 242) and moves the *hair embedding* (the hair encoder's
output, [1, 18, 512]; ``psp_encoders.py`` ``get_embedding``, lines 233-238) by ``e + c * latent_dir``
(``__manipulate_inputs``, lines 214-222) for every strength ``c``. The strengths of the tool default to
``np.arange(-25, 25.5, 0.5)`` (line 224); the README's example is ``--strength 10,10.5,11.`` (the
command line reads them as floats, ``inference.py`` line 30). The directions are used as stored, not
normalised, so these strengths are on the file's own scale.

A plain ``pickle.load`` executes whatever the file asks for. Here ``semedit.safe_pickle`` resolves only
the globals numpy needs to rebuild an array (numpy 1 names ``numpy.core.*`` and numpy 2 names
``numpy._core.*``); any other global (``os.system``, ``builtins.exec``, ``torch...``) is refused when
the unpickler meets it, before anything is called. The result must then be a dict of numeric arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from semedit.safe_pickle import UnsafePickleError, load_numpy_dict
from semedit.weights import entry_for_path, missing_error

__all__ = [
    "OFFICIAL_DIRECTION_NAMES",
    "OFFICIAL_STRENGTHS",
    "OfficialDirectionsError",
    "load_official_directions",
    "official_direction_step",
]

# Names the official tool accepts (hairstyle_transfer_tool.py line 225, inference.py line 28).
OFFICIAL_DIRECTION_NAMES = ("color", "structure")
# The official tool's default strengths (hairstyle_transfer_tool.py line 224) span -25..25 in steps of
# 0.5; its README example is 10, 10.5, 11.
OFFICIAL_STRENGTHS = (10.0, 10.5, 11.0)

OfficialDirectionsError = UnsafePickleError  # the file is not a safe latent_directions.pkl


def load_official_directions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``latent_directions.pkl`` -> {name: array}, read without executing anything from the file.

    Raises OfficialDirectionsError for any global other than numpy's array reconstruction, and for
    anything that is not a dict of numeric arrays; a missing registry file names its source.
    """
    path = Path(path)
    if not path.is_file():
        entry = entry_for_path(path)
        if entry is not None:
            raise missing_error(entry, path)
        raise FileNotFoundError(f"directions file not found: {path}")
    return load_numpy_dict(path)


def official_direction_step(directions: dict[str, np.ndarray], name: str, num_ws: int, w_dim: int) -> torch.Tensor:
    """The step [num_ws, w_dim] that strength 1 adds to a hair embedding, exactly as the official tool.

    The tool adds ``c * latent_dir`` to an embedding [1, num_ws, w_dim] by numpy/torch broadcasting, so a
    direction stored as [w_dim], [num_ws, w_dim] or [1, num_ws, w_dim] works there; those are accepted
    (a flat [num_ws * w_dim] vector too, as the row-major view of the embedding). No normalisation.
    """
    if name not in directions:
        raise OfficialDirectionsError(f"no direction '{name}' in the file; it holds {sorted(directions)}")
    array = np.asarray(directions[name], dtype=np.float64)
    if array.size == num_ws * w_dim:
        step = array.reshape(num_ws, w_dim)
    else:
        try:
            step = np.broadcast_to(array, (1, num_ws, w_dim))[0]
        except ValueError:
            raise OfficialDirectionsError(
                f"direction '{name}' has shape {list(array.shape)}, which does not fit the hair embedding "
                f"[{num_ws}, {w_dim}] of this model") from None
    return torch.from_numpy(np.ascontiguousarray(step)).to(torch.float32)
