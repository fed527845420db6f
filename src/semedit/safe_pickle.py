"""A pickle reader that accepts only a dict of numeric numpy arrays and executes nothing from the file.

A plain ``pickle.load`` calls whatever the file names. ``load_numpy_dict`` resolves only the globals that
numpy needs to rebuild an array (numpy 1 names ``numpy.core.*`` and numpy 2 names ``numpy._core.*``);
any other global (``os.system``, ``builtins.exec``, ``torch...``) is refused when the unpickler meets
it, before anything is called. The result must then be a dict of finite numeric arrays. Used for the
official FG 2021 ``latent_directions.pkl`` (``semedit.hair.official_directions``).
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np

from semedit.errors import UnsafePickleError

__all__ = ["UnsafePickleError", "load_numpy_dict"]


def _numpy_core_function(submodule: str, name: str):
    try:  # numpy >= 2
        import numpy._core as core
    except ImportError:  # numpy 1
        import numpy.core as core
    return getattr(getattr(core, submodule), name)


# (module, name) pairs a numpy array pickle needs. ndarray.__reduce__ gives
# (numpy.core.multiarray._reconstruct, (ndarray, (0,), b'b'), state) and the dtype (numpy.dtype, ...);
# protocol 5 uses numpy.core.numeric._frombuffer. numpy 2 moved numpy.core to numpy._core and writes
# the new names; numpy 1 files carry the old ones. Both are mapped onto the installed numpy's objects.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Protocol 2 has no bytes opcode and stores an array's raw bytes as _codecs.encode(text, 'latin1'):
    # a pure text -> bytes conversion.
    ("_codecs", "encode"): codecs.encode,
}
for _prefix in ("numpy.core", "numpy._core"):
    _NUMPY_GLOBALS[(f"{_prefix}.multiarray", "_reconstruct")] = _numpy_core_function("multiarray", "_reconstruct")
    _NUMPY_GLOBALS[(f"{_prefix}.numeric", "_frombuffer")] = _numpy_core_function("numeric", "_frombuffer")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves the numpy array globals and nothing else; the refusal happens before any call."""

    def find_class(self, module: str, name: str):
        try:
            return _NUMPY_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load: the pickle asks for {module}.{name}, but only a dict of numpy arrays is "
                "accepted (nothing from the file was executed)") from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing to load: the pickle uses persistent ids (a torch.save file?); "
                                "expected a plain pickle of a dict of numpy arrays")


def _check(obj, source: str) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise UnsafePickleError(f"{source}: expected a dict of numpy arrays, found {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise UnsafePickleError(f"{source}: keys must be strings, found {key!r}")
        if not isinstance(value, np.ndarray):
            raise UnsafePickleError(f"{source}: '{key}' is a {type(value).__name__}, not a numpy array")
        if value.dtype.kind not in "fiu":
            raise UnsafePickleError(f"{source}: '{key}' has dtype {value.dtype}, expected a numeric array")
        if not np.isfinite(value).all():
            raise UnsafePickleError(f"{source}: '{key}' holds non-finite values")
        out[key] = value
    return out


def load_numpy_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A pickled dict of numeric numpy arrays -> {name: array}, without executing anything from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file not found: {path}")
    data = path.read_bytes()
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from None
    except Exception as err:  # truncated or not a pickle at all
        raise UnsafePickleError(f"{path} is not a readable pickle ({type(err).__name__}: {err})") from err
    return _check(obj, str(path))
