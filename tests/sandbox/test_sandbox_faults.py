"""Fault injection, rate limits, latency, the request log and the HTTP control plane."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from makini_async.sandbox import ERRORS, FaultKind, Sandbox
from tests.sandbox.support import Api

WO = "/api/eam/work-orders"


class TestStatusFaults:
    @pytest.mark.parametrize("code", sorted(ERRORS))
    async def test_every_contract_code(self, api: Api, sandbox: Sandbox, code: str) -> None:
        """An injected code answers its status, type and the envelope with X-Request-Id."""
        status, kind, _ = ERRORS[code]
        sandbox.inject(status, code=code, message="injected")
        reply = await api.get(WO)
        assert reply.status == status
        error = reply.body["error"]
        assert error["code"] == code
        assert error["type"] == kind
        assert error["message"] == "injected"
        assert error["request_id"] == reply.headers["X-Request-Id"]
        assert (await api.get(WO)).status == 200

    async def test_times_counts_matching_requests(self, api: Api, sandbox: Sandbox) -> None:
        """A fault armed for two requests fails two and then lets requests through."""
        fault = sandbox.inject(status=503, times=2, retry_after=1)
        statuses = [(await api.get(WO)).status for _ in range(3)]
        assert statuses == [503, 503, 200]
        assert fault.hits == 2
        assert fault.remaining == 0

    async def test_retry_after_and_default_code(self, api: Api, sandbox: Sandbox) -> None:
        """A 503 carries Retry-After and SYSTEM_UNAVAILABLE; a 429 also X-RateLimit-Reset."""
        sandbox.inject(status=503, retry_after=2)
        reply = await api.get(WO)
        assert reply.headers["Retry-After"] == "2"
        assert reply.error_code == "SYSTEM_UNAVAILABLE"
        sandbox.inject(status=429, retry_after=0.5)
        limited = await api.get(WO)
        assert limited.error_code == "RATE_LIMIT_EXCEEDED"
        assert limited.headers["Retry-After"] == "0.5"
        assert int(limited.headers["X-RateLimit-Reset"]) >= int(time.time())

    async def test_matching_by_connection_path_and_method(self, api: Api, sandbox: Sandbox) -> None:
        """Faults only hit requests of their connection, path (or glob) and method."""
        sandbox.inject(status=500, times=None, connection="c2", path="/api/eam/assets*")
        sandbox.inject(status=502, times=None, method="POST")
        assert (await api.get("/api/eam/assets")).status == 200
        other = api.as_connection("c2")
        assert (await other.get("/api/eam/assets")).status == 500
        assert (await other.get("/api/eam/assets", params={"page": "2"})).status == 500
        assert (await other.get(WO)).status == 200
        assert (await api.post(WO, json={"title": "x"})).status == 502
        sandbox.clear_faults()
        assert (await other.get("/api/eam/assets")).status == 200

    async def test_unknown_status_gets_family_code(self, api: Api, sandbox: Sandbox) -> None:
        """A status outside the table answers the family's code (5xx: INTERNAL_ERROR)."""
        sandbox.inject(status=504)
        reply = await api.get(WO)
        assert reply.status == 504
        assert reply.error_code == "INTERNAL_ERROR"

    def test_inject_needs_a_status_or_kind(self, sandbox: Sandbox) -> None:
        """inject() without a status or kind raises ValueError."""
        with pytest.raises(ValueError, match="status"):
            sandbox.inject()


class TestTransportFaults:
    async def test_drop(self, api: Api, sandbox: Sandbox) -> None:
        """A dropped request closes the connection without an answer."""
        sandbox.inject(kind="drop", times=None)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.get(WO)
        sandbox.clear_faults()
        assert (await api.get(WO)).status == 200

    async def test_reset(self, api: Api, sandbox: Sandbox) -> None:
        """A reset answers the request with a TCP RST."""
        sandbox.inject(kind="reset", times=None)
        with pytest.raises(aiohttp.ClientOSError) as info:
            await api.get(WO)
        assert "reset" in str(info.value).lower()
        assert sandbox.requests(path=WO)[-1].fault == "reset"

    async def test_truncate(self, api: Api, sandbox: Sandbox) -> None:
        """A truncated body promises more bytes than arrive."""
        sandbox.inject(kind="truncate")
        with pytest.raises(aiohttp.ClientPayloadError):
            await api.get(WO)

    async def test_malformed(self, api: Api, sandbox: Sandbox) -> None:
        """A malformed answer is a complete 200 whose JSON does not parse."""
        sandbox.inject(kind="malformed")
        reply = await api.get(WO)
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.body is None
        with pytest.raises(ValueError, match=r"."):
            json.loads(reply.text)

    async def test_html_502(self, api: Api, sandbox: Sandbox) -> None:
        """An html fault answers a proxy's 502 page."""
        sandbox.inject(kind="html")
        reply = await api.get(WO)
        assert reply.status == 502
        assert reply.headers["Content-Type"].startswith("text/html")
        assert "502 Bad Gateway" in reply.text
        assert "X-Request-Id" in reply.headers

    async def test_latency_fault(self, api: Api, sandbox: Sandbox) -> None:
        """A latency fault delays the answer and then answers normally."""
        sandbox.inject(latency=0.2)
        start = time.perf_counter()
        reply = await api.get(WO)
        assert reply.status == 200
        assert time.perf_counter() - start >= 0.2

    async def test_latency_setting_and_client_timeout(self, api: Api, sandbox: Sandbox) -> None:
        """A connection's latency makes a short client timeout fire."""
        sandbox.configure("c1", latency=0.5)
        with pytest.raises(TimeoutError):
            async with api.session.get(
                sandbox.url + WO,
                headers={"Authorization": f"Bearer {sandbox.connections['c1']}"},
                timeout=aiohttp.ClientTimeout(total=0.1),
            ):
                pass
        sandbox.configure("c1", latency=0)
        assert (await api.get(WO)).status == 200


class TestRateLimit:
    async def test_headers_on_every_response(self, api: Api) -> None:
        """Every answer carries X-RateLimit-Limit and a falling X-RateLimit-Remaining."""
        first = await api.get(WO)
        second = await api.get("/api/eam/nope")
        assert first.headers["X-RateLimit-Limit"] == "600"
        assert first.headers["X-RateLimit-Remaining"] == "599"
        assert second.headers["X-RateLimit-Remaining"] == "598"
        assert second.status == 404

    async def test_429_after_the_limit(self, api: Api, sandbox: Sandbox) -> None:
        """Past the limit a connection gets 429 with Retry-After and X-RateLimit-Reset."""
        sandbox.time_scale = 1.0  # a window of 30 real seconds: the four calls fit on any machine
        sandbox.configure("c1", rate_limit=3, rate_window=30)
        statuses = [(await api.get(WO)).status for _ in range(3)]
        limited = await api.get(WO)
        assert statuses == [200, 200, 200]
        assert limited.status == 429
        assert limited.error_code == "RATE_LIMIT_EXCEEDED"
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert 1 <= int(limited.headers["Retry-After"]) <= 30
        assert int(limited.headers["X-RateLimit-Reset"]) > time.time()
        assert (await api.as_connection("c2").get(WO)).status == 200
        sandbox.advance(31)
        assert (await api.get(WO)).status == 200


class TestRequestLog:
    async def test_log_records_requests_without_secrets(self, api: Api, sandbox: Sandbox) -> None:
        """The log keeps method, path, query, redacted headers and the idempotency key."""
        await api.get(WO, params={"per_page": "2"})
        await api.post(WO, json={"title": "x"}, headers={"Idempotency-Key": "k1"})
        await api.as_connection("c2").get(WO)
        mine = sandbox.requests("c1")
        assert [(r.method, r.path) for r in mine] == [("GET", WO), ("POST", WO)]
        assert mine[0].query == [("per_page", "2")]
        assert mine[0].headers["Authorization"] == "[redacted]"
        assert sandbox.connections["c1"] not in repr(mine)
        assert mine[1].idempotency_key == "k1"
        assert mine[1].status == 200
        assert mine[0].time <= mine[1].time
        assert len(sandbox.requests(method="GET")) == 2
        sandbox.clear_requests()
        assert sandbox.requests() == []


class TestControlPlane:
    async def test_http_control_plane(self, api: Api, sandbox: Sandbox) -> None:
        """/_sandbox/ creates connections, arms faults and reads the log over HTTP."""
        plane = api.as_connection(None)
        root = await plane.get("/_sandbox/")
        assert root.body["admin_token"] == sandbox.admin_token
        created = await plane.post("/_sandbox/connections", json={"id": "x1", "v4": True})
        token = created.body["token"]
        assert sandbox.connections["x1"] == token
        fault = await plane.post(
            "/_sandbox/faults",
            json={"status": 503, "times": 1, "connection": "x1", "retry_after": 3},
        )
        assert fault.body["remaining"] == 1
        data = api.as_connection("x1")
        assert (await data.get(WO)).status == 503
        ok = await data.get(WO, params={"per_page": "1"})
        assert "id" in ok.body["data"][0]
        log = await plane.get("/_sandbox/requests", params={"connection": "x1"})
        assert [r["status"] for r in log.body] == [503, 200]
        assert log.body[0]["fault"] == "status"
        assert log.body[0]["headers"]["Authorization"] == "[redacted]"
        patched = await plane.request(
            "PATCH", "/_sandbox/connections/x1", json={"status": "inactive"}
        )
        assert patched.body["status"] == "inactive"
        assert (await data.get(WO)).error_code == "CONNECTION_INACTIVE"
        await plane.post("/_sandbox/connections/x1/change-credentials")
        await plane.request("PATCH", "/_sandbox/connections/x1", json={"status": "active"})
        assert (await data.get(WO)).error_code == "REAUTHORIZATION_REQUIRED"
        await plane.post("/_sandbox/connections/x1/reconnect")
        assert (await data.get(WO)).status == 200
        await plane.post("/_sandbox/connections/x1/expire-token")
        assert (await data.get(WO)).error_code == "TOKEN_EXPIRED"
        removed = await plane.request("DELETE", "/_sandbox/connections/x1")
        assert removed.status == 200
        assert "x1" not in sandbox.connections

    async def test_control_plane_errors(self, api: Api) -> None:
        """Unknown control routes and bad bodies answer envelopes, not tracebacks."""
        plane = api.as_connection(None)
        assert (await plane.get("/_sandbox/nope")).status == 404
        bad = await plane.post("/_sandbox/faults", json={"kind": "explode"})
        assert bad.status == 400
        assert bad.error_code == "INVALID_REQUEST"
        missing = await plane.request("DELETE", "/_sandbox/connections/ghost")
        assert missing.status == 404
        broken = await plane.post(
            "/_sandbox/faults", data=b"{", headers={"Content-Type": "application/json"}
        )
        assert broken.status == 400

    async def test_control_plane_is_not_on_makini_paths(self, api: Api, sandbox: Sandbox) -> None:
        """Control routes live only under /_sandbox/, and faults never touch them."""
        sandbox.inject(status=500, times=None)
        assert (await api.as_connection(None).get("/_sandbox/faults")).status == 200
        assert (await api.get("/api/sandbox/faults")).status == 500
        sandbox.clear_faults()
        assert (await api.get("/api/_sandbox/faults")).status == 404

    async def test_concurrent_requests_share_a_fault(self, api: Api, sandbox: Sandbox) -> None:
        """A fault for three requests hits exactly three of many concurrent requests."""
        sandbox.inject(status=503, times=3)
        replies = await asyncio.gather(*(api.get(WO) for _ in range(10)))
        assert sorted(r.status for r in replies) == [200] * 7 + [503] * 3


class TestControlActions:
    async def test_connection_actions_over_http(self, api: Api, sandbox: Sandbox) -> None:
        """Codes, sync failures, soft deletes and the clock are driven over /_sandbox/."""
        plane = api.as_connection(None)
        code = await plane.post("/_sandbox/connections/c1/authorization-code")
        exchanged = await plane.post(
            "/link/token",
            json={
                "grant_type": "authorization_code",
                "code": code.body["code"],
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
            },
        )
        assert exchanged.body["access_token"] == sandbox.connections["c1"]
        await plane.post("/_sandbox/connections/c1/fail-next-sync", json={"status": "fail"})
        assert sandbox.connection("c1").next_sync_failure == {
            "status": "fail",
            "code": "AUTHENTICATION_FAILED",
        }
        key = sandbox.records("c1", "eam/assets")[0]["key"]
        deleted = await plane.post(
            "/_sandbox/connections/c1/soft-delete", json={"resource": "eam/assets", "key": key}
        )
        assert deleted.body["deletedAt"]
        before = sandbox.now()
        clock = await plane.post("/_sandbox/time", json={"scale": 0.5, "advance": 3600})
        assert clock.body["time_scale"] == 0.5
        assert clock.body["now"] >= before + 3600
        unknown = await plane.post("/_sandbox/connections/c1/explode")
        assert unknown.status == 404
        disconnected = await plane.post("/_sandbox/connections/c1/disconnect")
        assert disconnected.body["disconnected"] is True

    async def test_fault_list_and_clear_over_http(self, api: Api, sandbox: Sandbox) -> None:
        """Armed faults are listed and cleared over /_sandbox/faults."""
        plane = api.as_connection(None)
        await plane.post("/_sandbox/faults", json={"kind": "drop", "times": None, "path": WO})
        listed = await plane.get("/_sandbox/faults")
        assert [(f["kind"], f["remaining"], f["path"]) for f in listed.body] == [("drop", None, WO)]
        await plane.request("DELETE", "/_sandbox/faults")
        assert sandbox.faults() == []
        connections = await plane.get("/_sandbox/connections")
        assert [c["id"] for c in connections.body] == ["c1", "c2"]


class TestClientResends:
    @pytest.mark.parametrize("kind", ["drop", "reset"])
    async def test_aiohttp_resends_once(self, api: Api, sandbox: Sandbox, kind: FaultKind) -> None:
        """aiohttp resends a GET once after a drop or reset: one shot is invisible, two are not."""
        sandbox.inject(kind=kind, times=1)
        assert (await api.get(WO)).status == 200
        assert len(sandbox.requests(path=WO)) == 2
        sandbox.inject(kind=kind, times=2)
        with pytest.raises(aiohttp.ClientError):
            await api.get(WO)
