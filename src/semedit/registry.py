"""Registries where a name picks an implementation (as stylegan2-ada's ``metric_main.register_metric``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["registrar"]


def registrar(table: dict[str, Any], kind: str) -> Callable[[str], Callable[[Any], Any]]:
    """A decorator factory that fills ``table``: ``@register("name")`` adds the decorated builder."""

    def register(name: str):
        def add(builder):
            if name in table:
                raise ValueError(f"{kind} '{name}' is registered twice")
            table[name] = builder
            return builder

        return add

    return register
