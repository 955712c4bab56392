"""The package's public surface: exports, version, typing marker, dependency floor."""

from __future__ import annotations

import subprocess
import sys
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


_EXTRAS = (
    "orjson msgspec rich redis arq asyncpg hiredis opentelemetry starlette fastapi uvicorn mkdocs"
)


def test_importing_the_package_imports_no_optional_extra() -> None:
    """The package and its always-available subpackages load no extra until it is used."""
    code = (
        "import sys\n"
        "import makini_async, makini_async.sync, makini_async.webhooks, makini_async.models\n"
        "import makini_async.resources, makini_async.testing, makini_async.sandbox\n"
        f"extras = set({_EXTRAS.split()!r})\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & extras))"
    )
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"


def test_the_speedups_load_with_the_first_decoded_body() -> None:
    """Installed speedups are used: orjson and msgspec load when a typed page is decoded."""
    pytest.importorskip("orjson")
    pytest.importorskip("msgspec")
    code = (
        "import sys\n"
        "from makini_async import _json\n"
        "from makini_async.models import WorkOrder\n"
        "from makini_async.models._fast import page_decoder\n"
        "assert 'orjson' not in sys.modules and 'msgspec' not in sys.modules\n"
        "assert _json.loads(b'{\"a\": [1]}') == {'a': [1]}\n"
        "decode = page_decoder(WorkOrder)\n"
        "assert decode is not None\n"
        'page = decode(b\'{"data": [{"key": "w1", "title": "Pump"}]}\')\n'
        "assert page is not None and page.records[0].title == 'Pump'\n"
        "print(sorted({'orjson', 'msgspec'} & set(sys.modules)), _json.BACKEND)"
    )
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.split() == ["['msgspec',", "'orjson']", "orjson"]
