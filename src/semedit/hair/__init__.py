"""The hair-transfer family: methods behind one interface (``base.HairTransferMethod``), by model file.

Importing the package registers every member (``fg2021/``: Šubrtová, Čech, Franc, FG 2021).
"""

from semedit.hair import fg2021  # noqa: F401 - registers its method
from semedit.hair.base import (
    HAIR_METHODS,
    HairModelError,
    HairTransferMethod,
    MethodOptions,
    load_hair_method,
    register_hair_method,
)

__all__ = ["HAIR_METHODS", "HairModelError", "HairTransferMethod", "MethodOptions", "load_hair_method",
           "register_hair_method"]
