"""The ASGI adapter: a plain ASGI 3 application, for Starlette, FastAPI or any ASGI server.

It imports nothing from any framework: the application is a ``scope, receive, send`` callable
that reads the body message by message (so the size cap stops reading early), hands it to the
receiver and sends the receiver's answer. It also speaks the lifespan protocol, for when it is
the server's application itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

from ._core import Endpoint, header_pairs

__all__ = ["WebhookASGIApp"]

#: An ASGI message or scope, as the adapter reads it.
Message = Mapping[str, object]
#: ASGI's ``receive`` callable.
Receive = Callable[[], Awaitable[Message]]
#: ASGI's ``send`` callable.
Send = Callable[[dict[str, object]], Awaitable[None]]

# A websocket handshake refused before it is accepted: the server answers 403.
_POLICY_VIOLATION: Final = 1008


class _Body:
    """The request body as an async iterator of chunks, read from ``http.request`` messages."""

    __slots__ = ("_done", "_receive")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._done = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            message = await self._receive()
            kind = message.get("type")
            if kind == "http.disconnect":
                self._done = True
                raise ConnectionResetError("The sender hung up before the whole body arrived.")
            if kind != "http.request":
                continue
            self._done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if isinstance(chunk, bytes) and chunk:
                return chunk
        raise StopAsyncIteration


def _headers(scope: Message) -> CIMultiDictProxy[str]:
    # Latin-1 maps every byte to one character, as ASGI frameworks decode headers; the checks
    # that matter (signature, id) accept printable ASCII only.
    pairs = scope.get("headers", ())
    headers: CIMultiDict[str] = CIMultiDict()
    if isinstance(pairs, list | tuple):
        for pair in pairs:
            name, value = pair
            headers.add(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
    return CIMultiDictProxy(headers)


def _remote(scope: Message) -> str | None:
    client = scope.get("client")
    if isinstance(client, list | tuple) and client:
        return str(client[0])
    return None


class WebhookASGIApp:
    """A `WebhookReceiver` as an ASGI 3 application (``receiver.asgi()``).

    Every request it is given is a delivery, whatever its path: mount it where Makini posts.
    In Starlette, ``Mount("/webhooks/makini", app=receiver.asgi())`` (the endpoint is then
    ``/webhooks/makini/``) or ``Route("/webhooks/makini", receiver.asgi(), methods=["POST"])``;
    in FastAPI, ``app.mount("/webhooks/makini", receiver.asgi())``. A framework does not pass
    its lifespan to mounted applications: start and drain the receiver from the framework's
    own lifespan with ``async with receiver:``. Run as the server's application itself
    (``uvicorn module:app`` with ``app = receiver.asgi()``), it starts the receiver's workers on
    ``lifespan.startup`` and drains them and closes the store on ``lifespan.shutdown``.

    The answers are those of the aiohttp.web adapter, byte for byte: see
    `WebhookReceiver.receive`.

    Args:
        receiver: The receiver that checks, deduplicates and dispatches the deliveries.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_receiver",)

    def __init__(self, receiver: Endpoint) -> None:
        self._receiver = receiver

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: an HTTP request, the lifespan, or a refused websocket.

        Raises:
            ValueError: A scope type ASGI does not define.
        """
        kind = scope.get("type")
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
        else:
            raise ValueError(f"The webhook receiver serves HTTP, not ASGI scope type {kind!r}.")

    async def _http(self, scope: Message, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        answer = await self._receiver.receive(
            _Body(receive),
            _headers(scope),
            method=method if isinstance(method, str) else "",
            remote=_remote(scope),
        )
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in header_pairs(answer)]
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        await send({"type": "http.response.body", "body": answer.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                try:
                    await self._receiver.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await self._receiver.aclose()
                except Exception as exc:  # noqa: BLE001 - reported to the server
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    def __repr__(self) -> str:
        return f"<WebhookASGIApp {self._receiver!r}>"
