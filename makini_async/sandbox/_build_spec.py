"""Derive the sandbox's compact route and schema table from Makini's OpenAPI files.

The sandbox must serve every path, method and schema property of Makini's published OpenAPI
files (``oas3_eam.json``, ``oas3_erp.json``, ``oas3_wms.json``, ``oas3_system.json``). Those files
live outside the package, so this script boils them down to ``_spec.json`` next to it, which the
sandbox loads at start-up. Run it again whenever the OpenAPI files change::

    python -m makini_async.sandbox._build_spec ../shared/reference/makini-openapi

The output holds, per domain, every component schema as a list of ``[property, type, detail]``
triples (``detail`` is the format, the referenced schema for ``$ref``/arrays, or ``""``), and per
path and method the response schema name, whether the response is a list, and the request body
fields with their Laravel-style rules (e.g. ``"numeric|required"``) and the body content type.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["build", "main"]

_FILES = ("oas3_eam.json", "oas3_erp.json", "oas3_wms.json", "oas3_system.json")
_OUT = Path(__file__).with_name("_spec.json")


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _prop(name: str, schema: dict[str, Any]) -> list[str]:
    if "$ref" in schema:
        return [name, "object", _ref_name(schema["$ref"])]
    kind = str(schema.get("type", "string"))
    if kind == "array":
        items = schema.get("items") or {}
        detail = _ref_name(items["$ref"]) if "$ref" in items else str(items.get("type", ""))
        return [name, "array", detail]
    return [name, kind, str(schema.get("format") or "")]


def _response(op: dict[str, Any]) -> tuple[str, bool]:
    content = op.get("responses", {}).get("200", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    data = schema.get("properties", {}).get("data", {})
    if "$ref" in data:
        return _ref_name(data["$ref"]), False
    items = data.get("items", {})
    if "$ref" in items:
        return _ref_name(items["$ref"]), True
    return "", False


def _body(op: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = op.get("requestBody")
    if not body:
        return "", {}
    content_type, media = next(iter(body["content"].items()))
    props = media.get("schema", {}).get("properties", {})
    if not isinstance(props, dict):
        return content_type, {}
    rules = {}
    for name, prop in props.items():
        kind = str(prop.get("type", "string"))
        fmt = str(prop.get("format") or "")
        rules[name] = fmt if "|" in fmt or fmt == "binary" else kind
    return content_type, rules


def build(source: Path) -> dict[str, Any]:
    """Read the four OpenAPI files in ``source`` and return the compact table.

    Args:
        source: The folder holding Makini's ``oas3_*.json`` files.

    Returns:
        The JSON-ready table described in the module docstring.
    """
    schemas: dict[str, dict[str, list[list[str]]]] = {}
    routes: list[list[Any]] = []
    for filename in _FILES:
        doc = json.loads((source / filename).read_text(encoding="utf-8"))
        domain = filename.removeprefix("oas3_").removesuffix(".json")
        table = schemas.setdefault(domain, {})
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            props = schema.get("properties", {}) if isinstance(schema, dict) else {}
            table[name] = [_prop(p, s) for p, s in props.items()] if isinstance(props, dict) else []
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                schema_name, is_list = _response(op)
                content_type, rules = _body(op)
                routes.append(
                    [method.upper(), path, domain, schema_name, is_list, content_type, rules]
                )
    return {"schemas": schemas, "routes": routes}


def main(argv: list[str] | None = None) -> int:
    """Write ``_spec.json`` from the OpenAPI folder given on the command line.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder holding Makini's oas3_*.json files")
    parser.add_argument("--out", type=Path, default=_OUT, help="where to write the table")
    args = parser.parse_args(argv)
    table = build(args.source)
    args.out.write_text(json.dumps(table, separators=(",", ":"), sort_keys=True) + "\n")
    sys.stdout.write(f"wrote {args.out} ({len(table['routes'])} routes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
