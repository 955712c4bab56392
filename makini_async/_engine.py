"""The request engine: one call from checked arguments to a decoded response or a typed error.

For each call it takes a concurrency slot on the call's channel, asks the rate budget whether the
connection may send, sends through the transport, decodes the body or the error envelope,
retries what is safe to retry (``backoff``'s jittered waits, slept on the injected clock), and
on a 401 goes through the channel's reconnect step once, then replays the call once. It tells
the rate budget what each answer carried and the instruments what each step did.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from . import _json
from ._bodies import DEFAULT_MAX_UPLOAD_SIZE, Upload
from ._budget import Pause, RateBudget, RateSignal
from ._call import Arguments, Call
from ._channel import Channel, ConnectionState, registry_closed
from ._error_body import BOM
from ._errors import (
    BODY_SNIPPET_LIMIT,
    MESSAGE_LIMIT,
    APIError,
    AuthenticationError,
    MakiniError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    ServerError,
    TLSError,
    TransportError,
    as_reauthorization_required,
    error_from_response,
    recast,
)
from ._instrument import (
    AttemptSent,
    CallEnded,
    CallStarted,
    GateWait,
    Instrument,
    ReconnectFired,
    ResponseReceived,
    RetryScheduled,
    observer_for,
)
from ._redact import one_line, short_field, snippet
from ._response import APIResponse, int_header, rate_limit_of
from ._retry import RetryPolicy, retry_after_of

if TYPE_CHECKING:
    import aiohttp

    from ._transport import RawResponse, Timeouts, Transport
    from ._types import JSON, Clock

__all__ = ["Engine"]

logger: Final = logging.getLogger("makini_async")

_READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
# The longest a herd of waiters is spread over when a rate-limit pause ends.
_GATE_SPREAD_MAX: Final = 1.0
_HTTP_OK_MIN: Final = 200
_HTTP_OK_MAX: Final = 299
_HTTP_NO_CONTENT: Final = 204
_HTTP_SERVER_ERROR: Final = 500
_HTTP_TOO_MANY: Final = 429


class _Retry(Exception):  # noqa: N818 - a private signal, not an error users see
    """Carries a retryable failure out of an attempt."""

    def __init__(self, error: MakiniError, call: Call) -> None:
        super().__init__()
        self.error = error
        self.call = call


def _reason(error: MakiniError) -> str:
    code = getattr(error, "code", None)
    name = type(error).__name__
    return f"{name} {code}" if isinstance(code, str) and code else name


def _secrets(call: Call) -> tuple[str, ...]:
    """What an answer must not show in errors and logs.

    Every token the connection has sent (the call's may no longer be the current one), and the
    call's redacted body values.
    """
    tokens = call.channel.sent_tokens
    return (*tokens, *call.redact) if call.redact else tokens


def _request_id(call: Call, headers: Mapping[str, str]) -> str | None:
    """The ``X-Request-Id`` as kept and logged: redacted, bounded, printable, or None."""
    value = headers.get("X-Request-Id")
    return None if value is None else short_field(value, _secrets(call))


class Engine:
    """Sends the calls of every channel of one registry.

    Args:
        arguments: Checks each call's arguments.
        transport: Sends the HTTP requests.
        retry: The retry policy.
        budget: The rate budget.
        clock: Deadlines, backoff and pauses are measured and slept on it.
        instruments: Told of every call.
        max_upload_size: Most file bytes one call may send.
    """

    def __init__(
        self,
        *,
        arguments: Arguments,
        transport: Transport,
        retry: RetryPolicy,
        budget: RateBudget,
        clock: Clock,
        instruments: Sequence[Instrument] = (),
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
    ) -> None:
        self._arguments = arguments
        self._transport = transport
        self._policy = retry
        self._budget = budget
        self._clock = clock
        self._instruments = tuple(instruments)
        self._max_upload_size = max_upload_size
        self._closing = False
        self._inflight: dict[asyncio.Task[object], int] = {}
        self._drained: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def aclose(self, timeout: float) -> None:
        """Refuse new calls, give in-flight ones ``timeout`` seconds, then cancel the rest."""
        self._closing = True
        current = asyncio.current_task()
        others = [task for task in self._inflight if task is not current]
        if not others:
            return
        self._drained = asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            late = [task for task in self._inflight if task is not current]
            logger.warning("Cancelling %d call(s) still in flight at close", len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=1.0)

    @property
    def clock(self) -> Clock:
        """The clock deadlines, backoff and pauses are measured on."""
        return self._clock

    @property
    def inflight(self) -> int:
        """How many tasks have a call in flight."""
        return len(self._inflight)

    def check_open(self, channel: Channel) -> None:
        """Raise unless ``channel`` may send now (its state, and the registry's).

        Raises:
            RegistryClosedError: The registry is closed.
            ConnectionClosedError: The connection was removed or closed.
            ReauthorizationRequiredError: The customer must reconnect.
        """
        if self._closing:
            raise registry_closed()
        channel.check_open()

    def paused_for(self, channel: Channel) -> float:
        """Seconds the channel is known to be paused by its rate budget (0 when it may send)."""
        return self._budget.paused_for(channel.key)

    # -- one logical call ----------------------------------------------------------------------

    async def request(  # noqa: C901 - the hot path, kept in one frame
        self,
        channel: Channel,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
        json: object = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, Upload] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        redact: tuple[str, ...] = (),
    ) -> APIResponse:
        """Send one call on ``channel``; see `Connection.request`."""
        call = self._arguments.prepare(
            channel,
            method,
            path,
            params,
            json,
            form,
            files,
            headers,
            timeout,
            deadline,
            idempotency_key,
        )
        call.redact = redact
        if self._closing:
            raise registry_closed()
        channel.check_open()
        transport = self._transport
        transport.check_loop()
        if transport.has_retired:
            await transport.close_retired()
        if self._instruments:
            call.observer = observer_for(
                self._instruments,
                CallStarted(channel.id, call.method, call.path, call.url, deadline),
            )
        task = asyncio.current_task()
        if task is not None:
            self._inflight[task] = self._inflight.get(task, 0) + 1
        channel.inflight += 1
        try:
            if call.observer is not None:
                return await self._observed(call, deadline)
            if call.deadline_at is not None or call.multipart is not None:
                return await self._within_deadline(call, deadline)
            # The common call, one coroutine frame less: a bare first attempt.
            try:
                return await self._attempt(call)
            except (_Retry, AuthenticationError) as exc:
                failure: _Retry | AuthenticationError = exc
            return await self._recover(call, failure)
        finally:
            channel.inflight -= 1
            if task is not None:
                left = self._inflight[task] - 1
                if left:
                    self._inflight[task] = left
                else:
                    del self._inflight[task]
                    if self._drained is not None and not self._inflight:
                        self._drained.set()

    async def _observed(self, call: Call, deadline: float | None) -> APIResponse:
        observer = call.observer
        assert observer is not None  # noqa: S101 - the caller checked
        started = self._clock.monotonic()
        try:
            response = await self._within_deadline(call, deadline)
        except MakiniError as error:
            status = getattr(error, "status", None)
            observer.call_ended(
                CallEnded(
                    call.attempts,
                    status if isinstance(status, int) else None,
                    getattr(error, "request_id", None),
                    error,
                    self._clock.monotonic() - started,
                )
            )
            raise
        except asyncio.CancelledError:
            observer.call_ended(
                CallEnded(
                    call.attempts,
                    None,
                    None,
                    None,
                    self._clock.monotonic() - started,
                    cancelled=True,
                )
            )
            raise
        observer.call_ended(
            CallEnded(
                call.attempts,
                response.status,
                response.request_id,
                None,
                self._clock.monotonic() - started,
            )
        )
        return response

    async def _within_deadline(self, call: Call, deadline: float | None) -> APIResponse:
        if call.deadline_at is None:
            return await self._call(call)
        budget = asyncio.timeout(max(0.0, call.deadline_at - self._clock.monotonic()))
        try:
            async with budget:
                return await self._call(call)
        except TimeoutError:
            if not budget.expired():
                raise
            raise RequestTimeoutError(
                f"The call's deadline of {deadline}s passed",
                method=call.method,
                path=call.path,
                may_have_reached_server=call.attempts > 0,
            ) from None

    async def _call(self, call: Call) -> APIResponse:
        if call.multipart is not None:
            # Read inside the call's deadline and the registry's in-flight count.
            call.body, content_type = await call.multipart.encode(self._max_upload_size)
            call.multipart = None
            call.headers = {**(call.headers or {}), "Content-Type": content_type}
        # The first attempt runs bare: a successful call pays for no retry machinery.
        try:
            return await self._attempt(call)
        except (_Retry, AuthenticationError) as exc:
            failure: _Retry | AuthenticationError = exc
        return await self._recover(call, failure)

    async def _recover(self, call: Call, failure: _Retry | AuthenticationError) -> APIResponse:
        """Go on after a failed first attempt: retries, then at most one replay after a 401."""
        channel = call.channel
        replayed = False
        error: MakiniError
        while True:
            if isinstance(failure, _Retry):
                try:
                    return await self._retry(call, failure)
                except _Retry as final:
                    error = final.error  # the attempts are spent
                    break
                except AuthenticationError as exc:
                    failure = exc
                    continue
            if replayed:
                # The replacement token was refused too: no ping-pong, the customer must act.
                channel.mark_reauthorization_required(call.generation)
                error = as_reauthorization_required(failure)
                break
            await self._reauthorize(call, failure)
            replayed = True
            if call.deadline_at is not None:
                call.attempt_started = self._clock.monotonic()
            try:
                return await self._attempt(call)
            except (_Retry, AuthenticationError) as exc:
                failure = exc
        # Raised outside every `except`, so no other exception is chained as its context.
        raise error

    async def _reauthorize(self, call: Call, failure: AuthenticationError) -> None:
        observer = call.observer
        if observer is None:
            await call.channel.reauthorize(call.generation, failure)
            return
        try:
            await call.channel.reauthorize(call.generation, failure)
        except MakiniError:
            observer.reconnect_fired(ReconnectFired(call.generation, None))
            raise
        observer.reconnect_fired(ReconnectFired(call.generation, call.channel.generation))

    async def _retry(self, call: Call, retry: _Retry) -> APIResponse:
        """Further attempts after ``retry``, spaced by the policy's jittered backoff.

        Raises:
            _Retry: The last failure, once the attempts are spent or the next attempt (its wait
                plus as long as the failed one took) would end after the call's deadline.
        """
        policy = self._policy
        clock = self._clock
        waits = policy.waits()
        tries = 1
        while tries < policy.attempts:
            delay = next(waits)
            if call.deadline_at is not None:
                now = clock.monotonic()
                hold = max(delay, self._budget.paused_for(call.channel.key))
                # The failed attempt's length is the best guess of the next one's: a retry
                # that would end after the deadline is not started, and the real error is
                # raised instead of a timeout.
                expected = now - call.attempt_started
                if now + hold + expected >= call.deadline_at:
                    logger.info(
                        "Giving up %s %s: the next attempt would end after the deadline",
                        call.method,
                        call.path,
                    )
                    raise retry
                call.attempt_started = now + hold
            logger.info(
                "Retrying %s %s after %s (attempt %d of %d, waiting %.3fs)",
                call.method,
                call.path,
                type(retry.error).__name__,
                tries + 1,
                policy.attempts,
                delay,
            )
            if call.observer is not None:
                call.observer.retry_scheduled(
                    RetryScheduled(call.attempts, delay, _reason(retry.error), retry.error)
                )
            await clock.sleep(delay)
            tries += 1
            try:
                return await self._attempt(call)
            except _Retry as again:
                retry = again
        logger.info(
            "Giving up %s %s after %d attempt(s): %s",
            call.method,
            call.path,
            tries,
            type(retry.error).__name__,
        )
        raise retry

    # -- one attempt -------------------------------------------------------------------------

    async def _attempt(self, call: Call) -> APIResponse:  # noqa: C901 - the hot path, one frame
        channel = call.channel
        if self._closing or channel.state is not ConnectionState.ACTIVE:
            self.check_open(channel)
        slots = channel.slots
        if slots is not None and not slots.try_acquire():
            await self._wait_for_slot(call)
        try:
            # Asked with the slot held: a 429 that arrived while we queued still stops us.
            pause = await self._budget.admit(channel.key)
            if pause is not None:
                await self._wait_out(call, pause)
            credential = channel.credential
            call.generation = 0 if credential is None else credential.generation
            call.attempts += 1
            observer = call.observer
            sent = 0.0
            if observer is not None:
                observer.attempt_sent(AttemptSent(call.attempts, call.generation))
                sent = self._clock.monotonic()
            try:
                raw = await self._transport.send(
                    channel,
                    None if credential is None else credential.token,
                    call.generation,
                    call.method,
                    call.url,
                    params=call.params,
                    body=call.body,
                    headers=call.headers,
                    timeout=self._attempt_timeout(call),
                    path=call.path,
                )
            except TransportError as error:
                failure = self._transport_failure(call, error)
                if failure is error:
                    raise
                raise failure from error
            except ResponseTooLargeError as error:
                # Its request id is the server's header as it came.
                error.request_id = short_field(error.request_id, _secrets(call))
                raise
        finally:
            if slots is not None:
                slots.release()
        if observer is not None:
            self._received(call, raw, sent)
        if _HTTP_OK_MIN <= raw.status <= _HTTP_OK_MAX:
            response = self._success(call, raw)
            if "X-RateLimit-Remaining" in raw.headers:
                signal = RateSignal(raw.status, rate_limit_of(raw.headers))
                await self._budget.observe(channel.key, signal)
            return response
        raise await self._failure(call, raw)

    @staticmethod
    def _transport_failure(call: Call, error: TransportError) -> MakiniError | _Retry:
        """What a transport error ends as: a retry when nothing can have been applied twice."""
        if isinstance(error, TLSError):
            return error
        if call.repeatable or not error.may_have_reached_server:
            return _Retry(error, call)
        return error

    def _received(self, call: Call, raw: RawResponse, sent: float) -> None:
        observer = call.observer
        if observer is not None:
            observer.response_received(
                ResponseReceived(
                    call.attempts,
                    raw.status,
                    _request_id(call, raw.headers),
                    self._clock.monotonic() - sent,
                )
            )

    def _attempt_timeout(self, call: Call) -> aiohttp.ClientTimeout:
        timeouts = call.timeouts
        transport = self._transport
        if call.deadline_at is None:
            if timeouts is None:
                return transport.default_timeout
            return transport.client_timeout(timeouts)
        remaining = max(0.001, call.deadline_at - self._clock.monotonic())
        return transport.client_timeout(timeouts, remaining)

    async def _wait_for_slot(self, call: Call) -> None:
        slots = call.channel.slots
        assert slots is not None  # noqa: S101 - the caller checked
        if call.deadline_at is None:
            await slots.acquire()
            return
        budget = asyncio.timeout(max(0.0, call.deadline_at - self._clock.monotonic()))
        try:
            async with budget:
                await slots.acquire()
        except TimeoutError:
            if not budget.expired():
                raise
            raise RequestTimeoutError(
                "The call's deadline passed while waiting for a free slot on its connection",
                method=call.method,
                path=call.path,
                may_have_reached_server=call.attempts > 0,
            ) from None

    async def _wait_out(self, call: Call, pause: Pause | None) -> None:
        """Wait while the connection is paused by its rate budget, or give up typed."""
        clock = self._clock
        while pause is not None:
            remaining = pause.seconds
            too_long = remaining > self._policy.max_retry_after
            now = clock.monotonic()
            past_deadline = call.deadline_at is not None and now + remaining > call.deadline_at
            if too_long or past_deadline:
                raise self._paused_error(pause, call)
            # Spread the herd that waits here so it does not return in one burst.
            spread = random.uniform(0.0, min(_GATE_SPREAD_MAX, remaining * 0.1))  # noqa: S311
            if call.observer is not None:
                call.observer.gate_wait(GateWait(remaining + spread, pause.cause))
            await clock.sleep(remaining + spread)
            pause = await self._budget.admit(call.channel.key)

    @staticmethod
    def _paused_error(pause: Pause, call: Call) -> APIError:
        cause = pause.cause
        if cause is None:
            error: APIError = RateLimitError(
                "The connection is paused by the server's rate limit",
                status=429,
                code="RATE_LIMIT_EXCEEDED",
            )
        else:
            error = recast(cause, type(cause))
        error.retry_after = pause.seconds
        error.method = call.method
        error.path = call.path
        return error

    # -- decoding ----------------------------------------------------------------------------

    def _success(self, call: Call, raw: RawResponse) -> APIResponse:
        headers = raw.headers
        # Server-controlled, logged and shown in reprs: kept only redacted and printable.
        request_id = _request_id(call, headers)
        body = raw.body
        data: JSON = None
        if body and raw.status != _HTTP_NO_CONTENT and call.method != "HEAD":
            problem: str | None = None
            content_type = raw.content_type
            if content_type != "application/json" and not content_type.endswith("+json"):
                # The header as sent (aiohttp lowercases the media type), redacted below.
                problem = f"Expected a JSON body, got {headers.get('Content-Type', '')!r}"
            else:
                body = body.removeprefix(BOM)  # RFC 8259 section 8.1: a parser may ignore it
                try:
                    data = _json.loads(body)  # type: ignore[assignment] # decoded JSON is JSON
                except (ValueError, RecursionError) as exc:
                    # Not chained: a JSONDecodeError keeps the whole body in .doc.
                    problem = f"The response body is not valid JSON ({type(exc).__name__})"
            if problem is not None:
                raise self._decode_error(call, raw, problem)
        call.channel.confirm(call.generation)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d (%s) attempt %d",
                call.method,
                call.path,
                raw.status,
                request_id,
                call.attempts,
            )
        return APIResponse(raw.status, headers, request_id, data)

    @staticmethod
    def _decode_error(call: Call, raw: RawResponse, problem: str) -> ResponseDecodeError:
        secrets = _secrets(call)
        return ResponseDecodeError(
            f"{one_line(problem, secrets, MESSAGE_LIMIT)} ({call.method} {call.path})",
            status=raw.status,
            request_id=_request_id(call, raw.headers),
            body=snippet(raw.body, secrets, BODY_SNIPPET_LIMIT),
        )

    async def _failure(self, call: Call, raw: RawResponse) -> MakiniError | _Retry:
        headers = raw.headers
        status = raw.status
        clock = self._clock
        retry_after = retry_after_of(headers.getall("Retry-After", ()), now=clock.time())
        error = error_from_response(
            status,
            raw.body,
            request_id=headers.get("X-Request-Id"),
            retry_after=retry_after,
            method=call.method,
            path=call.path,
            secrets=_secrets(call),
        )
        logger.info(
            "%s %s -> %d %s (%s) attempt %d",
            call.method,
            call.path,
            status,
            error.code,
            error.request_id,
            call.attempts,
        )
        if retry_after is None and status == _HTTP_TOO_MANY:
            reset = int_header(headers, "X-RateLimit-Reset")
            if reset is not None:
                retry_after = max(0.0, reset - clock.time())
        await self._budget.observe(
            call.channel.key, RateSignal(status, rate_limit_of(headers), retry_after, error)
        )
        retryable = status in _RETRY_STATUSES or (
            status == _HTTP_SERVER_ERROR and call.method in _READS
        )
        if not retryable:
            return error
        if retry_after is not None and retry_after > self._policy.max_retry_after:
            return error
        if not call.repeatable:
            return error
        if isinstance(error, RateLimitError | ServerError):
            return _Retry(error, call)
        return error  # pragma: no cover - every retry status maps to one of the two
