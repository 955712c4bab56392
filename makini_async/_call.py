"""One call's arguments, checked and encoded before any I/O: the `Call` the engine sends.

Nothing here waits or sends. A bad argument is a `TypeError` or `ValueError` raised by
`Arguments.prepare`, before the call touches the network; a body is encoded here once, so that
every retry and the replay after a reconnect send the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import attrs

from . import _json
from ._bodies import FORM_CONTENT_TYPE, Multipart, Upload, encode_form, multipart
from ._transport import Timeouts

if TYPE_CHECKING:
    from ._channel import Channel
    from ._instrument import CallObserver
    from ._types import Clock

__all__ = ["Arguments", "Call", "check_redact"]

_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
# Methods whose repetition cannot duplicate a side effect (RFC 9110), minus PUT: Makini's PUTs
# change statuses and quantities, so they are treated like POST.
_REPEATABLE: Final = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_FORBIDDEN_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)
_BAD_PATH: Final = re.compile(r"[\x00-\x20\x7f#\\]")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_HEADER_VALUE: Final = re.compile(r"[\x00\r\n]")
# Paths already validated (most programs call a few paths many times).
_CHECKED_PATHS_MAX: Final = 4096
_IDEMPOTENCY_KEY_MAX: Final = 255


def check_redact(redact: Sequence[str]) -> tuple[str, ...]:
    """The secrets a call asks to keep out of errors, as a tuple of non-empty strings.

    Raises:
        TypeError: A bare str (it would be read as single characters) or a non-str item.
    """
    if isinstance(redact, str) or not all(isinstance(item, str) for item in redact):
        raise TypeError("redact must be a sequence of str, such as (client_secret,)")
    return tuple(item for item in redact if item)


@attrs.define(slots=True, eq=False, repr=False)
class Call:
    """One logical call's arguments and progress (its repr shows no body and no token)."""

    channel: Channel
    method: str
    path: str
    url: str
    params: list[tuple[str, str]] | None
    body: bytes | None
    headers: dict[str, str] | None
    timeouts: Timeouts | None
    deadline_at: float | None
    repeatable: bool
    generation: int = 0
    attempts: int = 0
    # With a deadline: when the latest attempt started (the call's start, for the first one).
    attempt_started: float = 0.0
    # A multipart body whose files are read (once) when the call starts; then None.
    multipart: Multipart | None = None
    # Strings sent in the body that must never be kept from an error answer (client secrets).
    redact: tuple[str, ...] = ()
    # Who hears of this call's progress (None when nobody listens).
    observer: CallObserver | None = None

    def __repr__(self) -> str:
        return f"<call {self.method} {self.path}>"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not _is_str(name) or not _is_str(value):
            raise TypeError("header names and values must be str")
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ValueError(
                f"the {name} header is managed by makini_async; use update_token() for credentials"
            )
        if _BAD_HEADER_VALUE.search(value):
            raise ValueError(f"the value of header {name!r} contains CR, LF or NUL")
        checked[name] = value
    return checked


def param_value(key: str, value: object) -> str:
    """One query value as sent: booleans as ``true``/``false``, aware datetimes ISO-8601 UTC.

    Raises:
        TypeError: Not a str, int, float, bool or datetime.
        ValueError: A naive datetime.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"query parameter {key!r}: datetimes must be timezone-aware")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(
        f"query parameter {key!r} must be str, int, float, bool or datetime, "
        f"not {type(value).__name__}"
    )


def _check_params(
    params: Mapping[str, object] | Iterable[tuple[str, object]],
) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    checked: list[tuple[str, str]] = []
    for key, value in items:
        if not isinstance(key, str):
            raise TypeError("query parameter names must be str")
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            checked.extend((key, param_value(key, v)) for v in value)
        else:
            checked.append((key, param_value(key, value)))
    return checked


def _check_idempotency_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError("idempotency_key must be a str")
    if not key or len(key) > _IDEMPOTENCY_KEY_MAX or not key.isascii() or not key.isprintable():
        raise ValueError("idempotency_key must be 1-255 printable ASCII characters")
    return key


def _encode_body(
    json: object, form: Mapping[str, str] | None, files: Mapping[str, Upload] | None
) -> tuple[bytes | None, Multipart | None, str | None]:
    """The body bytes (or the multipart body to read later) and their content type."""
    if json is not None:
        if form is not None or files is not None:
            raise ValueError(
                "Pass a body as json= or as form= (with files= for multipart), not both"
            )
        return _json.dumps(json), None, "application/json"
    if files is not None:
        return None, multipart(form, files), None  # the files are read when the call starts
    if form is not None:
        return encode_form(form), None, FORM_CONTENT_TYPE
    return None, None, None


class Arguments:
    """Checks a call's arguments against one registry's settings and builds its `Call`."""

    __slots__ = ("_base_url", "_checked_paths", "_clock", "timeouts")

    def __init__(self, *, base_url: str, timeouts: Timeouts, clock: Clock) -> None:
        self._base_url = base_url
        self.timeouts = timeouts
        self._clock = clock
        self._checked_paths: dict[str, None] = {}

    def timeouts_of(self, timeout: Timeouts | float) -> Timeouts:
        """The per-attempt `Timeouts` a ``timeout=`` argument asks for.

        Raises:
            TypeError: Neither `Timeouts` nor a number.
            ValueError: A number that is not > 0.
        """
        if isinstance(timeout, Timeouts):
            return timeout
        if _is_number(timeout):
            if not timeout > 0:
                raise ValueError(f"timeout must be > 0, got {timeout!r}")
            return attrs.evolve(self.timeouts, total=float(timeout))
        raise TypeError("timeout must be a Timeouts, a number of seconds, or None")

    def _check_path(self, path: object) -> str:
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        if path not in self._checked_paths:
            if not path.startswith("/") or path.startswith("//") or _BAD_PATH.search(path):
                raise ValueError(
                    f"path must start with a single '/' and contain no spaces, control "
                    f"characters, backslashes or '#', got {path!r}"
                )
            if len(self._checked_paths) >= _CHECKED_PATHS_MAX:
                self._checked_paths.clear()
            self._checked_paths[path] = None
        return path

    def prepare(  # noqa: PLR0917 - one flat checklist of arguments
        self,
        channel: Channel,
        method: str,
        path: str,
        params: Mapping[str, object] | Iterable[tuple[str, object]] | None,
        json: object,
        form: Mapping[str, str] | None,
        files: Mapping[str, Upload] | None,
        headers: Mapping[str, str] | None,
        timeout: Timeouts | float | None,
        deadline: float | None,
        idempotency_key: str | None,
    ) -> Call:
        """Check every argument and encode the body; no I/O.

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: An argument with a bad value.
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, not {type(method).__name__}")
        verb = method.upper()
        if verb not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(sorted(_METHODS))}, got {method!r}")
        self._check_path(path)
        extra: dict[str, str] | None = _check_headers(headers) if headers else None
        if idempotency_key is not None:
            extra = extra or {}
            extra["Idempotency-Key"] = _check_idempotency_key(idempotency_key)
        body: bytes | None = None
        upload: Multipart | None = None
        if json is not None or form is not None or files is not None:
            body, upload, content_type = _encode_body(json, form, files)
            if content_type is not None:
                extra = extra or {}
                extra["Content-Type"] = content_type
        timeouts = None if timeout is None else self.timeouts_of(timeout)
        deadline_at = None
        started = 0.0
        if deadline is not None:
            if not _is_number(deadline):
                raise TypeError("deadline must be a number of seconds, or None")
            if not deadline > 0:
                raise ValueError(f"deadline must be > 0 seconds, got {deadline!r}")
            started = self._clock.monotonic()
            deadline_at = started + deadline
        # Positional: keyword arguments would cost a third of this method on every call.
        call = Call(
            channel,
            verb,  # method
            path,
            self._base_url + path,  # url
            _check_params(params) if params else None,  # params
            body,
            extra,  # headers
            timeouts,
            deadline_at,
            verb in _REPEATABLE or idempotency_key is not None,  # repeatable
        )
        if upload is not None:
            call.multipart = upload
        call.attempt_started = started
        return call
