"""Retry policy, the backoff schedule, and defensive parsing of ``Retry-After``."""

from __future__ import annotations

import math
from collections.abc import Generator
from email.utils import parsedate_to_datetime
from typing import Final

import attrs
import backoff

__all__ = ["RetryPolicy", "parse_retry_after"]

# A Retry-After longer than this many characters is garbage (and int() of 5000 digits raises).
_RETRY_AFTER_MAX_CHARS: Final = 40
_WEEKDAYS: Final = frozenset({"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"})


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        msg = f"RetryPolicy.{attribute.name} must be a finite number >= 0, got {value!r}"
        raise ValueError(msg)


def _at_least_one(_instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        msg = f"RetryPolicy.attempts must be an int >= 1 (1 means no retries), got {value!r}"
        raise ValueError(msg)


@attrs.frozen
class RetryPolicy:
    """How a call retries transient failures.

    Waits grow exponentially (``base * 2**n``, capped at ``cap``) with full jitter, so that many
    clients failing together do not retry together. A ``Retry-After`` from the server is always
    honoured as a floor: no retry is sent earlier than the server asked.

    Args:
        attempts: Attempts in all, the first included (1 disables retries).
        base: The first backoff ceiling, in seconds.
        cap: The largest backoff ceiling, in seconds.
        max_retry_after: A ``Retry-After`` longer than this (seconds) is not waited for: the
            call gives up at once with the error, whose ``retry_after`` says when to come back.

    .. versionadded:: 0.1.0
    """

    attempts: int = attrs.field(default=4, validator=_at_least_one)
    base: float = attrs.field(default=0.5, validator=_non_negative)
    cap: float = attrs.field(default=8.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt.

        Returns:
            The policy.
        """
        return cls(attempts=1)

    def waits(self) -> Generator[float, None, None]:
        """The jittered backoff waits between attempts, endless.

        Returns:
            A generator of wait times in seconds; the n-th value is uniform in
            ``[0, min(cap, base * 2**n)]``.
        """
        ceilings = backoff.expo(base=2, factor=self.base, max_value=self.cap)
        next(ceilings)  # backoff's generators start with a bare yield for .send(None)
        for ceiling in ceilings:
            yield backoff.full_jitter(ceiling)


def parse_retry_after(value: str | None, *, now: float) -> float | None:  # noqa: PLR0911
    """Seconds to wait from a ``Retry-After`` header; None when absent or invalid.

    Accepts delta-seconds (ASCII digits only) and an HTTP-date; a date in the past is 0.
    Anything else (negative, fractional, ``nan``, full-width digits, huge numbers, garbage)
    is ignored, so that normal backoff applies. Never raises.

    Args:
        value: The raw header value.
        now: The current Unix time, for HTTP-dates.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _RETRY_AFTER_MAX_CHARS or not value.isascii():
        return None
    if value.isdigit():
        return float(int(value))
    weekday, comma, _ = value.partition(",")
    if comma and weekday.strip() not in _WEEKDAYS:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is not one
        return None
    try:
        delta = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, delta)
