"""The exceptions semedit raises on purpose: each carries a message written for the user.

Library code raises these (never a CLI error); the ``semedit`` command prints their message on one line
and exits with status 2. Each library area subclasses :class:`SemeditError` (and, where it helps callers
that already catch the built-in type, ``ValueError`` or ``FileNotFoundError``).
"""

from __future__ import annotations

__all__ = ["SemeditError", "ConfigError", "ImageError", "RunFolderError", "WeightsError", "MissingWeightsError",
           "CorruptWeightsError", "UnsafePickleError"]


class SemeditError(Exception):
    """Base of every error semedit raises deliberately; the message says what is wrong and what to do."""


class ConfigError(SemeditError, ValueError):
    """A configuration file or override is invalid. The message names the key and what is valid."""


class ImageError(SemeditError, ValueError):
    """An input image cannot be used: missing, unreadable, not an image, too large, or without a face."""


class RunFolderError(SemeditError):
    """A run folder cannot be used for this run (locked by another run, other settings, unsafe name)."""


class WeightsError(SemeditError):
    """A pretrained or saved model file cannot be used (printed without a traceback by the CLI)."""


class MissingWeightsError(WeightsError, FileNotFoundError):
    """A file is not where it must be. The message says what it is, where to get it and where to put it."""


class CorruptWeightsError(WeightsError, ValueError):
    """A file exists but is not what it should be: unreadable, truncated, of another format or model, or with
    a wrong digest. The message names the file and what was expected."""


class UnsafePickleError(CorruptWeightsError):
    """A file asks, while it is read, for objects other than tensors, arrays and plain data; it was refused
    before any of it ran."""
