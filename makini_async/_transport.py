"""The only module that touches aiohttp's client API.

It owns the registry's one ``TCPConnector`` and SSL context, builds each connection's
token-scoped ``ClientSession`` on that connector, sends one HTTP request, reads its body under a
size cap, and translates every aiohttp and socket exception into a `TransportError`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import ssl as ssl_module
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Final

import aiohttp
import attrs
from multidict import CIMultiDictProxy
from yarl import URL

from ._errors import (
    ConnectError,
    EventLoopMismatchError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TLSError,
    TransportError,
)

__all__ = ["MAX_SECONDS", "RawResponse", "Timeouts", "Transport", "check_seconds"]

logger: Final = logging.getLogger("makini_async")

# aiohttp warns (ResourceWarning) when given more raw bytes than this; a BytesIO streams them.
_BYTES_BODY_MAX: Final = 1024 * 1024

#: Default cap on a response body, after decompression.
DEFAULT_MAX_RESPONSE_SIZE: Final = 32 * 1024 * 1024


#: The longest duration any timeout or deadline may be (about 31 years): anything longer is a
#: mistake, and the sums of such limits must stay finite floats.
MAX_SECONDS: Final = 1e9


def check_seconds(name: str, value: object) -> float:
    """A duration argument as a float: a real number of seconds, > 0, finite, <= `MAX_SECONDS`.

    Raises:
        TypeError: Not an int or a float (a bool is neither).
        ValueError: Not > 0, not finite, or longer than `MAX_SECONDS`.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not 0 < seconds <= MAX_SECONDS:  # also refuses nan
        # repr() of an int of thousands of digits raises: show such a value by its size.
        huge = isinstance(value, int) and math.isinf(seconds)
        shown = f"an int of {int(value).bit_length()} bits" if huge else repr(value)
        raise ValueError(f"{name} must be > 0 and at most {MAX_SECONDS:.0e} seconds, got {shown}")
    return seconds


def _seconds_or_none(_instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if value is not None:
        check_seconds(f"Timeouts.{attribute.name}", value)


@attrs.frozen
class Timeouts:
    """Timeouts for one attempt of a request, in seconds (None means no limit).

    Makini proxies to the customer's own system, which can be slow: the answer gets a minute by
    default. An attempt is given ``connect + read`` seconds in all (waiting for a pooled
    connection included), and never more than ``total``.

    Args:
        connect: Opening the TCP/TLS connection.
        read: The server's whole answer: its headers and the complete body.
        total: The hard cap on one attempt, from pool wait to the last body byte.
        pool: Waiting for a free connection in the shared pool.

    Raises:
        TypeError: A limit that is neither a number nor None.
        ValueError: A limit that is not > 0, not finite, or over `MAX_SECONDS`.

    .. versionadded:: 0.1.0
    """

    connect: float | None = attrs.field(default=10.0, validator=_seconds_or_none)
    read: float | None = attrs.field(default=60.0, validator=_seconds_or_none)
    total: float | None = attrs.field(default=120.0, validator=_seconds_or_none)
    pool: float | None = attrs.field(default=30.0, validator=_seconds_or_none)


def _client_timeout(timeouts: Timeouts, total: float | None = None) -> aiohttp.ClientTimeout:
    """Aiohttp's timeout for one attempt: ``connect + read`` in all, capped by ``total``."""
    # One timer per attempt: aiohttp's sock_read would re-arm a timer on every chunk received,
    # which costs more per request than all of makini_async's own layers.
    limits = [
        limit
        for limit in (
            total,
            timeouts.total,
            None if timeouts.read is None else timeouts.read + (timeouts.connect or 0.0),
        )
        if limit is not None
    ]
    return aiohttp.ClientTimeout(
        total=min(limits) if limits else None,
        connect=timeouts.pool,
        sock_connect=timeouts.connect,
    )


class _Session:
    """An open session, the token generation it carries, and its requests in flight."""

    __slots__ = ("busy", "generation", "session")

    def __init__(self, session: aiohttp.ClientSession, generation: int) -> None:
        self.session = session
        self.generation = generation
        self.busy = 0


class RawResponse:
    """A complete HTTP response, body read (a plain slotted class: built once per request)."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self, status: int, headers: CIMultiDictProxy[str], body: bytes, content_type: str
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.content_type = content_type


def _translate(  # noqa: C901, PLR0911 - one branch per exception family
    exc: BaseException, method: str, path: str
) -> TransportError:
    """Map an aiohttp/socket exception to ours; the text never carries request headers."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return TLSError(f"TLS handshake failed ({name})", method=method, path=path)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeoutError(
            "Timed out opening a connection",
            method=method,
            path=path,
            may_have_reached_server=False,
        )
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return RequestTimeoutError("Timed out reading the response", method=method, path=path)
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return ConnectError(
            f"Cannot connect to {exc.host}:{exc.port} ({reason})", method=method, path=path
        )
    if isinstance(exc, TimeoutError):
        return RequestTimeoutError("Timed out waiting for the response", method=method, path=path)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(
            "The server closed the connection without a complete response",
            method=method,
            path=path,
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(
            "The response body was cut short or malformed", method=method, path=path
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        # Its repr holds the request headers, the token among them: keep only the status and class.
        return TransportError(
            f"Malformed HTTP response ({name}, {exc.status})", method=method, path=path
        )
    if isinstance(exc, ConnectionResetError | aiohttp.ClientOSError):
        return TransportError("The connection was reset", method=method, path=path)
    if isinstance(exc, ValueError):
        return TransportError(
            f"aiohttp refused the request ({name})",
            method=method,
            path=path,
            may_have_reached_server=False,
        )
    return TransportError(f"HTTP transport failed ({name})", method=method, path=path)


def _env_proxy(base_url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The environment's proxy for ``base_url`` (``HTTPS_PROXY``, ``NO_PROXY``...), if any.

    Resolved once, here, instead of letting aiohttp read the environment per request: with
    ``trust_env`` aiohttp would also take Basic credentials for the origin from ``.netrc``, which
    must never ride along with a bearer token.
    """
    try:
        return aiohttp.helpers.get_env_proxy_for_url(URL(base_url))
    except LookupError:
        return None, None


def _safe_cause(exc: BaseException) -> BaseException | None:
    """The exception to chain as ``__cause__``: never one that carries request headers."""
    if isinstance(exc, aiohttp.ClientResponseError | ValueError):
        return None
    return exc


class Transport:
    """The registry's HTTP machinery: one connector, many token-scoped sessions.

    Created without I/O; the connector and SSL context are built on first use, inside the
    running event loop, which the transport is bound to from then on.
    """

    def __init__(
        self,
        *,
        base_url: str,
        limit: int,
        ssl: ssl_module.SSLContext | bool,
        proxy: str | URL | None,
        trust_env: bool,
        trace_configs: Sequence[aiohttp.TraceConfig],
        user_agent: str,
        timeouts: Timeouts,
        max_response_size: int,
        max_open_sessions: int | None,
    ) -> None:
        self._limit = limit
        self._ssl = ssl
        self._proxy = proxy
        self._proxy_auth: aiohttp.BasicAuth | None = None
        if proxy is None and trust_env:
            self._proxy, self._proxy_auth = _env_proxy(base_url)
        self._trace_configs = list(trace_configs)
        self._user_agent = user_agent
        self.timeouts = timeouts
        self.default_timeout = _client_timeout(timeouts)
        self.max_response_size = max_response_size
        self._max_open_sessions = max_open_sessions
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connector: aiohttp.TCPConnector | None = None
        self._cookie_jar: aiohttp.DummyCookieJar | None = None
        # Open sessions by owner, least recently used first.
        self._open: OrderedDict[Hashable, _Session] = OrderedDict()
        self._retired: list[aiohttp.ClientSession] = []
        self.sessions_created = 0

    @property
    def started(self) -> bool:
        """True once the connection pool exists (it is built on first use)."""
        return self._connector is not None

    @property
    def bound(self) -> bool:
        """True once the transport is bound to an event loop."""
        return self._loop is not None

    def client_timeout(
        self, timeouts: Timeouts | None, total: float | None = None
    ) -> aiohttp.ClientTimeout:
        """Aiohttp's timeout for one attempt under ``timeouts`` (the default ones when None)."""
        return _client_timeout(timeouts or self.timeouts, total)

    # -- loop binding ------------------------------------------------------------------------

    def check_loop(self) -> None:
        """Bind to the running loop on first use; refuse any other loop afterwards.

        Raises:
            EventLoopMismatchError: Called from another loop than the first one.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is None:
            self._loop = loop
            return
        msg = (
            "This registry is bound to the event loop it was first used in; it cannot be used "
            "from another one (a second asyncio.run() or another thread). Create one registry "
            "per event loop, inside the coroutine that runs it."
        )
        raise EventLoopMismatchError(msg)

    def _ensure_connector(self) -> aiohttp.TCPConnector:
        connector = self._connector
        if connector is None:
            ssl_arg: ssl_module.SSLContext | bool
            if self._ssl is True:
                ssl_arg = ssl_module.create_default_context()
            else:
                ssl_arg = self._ssl
                if ssl_arg is False:
                    logger.warning(
                        "TLS certificate verification is disabled for this registry (ssl=False)"
                    )
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0, ssl=ssl_arg)
            self._connector = connector
            self._cookie_jar = aiohttp.DummyCookieJar()
        return connector

    # -- sessions ----------------------------------------------------------------------------

    def _session_for(self, owner: Hashable, token: str | None, generation: int) -> _Session:
        """The owner's session for this token generation, opened (and the old one retired)."""
        entry = self._open.get(owner)
        if entry is not None and entry.generation == generation:
            if self._max_open_sessions is not None:
                self._open.move_to_end(owner)
            return entry
        if entry is not None:
            self._retired.append(entry.session)
        entry = _Session(self._open_session(token), generation)
        self._open[owner] = entry
        self._open.move_to_end(owner)
        if self._max_open_sessions is not None and len(self._open) > self._max_open_sessions:
            self._evict(len(self._open) - self._max_open_sessions)
        return entry

    def _open_session(self, token: str | None) -> aiohttp.ClientSession:
        """A token-scoped session on the shared connector (no header at all for None)."""
        connector = self._ensure_connector()
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        headers["Accept"] = "application/json"
        headers["User-Agent"] = self._user_agent
        session = aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            cookie_jar=self._cookie_jar,
            headers=headers,
            timeout=self.default_timeout,
            trust_env=False,  # see _env_proxy: never .netrc credentials for the origin
            proxy=self._proxy,
            proxy_auth=self._proxy_auth,
            trace_configs=self._trace_configs or None,
            raise_for_status=False,
        )
        # aiohttp re-sends once, on its own, a request whose pooled connection broke, for every
        # method it deems idempotent, PUT included. Retries are ours alone: the policy decides.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False  # noqa: SLF001 - as aiohttp's own test_utils does
        self.sessions_created += 1
        return session

    def _evict(self, count: int) -> None:
        """Retire the least recently used sessions that have no request in flight."""
        for owner, entry in list(self._open.items()):
            if count <= 0:
                break
            if not entry.busy:
                del self._open[owner]
                self._retired.append(entry.session)
                count -= 1

    def forget(self, owner: Hashable) -> None:
        """Stop tracking an owner; its session (if any) is closed at the next opportunity."""
        entry = self._open.pop(owner, None)
        if entry is not None:
            self._retired.append(entry.session)

    def has_session(self, owner: Hashable) -> bool:
        """True when the owner holds an open session."""
        return owner in self._open

    @property
    def open_sessions(self) -> int:
        """How many sessions are open now."""
        return len(self._open)

    @property
    def has_retired(self) -> bool:
        """True when replaced or evicted sessions wait to be closed."""
        return bool(self._retired)

    async def close_retired(self) -> None:
        """Close sessions that were replaced or evicted (no I/O: the connector is shared)."""
        retired, self._retired = self._retired, []
        for session in reversed(retired):
            await session.close()

    async def aclose(self) -> None:
        """Close every session (newest first), then the connector, then let transports finish."""
        sessions = [*self._retired, *(entry.session for entry in self._open.values())]
        self._retired = []
        self._open.clear()
        for session in reversed(sessions):
            try:
                await session.close()
            except Exception:  # pragma: no cover - aiohttp's close does no I/O here
                logger.warning("Closing a session failed", exc_info=True)
        connector, self._connector = self._connector, None
        if connector is not None:
            try:
                await connector.close()
            except Exception:
                logger.warning("Closing the connection pool failed", exc_info=True)
            # Let closed transports run their connection_lost callbacks (aiohttp's advice).
            await asyncio.sleep(0)

    # -- one request -------------------------------------------------------------------------

    async def send(
        self,
        owner: Hashable,
        token: str | None,
        generation: int,
        method: str,
        url: str,
        *,
        params: list[tuple[str, str]] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: aiohttp.ClientTimeout,
        path: str,
    ) -> RawResponse:
        """Send one request and read the whole response under the size cap.

        The owner's session for ``generation`` carries ``token``; it is opened on first use
        (and after a new token), and never evicted while one of its requests is in flight.

        Raises:
            TransportError: With the right subclass; aiohttp's exception is never exposed.
            ResponseTooLargeError: The body passed ``max_response_size``.
        """
        entry = self._session_for(owner, token, generation)
        entry.busy += 1
        # Errors are translated inside `except` but raised after it: raising inside would keep
        # aiohttp's exception as __context__, and some of them hold the request headers.
        failure: BaseException
        try:
            response = await entry.session.request(
                method,
                url,
                params=params,
                data=body if body is None or len(body) <= _BYTES_BODY_MAX else io.BytesIO(body),
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            failure = exc
        else:
            try:
                length = response.content_length
                if (
                    length is not None
                    and length <= self.max_response_size
                    and "Content-Encoding" not in response.headers
                ):
                    payload = await response.read()  # the common case, without another frame
                else:
                    payload = await self._read(response, path)
                return RawResponse(
                    response.status, response.headers, payload, response.content_type
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                response.close()
                failure = exc
            except BaseException:
                response.close()
                raise
        finally:
            entry.busy -= 1
        raise _translate(failure, method, path) from _safe_cause(failure)

    async def _read(self, response: aiohttp.ClientResponse, path: str) -> bytes:
        """The careful read: an announced length over the cap, or an unknown or compressed one.

        (A known, small, uncompressed body is read directly by `send`.)
        """
        cap = self.max_response_size
        length = response.content_length
        if length is not None and length > cap:
            raise ResponseTooLargeError(
                f"The response announced {length} bytes, "
                f"more than max_response_size={cap} ({path})",
                status=response.status,
                request_id=response.headers.get("X-Request-Id"),
            )
        # Unknown or compressed length: count decoded bytes as they arrive.
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > cap:
                raise ResponseTooLargeError(
                    f"The response passed max_response_size={cap} bytes ({path})",
                    status=response.status,
                    request_id=response.headers.get("X-Request-Id"),
                )
            chunks.append(chunk)
        response.release()
        return b"".join(chunks)
