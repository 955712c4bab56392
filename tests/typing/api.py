"""Type-checked, never run: the public API used the way users will use it."""

from __future__ import annotations

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
        timeouts=Timeouts(read=30.0),
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
