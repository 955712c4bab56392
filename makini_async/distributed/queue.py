"""Distributed sync over Redis with arq: one job per connection and entity, run by worker processes.

::

    async with SyncQueue("redis://queue-host:6379/0") as queue:
        ticket = await queue.enqueue(["c1", "c2"], ["work-orders", "assets"])
        async for outcome in queue.outcomes(ticket):
            print(outcome.result.connection_id, outcome.result.entity, outcome.ok)

    # in each worker process, with its own registry (tokens) and store:
    await SyncWorker("redis://queue-host:6379/0", registry, store).run()

**Jobs carry no token.** A job holds a connection id, an entity and the sync options; a worker
syncs it with the connections of its own registry (its own connections file or Admin API
credentials). The job id is derived from the queue, the entity and the connection, so enqueuing
again while the job waits or runs adds nothing.

**A killed worker loses nothing.** arq's in-progress key is a job's *lease*: it is taken for
``lease`` seconds (default 15), not arq's job timeout, and renewed while the job runs. When a
worker dies (SIGKILL, a lost machine), the lease lapses and another worker starts the job again
at most ``lease`` plus ``poll_delay`` seconds after the death. The retry reads from the store's
watermark and rows are keyed by ``(connection, key)``: what the dead worker wrote is not written
twice. A job tried more than ``max_tries`` times is reported failed. A worker stalled for longer
than the lease may see its job started elsewhere too: both write the same rows once.

**Outcomes are kept in Redis** for ``keep`` seconds (not as arq results, which would refuse a
later enqueue of the job id): each job's last outcome, and per worker its counters.

**Redis without persistence loses the queue when it restarts.** The enqueuing side sees its jobs
gone without an outcome and raises `CoordinationError` rather than wait forever (enqueuing again
resumes from the store's watermarks). Workers stop with `CoordinationError` when Redis cannot be
reached. Every Redis failure is a `CoordinationError` naming the server without its password.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar
from urllib.parse import urlsplit

import attrs
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.worker import Worker, func
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from makini_async._errors import CoordinationError, MakiniError
from makini_async._transport import check_seconds
from makini_async.sync import EntityResult, resolve_entity, sync

if TYPE_CHECKING:
    from makini_async._registry import ConnectionRegistry
    from makini_async.sync import Store

__all__ = [
    "DEFAULT_QUEUE",
    "JobOutcome",
    "QueueStatus",
    "SyncQueue",
    "SyncWorker",
    "Ticket",
    "WorkerStatus",
    "job_id",
    "redact_url",
]

#: The queue's name; every key this module writes starts with it.
DEFAULT_QUEUE: Final = "makini-async:sync"
_FUNCTION: Final = "makini_sync"
T = TypeVar("T")
# What a broken socket or a timed-out reply raise besides RedisError.
_FAILURES: Final = (RedisError, OSError, TimeoutError)
_DAY: Final = 86_400.0
_CONNECT_TIMEOUT: Final = 5.0
_SOCKET_TIMEOUT: Final = 30.0


def redact_url(url: str) -> str:
    """A Redis URL fit for messages: scheme, host, port and database, without user or password.

    Args:
        url: A ``redis://``, ``rediss://`` or ``unix://`` URL.

    Returns:
        The URL without its credentials and query.

    .. versionadded:: 0.1.0
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed Redis URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise TypeError(f"The Redis URL must be a str, not {type(url).__name__}.")
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(f"Expected a redis://, rediss:// or unix:// URL, got {redact_url(url)!r}.")
    return url


def _connect(url: str, queue: str) -> ArqRedis:
    pool: ConnectionPool = ConnectionPool.from_url(
        url, socket_connect_timeout=_CONNECT_TIMEOUT, socket_timeout=_SOCKET_TIMEOUT
    )
    return ArqRedis(
        pool,
        job_serializer=_dumps,
        job_deserializer=json.loads,
        default_queue_name=queue,
    )


def _dumps(value: object) -> bytes:
    # JSON rather than arq's default pickle: whoever can write to Redis must not run code here.
    return json.dumps(value, separators=(",", ":")).encode()


def job_id(connection_id: str, entity: str, queue: str = DEFAULT_QUEUE) -> str:
    """The id of the job syncing one connection's entity (stable: the same inputs, the same id).

    Args:
        connection_id: The connection.
        entity: The entity, ``domain/name`` (or a name `resolve_entity` knows).
        queue: The queue's name.

    Returns:
        The job id.

    Raises:
        ValueError: The entity is unknown.

    .. versionadded:: 0.1.0
    """
    return f"{queue}:{resolve_entity(entity)}:{connection_id}"


async def _wait(value: Awaitable[T] | T) -> T:
    """Await what redis-py's asyncio client returns (typed as either the value or its awaitable)."""
    return await value if inspect.isawaitable(value) else value


async def _until(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event``, at most ``seconds``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def _server_ms(redis: ArqRedis) -> int:
    """Redis's clock in milliseconds: one clock for every process, whatever their machines say."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


@attrs.frozen
class JobOutcome:
    """How one job (a connection's entity) went, as its worker recorded it.

    Attributes:
        result: What `sync` reported for the connection and entity.
        worker: The worker that ran it (``host:pid``).
        tries: Which try this was (more than 1 after a worker died running it).
        finished_ms: When it ended, on Redis's clock (milliseconds since the epoch).

    .. versionadded:: 0.1.0
    """

    result: EntityResult
    worker: str = ""
    tries: int = 1
    finished_ms: int = 0

    @property
    def ok(self) -> bool:
        """True when the job synced its connection and entity."""
        return self.result.status == "ok"


def _dump_outcome(outcome: JobOutcome) -> str:
    return json.dumps(attrs.asdict(outcome), separators=(",", ":"))


def _load_outcome(text: bytes | str | None) -> JobOutcome | None:
    """An outcome from Redis, or None when it is missing or unreadable (an older format, say)."""
    if text is None:
        return None
    try:
        data = json.loads(text)
        return JobOutcome(
            EntityResult(**data["result"]), data["worker"], data["tries"], data["finished_ms"]
        )
    except (ValueError, TypeError, KeyError):
        return None


@attrs.frozen
class Ticket:
    """What `SyncQueue.enqueue` did: the jobs to wait for and when the enqueuing began.

    Attributes:
        job_ids: Every job of the run (new ones and those already waiting or running).
        added: How many were new (the others were already queued or running).
        since_ms: When enqueuing began, on Redis's clock: outcomes older than this are stale.
        server: Redis's run id then (a restart changes it).

    .. versionadded:: 0.1.0
    """

    job_ids: tuple[str, ...]
    added: int
    since_ms: int
    server: str


@attrs.frozen
class WorkerStatus:
    """One worker's counters, as it recorded them in Redis.

    Attributes:
        name: ``host:pid``.
        alive: True when it renewed its heartbeat lately.
        running: Jobs it is running now.
        done: Jobs it finished ok.
        failed: Jobs it finished failed.
        records: Records it received.

    .. versionadded:: 0.1.0
    """

    name: str
    alive: bool
    running: int
    done: int
    failed: int
    records: int


@attrs.frozen
class QueueStatus:
    """The state of a queue: its jobs, and per worker.

    Attributes:
        queued: Jobs waiting for a worker (including those whose worker died, until retried).
        running: Jobs a live lease holds.
        done: Jobs whose last outcome is ok.
        failed: Jobs whose last outcome is failed.
        records: Records received by the last outcome of every job.
        workers: Every worker seen lately, by name.

    .. versionadded:: 0.1.0
    """

    queued: int
    running: int
    done: int
    failed: int
    records: int
    workers: tuple[WorkerStatus, ...]


class _Keys:
    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.outcomes = f"{queue}:outcomes"  # hash: job id -> JobOutcome JSON
        self.running = f"{queue}:running"  # hash: job id -> worker name
        self.workers = f"{queue}:workers"  # set of worker names

    def worker(self, name: str) -> str:
        return f"{self.queue}:worker:{name}"  # hash: counters, seen_ms, heartbeat_ms


class _Link:
    """One Redis client, opened on first use; turns Redis failures into `CoordinationError`."""

    def __init__(self, url: str, queue: str) -> None:
        self.url = _check_url(url)
        if not queue:
            raise ValueError("The queue name must be a non-empty str.")
        self.where = redact_url(url)
        self.keys = _Keys(queue)
        self._redis: ArqRedis | None = None

    def client(self) -> ArqRedis:
        if self._redis is None:
            self._redis = _connect(self.url, self.keys.queue)
        return self._redis

    def fail(self, action: str, exc: BaseException) -> CoordinationError:
        reason = type(exc).__name__
        if isinstance(exc, RedisConnectionError | TimeoutError) and str(exc):
            # These name the host and port only; other replies may quote a command's arguments.
            reason += f": {str(exc).splitlines()[0][:200]}"
        return CoordinationError(f"Redis at {self.where} failed to {action}: {reason}")

    async def aclose(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            with contextlib.suppress(*_FAILURES):
                await redis.aclose(close_connection_pool=True)


class SyncQueue:
    """The enqueuing side: put sync jobs on the queue, follow their outcomes, read its status.

    Args:
        url: The Redis URL (``redis://host:port/db``; a password in it never shows in messages).
        queue: The queue's name (workers must use the same).

    Raises:
        TypeError: The URL is not a str.
        ValueError: The URL is not a Redis URL, or the queue name is empty.

    .. versionadded:: 0.1.0
    """

    def __init__(self, url: str, *, queue: str = DEFAULT_QUEUE) -> None:
        self._link = _Link(url, queue)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections to Redis (idempotent)."""
        await self._link.aclose()

    @property
    def where(self) -> str:
        """The Redis server, without credentials (for messages)."""
        return self._link.where

    def __repr__(self) -> str:
        return f"<SyncQueue {self._link.where} {self._link.keys.queue!r}>"

    async def enqueue(
        self,
        connections: Iterable[str],
        entities: Iterable[str],
        *,
        per_page: int = 500,
        overlap: timedelta = timedelta(minutes=5),
    ) -> Ticket:
        """Enqueue one job per connection and entity; jobs already queued or running are kept.

        Args:
            connections: Connection ids (the workers hold their tokens).
            entities: Entity names, e.g. ``["work-orders", "assets"]``.
            per_page: Records per page (1 to 500).
            overlap: How far before the stored watermark each job starts reading again.

        Returns:
            The `Ticket` to follow the outcomes with.

        Raises:
            ValueError: An unknown entity, no connection or entity, or an option out of range.
            CoordinationError: Redis failed.

        .. versionadded:: 0.1.0
        """
        names = list(dict.fromkeys(resolve_entity(name) for name in entities))
        ids = list(dict.fromkeys(connections))
        if not names or not ids:
            raise ValueError("Give at least one connection and one entity to enqueue.")
        if type(per_page) is not int or not 1 <= per_page <= 500:  # noqa: PLR2004 - the API's cap
            raise ValueError(f"per_page must be an int from 1 to 500, got {per_page!r}")
        if overlap < timedelta(0):
            raise ValueError("overlap must not be negative")
        options: dict[str, Any] = {"per_page": per_page, "overlap": overlap.total_seconds()}
        redis = self._link.client()
        try:
            since = await _server_ms(redis)
            server = await self._server_id(redis)
            added = 0
            job_ids: list[str] = []
            for connection_id in ids:
                for entity in names:
                    jid = job_id(connection_id, entity, self._link.keys.queue)
                    job_ids.append(jid)
                    job = await redis.enqueue_job(
                        _FUNCTION, connection_id, entity, _job_id=jid, **options
                    )
                    added += job is not None
        except _FAILURES as exc:
            raise self._link.fail("enqueue", exc) from None
        return Ticket(tuple(job_ids), added, since, server)

    @staticmethod
    async def _server_id(redis: ArqRedis) -> str:
        info = await redis.info("server")
        return str(info.get("run_id", ""))

    async def _poll(
        self, ticket: Ticket, ids: Sequence[str]
    ) -> tuple[dict[str, JobOutcome], list[str]]:
        if not ids:
            return {}, []
        redis = self._link.client()
        try:
            # One transaction: a job that ends between the reads cannot look lost.
            async with redis.pipeline(transaction=True) as pipe:
                for jid in ids:
                    pipe.exists(job_key_prefix + jid)
                pipe.hmget(self._link.keys.outcomes, list(ids))
                answers = await pipe.execute()
        except _FAILURES as exc:
            raise self._link.fail("read the outcomes", exc) from None
        exists, stored = answers[:-1], answers[-1]
        found: dict[str, JobOutcome] = {}
        lost: list[str] = []
        for jid, queued, text in zip(ids, exists, stored, strict=True):
            outcome = _load_outcome(text)
            if outcome is not None and outcome.finished_ms >= ticket.since_ms:
                found[jid] = outcome
            elif not queued:
                lost.append(jid)
        return found, lost

    async def outcomes(
        self,
        ticket: Ticket,
        *,
        interval: float = 0.5,
        patience: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> AsyncIterator[JobOutcome]:
        """Yield each job's outcome as it arrives, until every job of the run has one.

        Args:
            ticket: What `enqueue` returned.
            interval: Seconds between reads.
            patience: Seconds Redis may stay unreachable before giving up.
            clock: A monotonic clock (default: the event loop's).

        Yields:
            The `JobOutcome` of each job, in the order they are seen.

        Raises:
            CoordinationError: Redis stayed unreachable for ``patience`` seconds, or jobs vanished
                from it without an outcome (a Redis without persistence restarted, say).

        .. versionadded:: 0.1.0
        """
        now = clock or asyncio.get_running_loop().time
        pending = list(ticket.job_ids)
        failing_since: float | None = None
        while pending:
            try:
                found, lost = await self._poll(ticket, pending)
            except CoordinationError:
                failing_since = now() if failing_since is None else failing_since
                if now() - failing_since >= patience:
                    raise
                await asyncio.sleep(interval)
                continue
            failing_since = None
            for jid in pending:
                if jid in found:
                    yield found[jid]
            pending = [jid for jid in pending if jid not in found]
            if lost:
                raise await self._lost(ticket, lost)
            if pending:
                await asyncio.sleep(interval)

    async def _lost(self, ticket: Ticket, lost: list[str]) -> CoordinationError:
        try:
            restarted = await self._server_id(self._link.client()) != ticket.server
        except _FAILURES:
            restarted = False
        why = (
            "Redis restarted (without persistence its queue is lost)"
            if restarted
            else "their keys were deleted"
        )
        return CoordinationError(
            f"{len(lost)} job(s) vanished from Redis at {self._link.where} without an outcome: "
            f"{why}. Enqueue them again: each resumes from its stored watermark."
        )

    async def status(self) -> QueueStatus:
        """Read the queue's jobs and its workers' counters.

        Returns:
            The `QueueStatus`.

        Raises:
            CoordinationError: Redis failed.

        .. versionadded:: 0.1.0
        """
        redis = self._link.client()
        keys = self._link.keys
        try:
            now = await _server_ms(redis)
            queued_ids = [b.decode() for b in await redis.zrange(keys.queue, 0, -1)]
            running_by: dict[bytes, bytes] = await _wait(redis.hgetall(keys.running))
            async with redis.pipeline(transaction=False) as pipe:
                for jid in queued_ids:
                    pipe.exists(in_progress_key_prefix + jid)
                held = await pipe.execute()
            leased = {jid for jid, live in zip(queued_ids, held, strict=True) if live}
            stored = await _wait(redis.hvals(keys.outcomes))
            names = sorted(n.decode() for n in await _wait(redis.smembers(keys.workers)))
            async with redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(keys.worker(name))
                counters = await pipe.execute()
        except _FAILURES as exc:
            raise self._link.fail("read the status", exc) from None
        outcomes = [o for o in map(_load_outcome, stored) if o is not None]
        running = Counter(n.decode() for j, n in running_by.items() if j.decode() in leased)
        workers = []
        for name, fields in zip(names, counters, strict=True):
            values = Counter({k.decode(): int(v) for k, v in fields.items()})
            if values:
                alive = now - values["seen_ms"] <= 3 * max(values["heartbeat_ms"], 1)
                counts = (values["done"], values["failed"], values["records"])
                workers.append(WorkerStatus(name, alive, running[name], *counts))
        return QueueStatus(
            queued=len(queued_ids) - len(leased),
            running=len(leased),
            done=sum(1 for o in outcomes if o.ok),
            failed=sum(1 for o in outcomes if not o.ok),
            records=sum(o.result.records for o in outcomes),
            workers=tuple(workers),
        )


class SyncWorker:
    """A worker process's arq worker: it syncs each job's connection and entity into its store.

    The registry and the store are the caller's: open them before `run` and close them after.

    Args:
        url: The Redis URL.
        registry: The connections this worker can sync (with their tokens).
        store: Where records and watermarks go.
        queue: The queue's name.
        concurrency: Jobs run at once.
        lease: Seconds a running job's lease lasts without renewal: the delay before another
            worker retries the job of a worker that died.
        job_timeout: Seconds one job may run; it is then reported failed (the next enqueue
            resumes from its watermark).
        max_tries: Tries of a job whose worker keeps dying before it is reported failed.
        poll_delay: Seconds between looks at the queue.
        burst: Stop once the queue is empty.
        keep: Seconds outcomes and worker counters stay in Redis.
        name: The worker's name (default ``host:pid``).
        on_outcome: Called with each job's `JobOutcome`.
        handle_signals: Stop on SIGINT and SIGTERM, putting running jobs back on the queue.

    Raises:
        TypeError: The URL is not a str.
        ValueError: The URL or an option is bad.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        url: str,
        registry: ConnectionRegistry,
        store: Store,
        *,
        queue: str = DEFAULT_QUEUE,
        concurrency: int = 4,
        lease: float = 15.0,
        job_timeout: float = 3600.0,
        max_tries: int = 3,
        poll_delay: float = 0.5,
        burst: bool = False,
        keep: float = _DAY,
        name: str | None = None,
        on_outcome: Callable[[JobOutcome], object] | None = None,
        handle_signals: bool = True,
    ) -> None:
        self._link = _Link(url, queue)
        lease, job_timeout, keep = (
            check_seconds(name, value)
            for name, value in (("lease", lease), ("job_timeout", job_timeout), ("keep", keep))
        )
        if type(concurrency) is not int or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if type(max_tries) is not int or max_tries < 1:
            raise ValueError(f"max_tries must be an int >= 1, got {max_tries!r}")
        self.registry = registry
        self.store = store
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = concurrency
        self.lease = float(lease)
        self.job_timeout = float(job_timeout)
        self.max_tries = max_tries
        self.poll_delay = float(poll_delay)
        self.burst = burst
        self.keep = float(keep)
        self.on_outcome = on_outcome
        self.handle_signals = handle_signals
        self.stopped_by: str | None = None

    @property
    def where(self) -> str:
        """The Redis server, without credentials (for messages)."""
        return self._link.where

    @property
    def queue(self) -> str:
        """The queue's name."""
        return self._link.keys.queue

    def __repr__(self) -> str:
        return f"<SyncWorker {self.name} {self._link.where} {self._link.keys.queue!r}>"

    async def run(self) -> None:
        """Run jobs until stopped (a signal, or an empty queue with ``burst``).

        Raises:
            CoordinationError: Redis failed (unreachable at start, or lost while running).

        .. versionadded:: 0.1.0
        """
        redis = self._link.client()
        heartbeat = max(self.lease / 5, 0.05)
        worker = Worker(
            [
                func(
                    self._job,
                    name=_FUNCTION,
                    keep_result=0,
                    # arq's own timeout only backs ours up: the job ends at `job_timeout` itself.
                    timeout=self.job_timeout + 60,
                    max_tries=self.max_tries + 1,
                )
            ],
            queue_name=self._link.keys.queue,
            redis_pool=redis,
            max_jobs=self.concurrency,
            keep_result=0,
            poll_delay=self.poll_delay,
            burst=self.burst,
            handle_signals=self.handle_signals,
            job_serializer=_dumps,
            job_deserializer=json.loads,
            log_results=False,
        )
        worker.on_stop = lambda sig: setattr(self, "stopped_by", sig.name)
        # arq takes a job for its timeout + 10 s; the lease is shorter, and renewed by the job.
        worker.in_progress_timeout_s = self.lease
        stopped = asyncio.Event()
        beat = asyncio.ensure_future(self._beat(heartbeat, stopped))
        try:
            await self._hello(heartbeat)
            await worker.async_run()
        except asyncio.CancelledError:
            if self.stopped_by is None:
                raise
        except _FAILURES as exc:
            raise self._link.fail("run the worker's queue", exc) from None
        finally:
            stopped.set()
            await beat
            # Running jobs go back on the queue (arq puts a cancelled job back at once); past a
            # lease, their leases give them to another worker anyway, so no longer is waited.
            tasks = [t for t in worker.tasks.values() if not t.done()]
            for task in tasks if self.stopped_by is None else ():
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=self.lease)
            with contextlib.suppress(*_FAILURES):
                # A worker that stopped is not alive, whatever its last heartbeat says.
                await _wait(
                    self._link.client().hset(self._link.keys.worker(self.name), "seen_ms", "0")
                )
            await self._link.aclose()

    async def _hello(self, heartbeat: float) -> None:
        redis = self._link.client()
        try:
            now = await _server_ms(redis)
            async with redis.pipeline(transaction=True) as pipe:
                pipe.sadd(self._link.keys.workers, self.name)
                pipe.expire(self._link.keys.workers, int(self.keep))
                pipe.hset(
                    self._link.keys.worker(self.name),
                    mapping={"seen_ms": now, "heartbeat_ms": int(heartbeat * 1000)},
                )
                pipe.expire(self._link.keys.worker(self.name), int(self.keep))
                await pipe.execute()
        except _FAILURES as exc:
            raise self._link.fail("register the worker", exc) from None

    async def _beat(self, heartbeat: float, stopped: asyncio.Event) -> None:
        redis = self._link.client()
        while not stopped.is_set():
            await _until(stopped, heartbeat)
            if stopped.is_set():
                break
            # A failing Redis stops the worker through arq's own poll; the heartbeat just waits.
            with contextlib.suppress(*_FAILURES):
                now = await _server_ms(redis)
                await _wait(redis.hset(self._link.keys.worker(self.name), "seen_ms", str(now)))

    async def _renew(self, jid: str, done: asyncio.Event) -> None:
        """Hold the job's lease until ``done``, renewing it a few times per lease."""
        redis = self._link.client()
        key = in_progress_key_prefix + jid
        lease_ms = int(self.lease * 1000)
        while not done.is_set():
            with contextlib.suppress(*_FAILURES):
                await redis.pexpire(key, lease_ms)
            await _until(done, self.lease / 5)

    async def _job(
        self,
        ctx: dict[Any, Any],
        connection_id: str,
        entity: str,
        **options: Any,  # noqa: ANN401 - JSON options
    ) -> None:
        jid, tries = str(ctx["job_id"]), int(ctx["job_try"])
        redis = self._link.client()
        done = asyncio.Event()
        renew = asyncio.ensure_future(self._renew(jid, done))
        try:
            # Shown as running only once held by the lease (a death from then on is retried).
            async with redis.pipeline(transaction=True) as pipe:
                pipe.pexpire(in_progress_key_prefix + jid, int(self.lease * 1000))
                pipe.hset(self._link.keys.running, jid, self.name)
                await pipe.execute()
            if tries > self.max_tries:
                reason = f"gave up after {self.max_tries} tries: the workers running it stopped"
                result = EntityResult(
                    connection_id, entity, "failed", error_code="WorkerLost", reason=reason
                )
            else:
                result = await self._sync(connection_id, entity, options)
        finally:
            # Stopped, not cancelled: redis-py may hang cancelled in the middle of a command.
            done.set()
            await renew
        await self._record(jid, JobOutcome(result, self.name, tries))

    async def _sync(self, connection_id: str, entity: str, options: dict[str, Any]) -> EntityResult:
        try:
            summary = await sync(
                self.registry,
                [entity],
                self.store,
                connections=[connection_id],
                concurrency=1,
                per_page=int(options.get("per_page", 500)),
                overlap=timedelta(seconds=float(options.get("overlap", 300))),
                deadline=self.job_timeout,
            )
        except (MakiniError, ValueError, TypeError) as exc:
            code = getattr(exc, "code", None) or type(exc).__name__
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            if isinstance(exc, KeyError):
                reason = f"the worker has no connection {connection_id!r}"
            return EntityResult(connection_id, entity, "failed", error_code=code, reason=reason)
        return summary.results[0]

    async def _record(self, jid: str, outcome: JobOutcome) -> None:
        redis = self._link.client()
        keys = self._link.keys
        worker = keys.worker(self.name)
        now = await _server_ms(redis)
        outcome = attrs.evolve(outcome, finished_ms=now)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.outcomes, jid, _dump_outcome(outcome))
            pipe.expire(keys.outcomes, int(self.keep))
            pipe.hdel(keys.running, jid)
            pipe.hincrby(worker, "done" if outcome.ok else "failed", 1)
            pipe.hincrby(worker, "records", outcome.result.records)
            pipe.hset(worker, "seen_ms", str(now))
            pipe.expire(worker, int(self.keep))
            await pipe.execute()
        if self.on_outcome is not None:
            self.on_outcome(outcome)
