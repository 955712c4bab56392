"""Derive the sandbox's compact route and schema table from Makini's OpenAPI files.

The sandbox must serve every path, method and schema property of Makini's published OpenAPI
files, which ship in ``makini_async/_openapi/``. Parsing 1.9 MB of JSON at start-up would be slow,
so this script boils them down to ``_spec.json`` next to it, which the sandbox loads instead.
Run it again whenever the OpenAPI files change (``python -m makini_async._openapi`` regenerates
this table and the models together)::

    python -m makini_async.sandbox._build_spec

The output holds, per domain, every component schema as a list of ``[property, type, detail]``
triples (``detail`` is the format, the referenced schema for ``$ref``/arrays, or ``""``), and per
path and method the response schema name, whether the response is a list, and the request body
fields with their Laravel-style rules (e.g. ``"numeric|required"``) and the body content type.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

from makini_async import _openapi

__all__ = ["build", "main", "render"]

_OUT: Final = Path(__file__).with_name("_spec.json")


def _prop(prop: _openapi.Property) -> list[str]:
    if prop.ref:
        return [prop.name, "object", prop.ref]
    if prop.type == "array":
        return [prop.name, "array", prop.items_ref or prop.items_type]
    return [prop.name, prop.type or "string", prop.format]


def _rule(prop: _openapi.Property) -> str:
    if "|" in prop.format or prop.format == "binary":
        return prop.format
    return prop.type or "string"


def build(source: Traversable | None = None) -> dict[str, Any]:
    """Read the four OpenAPI files and return the compact table.

    Args:
        source: The folder holding ``oas3_*.json`` (default: the files shipped in
            ``makini_async/_openapi/``).

    Returns:
        The JSON-ready table described in the module docstring.
    """
    api = _openapi.load(source)
    schemas = {
        doc.domain: {
            name: [_prop(p) for p in schema.properties or ()]
            for name, schema in doc.schemas.items()
        }
        for doc in api.documents
    }
    routes = [
        [
            op.method,
            op.path,
            op.domain,
            op.response,
            op.response_is_list,
            op.content_type,
            {p.name: _rule(p) for p in op.body},
        ]
        for op in api.operations
    ]
    return {"schemas": schemas, "routes": routes}


def render(source: Traversable | None = None) -> dict[Path, str]:
    """Return the generated file by path, with the text `main` writes there.

    Args:
        source: The folder holding ``oas3_*.json`` (default: the shipped files).

    Returns:
        ``{path of _spec.json: its text}``.
    """
    return {_OUT: _dump(build(source))}


def _dump(table: dict[str, Any]) -> str:
    return json.dumps(table, separators=(",", ":"), sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``_spec.json`` from the shipped OpenAPI files.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=_OUT, help="where to write the table")
    args = parser.parse_args(argv)
    table = build()
    args.out.write_text(_dump(table), encoding="utf-8")
    sys.stdout.write(f"wrote {args.out} ({len(table['routes'])} routes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
