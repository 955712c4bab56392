"""The package's public surface: exports, version, typing marker, dependency floor."""

from __future__ import annotations

from importlib.metadata import requires, version
from pathlib import Path

import aiohttp
import pytest

import makini_async
from makini_async import _errors


def test_all_is_sorted_and_complete() -> None:
    """`__all__` is sorted, and every public name defined in the package is listed."""
    assert makini_async.__all__ == sorted(makini_async.__all__)
    for name in makini_async.__all__:
        assert hasattr(makini_async, name), name
    for name in _errors.__all__:
        assert name in makini_async.__all__, name


def test_version_comes_from_metadata() -> None:
    """`__version__` is the installed distribution's version."""
    assert makini_async.__version__ == version("makini-async")


def test_unknown_attribute_raises() -> None:
    """A missing attribute raises AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = makini_async.no_such_thing


def test_py_typed_is_shipped() -> None:
    """The package carries its PEP 561 marker."""
    assert (Path(makini_async.__file__).parent / "py.typed").is_file()


def test_aiohttp_floor() -> None:
    """The metadata pins aiohttp >= 3.14.3 and the installed one meets it."""
    reqs = requires("makini-async") or []
    assert any(r.replace(" ", "").startswith("aiohttp>=3.14.3") for r in reqs)
    installed = tuple(int(p) for p in aiohttp.__version__.split(".")[:3])
    assert installed >= (3, 14, 3)
