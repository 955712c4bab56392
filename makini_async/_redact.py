"""Keeping secrets and hostile text out of what users see: exception texts, reprs, log records.

Two rules decide where a secret (a token the connection has sent, a client secret a call
redacts) is cut out of server-controlled text:

* A secret of `ANYWHERE_MIN` characters or more is replaced wherever it occurs, glued to other
  text or not: a string that long never turns up by chance, and an echo may glue it to
  anything (``%3D`` before it in an echoed query string, say). Makini issues JWTs, hundreds of
  characters long.
* A shorter secret (tests and local setups use tokens such as ``"t"``) is replaced only where it
  stands whole, with no letter or digit right before or after it: replacing every ``t`` of
  ``"the title is required"`` would make the error unreadable.

Short fields (request ids, codes, types) are also bounded and must be printable: a field with
control characters is dropped rather than passed on to a log line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = [
    "ANYWHERE_MIN",
    "REDACTED",
    "SHORT_FIELD_LIMIT",
    "one_line",
    "scrub",
    "scrub_obj",
    "short_field",
    "snippet",
]

#: The marker that stands where a secret was.
REDACTED: Final = "[REDACTED]"
#: Secrets at least this long are redacted wherever they occur; shorter ones only when whole.
ANYWHERE_MIN: Final = 16
#: Longest request id, code or type kept.
SHORT_FIELD_LIMIT: Final = 200
# Deeper JSON structures are dropped, not walked.
_MAX_DEPTH: Final = 32


def _whole(secret: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])")


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with each secret replaced by the redaction marker (see the module's rules)."""
    for secret in secrets:
        if not secret or secret not in text:
            continue
        if len(secret) >= ANYWHERE_MIN:
            text = text.replace(secret, REDACTED)
        else:
            text = _whole(secret).sub(REDACTED, text)
    return text


def scrub_obj(value: object, secrets: tuple[str, ...], depth: int = 0) -> object:
    """A copy of a decoded JSON value with every string (keys too) scrubbed; depth-bounded."""
    if isinstance(value, str):
        return scrub(value, secrets) if secrets else value
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, Mapping):
        return {scrub(str(k), secrets): scrub_obj(v, secrets, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_obj(v, secrets, depth + 1) for v in value]
    return value


def short_field(
    value: str | None, secrets: tuple[str, ...], limit: int = SHORT_FIELD_LIMIT
) -> str | None:
    """A request id, code or type as kept: scrubbed, then bounded; None when empty or unprintable.

    Scrubbed before it is cut: cutting first could leave part of a secret behind.
    """
    if value is None:
        return None
    value = scrub(value.strip(), secrets)[:limit]
    if not value or not value.isprintable():
        return None
    return value


def one_line(value: str, secrets: tuple[str, ...], limit: int) -> str:
    """A human message as kept: scrubbed, control characters turned to spaces, then bounded."""
    value = scrub(value, secrets)
    if not value.isprintable():
        value = "".join(c if c.isprintable() else " " for c in value)
    return value.strip()[:limit]


def snippet(body: bytes, secrets: tuple[str, ...], limit: int) -> str:
    """The start of a body as text, at most ``limit`` characters, with every secret redacted.

    A secret that straddles the cut is redacted before the cut is made.
    """
    longest = max((len(s) for s in secrets), default=0)
    head = body[: limit * 4 + longest * 4].decode("utf-8", "replace")
    return scrub(head[: limit + longest], secrets)[:limit]
