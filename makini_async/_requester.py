"""`Requester`: what a typed service needs from a connection (its clock and ``request``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._bodies import Upload
    from ._response import APIResponse
    from ._transport import Timeouts
    from ._types import Clock

__all__ = ["Requester", "decodes_strictly"]


class Requester(Protocol):
    """What a service needs from a connection: its clock and its ``request`` method.

    `Connection` is one; a test double or a wrapper (adding headers, say) can be another. A
    requester may also have a ``strict`` attribute (`Connection` has, from its registry): when
    it is True, the services' calls decode records strictly by default (see
    `decodes_strictly`); a requester without one decodes tolerantly.

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


def decodes_strictly(requester: Requester) -> bool:
    """Whether the calls of ``requester`` decode records strictly when the call does not say.

    Args:
        requester: A connection, or any other `Requester`.

    Returns:
        Its ``strict`` attribute when that is True; False otherwise (also when it has none).

    .. versionadded:: 0.1.0
    """
    return getattr(requester, "strict", False) is True
