"""Retry policy, the backoff schedule, and defensive parsing of ``Retry-After``."""

from __future__ import annotations

import math
import re
from collections.abc import Generator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

import attrs
import backoff

__all__ = ["RetryPolicy", "parse_retry_after", "retry_after_of"]

# A Retry-After longer than this many characters is garbage (and int() of 5000 digits raises).
_RETRY_AFTER_MAX_CHARS: Final = 40
_WEEKDAYS: Final = frozenset(
    {
        *("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        *("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    }
)
_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# Hours east of GMT. HTTP-dates are GMT; RFC 5322's zones (and UTC, Z) are honoured as well.
_ZONES: Final = {
    "gmt": 0,
    "ut": 0,
    "utc": 0,
    "z": 0,
    "est": -5,
    "edt": -4,
    "cst": -6,
    "cdt": -5,
    "mst": -7,
    "mdt": -6,
    "pst": -8,
    "pdt": -7,
}
_TIME: Final = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
_ZONE: Final = r"(?P<zone>[a-z]{1,3}|[+-]\d{4})"
# RFC 9110 section 5.6.7: recipients must accept all three forms. Beyond the grammar, names are
# compared without regard to case, either weekday spelling and a two-digit year are taken in
# any form, runs of spaces stand for one, and a zone other than GMT is honoured: a date that is
# slightly off still says how long the server wants us to wait, and ignoring it would retry
# inside the window.
_IMF_FIXDATE: Final = re.compile(
    rf"(?P<weekday>[a-z]{{3,9}}), +(?P<day>\d\d?) +(?P<month>[a-z]{{3}}) +(?P<year>\d\d(?:\d\d)?)"
    rf" +{_TIME} +{_ZONE}",
    re.ASCII | re.IGNORECASE,
)
_RFC850_DATE: Final = re.compile(
    rf"(?P<weekday>[a-z]{{3,9}}), +(?P<day>\d\d?)-(?P<month>[a-z]{{3}})-(?P<year>\d\d(?:\d\d)?)"
    rf" +{_TIME} +{_ZONE}",
    re.ASCII | re.IGNORECASE,
)
_ASCTIME_DATE: Final = re.compile(
    rf"(?P<weekday>[a-z]{{3,9}}) +(?P<month>[a-z]{{3}}) +(?P<day>\d\d?) +{_TIME}"
    rf" +(?P<year>\d{{4}})(?: +{_ZONE})?",
    re.ASCII | re.IGNORECASE,
)
# RFC 9110: a two-digit year more than 50 years ahead is the same year a century earlier.
_RFC850_WINDOW: Final = 50
_LEAP_SECOND: Final = 60


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

    ``attempts`` counts attempts, not retries: the default 4 is the first try and at most 3
    retries (what other clients call ``max_retries=3``).

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


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header; None when absent or invalid.

    RFC 9110 section 10.2.3: delay-seconds (``1*DIGIT``, ASCII digits only) or an HTTP-date in
    any of the three forms of section 5.6.7 (IMF-fixdate ``Sun, 06 Nov 1994 08:49:37 GMT``,
    RFC 850 ``Sunday, 06-Nov-94 08:49:37 GMT``, asctime ``Sun Nov  6 08:49:37 1994``); a
    date in the past is 0. Names in any case and RFC 5322 zones (``+0100``, ``EST``) are
    honoured too. Anything else (negative, fractional, ``nan``, full-width digits, more than
    40 characters, an unknown weekday, month or zone, an impossible date) is ignored, so that
    normal backoff applies. Never raises.

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
    when = _http_date(value, now)
    if when is None:
        return None
    return max(0.0, when - now)


def retry_after_of(values: Iterable[str], *, now: float) -> float | None:
    """`parse_retry_after` over every ``Retry-After`` field line a response carried.

    The header is a single value; a response that repeats it is taken at its longest valid
    wait, since waiting too little is what the header exists to prevent.
    """
    waits = [w for w in (parse_retry_after(v, now=now) for v in values) if w is not None]
    return max(waits, default=None)


def _http_date(value: str, now: float) -> float | None:
    """The Unix time of an HTTP-date in any of RFC 9110's three forms, or None."""
    match = (
        _IMF_FIXDATE.fullmatch(value)
        or _RFC850_DATE.fullmatch(value)
        or _ASCTIME_DATE.fullmatch(value)
    )
    if match is None:
        return None
    fields = match.groupdict()
    month = _MONTHS.get(fields["month"].lower())
    if month is None or fields["weekday"].lower() not in _WEEKDAYS:
        return None
    zone = (fields["zone"] or "gmt").lower()
    if zone[0] in "+-":
        east = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:]))
        east = -east if zone[0] == "-" else east
    elif zone in _ZONES:
        east = timedelta(hours=_ZONES[zone])
    else:
        return None
    try:
        return (_utc(fields, month, now) - east).timestamp()
    except (ValueError, OverflowError, OSError):  # day 31 of a 30-day month, hour 24...
        return None


def _utc(fields: dict[str, str], month: int, now: float) -> datetime:
    """The date and time of day, read as UTC (the zone is applied by the caller)."""
    year = int(fields["year"])
    if len(fields["year"]) == 2:  # noqa: PLR2004 - RFC 850's two-digit year
        this_year = datetime.fromtimestamp(now, UTC).year
        year += this_year - this_year % 100
        if year > this_year + _RFC850_WINDOW:
            year -= 100
    second = int(fields["second"])
    if second == _LEAP_SECOND:  # 23:59:60 is taken as the second before
        second -= 1
    return datetime(
        year,
        month,
        int(fields["day"]),
        int(fields["hour"]),
        int(fields["minute"]),
        second,
        tzinfo=UTC,
    )
