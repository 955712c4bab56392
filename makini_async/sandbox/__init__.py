"""A faithful local Makini API server for tests, demos and benchmarks.

``Sandbox`` speaks the contract in ``makini-api.md`` over real HTTP (aiohttp.web): every path of
Makini's OpenAPI files with generated, seeded data, the auth lifecycle, writes with per-provider
rules and idempotency, sync state, signed webhooks with retries, rate limits, and a control plane
(``/_sandbox/`` and the same Python methods) that injects faults on request. Of the client side
of makini_async it uses only `makini_async.webhooks.sign`, so its deliveries verify by
construction.

A tour::

    async with Sandbox(connections=3, seed=1, time_scale=0.001) as sandbox:
        sandbox.url, sandbox.connections["c1"]          # base URL, id -> bearer token
        await sandbox.add_connection("acme", provider="upkeep", v4=True)
        sandbox.inject(status=503, times=2, connection="c1",
                       path="/api/eam/work-orders", retry_after=1)
        sandbox.inject(kind="reset")                     # drop, truncate, malformed, html, latency
        sandbox.configure("c1", rate_limit=5, latency=0.05, read_only=True)
        sandbox.change_credentials("c1"); sandbox.reconnect("c1")
        sandbox.expire_token("c1"); sandbox.set_status("c1", "inactive")
        sandbox.requests(connection="c1")                # the request log
        sandbox.requests("c1", method="POST")[-1].json()  # what a create sent
        hook = sandbox.add_webhook("c1", "http://127.0.0.1:9000/hook", events=["work-orders.*"])
        await sandbox.wait_for_deliveries(1); sandbox.deliveries(); sandbox.events()

Records can be read with ``sandbox.records("c1", "eam/work-orders")`` to build expectations.
Run it from the shell with ``python -m makini_async.sandbox --port 8600 --connections 20``.

Types and writes
----------------

Every record field holds the JSON that the client's typed models read there (``_fields``):
``...Key`` a key, ``...Keys`` a list of keys, ``...At``/``...Date`` an ISO-8601 UTC timestamp,
number-named fields (``...Quantity``, ``...Value``, ``estimatedTime``) a numeric string, and
nested objects the properties of their schema. A write checks every field it sends against
that type and answers 422 ``VALIDATION_ERROR`` with ``details.fields`` (field, or dotted path
such as ``tasks.0.title``, → messages); what it accepts is stored as records carry it, so the
answer to a write is what a later read of the record gives (``estimatedTime: 10`` is stored
and read back as ``"10"``). ``""`` counts as ``null``, as in Laravel. Unknown fields are
dropped (inside nested objects they are kept, as custom fields); ``key`` and
``materialCount`` are the sandbox's own. JSON that Python parses but no
encoder writes back (``NaN``, lone surrogates, nesting past 32 levels) answers 400, and
integers past 64 bits answer 422 wherever records hold JSON numbers. Nested documents and
inventories are copies of records that ``/documents/{key}`` and ``/inventories/{key}`` serve.
Every error, including a path aiohttp cannot route, is the contract's JSON envelope with
``X-Request-Id`` (the faults injected on purpose aside).

Deviations from the OpenAPI files
---------------------------------

The files are followed path by path and property by property, except where they contradict
Makini's records, the client's models or themselves (``tests/sandbox/test_contract.py``
checks every operation against them, with these deviations normalised):

- Every record property says ``"nullable": false``, yet records leave unset fields ``null``
  (lists ``[]``), and the files' own write rules say ``nullable``: the sandbox sends ``null``.
- Properties typed a bare ``object`` (no ``$ref``: ``Stock.quantity``, ``Part.cost``,
  ``POLineItem.price``, ``PurchaseOrder.orderDate``, ``LineItem.uomKey``) hold the scalar their
  example and name say: a numeric string, a timestamp or a key.
- ``...Keys`` properties typed ``string`` (``Asset.accountKeys``, ``Part.vendorKeys``,
  ``Counter.assetKeys``, ``Labor.organizationKeys``, ``...documentKeys``) hold lists of keys,
  as every other ``...Keys`` field, the client's models and its write bodies do.
- Body fields typed ``string`` that hold numbers or timestamps by name refuse other text
  (422), and body fields whose record declares another type take the record's
  (``Fulfillment.lineItems``: an array in the body, a string in the record).
- ``tasks`` and ``documents``, typed ``object`` in work-order bodies, take a list of objects
  (one object is stored as a list of one), as records carry them.
- Materials sub-lists (``/work-orders/{key}/materials``, ``/materials/{key}/children``, ...),
  untyped or typed ``WorkOrder`` in the files, answer ``MaterialItem`` pages.
- ``PUT /materials/{key}/inventory`` answers the record as ``GET /materials/{key}`` shows it
  (``Part``), not the ``Material`` the file names.
- Admin API: connection metadata is a list of ``{key, value}`` (listed and set),
  ``Connection.user_metadata`` an object and ``ConnectionStore.expires_in`` an integer (Unix
  time), as ``makini-api.md`` and the client's models say.
- ``meta.from`` and ``meta.to`` are ``null`` on an empty page, as Laravel's paginator does.
- ``example`` values (``"string"`` in number fields, ``"[]"`` in arrays) are not followed.
- ``page`` runs from 1 to 2**31 - 1 (400 beyond), and ``per_page`` is capped at 500.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from makini_async.sandbox._connections import SandboxConnection
from makini_async.sandbox._errors import ERRORS
from makini_async.sandbox._faults import Fault, FaultKind
from makini_async.sandbox._request_log import FormPart, RequestRecord
from makini_async.sandbox._rules import PROVIDERS, ProviderRules
from makini_async.sandbox._server import Sandbox
from makini_async.sandbox._webhooks import Delivery, WebhookEndpoint

__all__ = [
    "ERRORS",
    "PROVIDERS",
    "Delivery",
    "Fault",
    "FaultKind",
    "FormPart",
    "ProviderRules",
    "RequestRecord",
    "Sandbox",
    "SandboxConnection",
    "WebhookEndpoint",
]
