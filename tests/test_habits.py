"""Habits users bring from httpx and openai-python: ``timeout=``, dict-like ``get``, the env URL."""

from __future__ import annotations

import asyncio
import time

import pytest

import makini_async as m
from makini_async import ConnectionRegistry, Timeouts
from makini_async._registry import DEFAULT_BASE_URL
from makini_async.sandbox import Sandbox
from tests.support import StartRaw, by_deadline


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request, then never answer."""
    del writer
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(3600)


class TestTimeout:
    async def test_a_number_on_the_registry_limits_each_attempt(self, raw_server: StartRaw) -> None:
        """ConnectionRegistry(timeout=0.3) ends an unanswered attempt after about 0.3 s."""
        url = await raw_server(_silent)
        policy = m.RetryPolicy.no_retries()
        async with ConnectionRegistry(url, timeout=0.3, retry=policy) as registry:
            conn = registry.add("c", "t")
            started = time.monotonic()
            with pytest.raises(m.RequestTimeoutError):
                await conn.request("GET", "/x")
            elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < by_deadline(0.3)

    async def test_a_timeouts_on_the_registry_and_a_number_on_the_call(
        self, raw_server: StartRaw
    ) -> None:
        """A `Timeouts` is taken as is, and a call's own number wins over the registry's."""
        url = await raw_server(_silent)
        policy = m.RetryPolicy.no_retries()
        async with ConnectionRegistry(
            url, timeout=Timeouts(connect=5.0, read=0.3), retry=policy
        ) as registry:
            conn = registry.add("c", "t")
            started = time.monotonic()
            with pytest.raises(m.RequestTimeoutError):
                await conn.request("GET", "/x")
            assert time.monotonic() - started < by_deadline(5.3)
            started = time.monotonic()
            with pytest.raises(m.RequestTimeoutError):
                await conn.request("GET", "/x", timeout=0.2)
            # Ended before the registry's own limit (connect + read: 5.3 s) would have.
            assert 0.2 <= time.monotonic() - started < 5.3

    async def test_a_number_on_the_call_is_the_whole_attempt(self, raw_server: StartRaw) -> None:
        """A call's number lifts the registry's read limit too, as on the registry itself."""

        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.6)
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            writer.close()

        url = await raw_server(slow)
        policy = m.RetryPolicy.no_retries()
        async with ConnectionRegistry(
            url, timeout=Timeouts(connect=0.1, read=0.2, total=5.0), retry=policy
        ) as registry:
            conn = registry.add("c", "t")
            with pytest.raises(m.RequestTimeoutError):
                await conn.request("GET", "/x")
            answer = await conn.request("GET", "/x", timeout=5.0)
        assert answer.data == {"ok": True}

    @pytest.mark.parametrize(
        ("value", "error"),
        [("5", TypeError), (True, TypeError), (0, ValueError), (-1.0, ValueError)],
    )
    def test_bad_values_fail_at_once(self, value: object, error: type[Exception]) -> None:
        """A timeout neither a number nor a Timeouts, or not > 0, fails in the constructor."""
        with pytest.raises(error, match="timeout"):
            ConnectionRegistry(timeout=value)  # type: ignore[arg-type]

    def test_the_old_keyword_is_gone(self) -> None:
        """``timeouts=`` was renamed to ``timeout=`` before the first release."""
        with pytest.raises(TypeError, match="timeouts"):
            ConnectionRegistry(timeouts=Timeouts())  # type: ignore[call-arg]


class TestDictLikeGet:
    def test_get_returns_none_or_the_default(self) -> None:
        """get() of an unknown id returns None or the given default; it never raises."""
        registry = ConnectionRegistry()
        conn = registry.add("a", "tok_a")
        assert registry.get("a") is conn
        assert registry.get("missing") is None
        assert registry.get("missing", "fallback") == "fallback"
        assert registry.get("a", "fallback") is conn

    def test_indexing_raises_a_key_error(self) -> None:
        """registry[id] of an unknown id raises ConnectionNotFoundError, a KeyError."""
        registry = ConnectionRegistry()
        with pytest.raises(m.ConnectionNotFoundError) as caught:
            registry["missing"]
        assert isinstance(caught.value, KeyError)

    async def test_membership_takes_ids_and_connections(self) -> None:
        """`in` accepts an id or a Connection, as iteration yields Connections."""
        registry = ConnectionRegistry()
        other = ConnectionRegistry()
        conn = registry.add("a", "tok_a")
        stranger = other.add("a", "tok_b")
        assert "a" in registry
        assert conn in registry
        assert all(item in registry for item in registry)
        assert stranger not in registry
        await registry.remove("a")
        assert conn not in registry
        assert "a" not in registry


class TestBaseUrlFromTheEnvironment:
    async def test_the_variable_is_used_when_no_base_url_is_given(
        self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With MAKINI_BASE_URL set, ConnectionRegistry() sends its requests there."""
        monkeypatch.setenv("MAKINI_BASE_URL", sandbox.url + "/")
        async with ConnectionRegistry() as registry:
            assert registry.base_url == sandbox.url
            conn = registry.add("c1", sandbox.connections["c1"])
            answer = await conn.request("GET", "/api/eam/work-orders")
        assert answer.status == 200

    async def test_the_admin_and_link_clients_read_it_too(
        self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """AdminClient and LinkClient without base_url go where the registry would."""
        monkeypatch.setenv("MAKINI_BASE_URL", sandbox.url)
        async with m.AdminClient(sandbox.client_id, sandbox.client_secret) as admin:
            connections = await admin.connections()
        assert {info.key for info in connections} >= set(sandbox.connections)
        async with m.LinkClient(sandbox.client_id, sandbox.client_secret) as link:
            pair = await link.client_credentials()
        assert pair.access_token
        assert len(sandbox.requests(path="/link/token")) >= 2  # the admin's, and this one

    def test_an_explicit_base_url_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The argument wins over the variable, even a bad variable."""
        monkeypatch.setenv("MAKINI_BASE_URL", "not a url")
        assert ConnectionRegistry("http://127.0.0.1:9").base_url == "http://127.0.0.1:9"

    @pytest.mark.parametrize("value", ["", "   "])
    def test_a_blank_variable_counts_as_unset(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        """An empty MAKINI_BASE_URL falls back to the default origin."""
        monkeypatch.setenv("MAKINI_BASE_URL", value)
        assert ConnectionRegistry().base_url == DEFAULT_BASE_URL

    def test_unset_gives_the_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the variable, the registry talks to Makini's API."""
        monkeypatch.delenv("MAKINI_BASE_URL", raising=False)
        assert ConnectionRegistry().base_url == DEFAULT_BASE_URL

    @pytest.mark.parametrize("value", ["ftp://example.com", "https://user:pw@example.com"])
    def test_a_bad_variable_is_named(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        """A bad MAKINI_BASE_URL raises ValueError naming the variable, not a secret in it."""
        monkeypatch.setenv("MAKINI_BASE_URL", value)
        with pytest.raises(ValueError, match=r"\$MAKINI_BASE_URL") as caught:
            ConnectionRegistry()
        assert "pw@" not in str(caught.value)


def test_retry_policy_docs_say_attempts_are_not_retries() -> None:
    """RetryPolicy's summary tells users that ``attempts`` includes the first try."""
    doc = m.RetryPolicy.__doc__ or ""
    assert "counts attempts, not retries" in doc
