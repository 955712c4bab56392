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
