"""TLS over real loopback sockets: certificates checked by default, typed errors, no retries.

The certificates come from a throwaway certificate authority (trustme). F20/S4 of the reliability
checklist: a server whose certificate the client cannot verify (unknown authority, wrong host
name, expired, or no TLS at all) gives `TLSError` (a `ConnectError`: nothing was sent) at once,
without a retry and without the token anywhere in the error.
"""

from __future__ import annotations

import asyncio
import ssl
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from aiohttp import web

from makini_async import ConnectError, ConnectionRegistry, TLSError
from tests.support import ZERO_WAIT

TOKEN = "tls-canary-token-5f1c9e"

StartTLS = Callable[[ssl.SSLContext | None], Awaitable[tuple[str, list[int]]]]


@pytest.fixture(name="ca", scope="module")
def _ca() -> trustme.CA:
    return trustme.CA()


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture(name="start_tls")
async def _start_tls() -> AsyncIterator[StartTLS]:
    """Serve a small app over TLS (or plain TCP with None) on 127.0.0.1, counting handshakes."""
    runners: list[web.AppRunner] = []

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"data": {"authorization": "Bearer" in request.headers.get("Authorization", "")}}
        )

    async def start(context: ssl.SSLContext | None) -> tuple[str, list[int]]:
        handshakes: list[int] = []
        if context is not None:
            # Called on every ClientHello that names a host (the client sends "localhost").
            context.sni_callback = lambda _socket, _name, _context: handshakes.append(1)
        app = web.Application()
        app.router.add_get("/api/eam/sites", handler)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        runners.append(runner)
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        return f"https://localhost:{port}", handshakes

    yield start
    for runner in runners:
        await runner.cleanup()


async def _refused(url: str, **registry_kwargs: object) -> TLSError:
    async with ConnectionRegistry(url, retry=ZERO_WAIT, **registry_kwargs) as registry:  # type: ignore[arg-type]
        conn = registry.add("acme", TOKEN)
        with pytest.raises(TLSError) as caught:
            await conn.request("GET", "/api/eam/sites")
    error = caught.value
    assert isinstance(error, ConnectError)
    assert error.may_have_reached_server is False
    text = "".join(traceback.format_exception(error))
    assert TOKEN not in text
    assert TOKEN not in repr(error)
    return error


class TestVerification:
    async def test_a_trusted_certificate_works(self, ca: trustme.CA, start_tls: StartTLS) -> None:
        url, accepted = await start_tls(_server_context(ca.issue_cert("localhost")))
        async with ConnectionRegistry(url, ssl=_client_context(ca)) as registry:
            answer = await registry.add("acme", TOKEN).request("GET", "/api/eam/sites")
        assert answer.data == {"data": {"authorization": True}}
        assert accepted == [1]

    async def test_an_unknown_authority_is_refused_once(
        self, ca: trustme.CA, start_tls: StartTLS
    ) -> None:
        """The default registry checks certificates against the system's authorities."""
        url, accepted = await start_tls(_server_context(ca.issue_cert("localhost")))
        error = await _refused(url)
        assert "TLS handshake failed" in str(error)
        assert error.path == "/api/eam/sites"
        assert accepted == [1]  # not retried, although connect errors are

    async def test_a_wrong_host_name_is_refused(self, ca: trustme.CA, start_tls: StartTLS) -> None:
        url, accepted = await start_tls(_server_context(ca.issue_cert("api.makini.io")))
        await _refused(url, ssl=_client_context(ca))
        assert accepted == [1]

    async def test_an_expired_certificate_is_refused(
        self, ca: trustme.CA, start_tls: StartTLS
    ) -> None:
        now = datetime.now(UTC)
        cert = ca.issue_cert(
            "localhost", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        )
        url, _ = await start_tls(_server_context(cert))
        await _refused(url, ssl=_client_context(ca))

    async def test_a_server_without_tls_is_a_typed_error(self, start_tls: StartTLS) -> None:
        url, accepted = await start_tls(None)
        async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
            with pytest.raises(ConnectError) as caught:
                await registry.add("acme", TOKEN).request("GET", "/api/eam/sites")
        assert TOKEN not in "".join(traceback.format_exception(caught.value))
        assert accepted == []  # no TLS on that side, so no handshake was ever started


class TestUnsafe:
    async def test_ssl_false_is_logged_and_then_accepts_any_certificate(
        self, ca: trustme.CA, start_tls: StartTLS, caplog: pytest.LogCaptureFixture
    ) -> None:
        url, _ = await start_tls(_server_context(ca.issue_cert("api.makini.io")))
        async with ConnectionRegistry(url, ssl=False) as registry:
            answer = await registry.add("acme", TOKEN).request("GET", "/api/eam/sites")
        assert answer.status == 200
        assert any("verification is disabled" in r.getMessage() for r in caplog.records)
        assert all(TOKEN not in r.getMessage() for r in caplog.records)
