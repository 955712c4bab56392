"""One call's arguments, checked and encoded before any I/O: the `Call` the engine sends.

Nothing here waits or sends. A bad argument is a `TypeError` or `ValueError` raised by
`Arguments.prepare`, before the call touches the network; a body is encoded here once, so that
every retry and the replay after a reconnect send the same bytes.

An argument that cannot be sent as given is refused, never altered on the way:

- the path must read the same to the server as it was given: yarl may normalise it on the way
  (percent-encode UTF-8 text, upper-case ``%xx``, decode ``%41`` or ``%3A``), but each segment,
  percent-decoded, must give the very bytes the given segment decodes to. So no lone
  surrogate (yarl drops it), no ``%`` outside an escape (it would become ``%25``), no ``.`` or
  ``..`` segment, plain or encoded (it would be resolved away), no query string (that goes in
  ``params``). A path of letters, digits, ``-._~/`` and ``!$&'()*+,;=:@`` is sent byte for byte;
- query names and values, header values and bodies hold no lone surrogate (no encoder can
  send one, and yarl would drop it);
- a header value is visible ASCII, with spaces and tabs only between visible characters (a
  server strips them at the ends, and other octets are read differently by each server).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, unquote_to_bytes

import attrs
from yarl import URL

from . import _json
from ._bodies import FORM_CONTENT_TYPE, Multipart, Upload, encode_form, multipart
from ._transport import Timeouts, check_seconds

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
        # aiohttp would wait for a 100 Continue before sending the body.
        "expect",
    }
)
_BAD_PATH: Final = re.compile(r"[\x00-\x20\x7f#\\]")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 field-value without obs-text: visible ASCII, spaces and tabs only inside.
_HEADER_VALUE: Final = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")
_DOT_SEGMENTS: Final = frozenset({".", ".."})
# Characters yarl sends as they are in a path: a path of these alone (with no dot segment) is
# sent byte for byte, without building a URL to find out.
_PLAIN_PATH: Final = re.compile(r"[A-Za-z0-9\-._~/!$&'()*+,;=:@]*")
_BROKEN_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Paths already validated (most programs call a few paths many times).
_CHECKED_PATHS_MAX: Final = 4096
_IDEMPOTENCY_KEY_MAX: Final = 255
_JSON_DEPTH_MAX: Final = 512


def check_redact(redact: Sequence[str]) -> tuple[str, ...]:
    """The secrets a call asks to keep out of errors, as a tuple of non-empty strings.

    Raises:
        TypeError: A bare str (it would be read as single characters) or a non-str item.
    """
    given: object = redact  # checked as what it may be at run time, not as annotated
    if (
        isinstance(given, str)
        or not isinstance(given, Iterable)
        or not all(isinstance(item, str) for item in given)
    ):
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


def _encodable(text: str) -> bool:
    """True unless ``text`` holds a lone surrogate, which no encoder can send."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _segments(path: str) -> list[bytes]:
    """The path's segments as a server reads them: percent-decoded, byte for byte."""
    return [unquote_to_bytes(segment) for segment in path.split("/")]


def _check_headers(headers: object) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        raise TypeError(
            f"headers must be a mapping of header names to values, not {type(headers).__name__}"
        )
    checked: dict[str, str] = {}
    lowered: set[str] = set()
    for name, value in headers.items():
        if not _is_str(name) or not _is_str(value):
            raise TypeError(
                f"header names and values must be str, got {type(name).__name__} "
                f"and {type(value).__name__}"
            )
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(
                f"invalid header name {name!r}: use letters, digits and -_.!#$%&'*+^`|~"
            )
        lower = name.lower()
        if lower in _FORBIDDEN_HEADERS:
            raise ValueError(
                f"the {name} header is managed by makini_async; use update_token() for credentials"
            )
        if lower in lowered:  # aiohttp would keep only the last of them
            raise ValueError(f"the {name} header is given twice (names are case-insensitive)")
        lowered.add(lower)
        if not _HEADER_VALUE.fullmatch(value):
            # The value is not shown: headers carry API keys and signatures.
            raise ValueError(
                f"the value of header {name!r} cannot be sent as given: it must be visible ASCII, "
                "with spaces and tabs only between visible characters (no control characters, "
                "CR, LF, non-ASCII text or surrogates, no spaces at either end)"
            )
        checked[name] = value
    return checked


def _refuse_given(headers: dict[str, str] | None, name: str, argument: str) -> None:
    """Refuse a header in ``headers`` that the call sets itself from ``argument``."""
    if headers:
        lowered = name.lower()
        if any(given.lower() == lowered for given in headers):
            raise ValueError(f"the {name} header is set by {argument}; do not pass it in headers")


def _add_header(
    headers: dict[str, str] | None, name: str, value: str, argument: str
) -> dict[str, str]:
    """``headers`` with one header the call sets itself (refused if the caller set it too)."""
    _refuse_given(headers, name, argument)
    if headers is None:
        return {name: value}
    headers[name] = value
    return headers


def _datetime_value(key: str, value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"query parameter {key!r}: datetimes must be timezone-aware")
    try:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError):  # e.g. 9999-12-31T23:00-05:00 has no UTC year
        raise ValueError(f"query parameter {key!r}: the datetime is out of range") from None


def param_value(key: str, value: object) -> str:
    """One query value as sent: booleans as ``true``/``false``, aware datetimes ISO-8601 UTC.

    Raises:
        TypeError: Not a str, int, float, bool or datetime.
        ValueError: A naive datetime, a datetime UTC cannot hold, a non-finite float, an int
            too long to write out, or a str holding a lone surrogate.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if not _encodable(value):
            raise ValueError(f"query parameter {key!r}: the value holds a lone surrogate")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"query parameter {key!r}: {value!r} is not a finite number")
        return str(value)
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            raise ValueError(f"query parameter {key!r}: the int is too long to send") from None
    if isinstance(value, datetime):
        return _datetime_value(key, value)
    raise TypeError(
        f"query parameter {key!r} must be str, int, float, bool or datetime, "
        f"not {type(value).__name__}"
    )


def _check_params(params: object) -> list[tuple[str, str]]:
    items: Iterable[object]
    if isinstance(params, Mapping):
        items = params.items()
    elif isinstance(params, Iterable) and not isinstance(params, str | bytes | bytearray):
        items = params
    else:
        raise TypeError(
            "params must be a mapping or an iterable of (name, value) pairs, "
            f"not {type(params).__name__}"
        )
    checked: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:  # noqa: PLR2004 - a pair
            raise TypeError(f"params must hold (name, value) pairs, not {type(item).__name__}")
        key, value = item
        if not isinstance(key, str):
            raise TypeError(f"query parameter names must be str, not {type(key).__name__}")
        if not _encodable(key):
            raise ValueError(f"query parameter name {key!r} holds a lone surrogate")
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            checked.extend((key, param_value(key, v)) for v in value)
        else:
            checked.append((key, param_value(key, value)))
    return checked


def _check_idempotency_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"idempotency_key must be a str, not {type(key).__name__}")
    if (
        not key
        or len(key) > _IDEMPOTENCY_KEY_MAX
        or not key.isascii()
        or not key.isprintable()
        or key != key.strip()
    ):
        raise ValueError(
            "idempotency_key must be 1-255 printable ASCII characters, with no space at either end"
        )
    return key


def _nested_deeper_than(value: object, limit: int) -> bool:
    """True when containers nest more than ``limit`` levels (walked without recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if not isinstance(children, Iterable) or isinstance(item, str | bytes):
            continue
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return False


def _json_body(json: object) -> bytes:
    # Every Python then refuses the same bodies (3.13's encoder no longer hits the recursion
    # limit), at the depth a Laravel server decodes by default.
    if isinstance(json, dict | list | tuple) and _nested_deeper_than(json, _JSON_DEPTH_MAX):
        raise ValueError(f"json: the body is nested more than {_JSON_DEPTH_MAX} levels deep")
    try:
        return _json.dumps(json)
    except RecursionError:
        raise ValueError("json: the body is nested too deeply to encode") from None
    except UnicodeEncodeError:
        raise ValueError("json: a string in the body holds a lone surrogate") from None
    except TypeError as exc:
        raise TypeError(f"json: {exc}") from None
    except ValueError as exc:  # a non-finite float, a circular reference, a huge int
        raise ValueError(f"json: {exc}") from None


def _encode_body(
    json: object, form: Mapping[str, str] | None, files: Mapping[str, Upload] | None
) -> tuple[bytes | None, Multipart | None, str | None]:
    """The body bytes (or the multipart body to read later) and their content type."""
    if json is not None:
        if form is not None or files is not None:
            raise ValueError(
                "Pass a body as json= or as form= (with files= for multipart), not both"
            )
        return _json_body(json), None, "application/json"
    if files is not None:
        return None, multipart(form, files), None  # the files are read when the call starts
    if form is not None:
        return encode_form(form), None, FORM_CONTENT_TYPE
    return None, None, None


class Arguments:
    """Checks a call's arguments against one registry's settings and builds its `Call`."""

    __slots__ = ("_base_path", "_base_url", "_checked_paths", "_clock", "timeouts")

    def __init__(self, *, base_url: str, timeouts: Timeouts, clock: Clock) -> None:
        self._base_url = base_url
        base_path = URL(base_url).raw_path
        self._base_path = "" if base_path == "/" else base_path
        self.timeouts = timeouts
        self._clock = clock
        self._checked_paths: dict[str, None] = {}

    def timeouts_of(self, timeout: Timeouts | float) -> Timeouts:
        """The per-attempt `Timeouts` a ``timeout=`` argument asks for.

        Raises:
            TypeError: Neither `Timeouts` nor a number.
            ValueError: A number that is not > 0, not finite, or over `MAX_SECONDS`.
        """
        if isinstance(timeout, Timeouts):
            return timeout
        if _is_number(timeout):
            # The whole attempt, as on the registry: no separate limit on reading the answer.
            return attrs.evolve(self.timeouts, read=None, total=check_seconds("timeout", timeout))
        raise TypeError(
            "timeout must be a Timeouts, a number of seconds, or None, "
            f"not {type(timeout).__name__}"
        )

    def _check_path(self, path: object) -> str:
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        if path not in self._checked_paths:
            problem = self._path_problem(path)
            if problem is not None:
                raise ValueError(f"path {path!r} {problem}")
            if len(self._checked_paths) >= _CHECKED_PATHS_MAX:
                self._checked_paths.clear()
            self._checked_paths[path] = None
        return path

    def _path_problem(self, path: str) -> str | None:  # noqa: PLR0911 - one return per rule
        """Why the server would not read ``path`` as given, or None."""
        if not path.startswith("/") or path.startswith("//"):
            return "must start with a single '/'"
        if _BAD_PATH.search(path):
            return "must hold no spaces, control characters, backslashes or '#'"
        if "?" in path:
            return "must not carry a query string: pass the query as params="
        if not _encodable(path):
            return "holds a lone surrogate, which cannot be sent"
        if _BROKEN_ESCAPE.search(path):
            return "holds a '%' that does not start an escape: write a literal '%' as %25"
        if ("." in path or "%" in path) and any(
            unquote(segment) in _DOT_SEGMENTS for segment in path.split("/")
        ):
            return "holds a '.' or '..' segment, which URL normalisation would remove"
        if _PLAIN_PATH.fullmatch(path):
            return None  # sent byte for byte
        try:
            sent = URL(self._base_url + path).raw_path.removeprefix(self._base_path)
        except ValueError:
            return "is not a valid URL path"
        if sent != path and _segments(sent) != _segments(path):
            return f"would reach the server as {sent!r}, which it reads differently"
        return None

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
        extra: dict[str, str] | None = None if headers is None else _check_headers(headers) or None
        if idempotency_key is not None:
            key = _check_idempotency_key(idempotency_key)
            extra = _add_header(extra, "Idempotency-Key", key, "idempotency_key=")
        body: bytes | None = None
        upload: Multipart | None = None
        if json is not None or form is not None or files is not None:
            body, upload, content_type = _encode_body(json, form, files)
            if content_type is None:  # multipart: its Content-Type is set once files are read
                _refuse_given(extra, "Content-Type", "files=")
            else:
                argument = "json=" if json is not None else "form="
                extra = _add_header(extra, "Content-Type", content_type, argument)
        timeouts = None if timeout is None else self.timeouts_of(timeout)
        deadline_at = None
        started = 0.0
        if deadline is not None:
            seconds = check_seconds("deadline", deadline)
            started = self._clock.monotonic()
            deadline_at = started + seconds
        # Positional: keyword arguments would cost a third of this method on every call.
        call = Call(
            channel,
            verb,  # method
            path,
            self._base_url + path,  # url
            None if params is None else _check_params(params) or None,  # params
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
