"""The receiver over real loopback HTTP: answers, dispatch, dedup, backpressure, shutdown."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from makini_async import UsageError
from makini_async.webhooks import (
    EntityEvent,
    MemoryDedupStore,
    SQLiteDedupStore,
    SyncCompletedEvent,
    WebhookEvent,
    WebhookReceiver,
)
from tests.webhooks.support import OLD_SECRET, SECRET, Recorder, Serve, envelope, signed


class TestDispatch:
    async def test_handlers_by_name_pattern_and_class(self, serve: Serve) -> None:
        """Handlers are chosen by exact name, glob pattern and event class, in order."""
        served = await serve()
        receiver = served.receiver
        calls: list[tuple[str, str]] = []

        @receiver.on("connection.sync_completed")
        async def by_name(event: WebhookEvent) -> None:
            calls.append(("name", event.type))

        @receiver.on("*.updated", "*.deleted")
        async def by_pattern(event: WebhookEvent) -> None:
            calls.append(("pattern", event.type))

        @receiver.on(EntityEvent)
        async def by_class(event: EntityEvent) -> None:
            calls.append(("class", event.entity))

        everything = Recorder()
        receiver.on("*")(everything)
        for name in ("connection.sync_completed", "assets.updated", "assets.inserted", "flow.x"):
            assert await served.deliver(envelope(name, body=["k"])) == 200
        await everything.wait_for(4)
        await receiver.join()
        assert calls == [
            ("name", "connection.sync_completed"),
            ("pattern", "assets.updated"),
            ("class", "assets"),
            ("class", "assets"),
        ]
        assert [type(e).__name__ for e in everything.events] == [
            "SyncCompletedEvent",
            "EntityEvent",
            "EntityEvent",
            "FlowEvent",
        ]

    async def test_a_handler_runs_once_per_event(self, serve: Serve) -> None:
        """A handler selected twice for one event still runs once."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on("system.error", "system.*", "*")(recorder)
        assert await served.deliver(envelope("system.error")) == 200
        await served.receiver.join()
        assert len(recorder.events) == 1

    async def test_typed_handler(self, serve: Serve) -> None:
        """A class selector hands the handler that class, with its typed fields."""
        served = await serve()
        seen: list[int] = []

        @served.receiver.on(SyncCompletedEvent)
        async def synced(event: SyncCompletedEvent) -> None:
            seen.append(event.counts["assets"])

        payload = envelope("connection.sync_completed", data={"counts": {"assets": 7}})
        assert await served.deliver(payload) == 200
        await served.receiver.join()
        assert seen == [7]

    async def test_remove_handler(self, serve: Serve) -> None:
        """add_handler returns a function that removes the handler."""
        served = await serve()
        recorder = Recorder()
        remove = served.receiver.add_handler(recorder, "system.error")
        assert await served.deliver(envelope("system.error")) == 200
        await served.receiver.join()
        remove()
        assert await served.deliver(envelope("system.error")) == 200
        await served.receiver.join()
        assert len(recorder.events) == 1

    async def test_event_without_handler_is_accepted(self, serve: Serve) -> None:
        """An event nobody handles is still answered 200 and counted."""
        served = await serve()
        assert await served.deliver(envelope("billing.something")) == 200
        await served.receiver.join()
        assert served.receiver.stats.accepted == 1

    def test_bad_selectors(self) -> None:
        """Selectors must be non-empty names/patterns or event classes; handlers callable."""
        receiver = WebhookReceiver(SECRET)
        with pytest.raises(ValueError, match="selector"):
            receiver.on("")
        with pytest.raises(TypeError, match="Select events"):
            receiver.on(42)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="Select events"):
            receiver.on(dict)  # type: ignore[type-var]
        with pytest.raises(ValueError, match="at least one"):
            receiver.add_handler(Recorder())
        with pytest.raises(TypeError, match="async callable"):
            receiver.add_handler("nope", "*")  # type: ignore[arg-type]

        def sync_handler(event: WebhookEvent) -> None:
            del event

        with pytest.raises(TypeError, match="async def"):
            receiver.on("*")(sync_handler)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"workers": 0}, ValueError),
            ({"queue_size": True}, ValueError),
            ({"max_body_size": -1}, ValueError),
            ({"drain_timeout": -1.0}, ValueError),
            ({"handler_timeout": float("inf")}, ValueError),
            ({"store": object()}, TypeError),
        ],
    )
    def test_bad_configuration(self, kwargs: dict[str, object], error: type[Exception]) -> None:
        """Bad receiver settings fail at construction."""
        with pytest.raises(error):
            WebhookReceiver(SECRET, **kwargs)  # type: ignore[arg-type]


class TestAnswers:
    async def test_accepted_answer(self, serve: Serve) -> None:
        """A valid delivery is answered 200 with a small JSON status."""
        served = await serve()
        raw, headers = signed(envelope())
        assert await served.post(raw, headers) == (200, {"status": "accepted"})

    @pytest.mark.parametrize(
        ("raw", "extra", "status", "code"),
        [
            (b"not json", {}, 400, "invalid_json"),
            (b"[1, 2]", {}, 400, "malformed_payload"),
            (b'{"id": "evt_x", "event": 1}', {}, 400, "malformed_payload"),
            (
                json.dumps(envelope(id="evt_a")).encode(),
                {"X-Webhook-Id": "evt_b"},
                400,
                "id_mismatch",
            ),
            (json.dumps(envelope()).encode(), {"X-Webhook-Id": "evt_\u00e9"}, 400, "malformed_id"),
        ],
    )
    async def test_signed_but_unreadable(
        self, serve: Serve, raw: bytes, extra: dict[str, str], status: int, code: str
    ) -> None:
        """A correctly signed body that is not an event gets 400 and runs nothing (B11)."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        _, headers = signed(raw, **extra)
        answer_status, answer = await served.post(raw, headers)
        assert answer_status == status
        assert answer["error"]["code"] == code  # type: ignore[index]
        assert recorder.events == []

    async def test_overlong_id_header(self, serve: Serve) -> None:
        """A legacy payload named by an overlong X-Webhook-Id gets 400, not a retry-later 503."""
        served = await serve()
        raw, headers = signed(b'{"event": "assets.updated", "body": ["A"]}')
        headers["X-Webhook-Id"] = "e" * 300
        assert (await served.post(raw, headers))[0] == 400

    async def test_duplicated_id_header(self, serve: Serve) -> None:
        """An X-Webhook-Id header sent twice gets 400."""
        served = await serve()
        raw, headers = signed(envelope(id="evt_a"))
        pairs = [*headers.items(), ("X-Webhook-Id", "evt_a")]
        status, answer = await served.post(raw, pairs)
        assert status == 400
        assert answer["error"]["code"] == "duplicate_id"  # type: ignore[index]

    async def test_bad_signatures_get_401(self, serve: Serve) -> None:
        """Missing, wrong or duplicated signatures get 401 with the reason."""
        served = await serve()
        raw, headers = signed(envelope(), "whsec_wrong")
        assert (await served.post(raw, headers))[0] == 401
        assert (await served.post(raw, {"Content-Type": "application/json"}))[0] == 401
        good = signed(raw)[1]["X-Webhook-Signature"]
        pairs = [("X-Webhook-Signature", good), ("X-Webhook-Signature", good)]
        status, answer = await served.post(raw, pairs)
        assert status == 401
        assert answer["error"]["code"] == "duplicate_signature"  # type: ignore[index]
        assert served.receiver.stats.rejected == 3
        assert served.receiver.stats.handler_runs == 0

    async def test_oversized_by_content_length(self, serve: Serve) -> None:
        """A Content-Length above the cap gets 413 before the body is read or hashed."""
        served = await serve(max_body_size=1000)
        raw, headers = signed(b'{"event": "flow.x", "data": {"pad": "' + b"x" * 2000 + b'"}}')
        status, answer = await served.post(raw, headers)
        assert status == 413
        assert answer["error"]["code"] == "body_too_large"  # type: ignore[index]

    async def test_oversized_streamed(self, serve: Serve) -> None:
        """A chunked body without Content-Length is cut off at the cap with 413."""
        served = await serve(max_body_size=100_000)
        raw, headers = signed(b"x" * 1_000_000)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(raw), 10_000):
                yield raw[start : start + 10_000]

        async with served.session.post(served.url, data=chunks(), headers=headers) as response:
            assert response.status == 413
        assert served.receiver.stats.rejected == 1

    async def test_chunked_within_cap(self, serve: Serve) -> None:
        """A chunked body under the cap is read whole and accepted."""
        served = await serve()
        raw, headers = signed(envelope(data={"pad": "y" * 200_000}))

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(raw), 7_000):
                yield raw[start : start + 7_000]

        async with served.session.post(served.url, data=chunks(), headers=headers) as response:
            assert response.status == 200

    async def test_gzip_refused(self, serve: Serve) -> None:
        """A compressed body gets 415 and is never decompressed (gzip bomb, B11)."""
        served = await serve()
        bomb = gzip.compress(b"{" + b" " * 5_000_000 + b"}")
        raw, headers = signed(bomb, **{"Content-Encoding": "gzip"})
        status, answer = await served.post(raw, headers)
        assert status == 415
        assert answer["error"]["code"] == "encoded_body"  # type: ignore[index]

    @pytest.mark.parametrize(
        ("content_type", "status"),
        [
            ("application/json; charset=utf-8", 200),
            ("application/cloudevents+json", 200),
            ("application/octet-stream", 200),
            ("text/plain", 415),
            ("application/x-www-form-urlencoded", 415),
        ],
    )
    async def test_content_types(self, serve: Serve, content_type: str, status: int) -> None:
        """JSON and untyped bodies pass; other declared types get 415."""
        served = await serve()
        raw, headers = signed(envelope(), **{"Content-Type": content_type})
        assert (await served.post(raw, headers))[0] == status

    async def test_content_type_not_enforced(self, serve: Serve) -> None:
        """With require_json=False any content type passes to verification."""
        served = await serve(require_json=False)
        raw, headers = signed(envelope(), **{"Content-Type": "text/plain"})
        assert (await served.post(raw, headers))[0] == 200

    async def test_only_post(self, serve: Serve) -> None:
        """Other methods are refused by the route (405)."""
        served = await serve()
        async with served.session.get(served.url) as response:
            assert response.status == 405

    async def test_rotation_at_runtime(self, serve: Serve) -> None:
        """rotate() swaps the active secrets without a restart (S11)."""
        served = await serve(WebhookReceiver([SECRET, OLD_SECRET]))
        assert await served.deliver(envelope(), secret=OLD_SECRET) == 200
        served.receiver.rotate(SECRET)
        assert await served.deliver(envelope(), secret=OLD_SECRET) == 401
        assert await served.deliver(envelope(), secret=SECRET) == 200


class TestHandlersOffThePath:
    async def test_slow_handler_does_not_delay_the_answer(self, serve: Serve) -> None:
        """The answer comes at once while the handler is still blocked."""
        served = await serve()
        gate = asyncio.Event()
        started = asyncio.Event()

        @served.receiver.on("*")
        async def slow(event: WebhookEvent) -> None:
            started.set()
            await gate.wait()

        # Answered while the handler is blocked (the gate opens only below); the limit turns a
        # hang into a failure long before the test runner's timeout.
        async with asyncio.timeout(30):
            assert await served.deliver(envelope()) == 200
        await started.wait()
        assert served.receiver.pending == 1
        gate.set()
        await served.receiver.join()
        assert served.receiver.stats.handled == 1

    async def test_bounded_concurrency(self, serve: Serve) -> None:
        """No more than `workers` handlers run at once."""
        served = await serve(workers=3)
        running = 0
        peak = 0

        @served.receiver.on("*")
        async def busy(event: WebhookEvent) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1

        statuses = await asyncio.gather(*(served.deliver(envelope()) for _ in range(12)))
        assert statuses == [200] * 12
        await served.receiver.join()
        assert peak == 3
        assert served.receiver.stats.handled == 12

    async def test_handler_failure_is_logged_with_the_event_id(
        self, serve: Serve, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A raising handler is logged with the event id; the answer stays 200 and others run."""
        served = await serve()
        recorder = Recorder()

        @served.receiver.on("*")
        async def broken(event: WebhookEvent) -> None:
            raise RuntimeError("handler bug")

        served.receiver.on("*")(recorder)
        payload = envelope(id="evt_broken_1")
        with caplog.at_level(logging.ERROR, "makini_async.webhooks"):
            assert await served.deliver(payload) == 200
            await served.receiver.join()
        assert served.receiver.stats.failed == 1
        assert recorder.ids == ["evt_broken_1"]
        failures = [r for r in caplog.records if "failed for event" in r.getMessage()]
        assert len(failures) == 1
        assert "evt_broken_1" in failures[0].getMessage()
        assert failures[0].exc_info is not None

    async def test_handler_timeout(self, serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
        """A handler that passes handler_timeout is cancelled and counted as failed."""
        served = await serve(handler_timeout=0.05)

        @served.receiver.on("*")
        async def stuck(event: WebhookEvent) -> None:
            await asyncio.sleep(30)

        assert await served.deliver(envelope(id="evt_slow")) == 200
        await served.receiver.join()
        assert served.receiver.stats.failed == 1
        assert any("evt_slow" in r.getMessage() for r in caplog.records)

    async def test_stray_cancellation_does_not_kill_a_worker(self, serve: Serve) -> None:
        """A handler that lets a CancelledError escape counts as failed; its worker lives on."""
        served = await serve(workers=1)
        recorder = Recorder()

        @served.receiver.on("system.error")
        async def cancels(event: WebhookEvent) -> None:
            raise asyncio.CancelledError

        served.receiver.on("*")(recorder)
        assert await served.deliver(envelope("system.error")) == 200
        assert await served.deliver(envelope("flow.next")) == 200
        await recorder.wait_for(2)
        assert served.receiver.stats.failed == 1

    async def test_broken_store_answers_503(self, serve: Serve) -> None:
        """A dedup store that fails makes the delivery 503 (retry later), never 500."""

        class BrokenStore(MemoryDedupStore):
            async def claim(self, event_id: str) -> bool:  # noqa: ARG002 - always fails
                raise OSError("disk full")

        served = await serve(WebhookReceiver(SECRET, store=BrokenStore()))
        assert await served.deliver(envelope()) == 503


class TestDuplicates:
    async def test_replays_run_once(self, serve: Serve) -> None:
        """The same signed delivery sent three times runs its handlers once (S10)."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        raw, headers = signed(envelope())
        answers = [await served.post(raw, headers) for _ in range(3)]
        assert [a[1]["status"] for a in answers] == ["accepted", "duplicate", "duplicate"]
        await served.receiver.join()
        assert len(recorder.events) == 1
        assert served.receiver.stats.duplicates == 2

    async def test_concurrent_duplicates_run_once(self, serve: Serve) -> None:
        """Twenty simultaneous deliveries of one event run its handlers once (S10)."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        raw, headers = signed(envelope())
        answers = await asyncio.gather(*(served.post(raw, headers) for _ in range(20)))
        assert {a[0] for a in answers} == {200}
        await served.receiver.join()
        assert len(recorder.events) == 1

    async def test_new_id_same_content_runs(self, serve: Serve) -> None:
        """Another event id with otherwise equal content is a new event, processed."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        payload = envelope()
        assert await served.deliver(payload) == 200
        assert await served.deliver({**payload, "id": "evt_other"}) == 200
        await recorder.wait_for(2)

    async def test_legacy_payload_deduplicated_by_bytes(self, serve: Serve) -> None:
        """A legacy payload without ids is deduplicated by its exact bytes."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on("assets.updated")(recorder)
        raw = b'{"event": "assets.updated", "body": ["A1"]}'
        raw_signed, headers = signed(raw)
        assert [(await served.post(raw_signed, headers))[0] for _ in range(2)] == [200, 200]
        await served.receiver.join()
        assert len(recorder.events) == 1


class TestShutdown:
    async def test_drain_lets_accepted_events_finish(self, serve: Serve) -> None:
        """On shutdown accepted events finish, then deliveries get 503."""
        served = await serve()
        done: list[str] = []

        @served.receiver.on("*")
        async def slowish(event: WebhookEvent) -> None:
            await asyncio.sleep(0.05)
            done.append(event.id)

        payloads = [envelope() for _ in range(10)]
        assert [await served.deliver(p) for p in payloads] == [200] * 10
        await served.receiver.drain(timeout=5)
        assert sorted(done) == sorted(str(p["id"]) for p in payloads)
        assert served.receiver.abandoned == []
        assert served.receiver.closing
        assert await served.deliver(envelope()) == 503

    async def test_unfinished_events_are_handed_back(
        self, serve: Serve, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Events still running or queued at the drain timeout are logged, kept and released."""
        store = MemoryDedupStore()
        served = await serve(WebhookReceiver(SECRET, store=store, workers=1))
        cancelled: list[str] = []

        @served.receiver.on("*")
        async def forever(event: WebhookEvent) -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(event.id)
                raise

        first, second = envelope(id="evt_running"), envelope(id="evt_queued")
        assert await served.deliver(first) == 200
        assert await served.deliver(second) == 200
        await asyncio.sleep(0.01)
        await served.receiver.drain(timeout=0.05)
        assert cancelled == ["evt_running"]
        assert [e.id for e in served.receiver.abandoned] == ["evt_running", "evt_queued"]
        assert served.receiver.stats.abandoned == 2
        warning = next(r for r in caplog.records if "did not finish" in r.getMessage())
        assert "evt_running" in warning.getMessage()
        assert "evt_queued" in warning.getMessage()
        # Released: a redelivery (e.g. to the next process) is new again.
        assert await store.claim("evt_running")
        assert await store.claim("evt_queued")

    async def test_hundred_in_flight_all_accounted_for(self, serve: Serve) -> None:
        """With 100 accepted events and a short drain, each finished or was handed back (C12)."""
        served = await serve(workers=8)
        done: list[str] = []

        @served.receiver.on("*")
        async def slow(event: WebhookEvent) -> None:
            await asyncio.sleep(0.05)
            done.append(event.id)

        payloads = [envelope() for _ in range(100)]
        statuses = await asyncio.gather(*(served.deliver(p) for p in payloads))
        assert statuses == [200] * 100
        begin = time.monotonic()
        await served.receiver.drain(timeout=0.2)
        assert time.monotonic() - begin < 0.2 * 10  # a loose sanity limit: nothing hangs
        abandoned = [e.id for e in served.receiver.abandoned]
        assert done
        assert abandoned
        assert sorted(done + abandoned) == sorted(str(p["id"]) for p in payloads)
        assert served.receiver.pending == 0

    async def test_restart_with_sqlite_store(self, serve: Serve, tmp_path: Path) -> None:
        """With a SQLite store, a restarted receiver skips old events and runs handed-back ones."""
        path = tmp_path / "dedup.sqlite3"
        first = await serve(WebhookReceiver(SECRET, store=SQLiteDedupStore(path), workers=1))
        gate = asyncio.Event()

        @first.receiver.on("*")
        async def blocked(event: WebhookEvent) -> None:
            if event.id == "evt_stuck":
                await gate.wait()

        done, stuck = signed(envelope(id="evt_done")), signed(envelope(id="evt_stuck"))
        answers = await asyncio.gather(*(first.post(*done) for _ in range(5)))
        assert sorted(str(a[1]["status"]) for a in answers) == ["accepted"] + ["duplicate"] * 4
        assert (await first.post(*stuck))[0] == 200
        await asyncio.sleep(0.01)
        await first.receiver.aclose(timeout=0.05)
        assert [e.id for e in first.receiver.abandoned] == ["evt_stuck"]

        second = await serve(WebhookReceiver(SECRET, store=SQLiteDedupStore(path)))
        recorder = Recorder()
        second.receiver.on("*")(recorder)
        assert (await second.post(*done))[1] == {"status": "duplicate"}
        assert (await second.post(*stuck))[1] == {"status": "accepted"}
        await recorder.wait_for(1)
        assert recorder.ids == ["evt_stuck"]

    async def test_app_shutdown_drains(self, session: aiohttp.ClientSession) -> None:
        """Mounted as a sub-app, the parent app's shutdown drains the receiver (C12)."""
        receiver = WebhookReceiver(SECRET)
        done: list[str] = []

        @receiver.on("*")
        async def slowish(event: WebhookEvent) -> None:
            await asyncio.sleep(0.1)
            done.append(event.id)

        app = web.Application()
        app.add_subapp("/webhooks/makini", receiver.app())
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/makini"
        for n in range(5):
            raw, headers = signed(envelope())
            async with session.post(url + "/" * (n % 2), data=raw, headers=headers) as response:
                assert response.status == 200
        await runner.cleanup()
        assert len(done) == 5
        assert receiver.stats.abandoned == 0
        with pytest.raises(UsageError, match="closed") as caught:
            await receiver.start()
        assert isinstance(caught.value, RuntimeError)

    async def test_context_manager_and_idempotent_close(self) -> None:
        """The receiver works as an async context manager; aclose twice is fine."""
        async with WebhookReceiver(SECRET) as receiver:
            assert not receiver.closing
            assert "secrets=1" in repr(receiver)
        await receiver.aclose()
        assert receiver.closing


class TestSecretsStayHidden:
    async def test_canary_never_logged_or_answered(
        self, serve: Serve, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The signing secrets appear in no log record, answer or repr on any path."""
        served = await serve(WebhookReceiver([SECRET, OLD_SECRET]))

        @served.receiver.on("*")
        async def broken(event: WebhookEvent) -> None:
            raise ValueError("boom")

        texts: list[str] = []
        with caplog.at_level(logging.DEBUG):
            for raw, headers in (
                signed(envelope()),
                signed(envelope(), "whsec_wrong"),
                signed(b"not json"),
                (b"{}", {"X-Webhook-Signature": "%%%"}),
                (b"{}", {}),
            ):
                status, answer = await served.post(raw, headers)
                texts.append(f"{status} {answer}")
            await served.receiver.join()
        texts.append(repr(served.receiver))
        texts.extend(r.getMessage() for r in caplog.records)
        texts.extend(str(r.exc_info) for r in caplog.records if r.exc_info)
        blob = "\n".join(texts)
        assert SECRET not in blob
        assert OLD_SECRET not in blob
