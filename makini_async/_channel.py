"""Per-connection state: the token in use, the state, the slots, and the reconnect step.

A `Channel` is what the engine sends on. Each registered `Connection` holds one; the registry's
tokenless channel (for ``/link/token``) is one without a credential. The token itself lives in
the registry's `CredentialSource`; the channel keeps the credential it currently sends, and
runs the reconnect step after a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final

import attrs

from ._credentials import check_token
from ._errors import (
    REAUTHORIZATION_REQUIRED,
    AuthenticationError,
    ConnectionClosedError,
    ReauthorizationRequiredError,
    RegistryClosedError,
    as_reauthorization_required,
)

if TYPE_CHECKING:
    from ._credentials import Credential, CredentialSource

__all__ = [
    "Channel",
    "ConnectionState",
    "Listeners",
    "ReconnectEvent",
    "ReconnectHook",
    "StateChange",
    "StateListener",
]

logger: Final = logging.getLogger("makini_async")

# How many of the tokens a channel has sent are kept out of its errors and logs.
_SENT_TOKENS_KEPT: Final = 8


class ConnectionState(enum.Enum):
    """Where a connection stands.

    .. versionadded:: 0.1.0
    """

    #: Requests are sent.
    ACTIVE = "active"
    #: The customer must reconnect; calls fail at once until ``update_token``.
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    #: Removed from its registry (or the registry closed); calls fail at once.
    CLOSED = "closed"


@attrs.frozen
class StateChange:
    """A connection moved from one `ConnectionState` to another.

    Attributes:
        connection_id: The connection.
        previous: Its state before.
        current: Its state now.
        reason: Why, in a few words (``"token refused"``, ``"new token"``, ``"closed"``...).

    .. versionadded:: 0.1.0
    """

    connection_id: str
    previous: ConnectionState
    current: ConnectionState
    reason: str


StateListener = Callable[[StateChange], object]


@attrs.frozen
class ReconnectEvent:
    """What a reconnect hook is told when a connection's token is refused.

    Attributes:
        connection_id: The connection whose token failed.
        error: The 401: ``TokenExpiredError`` means a refresh will do,
            ``ReauthorizationRequiredError`` that the customer changed their credentials.
        generation: The token generation that failed (starts at 1, +1 per new token).
        metadata: The connection's metadata, as given to ``registry.add``.

    .. versionadded:: 0.1.0
    """

    connection_id: str
    error: AuthenticationError
    generation: int
    metadata: Mapping[str, object]


ReconnectHook = Callable[[ReconnectEvent], Awaitable[str | None]]


class Listeners:
    """The registry's state listeners; a failing listener is logged and skipped."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[StateListener] = []

    def add(self, listener: StateListener) -> Callable[[], None]:
        """Start telling ``listener``; returns the function that stops it."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def notify(self, change: StateChange) -> None:
        """Tell every listener about ``change``."""
        for listener in tuple(self._listeners):
            try:
                listener(change)
            except Exception:
                logger.warning(
                    "A state listener failed for connection %s", change.connection_id, exc_info=True
                )


class Slots:
    """A first-come-first-served counting limiter, cheaper than a Semaphore when idle.

    A slot is held from a successful `try_acquire` or `acquire` to the one `release` that
    follows it. `acquire` either returns holding a slot or raises holding none, whatever ends
    its wait (a cancellation landing in the very loop turn a slot is handed over included), so
    ``free`` is back at ``capacity`` once every holder has released.
    """

    __slots__ = ("_free", "_waiters", "capacity")

    def __init__(self, slots: int) -> None:
        self.capacity = slots
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] | None = None

    @property
    def free(self) -> int:
        """Slots nobody holds right now."""
        return self._free

    @property
    def waiting(self) -> int:
        """Callers queued for a slot."""
        return sum(1 for waiter in self._waiters or () if not waiter.done())

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody queues for it."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a slot, in arrival order; on any exception, no slot is held."""
        if self.try_acquire():
            return
        if self._waiters is None:
            self._waiters = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            # Cancelled, or the coroutine closed (GeneratorExit): either the slot was handed to
            # us in the same loop turn, and is passed on, or it was not, and the waiter must
            # never be handed one. Only done waiters are skipped by `release`, so this one is
            # cancelled first; it may already have left the queue.
            if waiter.done() and not waiter.cancelled():
                self.release()
            else:
                waiter.cancel()
                self._forget(waiter)
            raise

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters
        if waiters and waiter in waiters:
            waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back, to the first waiter still waiting if there is one."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class Channel:
    """One connection's request state: credential in use, state, slots and in-flight calls.

    Args:
        key: The id the rate budget and the credential source know it by.
        connection_id: The connection id (None for the tokenless channel).
        credential: The credential it sends (None: no ``Authorization`` header at all).
        metadata: The connection's metadata.
        credentials: The registry's credential source.
        hook: The registry's reconnect hook.
        listeners: The registry's state listeners.
        slots: Most concurrent requests (None: no limit).
    """

    __slots__ = (
        "__weakref__",
        "_credentials",
        "_hook",
        "_listeners",
        "_probation",
        "_sent",
        "credential",
        "id",
        "inflight",
        "key",
        "metadata",
        "slots",
        "state",
    )

    def __init__(
        self,
        *,
        key: str,
        connection_id: str | None,
        credential: Credential | None,
        metadata: Mapping[str, object],
        credentials: CredentialSource,
        hook: ReconnectHook | None,
        listeners: Listeners,
        slots: int | None,
    ) -> None:
        self.key = key
        self.id = connection_id
        self.credential = credential
        self._sent: tuple[str, ...] = () if credential is None else (credential.token,)
        self.metadata = metadata
        self.state = ConnectionState.ACTIVE
        self.slots = None if slots is None else Slots(slots)
        self.inflight = 0
        self._credentials = credentials
        self._hook = hook
        self._listeners = listeners
        self._probation = 0

    def __repr__(self) -> str:
        return f"<Channel {self.key!r} {self.state.value}>"

    @property
    def sent_tokens(self) -> tuple[str, ...]:
        """The tokens this channel has sent, newest first (the last few): redacted everywhere.

        A call sent with one token may fail after another was installed; its error is kept
        clean of both.
        """
        return self._sent

    @property
    def generation(self) -> int:
        """The token generation in use (0 for the tokenless channel)."""
        credential = self.credential
        return 0 if credential is None else credential.generation

    # -- state -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection was removed or its registry closed."""
        return self.state is ConnectionState.CLOSED

    def check_open(self) -> None:
        """Raise unless requests may be sent now.

        Raises:
            ConnectionClosedError: The connection was removed or closed.
            ReauthorizationRequiredError: The customer must reconnect.
        """
        state = self.state
        if state is ConnectionState.ACTIVE:
            return
        if state is ConnectionState.CLOSED:
            raise ConnectionClosedError(
                f"Cannot send a request on connection {self.id!r}: it was removed or closed."
            )
        raise ReauthorizationRequiredError(
            f"Connection {self.id!r} needs the customer to reconnect; "
            "call registry.update_token() with the new token.",
            status=401,
            code=REAUTHORIZATION_REQUIRED,
            type="authentication_error",
        )

    def _set_state(self, state: ConnectionState, reason: str) -> None:
        previous = self.state
        if previous is not state and self.id is not None:
            self.state = state
            self._listeners.notify(StateChange(self.id, previous, state, reason))

    def adopt(self, credential: Credential, *, probation: bool = False) -> None:
        """Send ``credential`` from now on, and reactivate the connection.

        Args:
            credential: The new credential (a newer generation).
            probation: The reconnect hook returned it: if it is refused too, the customer
                must reconnect (no second hook run).

        Raises:
            ConnectionClosedError: The connection is closed.
        """
        if self.state is ConnectionState.CLOSED:
            raise ConnectionClosedError(f"Connection {self.id!r} is closed.")
        self.credential = credential
        if credential.token not in self._sent:
            self._sent = (credential.token, *self._sent)[:_SENT_TOKENS_KEPT]
        self._probation = credential.generation if probation else 0
        self._set_state(ConnectionState.ACTIVE, "new token")

    def install(self, token: str) -> None:
        """Send a token the application gave from now on (a new generation)."""
        if self.state is ConnectionState.CLOSED:
            raise ConnectionClosedError(f"Connection {self.id!r} is closed.")
        self.adopt(self._credentials.install(self.key, token))

    def confirm(self, generation: int) -> None:
        """A call with ``generation`` succeeded: a hook's token is off probation."""
        if self._probation == generation:
            self._probation = 0

    def mark_reauthorization_required(self, generation: int) -> None:
        """The token of ``generation`` is refused for good: calls fail until a new token."""
        if self.generation == generation and self.state is ConnectionState.ACTIVE:
            self._set_state(ConnectionState.REAUTHORIZATION_REQUIRED, "token refused")
            logger.warning(
                "Connection %s needs the customer to reconnect (token generation %d refused)",
                self.id,
                generation,
            )

    def reactivate(self) -> None:
        """Send again with the current token after ``REAUTHORIZATION_REQUIRED``."""
        if self.state is ConnectionState.REAUTHORIZATION_REQUIRED:
            self._probation = 0
            self._set_state(ConnectionState.ACTIVE, "reactivated")

    def close(self) -> None:
        """Refuse every later call; a renewal still running is cancelled."""
        self._set_state(ConnectionState.CLOSED, "closed")
        self.state = ConnectionState.CLOSED
        self._credentials.forget(self.key)

    # -- the reconnect step ------------------------------------------------------------------

    async def reauthorize(
        self, generation: int, error: AuthenticationError, *, replayed_token: bool = True
    ) -> None:
        """After a 401 on ``generation``: make sure a newer token is in use, or raise.

        The hook runs once per generation however many calls get here together (the
        credential source's rule); they all wait for that one run, and cancelling one caller
        cancels nobody else.

        Raises:
            AuthenticationError: The tokenless channel's 401, as it is.
            ReauthorizationRequiredError: No newer token could be had.
            ConnectionClosedError: The connection closed meanwhile.
        """
        refused = self.credential
        if refused is None:
            raise error  # no token to renew, so nothing is replayed
        if self.state is ConnectionState.CLOSED:
            raise ConnectionClosedError(f"Connection {self.id!r} is closed.") from error
        if generation != refused.generation:
            return  # a newer token is already in use: the caller replays with it
        on_probation = replayed_token and self._probation == generation
        if self.state is ConnectionState.REAUTHORIZATION_REQUIRED or on_probation:
            # The hook's own token was refused too: no ping-pong, the customer must reconnect.
            self.mark_reauthorization_required(generation)
            raise as_reauthorization_required(error)
        renewed = await self._renew(refused, error)
        if self.closed:
            raise ConnectionClosedError(f"Connection {self.id!r} is closed.") from error
        current_generation = self.generation
        if renewed is not None and renewed.generation > current_generation:
            self.adopt(renewed, probation=True)
        elif renewed is None or current_generation == generation:
            self.mark_reauthorization_required(generation)
            raise as_reauthorization_required(error)
        if self.state is not ConnectionState.ACTIVE:
            raise as_reauthorization_required(error)

    async def _renew(self, refused: Credential, error: AuthenticationError) -> Credential | None:
        """Ask the credential source for a newer credential, running the hook if it must."""
        try:
            return await self._credentials.renew(
                self.key, refused, lambda: self._run_hook(refused.generation, error)
            )
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # The renewal itself was cancelled (the connection or the registry is closing).
            raise ConnectionClosedError(
                f"Connection {self.id!r} closed while it was reconnecting."
            ) from error

    async def credentials_changed(self) -> ConnectionState:
        """Treat the current token as refused by a 401 ``REAUTHORIZATION_REQUIRED``; no I/O."""
        credential = self.credential
        if self.state is ConnectionState.ACTIVE and credential is not None:
            error = ReauthorizationRequiredError(
                "The customer's credentials changed; the connection must be reauthorized.",
                status=401,
                code=REAUTHORIZATION_REQUIRED,
                type="authentication_error",
            )
            with contextlib.suppress(ReauthorizationRequiredError):
                await self.reauthorize(credential.generation, error, replayed_token=False)
        return self.state

    async def _run_hook(self, generation: int, error: AuthenticationError) -> str | None:
        """Run the reconnect hook; a new token, or None. Never raises."""
        hook = self._hook
        if hook is None or self.id is None:
            return None
        event = ReconnectEvent(
            connection_id=self.id, error=error, generation=generation, metadata=self.metadata
        )
        logger.info(
            "Running the reconnect hook for connection %s (generation %d, %s)",
            self.id,
            generation,
            error.code,
        )
        # Failures are noted inside `except` and logged after it, so that neither the hook's
        # exception nor the token check's (either may quote a credential) is kept.
        token: str | None = None
        failure: str | None = None
        try:
            token = await hook(event)
        except Exception as exc:  # noqa: BLE001 - a user hook may raise anything
            failure = f"raised {type(exc).__name__}"  # only the type: the message may hold secrets
        if failure is None and token is not None:
            try:
                check_token(token)
            except (TypeError, ValueError):
                failure = "returned an invalid token"
        if failure is not None:
            logger.warning("The reconnect hook for connection %s %s", self.id, failure)
            return None
        return token


def registry_closed() -> RegistryClosedError:
    """The error of a call made after its registry closed."""
    return RegistryClosedError(
        "Cannot send a request, as the registry has been closed; create a new one."
    )
