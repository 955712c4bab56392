"""The route and schema table the sandbox serves, loaded from ``_spec.json``.

``_spec.json`` is derived from Makini's OpenAPI files by ``_build_spec.py``. This module turns it
into :class:`Route` objects, decides what each route does (list, get, create, ...) and matches
request paths against the templates.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Final

import attrs

__all__ = ["Field", "Route", "Spec", "load_spec"]

_SPEC_FILE: Final = Path(__file__).with_name("_spec.json")

#: Sub-collections listed under a parent record, and the MaterialItem field naming the parent.
SUBLIST_PARENT_FIELD: Final[dict[str, str]] = {
    "work-orders": "workOrderKey",
    "assets": "assetKey",
    "asset-templates": "assetTemplateKey",
    "pm": "pmKey",
    "production-orders": "productionOrderKey",
    "materials": "assemblyKey",
}


@attrs.frozen
class Field:
    """One schema property: its name, JSON kind and detail (format or referenced schema)."""

    name: str
    kind: str
    detail: str


@attrs.frozen
class Route:
    """One path template and method from the OpenAPI files, with what the sandbox does there.

    ``resource`` names the record collection the route works on (e.g. ``eam/work-orders``);
    ``action`` is one of ``list``, ``get``, ``create``, ``update``, ``status``, ``sublist``,
    ``subcreate``, ``subupdate``, ``inventory``, ``delivered`` or ``system``.
    """

    method: str
    template: str
    domain: str
    schema: str
    action: str
    resource: str
    content_type: str
    body: dict[str, str]


@attrs.frozen
class Spec:
    """Every schema and route, with a path matcher."""

    schemas: dict[str, dict[str, tuple[Field, ...]]]
    routes: tuple[Route, ...]
    _exact: dict[str, dict[str, Route]]
    _templates: dict[int, list[tuple[tuple[str, ...], dict[str, Route]]]]

    def fields(self, domain: str, schema: str) -> tuple[Field, ...]:
        """Return the properties of ``schema`` in ``domain`` (empty when unknown)."""
        return self.schemas.get(domain, {}).get(schema, ())

    def match(self, path: str) -> tuple[dict[str, Route], dict[str, str]] | None:
        """Find the routes (by method) for a concrete path, and the path parameters.

        Returns:
            ``(routes by method, parameters)``, or ``None`` when no template matches.
        """
        exact = self._exact.get(path)
        if exact is not None:
            return exact, {}
        parts = path.split("/")
        for segments, methods in self._templates.get(len(parts), ()):
            params: dict[str, str] = {}
            for want, got in zip(segments, parts, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return methods, params
        return None


def _classify(method: str, template: str, domain: str) -> tuple[str, str]:  # noqa: PLR0911 - a decision table
    """Work out ``(action, resource)`` for a data route from its shape."""
    parts = template.split("/")[3:]  # after "", "api", "<domain>"
    if domain == "system":
        return "system", ""
    head = parts[0]
    if head == "statuses":
        return "list", f"{domain}/statuses/{parts[1]}"
    if len(parts) == 1:
        return ("list" if method == "GET" else "create"), f"{domain}/{head}"
    if len(parts) == 2:  # noqa: PLR2004 - /<collection>/<key or literal>
        if parts[1].startswith("{"):
            return ("get" if method == "GET" else "update"), f"{domain}/{head}"
        return "list", f"{domain}/{head}.{parts[1]}"
    tail = parts[2]
    if tail == "status":
        return "status", f"{domain}/{head}"
    if tail == "inventory":
        return "inventory", f"{domain}/{head}"
    if tail == "delivered":
        return "delivered", f"{domain}/{head}"
    sub = f"{domain}/{head}.{tail}"
    if method == "GET":
        return "sublist", sub
    return ("subcreate" if len(parts) == 3 else "subupdate"), sub  # noqa: PLR2004 - shape


@cache
def load_spec() -> Spec:
    """Load and index ``_spec.json`` (once per process).

    Returns:
        The shared :class:`Spec`.
    """
    raw = json.loads(_SPEC_FILE.read_text(encoding="utf-8"))
    schemas = {
        domain: {name: tuple(Field(*prop) for prop in props) for name, props in table.items()}
        for domain, table in raw["schemas"].items()
    }
    routes = []
    for method, template, domain, documented, _is_list, content_type, body in raw["routes"]:
        action, resource = _classify(method, template, domain)
        schema = documented
        if resource.endswith((".materials", ".children")) and action in {"list", "sublist"}:
            schema = "MaterialItem"  # the OpenAPI leaves these untyped or says WorkOrder
        if action == "list" and resource.endswith(".custom-fields"):
            schema = "CustomField"
        routes.append(Route(method, template, domain, schema, action, resource, content_type, body))
    exact: dict[str, dict[str, Route]] = {}
    by_template: dict[str, dict[str, Route]] = {}
    for route in routes:
        by_template.setdefault(route.template, {})[route.method] = route
    templates: dict[int, list[tuple[tuple[str, ...], dict[str, Route]]]] = {}
    for template, methods in by_template.items():
        if "{" not in template:
            exact[template] = methods
            continue
        segments = tuple(template.split("/"))
        templates.setdefault(len(segments), []).append((segments, methods))
    for candidates in templates.values():
        # Literal segments win over parameters: /work-orders/materials before /work-orders/{key}.
        candidates.sort(key=lambda item: sum(s.startswith("{") for s in item[0]))
    return Spec(schemas, tuple(routes), exact, templates)
