"""Fault injection: misbehaviours armed for the next matching requests, and the board of them."""

from __future__ import annotations

import fnmatch
import secrets
from collections.abc import Mapping
from typing import Final, Literal

import attrs

__all__ = ["FAULT_KINDS", "Fault", "FaultBoard", "FaultKind"]

FaultKind = Literal["status", "latency", "drop", "reset", "truncate", "malformed", "html"]
FAULT_KINDS: Final[frozenset[str]] = frozenset(
    {"status", "latency", "drop", "reset", "truncate", "malformed", "html"}
)


@attrs.define
class Fault:
    """A misbehaviour armed for the next ``remaining`` matching requests (``None``: forever).

    A request matches when every given matcher does: ``connection`` (id), ``path`` (exact, or a
    glob such as ``/api/eam/*``) and ``method``.

    .. versionadded:: 0.1.0
    """

    id: str
    kind: FaultKind
    remaining: int | None
    connection: str | None = None
    path: str | None = None
    method: str | None = None
    status: int = 503
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    details: dict[str, object] | None = None
    latency: float = 0.0
    hits: int = 0

    def matches(self, connection: str | None, path: str, method: str) -> bool:
        """Tell whether a request is one this fault is armed for.

        Args:
            connection: The id of the connection the request's token opens, if any.
            path: The request path.
            method: The request method, upper-case.

        Returns:
            ``True`` when the fault has uses left and every matcher given agrees.
        """
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.connection is not None and self.connection != connection:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path is None:
            return True
        return self.path == path or fnmatch.fnmatchcase(path, self.path)


class FaultBoard:
    """The armed faults of one sandbox, in the order they were armed."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def arm(
        self,
        status: int | None = None,
        *,
        kind: FaultKind | None = None,
        times: int | None = 1,
        connection: str | None = None,
        path: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        message: str | None = None,
        details: Mapping[str, object] | None = None,
        latency: float = 0.0,
    ) -> Fault:
        """Arm a fault (``Sandbox.inject`` documents the arguments).

        Raises:
            ValueError: Neither a status nor a known kind was given.
        """
        chosen = kind or ("status" if status is not None else None)
        if chosen is None and latency:
            chosen = "latency"
        if chosen not in FAULT_KINDS:
            raise ValueError(f"Give a status or one of the kinds {sorted(FAULT_KINDS)}.")
        fault = Fault(
            id=f"flt_{secrets.token_hex(6)}",
            kind=chosen,
            remaining=times,
            connection=connection,
            path=path,
            method=method,
            status=status or (502 if chosen == "html" else 503),
            code=code,
            message=message,
            retry_after=retry_after,
            details=dict(details) if details else None,
            latency=latency,
        )
        self._faults.append(fault)
        return fault

    def active(self) -> list[Fault]:
        """Every armed fault that still has uses left."""
        return [f for f in self._faults if f.remaining is None or f.remaining > 0]

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def take(self, connection: str | None, path: str, method: str) -> Fault | None:
        """Find the first fault matching a request and use one of its shots."""
        for fault in self._faults:
            if fault.matches(connection, path, method):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None
