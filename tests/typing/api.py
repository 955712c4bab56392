"""Type-checked, never run: the public API used the way users will use it."""

from __future__ import annotations

import io

from makini_async import (
    APIError,
    APIResponse,
    ConnectionRegistry,
    ConnectionState,
    RateLimit,
    RateLimitError,
    ReconnectEvent,
    RetryPolicy,
    Timeouts,
    TransportError,
    Upload,
)
from makini_async.models import (
    Document,
    Level,
    WorkOrder,
    WorkOrderDocumentInput,
    WorkOrderInput,
    WorkOrderTaskInput,
)
from makini_async.testing import VirtualClock
from makini_async.typing import JSON, ReconnectHook


async def refresh(event: ReconnectEvent) -> str | None:
    if event.error.code == "TOKEN_EXPIRED":
        return f"new-token-for-{event.connection_id}"
    return None


hook: ReconnectHook = refresh


async def use() -> None:
    async with ConnectionRegistry(
        "https://api.makini.io",
        retry=RetryPolicy(attempts=3),
        timeout=Timeouts(read=30.0),
        on_reconnect=hook,
        clock=VirtualClock(),
    ) as registry:
        conn = registry.add("acme", "token", metadata={"tenant": 1})
        try:
            response: APIResponse = await conn.request(
                "GET", "/api/eam/work-orders", params={"page": 2}, deadline=60
            )
        except RateLimitError as exc:
            wait: float | None = exc.retry_after
            del wait
        except APIError as exc:
            code: str | None = exc.code
            del code
        except TransportError as exc:
            reached: bool = exc.may_have_reached_server
            del reached
        else:
            data: JSON = response.data
            limits: RateLimit | None = response.rate_limit
            del data, limits
        state: ConnectionState = conn.state
        del state
        for connection in registry:
            _ = connection.id
        await registry.remove("acme")


async def upload_documents(registry: ConnectionRegistry) -> None:
    conn = registry["acme"]
    document: Document = await conn.eam.documents.upload(
        Upload(io.BytesIO(b"%PDF-1.7"), filename="manual.pdf", content_type="application/pdf"),
        name="Pump manual",
        idempotency_key="upload-manual-1",
    )
    again: Document = await conn.eam.documents.get(document.key or "")
    del again
    response: APIResponse = await conn.request(
        "POST",
        "/api/eam/documents",
        form={"name": "Notes"},
        files={"file": Upload(b"text", filename="notes.txt", content_type="text/plain")},
    )
    form_response: APIResponse = await conn.request("POST", "/x", form={"a": "b"})
    del response, form_response


async def create_with_tasks(registry: ConnectionRegistry) -> None:
    conn = registry["acme"]
    order: WorkOrder = await conn.eam.work_orders.create(
        WorkOrderInput(
            title="Replace seal",
            tasks=[
                WorkOrderTaskInput(title="Drain", check_list=["valve shut"], priority=Level.HIGH)
            ],
            documents=[WorkOrderDocumentInput(name="Manual", url="https://example.com/m.pdf")],
        )
    )
    raw: JSON = [{"title": "Drain"}]
    again: WorkOrder = await conn.eam.work_orders.update(
        order.key or "", WorkOrderInput(tasks=raw, documents=[])
    )
    del again
