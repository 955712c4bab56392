"""Caching, custom fields, the package boundary, timeouts and the benchmark script."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import multiprocessing
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import makini_async.sandbox
from makini_async.sandbox import Sandbox
from tests.sandbox.support import Api

WO = "/api/eam/work-orders"
PACKAGE = Path(makini_async.sandbox.__file__).parent
#: What the sandbox may import from the rest of makini_async: the webhook signature, so deliveries
#: verify with the client's `verify()`; the OpenAPI files its route table is derived from; the
#: lazy loading of the optional extras (orjson); and what Makini's field names say of their
#: values, read as the models' generator reads them.
SHARED = (
    "makini_async.sandbox",
    "makini_async.webhooks",
    "makini_async._openapi",
    "makini_async._optional",
    "makini_async._naming",
)
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _imported(path: Path) -> list[str]:
    """Every module a source file imports, by its full name."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "makini_async":
            names.extend(f"makini_async.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


class TestPageCache:
    async def test_writes_invalidate_cached_pages(self, api: Api, sandbox: Sandbox) -> None:
        """A cached page shows a write made after it was first served."""
        first = await api.get(WO, params={"per_page": "5"})
        key = first.body["data"][0]["key"]
        await api.put(f"{WO}/{key}", json={"title": "renamed"})
        again = await api.get(WO, params={"per_page": "5"})
        assert again.body["data"][0]["title"] == "renamed"
        created = await api.post(WO, json={"title": "last"})
        total = await api.get(WO, params={"per_page": "5"})
        assert total.body["meta"]["total"] == first.body["meta"]["total"] + 1
        assert created.body["data"]["key"] == sandbox.records("c1", "eam/work-orders")[-1]["key"]

    async def test_settings_invalidate_cached_pages(self, api: Api, sandbox: Sandbox) -> None:
        """Turning v4 on changes pages that were cached in the v3 shape."""
        await api.get(WO, params={"per_page": "5"})
        sandbox.configure("c1", v4=True)
        again = await api.get(WO, params={"per_page": "5"})
        assert "id" in again.body["data"][0]


class TestCustomFields:
    async def test_custom_fields_appear_on_records(self, api: Api, sandbox: Sandbox) -> None:
        """Custom fields configured for a collection show on its list and get answers."""
        sandbox.configure("c1", custom_fields={"work-orders": {"x_costCenter": "CC-7"}})
        page = await api.get(WO, params={"per_page": "2"})
        assert all(r["x_costCenter"] == "CC-7" for r in page.body["data"])
        one = await api.get(f"{WO}/{page.body['data'][0]['key']}")
        assert one.body["data"]["x_costCenter"] == "CC-7"
        assets = await api.get("/api/eam/assets", params={"per_page": "1"})
        assert "x_costCenter" not in assets.body["data"][0]


class TestHeaders:
    async def test_rate_headers_without_a_connection(self, api: Api) -> None:
        """Answers to requests without a connection token still carry X-RateLimit headers."""
        reply = await api.as_connection(None).get(WO)
        assert reply.status == 401
        assert reply.headers["X-RateLimit-Limit"] == "600"
        assert reply.headers["X-RateLimit-Remaining"] == "600"


class TestFaultsAfterBodies:
    async def test_reset_after_a_posted_body(self, api: Api, sandbox: Sandbox) -> None:
        """A reset on a POST comes after the body was read, and the write did not happen."""
        before = len(sandbox.records("c1", "eam/work-orders"))
        sandbox.inject(kind="reset", method="POST")
        with pytest.raises(aiohttp.ClientOSError):
            await api.post(WO, json={"title": "lost"})
        assert len(sandbox.records("c1", "eam/work-orders")) == before


class TestWebhookTimeout:
    async def test_slow_receiver_times_out_and_is_retried(self) -> None:
        """A receiver slower than the webhook timeout is logged as an error and retried."""
        gate = asyncio.Event()
        calls = 0

        async def slow(request: web.Request) -> web.Response:
            nonlocal calls
            calls += 1
            if calls == 1:
                await gate.wait()
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/hook", slow)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with Sandbox(webhook_timeout=0.2, time_scale=0.001) as sandbox:
                url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
                sandbox.add_webhook("c1", url)
                sandbox.emit("c1", "system.error")
                await sandbox.wait_for_deliveries(1)
                first, second = sandbox.deliveries()
                assert first.status is None
                assert first.error
                assert "Timeout" in first.error
                assert second.ok
        finally:
            gate.set()
            await runner.cleanup()


class TestEvents:
    async def test_disconnect_and_reconnect_emit_status_changes(self, sandbox: Sandbox) -> None:
        """Disconnecting emits online→offline and reconnecting offline→online."""
        sandbox.disconnect("c1")
        sandbox.reconnect("c1")
        changes = [e["data"] for e in sandbox.events()]
        assert changes == [
            {"previous": "online", "current": "offline"},
            {"previous": "offline", "current": "online"},
        ]


class TestBoundary:
    def test_sandbox_never_imports_the_client(self) -> None:
        """No sandbox module imports makini_async's client modules, but for the shared ones."""
        for path in PACKAGE.glob("*.py"):
            for name in _imported(path):
                if name.startswith("makini_async"):
                    assert name.startswith(SHARED), (path.name, name)

    def test_public_names(self) -> None:
        """Every name in the sandbox package's __all__ exists."""
        names = makini_async.sandbox.__all__
        assert "Sandbox" in names
        assert all(hasattr(makini_async.sandbox, name) for name in names)


class TestBenchmark:
    def test_benchmark_imports_without_side_effects(self) -> None:
        """Importing the benchmark script starts nothing."""
        spec = importlib.util.spec_from_file_location(
            "bench_sandbox", BENCHMARKS / "bench_sandbox.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(module.run)
        assert multiprocessing.active_children() == []

    async def test_benchmark_runs(self) -> None:
        """A tiny run of the benchmark script prints both rates and their ratio."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCHMARKS / "bench_sandbox.py"),
            "--requests",
            "100",
            "--rounds",
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(50):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert "ratio sandbox/baseline" in out.decode()


class TestLifecycle:
    async def test_url_start_and_close(self) -> None:
        """url needs a running sandbox, start twice fails, and aclose is idempotent."""
        sandbox = Sandbox()
        assert "not running" in repr(sandbox)
        with pytest.raises(RuntimeError, match="not running"):
            _ = sandbox.url
        await sandbox.start()
        try:
            assert sandbox.url in repr(sandbox)
            with pytest.raises(RuntimeError, match="already running"):
                await sandbox.start()
        finally:
            await sandbox.aclose()
            await sandbox.aclose()

    def test_bad_connection_arguments(self) -> None:
        """Unknown providers, statuses and taken ids are refused with a ValueError."""
        sandbox = Sandbox(connections=1)
        with pytest.raises(ValueError, match="provider"):
            sandbox.add_connection_sync(provider="nope")
        with pytest.raises(ValueError, match="status"):
            sandbox.add_connection_sync(status="sleepy")
        with pytest.raises(ValueError, match="exists"):
            sandbox.add_connection_sync("c1")
        with pytest.raises(KeyError, match="ghost"):
            sandbox.connection("ghost")
