"""Write validation: the OpenAPI body rules plus per-provider required fields and write support.

The body rules come from ``_spec.json`` (Laravel-style strings that leaked into Makini's
OpenAPI, e.g. ``numeric|required``). The provider rules follow Makini's ``platform-validation.md``
as quoted in ``makini-api-facts.md`` for ``POST /work-orders``; which entities each provider can
write at all is the sandbox's own assumption (marked [ours]) and can be changed per connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from makini_async.sandbox._data import parse_iso

__all__ = ["PROVIDERS", "ProviderRules", "check_body", "provider_errors"]


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


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _objects(value: object) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _check(name: str, rule: str, value: object) -> str | None:  # noqa: PLR0911 - one per rule
    parts = set(rule.split("|"))
    if value is None or value == "":
        return f"The {name} field is required." if "required" in parts else None
    if "numeric" in parts and not _is_number(value):
        return f"The {name} field must be a number."
    if "integer" in parts and (isinstance(value, bool) or not isinstance(value, int)):
        return f"The {name} field must be an integer."
    if "boolean" in parts and not isinstance(value, bool):
        return f"The {name} field must be true or false."
    if "date" in parts and (not isinstance(value, str) or parse_iso(value) is None):
        return f"The {name} field must be a valid date."
    if "email" in parts and (not isinstance(value, str) or "@" not in value):
        return f"The {name} field must be a valid email address."
    if "array" in parts and not isinstance(value, list):
        return f"The {name} field must be an array."
    if "object" in parts and not _objects(value):
        # The OpenAPI types nested write fields (a work order's tasks and documents) as
        # objects; Makini's records carry them as lists of objects. Both are taken.
        return f"The {name} field must be an object or a list of objects."
    if "string" in parts and isinstance(value, dict | list):
        return f"The {name} field must be a string."
    return None


def check_body(body: Mapping[str, object], rules: Mapping[str, str]) -> dict[str, list[str]]:
    """Check a JSON body against the route's field rules.

    Returns:
        Field → messages for every broken rule (empty when the body is valid).
    """
    errors: dict[str, list[str]] = {}
    for name, rule in rules.items():
        message = _check(name, rule, body.get(name))
        if message:
            errors.setdefault(name, []).append(message)
    return errors


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
