"""Optional extras, imported on first use: ``import makini_async`` imports none of them.

The ``speedups`` extra (orjson, msgspec) is picked up when installed, but only when the first
body is decoded or the first typed page built, so that importing the package stays as cheap as
its required dependencies and a program that never calls the API never loads them.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "installed", "optional"]


@functools.cache
def installed(name: str) -> bool:
    """Whether the top-level module ``name`` can be imported (found without importing it)."""
    return importlib.util.find_spec(name) is not None


@functools.cache
def optional(name: str) -> ModuleType | None:
    """Import ``name`` now (once), or None when it is not installed."""
    if not installed(name):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:  # found but broken (e.g. a wheel for another interpreter)
        return None


class LazyModule:
    """Stands for a module and imports it at the first attribute read.

    For code that names an optional module in many places (``msgspec.Meta``, ...) and runs only
    when that module is installed.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:  # noqa: ANN401 - whatever the module holds
        module = optional(self._name)
        if module is None:
            msg = f"the optional module {self._name!r} is not installed"
            raise ImportError(msg)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<LazyModule {self._name}>"
