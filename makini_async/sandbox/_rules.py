"""Write validation: field types, the OpenAPI body rules, per-provider required fields and support.

Every written field is checked against the type records carry it with (``_fields``), and the
body rules come from ``_spec.json`` (Laravel-style strings that leaked into Makini's OpenAPI,
e.g. ``numeric|required``). The provider rules follow Makini's ``platform-validation.md``
as quoted in ``makini-api-facts.md`` for ``POST /work-orders``; which entities each provider can
write at all is the sandbox's own assumption (marked [ours]) and can be changed per connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs

from makini_async.sandbox._fields import Wire, coerce, rule_wire
from makini_async.sandbox._spec import Field

__all__ = ["PROVIDERS", "ProviderRules", "check_body", "clean_body", "provider_errors"]


@attrs.frozen
class ProviderRules:
    """What one source platform requires and supports.

    Attributes:
        required: ``(method, collection)`` → fields that must be present and non-empty.
        writable: Collections the platform can write (``None``: every collection).
    """

    required: Mapping[tuple[str, str], tuple[str, ...]] = attrs.Factory(dict)
    writable: frozenset[str] | None = None


_CMMS_WRITES: Final = frozenset(
    {"work-orders", "work-orders.materials", "service-requests", "assets", "materials"}
)
#: Rules by provider slug. ``sandbox`` (the default) accepts every write the OpenAPI lists.
PROVIDERS: Final[dict[str, ProviderRules]] = {
    "sandbox": ProviderRules(),
    "upkeep": ProviderRules(
        required={("POST", "work-orders"): ("assetKey", "title", "severity", "scheduledAt")},
        writable=_CMMS_WRITES,
    ),
    "maintain-x": ProviderRules(
        required={("POST", "work-orders"): ("siteKey", "title")},
        writable=_CMMS_WRITES,
    ),
    "emaint": ProviderRules(
        required={("POST", "work-orders"): ("assetKey", "title", "scheduledAt")},
        writable=frozenset({"work-orders", "work-orders.materials", "service-requests", "assets"}),
    ),
    "service-channel": ProviderRules(
        required={
            ("POST", "work-orders"): (
                "organizationKey",
                "siteKey",
                "accountKey",
                "title",
                "description",
                "severity",
                "scheduledAt",
            )
        },
        writable=frozenset({"work-orders", "work-orders.materials", "service-requests"}),
    ),
}


#: Fields a write never sets: the record's key and what the sandbox derives from other records.
_DERIVED: Final = frozenset({"key", "materialCount"})


def _required(name: str, rule: str, value: object) -> str | None:
    parts = set(rule.split("|"))
    if "required" in parts and (value is None or value == ""):
        return f"The {name} field is required."
    if (
        "email" in parts
        and value not in {None, ""}
        and (not isinstance(value, str) or "@" not in value)
    ):
        return f"The {name} field must be a valid email address."
    return None


def clean_body(
    body: Mapping[str, object],
    rules: Mapping[str, str],
    declared: Sequence[tuple[Field, Wire]] = (),
    nested: Callable[[str], Sequence[tuple[Field, Wire]]] | None = None,
) -> tuple[dict[str, object], dict[str, list[str]]]:
    """Check a JSON write body and return the values to store.

    A field the record's schema declares takes that field's wire type, so that what is stored
    reads back with the type the records have; a field only the route's body declares takes
    the type of its Laravel-style rule (``numeric|required``). Other fields are dropped.

    Args:
        body: The decoded JSON object.
        rules: The route's body fields and their rules.
        declared: The record's properties with their wire types.
        nested: The typed properties of nested schemas (for objects and lists of them).

    Returns:
        ``(values to store, field → messages)``; the body is refused when there are messages.
    """
    wires = {field.name: (wire, field.detail) for field, wire in declared}
    cleaned: dict[str, object] = {}
    errors: dict[str, list[str]] = {}
    for name, value in body.items():
        if name in _DERIVED:
            continue
        if name in wires:
            wire, detail = wires[name]
        elif name in rules:
            wire, detail = rule_wire(name, rules[name]), ""
        else:
            continue
        stored, found = coerce(wire, value, name, detail=detail, nested=nested)
        cleaned[name] = stored
        for path, messages in found.items():
            errors.setdefault(path, []).extend(messages)
    for name, rule in rules.items():
        message = _required(name, rule, body.get(name))
        if message and name not in errors:
            errors[name] = [message]
    return cleaned, errors


def check_body(body: Mapping[str, object], rules: Mapping[str, str]) -> dict[str, list[str]]:
    """Check a JSON body against field rules alone (the system and sync endpoints).

    Returns:
        Field → messages for every broken rule (empty when the body is valid).
    """
    return clean_body(body, rules)[1]


def provider_errors(
    rules: ProviderRules, method: str, collection: str, body: Mapping[str, object]
) -> dict[str, list[str]]:
    """Check the provider's required fields for a write.

    On ``POST`` every required field must be present; on ``PUT`` a required field may be left
    out but not emptied.
    """
    errors: dict[str, list[str]] = {}
    for name in rules.required.get(("POST", collection), ()):
        if method == "PUT" and name not in body:
            continue
        value = body.get(name)
        if value is None or value == "":
            errors[name] = [f"The {name} field is required by this platform."]
    return errors
