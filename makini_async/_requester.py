"""`Requester`: what a typed service needs from a connection (its clock and ``request``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._bodies import Upload
    from ._response import APIResponse
    from ._transport import Timeouts
    from ._types import Clock

__all__ = ["Requester"]


class Requester(Protocol):
    """What a service needs from a connection: its clock and its ``request`` method.

    `Connection` is one; a test double or a wrapper (adding headers, say) can be another.

    .. versionadded:: 0.1.0
    """

    @property
    def clock(self) -> Clock:
        """The clock the connection's deadlines are measured on."""
        ...

    async def request(
        self,
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
        redact: Sequence[str] = (),
    ) -> APIResponse:
        """Send one request; see `Connection.request`."""
        ...
