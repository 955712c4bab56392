"""Arguments: refused before any I/O with a TypeError or ValueError, or sent exactly as given.

The rule for a path (see `makini_async._call`): it must survive ``yarl.URL`` unchanged, so that
the request target the server reads is the base URL's path followed by exactly the given
string. Query names and values, header values, record keys and bodies are checked so that what
the server decodes is what was asked. Every test here drives a raw-socket server that keeps
each request as it came off the wire: a refused call must have sent nothing, and an accepted
one is compared, field by field, with what the caller asked for.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import re
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, Final
from urllib.parse import parse_qsl, quote, unquote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import makini_async as m
from makini_async.testing import VirtualClock
from tests.hostile._wire import TALLY, TOKEN, WireRequest, WireServer, response, serving

NOT_FOUND: Final = (
    b'{"error": {"code": "NOT_FOUND", "type": "invalid_request_error", '
    b'"message": "No such thing", "request_id": "req_404"}}'
)
WORK_ORDERS: Final = "/api/eam/work-orders"
SEGMENT_SAFE: Final = "!$&'()*,;=:@"
EXAMPLES: Final = 200

FAST = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def _not_found(request: WireRequest, writer: asyncio.StreamWriter) -> bool:
    whole = response("404 Not Found", NOT_FOUND)
    writer.write(whole[: -len(NOT_FOUND)] if request.method == "HEAD" else whole)
    await writer.drain()
    return True


@pytest.fixture(name="wire")
async def _wire() -> AsyncIterator[WireServer]:
    """A raw server answering 404 to everything, keeping every request."""
    async with serving(_not_found) as server:
        yield server


@pytest.fixture(name="registry")
async def _registry(wire: WireServer) -> AsyncIterator[m.ConnectionRegistry]:
    """A registry on the raw server (no retries: each accepted call is one request)."""
    async with m.ConnectionRegistry(
        wire.url, retry=m.RetryPolicy.no_retries(), clock=VirtualClock()
    ) as registry:
        yield registry


@pytest.fixture(name="conn")
def _conn(registry: m.ConnectionRegistry) -> m.Connection:
    """The registry's one connection."""
    return registry.add("c1", TOKEN)


async def attempt(
    wire: WireServer, call: Callable[[], Awaitable[object]]
) -> tuple[BaseException | object, WireRequest | None]:
    """Run ``call()`` (which may raise before returning an awaitable); return its outcome and the
    request it sent, if any; a refused call must have sent nothing."""
    before = len(wire.requests)
    try:
        outcome: BaseException | object = await call()
    except (m.MakiniError, TypeError, ValueError) as exc:
        outcome = exc
    sent = wire.requests[before:]
    if isinstance(outcome, m.RequestTimeoutError):  # a tiny timeout may pass before sending
        assert len(sent) <= 1, (outcome, sent)
        return outcome, sent[0] if sent else None
    if isinstance(outcome, TypeError | ValueError):
        assert sent == [], f"{outcome!r} raised after sending {sent}"
        assert str(outcome), "a bad-argument error says what is wrong"
        return outcome, None
    assert len(sent) == 1, (outcome, sent)
    return outcome, sent[0]


def check_same(test: str, asked: object, got: object) -> None:
    """Count one comparison of what was asked with what arrived; fail on a difference."""
    TALLY.compared += 1
    if asked != got:
        TALLY.altered += 1
    assert got == asked, f"{test}: asked {asked!r}, the server got {got!r}"


# --------------------------------------------------------------------------------------------
# What the server must see for the arguments a call was given (the documented conversions).


def wire_value(value: object) -> str:
    """A query value as documented: booleans ``true``/``false``, datetimes ISO-8601 UTC."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def expected_query(params: object) -> list[tuple[str, str]]:
    """The (name, value) pairs the server must decode from the query string."""
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    assert isinstance(items, Iterable)
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        if value is None:
            continue
        values = value if isinstance(value, list | tuple | set | frozenset) else [value]
        pairs.extend((name, wire_value(v)) for v in values)
    return pairs


def read_path(path: str) -> list[bytes]:
    """A path as a server reads it: its segments, percent-decoded, byte for byte."""
    return [unquote_to_bytes(segment) for segment in path.split("/")]


def received_query(request: WireRequest) -> list[tuple[str, str]]:
    """The pairs a server decodes from the request's query (UTF-8, strictly)."""
    if request.query is None:
        return []
    return parse_qsl(request.query, keep_blank_values=True, errors="strict")


def json_bytes(value: object) -> bytes:
    """The JSON encoding the library documents: compact, UTF-8, no NaN."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def check_request(test: str, request: WireRequest, asked: dict[str, Any]) -> None:
    """Compare every part of an arrived request with what the call asked for."""
    check_same(f"{test} method", asked["method"].upper(), request.method)
    check_same(f"{test} path", read_path(asked["path"]), read_path(request.path))
    check_same(f"{test} query", expected_query(asked.get("params")), received_query(request))
    headers = dict(asked.get("headers") or {})
    if asked.get("idempotency_key") is not None:
        headers["Idempotency-Key"] = asked["idempotency_key"]
    for name, value in headers.items():
        check_same(f"{test} header {name}", [value], request.values(name))
    if asked.get("json") is not None:
        check_same(f"{test} body", json_bytes(asked["json"]), request.body)
        check_same(f"{test} content type", ["application/json"], request.values("Content-Type"))


# --------------------------------------------------------------------------------------------
# Strategies: hostile values, with the well-formed ones among them.

TRICKY: Final = [
    "", ".", "..", "%2e", "%2E%2e", "%41", "%7E", "%c3%a9", "%C3%A9", "%zz", "%", "%2F", "?",
    "?a=1", "#", "/", "//", "\\", " ", "\t", "\r\n", "\x00", "\x0b", "\x7f", "\x85", "é",
    "\udcff", "\ud800", "~", "!", "$&'()*+,;=", ":@", "[]", "{}", '|^`"<>', "a", "Z9", "-_",
    "\u2028", "\ufeff", "\U0001f600", "ﬀ", "İ",
]  # fmt: skip
_any_char = st.characters(exclude_categories=())  # surrogates and controls included
fragments = st.sampled_from(TRICKY) | st.text(_any_char, max_size=3) | st.text(max_size=4)
texts = st.lists(fragments, max_size=4).map("".join)
paths = (
    st.lists(fragments, max_size=5).map(lambda parts: "/" + "/".join(parts))
    | st.lists(fragments, max_size=4).map(lambda parts: "/api/" + "".join(parts))
    | texts
)
_segment_texts = st.text(min_size=1, max_size=8).filter(lambda t: t not in {".", ".."})
good_paths = st.lists(_segment_texts, min_size=1, max_size=4).map(
    lambda segments: "/" + "/".join(quote(s, safe=SEGMENT_SAFE) for s in segments)
)
# Ints too long for str() (and for repr(), so built, not written in a strategy's repr).
huge_ints = st.just(5000).map(lambda digits: 10**digits)
_aware = st.datetimes(
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14))])
)
scalars = st.one_of(
    texts,
    st.integers(),
    huge_ints,
    st.floats(),
    st.booleans(),
    st.none(),
    _aware,
    st.datetimes(),  # naive: refused
    st.sampled_from([datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))), b"x", object()]),
)
param_values = scalars | st.lists(scalars, max_size=3) | st.tuples(scalars, scalars)
param_names = texts | st.sampled_from([1, None, b"a"])
params = st.one_of(
    st.none(),
    st.dictionaries(texts, param_values, max_size=4),
    st.lists(st.tuples(param_names, param_values), max_size=4),
    st.sampled_from(["a=1", b"a=1", 5, [1, 2], [("a", "b", "c")], ["ab"], {("a",): 1}]),
)
_token_chars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
header_names = st.sampled_from(
    ["X-A", "x-a", "X-Trace", "Accept", "User-Agent", "X-Api-Key", "Authorization", "Host",
     "Content-Length", "Content-Type", "Idempotency-Key", "Expect", "Bad Name", "X:Y", "", "É",
     "X-\udcff"]
) | st.text(_token_chars, min_size=1, max_size=8)  # fmt: skip
header_values = texts | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
headers = st.one_of(
    st.none(),
    st.dictionaries(header_names, header_values, max_size=3),
    st.sampled_from([[("X-A", "1")], "X-A: 1", 5, {"X-A": 1}, {1: "a"}]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts | huge_ints,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(texts | st.integers() | st.sampled_from([(1, 2)]), inner, max_size=3)
    ),
    max_leaves=8,
)
methods = st.sampled_from(
    ["GET", "get", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
     "G\x00T", "", "GET ", b"GET", None]
)  # fmt: skip
idempotency_keys = st.none() | texts | st.sampled_from([" key", "key ", "k" * 256, 5])


class TestRequests:
    @FAST
    @given(
        method=methods,
        path=paths | good_paths,
        query=params,
        extra=headers,
        body=st.none() | json_values,
        key=idempotency_keys,
    )
    async def test_hostile_requests_are_refused_or_sent_exactly(
        self,
        wire: WireServer,
        conn: m.Connection,
        *,
        method: Any,
        path: Any,
        query: Any,
        extra: Any,
        body: Any,
        key: Any,
    ) -> None:
        """Any mix of hostile arguments is refused before sending, or reaches the server exactly."""
        asked: dict[str, Any] = {
            "method": method,
            "path": path,
            "params": query,
            "headers": extra,
            "json": body,
            "idempotency_key": key,
        }
        outcome, request = await attempt(wire, lambda: conn.request(**asked))
        TALLY.outcome("requests: hostile mix", outcome)
        if request is not None:
            assert isinstance(outcome, m.NotFoundError), outcome
            check_request("hostile mix", request, asked)

    @settings(FAST, max_examples=3 * EXAMPLES)
    @given(
        argument=st.one_of(
            st.tuples(st.just("path"), paths),
            st.tuples(st.just("params"), params),
            st.tuples(st.just("headers"), headers),
            st.tuples(st.just("json"), json_values),
            st.tuples(st.just("idempotency_key"), idempotency_keys),
        )
    )
    async def test_one_hostile_argument_is_refused_or_sent_exactly(
        self, wire: WireServer, conn: m.Connection, argument: tuple[str, Any]
    ) -> None:
        """One hostile argument among benign ones: refused before sending, or sent exactly."""
        name, value = argument
        asked: dict[str, Any] = {"method": "POST", "path": "/api/x", name: value}
        outcome, request = await attempt(wire, lambda: conn.request(**asked))
        TALLY.outcome(f"requests: hostile {name}", outcome)
        if request is not None:
            assert isinstance(outcome, m.NotFoundError), outcome
            check_request(f"hostile {name}", request, asked)

    @FAST
    @given(path=good_paths, query=st.lists(st.tuples(st.text(), st.text()), max_size=4))
    async def test_well_formed_paths_and_queries_are_sent_exactly(
        self,
        wire: WireServer,
        conn: m.Connection,
        path: str,
        query: list[tuple[str, str]],
    ) -> None:
        """Quoted paths and any text in the query are accepted and arrive exactly as given."""
        asked: dict[str, Any] = {"method": "GET", "path": path, "params": query}
        outcome, request = await attempt(wire, lambda: conn.request(**asked))
        TALLY.outcome("requests: well formed", outcome)
        assert isinstance(outcome, m.NotFoundError), outcome
        assert request is not None
        check_request("well formed", request, asked)
        check_same("well formed path, byte for byte", path, request.path)

    @FAST
    @given(
        extra=st.dictionaries(
            st.text(_token_chars, min_size=1, max_size=8).map(lambda n: "X-" + n),
            st.from_regex(r"([\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?)?", fullmatch=True),
            max_size=4,
        ).filter(lambda h: len({n.lower() for n in h}) == len(h))
    )
    async def test_visible_ascii_headers_are_sent_exactly(
        self, wire: WireServer, conn: m.Connection, extra: dict[str, str]
    ) -> None:
        """Header values of visible ASCII (spaces and tabs inside) arrive byte for byte."""
        asked: dict[str, Any] = {"method": "GET", "path": "/h", "headers": extra}
        outcome, request = await attempt(wire, lambda: conn.request(**asked))
        TALLY.outcome("requests: visible ascii headers", outcome)
        assert request is not None, outcome
        check_request("headers", request, asked)


class TestRecordKeys:
    @FAST
    @given(key=texts | st.sampled_from([".", "..", "", "a/b", "a?b", "%2e", 5, None, b"k"]))
    async def test_a_key_is_one_segment_the_server_decodes_back(
        self, wire: WireServer, conn: m.Connection, key: Any
    ) -> None:
        """A record key is refused (".", "..", empty, surrogates, non-str) or arrives as one path
        segment that decodes back to exactly the key."""
        for verb in ("get", "update"):
            if verb == "get":
                outcome, request = await attempt(wire, lambda: conn.eam.work_orders.get(key))
            else:
                outcome, request = await attempt(
                    wire, lambda: conn.eam.work_orders.update(key, {"title": "t"})
                )
            TALLY.outcome(f"record keys ({verb})", outcome)
            if request is None:
                continue
            assert isinstance(outcome, m.NotFoundError), outcome
            head, _, segment = request.path.rpartition("/")
            check_same("key collection", WORK_ORDERS, head)
            check_same("key", key, unquote(segment, errors="strict"))

    @pytest.mark.parametrize("key", [".", ".."])
    async def test_dot_keys_are_refused_not_collapsed(
        self, wire: WireServer, conn: m.Connection, key: str
    ) -> None:
        """``update("..", ...)`` would have been sent as ``PUT /api/eam/``: it is a ValueError."""
        with pytest.raises(ValueError, match="record key"):
            await conn.eam.work_orders.update(key, {"title": "t"})
        assert wire.requests == []


# --------------------------------------------------------------------------------------------
# The cases found by hand, one by one: each names its argument and sends nothing.


def _deep(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


BAD_CALLS: Final = [
    ("lone surrogate in the path", {"path": "/api/x/abc\udcff"}, ValueError, "path"),
    ("dot segment", {"path": "/api/x/../y"}, ValueError, "path"),
    ("encoded dot segment", {"path": "/api/x/%2e%2E/y"}, ValueError, "path"),
    ("trailing dot segment", {"path": "/api/x/."}, ValueError, "path"),
    ("broken escape", {"path": "/api/x/%zz"}, ValueError, "path"),
    ("trailing percent", {"path": "/api/x/%"}, ValueError, "path"),
    ("query in the path", {"path": "/api/x?a=1"}, ValueError, "params="),
    ("empty query in the path", {"path": "/api/x?"}, ValueError, "params="),
    ("surrogate query value", {"params": {"a": "b\udcff"}}, ValueError, "query parameter"),
    ("surrogate query name", {"params": {"a\udcff": "b"}}, ValueError, "query parameter"),
    ("nan query value", {"params": {"a": math.nan}}, ValueError, "query parameter"),
    ("huge int query value", {"params": {"a": 10**5000}}, ValueError, "query parameter"),
    ("params as a str", {"params": "a=1"}, TypeError, "params"),
    ("params of non-pairs", {"params": [1, 2]}, TypeError, "params"),
    ("params of a 2-char str", {"params": ["ab"]}, TypeError, "params"),
    ("surrogate header", {"headers": {"X-A": "b\udcff"}}, ValueError, "header 'X-A'"),
    ("non-ASCII header", {"headers": {"X-A": "é"}}, ValueError, "header 'X-A'"),
    ("vertical tab header", {"headers": {"X-A": "a\x0bb"}}, ValueError, "header 'X-A'"),
    ("DEL header", {"headers": {"X-A": "a\x7fb"}}, ValueError, "header 'X-A'"),
    ("header with a space at an end", {"headers": {"X-A": "a "}}, ValueError, "header 'X-A'"),
    ("header named twice", {"headers": {"X-A": "1", "x-a": "2"}}, ValueError, "twice"),
    ("headers as pairs", {"headers": [("X-A", "1")]}, TypeError, "headers"),
    ("Expect header", {"headers": {"Expect": "100-continue"}}, ValueError, "Expect"),
    (
        "Content-Type header with a body",
        {"method": "POST", "json": {}, "headers": {"content-type": "text/plain"}},
        ValueError,
        "Content-Type",
    ),
    (
        "Idempotency-Key header and argument",
        {"method": "POST", "idempotency_key": "k", "headers": {"Idempotency-Key": "j"}},
        ValueError,
        "Idempotency-Key",
    ),
    ("json 2,000 deep", {"method": "POST", "json": _deep(2000)}, ValueError, "json"),
    ("json nan", {"method": "POST", "json": {"a": math.nan}}, ValueError, "json"),
    ("json surrogate", {"method": "POST", "json": {"a": "\udcff"}}, ValueError, "json"),
    ("json object", {"method": "POST", "json": {"a": object()}}, TypeError, "json"),
    ("form surrogate", {"method": "POST", "form": {"a": "\udcff"}}, ValueError, "form"),
    ("deadline 10**400", {"deadline": 10**400}, ValueError, "deadline"),
    ("deadline nan", {"deadline": math.nan}, ValueError, "deadline"),
    ("deadline inf", {"deadline": math.inf}, ValueError, "deadline"),
    ("deadline True", {"deadline": True}, TypeError, "deadline"),
    ("timeout inf", {"timeout": math.inf}, ValueError, "timeout"),
    ("timeout 10**400", {"timeout": 10**400}, ValueError, "timeout"),
    ("timeout str", {"timeout": "5"}, TypeError, "timeout"),
    ("idempotency key int", {"method": "POST", "idempotency_key": 5}, TypeError, "idempotency"),
    ("idempotency key spaced", {"method": "POST", "idempotency_key": "k "}, ValueError, "idem"),
    ("redact int", {"redact": 5}, TypeError, "redact"),
]


class TestFoundByHand:
    @pytest.mark.parametrize(
        ("arguments", "error", "names"),
        [pytest.param(a, e, n, id=i) for i, a, e, n in BAD_CALLS],
    )
    async def test_refused_with_the_argument_named_and_nothing_sent(
        self,
        wire: WireServer,
        conn: m.Connection,
        arguments: dict[str, Any],
        error: type[Exception],
        names: str,
    ) -> None:
        """Each known bad argument is a TypeError or ValueError naming it, raised before I/O."""
        asked: dict[str, Any] = {"method": "GET", "path": "/api/x", **arguments}
        with pytest.raises(error, match=re.escape(names)) as info:
            await conn.request(**asked)
        assert type(info.value) in {TypeError, ValueError}
        assert wire.requests == []

    @pytest.mark.parametrize(
        ("path", "sent"),
        [
            ("/api/x/%41", "/api/x/A"),
            ("/api/x/%c3%a9", "/api/x/%C3%A9"),
            ("/api/x/é", "/api/x/%C3%A9"),
            ("/api/x/V%24SESSION", "/api/x/V$SESSION"),
            ("/api/x/acme%3Aprod%40eu", "/api/x/acme:prod@eu"),
            ("/api/x/a%2Fb", "/api/x/a%2Fb"),
            ("/api/x/%5B1%5D", "/api/x/%5B1%5D"),
            ("/api/x/[1]", "/api/x/%5B1%5D"),
        ],
    )
    async def test_normalised_paths_still_read_the_same(
        self, wire: WireServer, conn: m.Connection, path: str, sent: str
    ) -> None:
        """A path yarl normalises is sent when the server reads it the same (``quote`` of an id
        with ``$`` or ``:`` included), segment by segment."""
        with pytest.raises(m.NotFoundError):
            await conn.request("GET", path)
        (request,) = wire.requests
        assert request.path == sent
        check_same("normalised path", read_path(path), read_path(request.path))

    async def test_header_values_aiohttp_refused_are_no_longer_retried(
        self, wire: WireServer
    ) -> None:
        """A header with a control character was sent four times and ended as TransportError;
        now it is one ValueError and nothing is sent."""
        async with m.ConnectionRegistry(wire.url, clock=VirtualClock()) as retrying:
            conn = retrying.add("c1", TOKEN)
            for control in ("\x0b", "\x7f", "\x1f"):
                with pytest.raises(ValueError, match="header"):
                    await conn.request("GET", "/x", headers={"X-A": f"a{control}b"})
        assert wire.requests == []

    async def test_a_listing_deadline_past_float_range_is_typed(self, conn: m.Connection) -> None:
        """A listing's ``deadline=10**400`` is a TypeError or ValueError."""
        with pytest.raises((TypeError, ValueError)):
            await conn.eam.work_orders.list(deadline=10**400).first()


# --------------------------------------------------------------------------------------------
# Every other public argument: timeouts, deadlines, listings, fan-outs, the constructor.

durations = st.one_of(
    st.none(),
    st.floats(),
    st.integers(min_value=-(10**10), max_value=10**10),
    st.sampled_from([10**400, -(10**400), True, False, "5", b"5", [5], 1e9, 1e9 + 1, 5e-324]),
)


def mixed(
    good: dict[str, st.SearchStrategy[Any]], hostile: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments: well-formed ones, with up to two drawn from their hostile strategy."""
    return st.lists(st.sampled_from(sorted(hostile)), max_size=2, unique=True).flatmap(
        lambda names: st.fixed_dictionaries(
            {name: hostile[name] if name in names else good[name] for name in good}
        )
    )


LISTING_GOOD: Final = {
    "per_page": st.none() | st.integers(1, 500),
    "page": st.integers(1, 9),
    "prefetch": st.integers(0, 4),
    "max_pages": st.none() | st.integers(1, 9),
    "where": st.none()
    | st.dictionaries(st.sampled_from(["status", "title", "x_zone"]), st.text(max_size=5)),
    "match": st.none() | st.sampled_from(["all", "any"]),
    "sort": st.none() | st.sampled_from(["-updated_at", "title", ["title", "-status"]]),
    "deadline": st.none() | st.floats(1, 100),
}
LISTING_HOSTILE: Final = {
    "per_page": st.integers() | huge_ints | st.sampled_from([True, "5", 5.0]),
    "page": st.integers() | huge_ints | st.sampled_from([True, "2", 2.0]),
    "prefetch": st.integers() | st.sampled_from([True, "2", None]),
    "max_pages": st.integers() | st.sampled_from([True, "2"]),
    "where": st.dictionaries(texts | st.sampled_from([1, None]), scalars, max_size=2)
    | st.sampled_from(["status", 5, [5], [m.Filter("status", "eq", "open")]]),
    "match": st.sampled_from(["ALL", 5, ["all"], ""]),
    "sort": texts | st.lists(texts | st.sampled_from([1, None]), max_size=2) | st.just(5),
    "deadline": st.floats() | st.sampled_from([True, "5", 0, -1]),
}
FAN_OUT_GOOD: Final = {
    "connections": st.none() | st.just(["c1"]),
    "items": st.none() | st.lists(st.integers(), max_size=3),
    "concurrency": st.integers(1, 4),
    "per_connection": st.integers(1, 3),
    "timeout": st.none() | st.floats(1, 60),
    "deadline": st.none() | st.floats(1, 60),
}
FAN_OUT_HOSTILE: Final = {
    "connections": st.sampled_from([["nope"], [5], [None], "c1", 5]),
    "items": st.sampled_from([5, object()]),
    "concurrency": st.integers() | st.sampled_from([True, 1.0, "2", None]),
    "per_connection": st.integers() | st.sampled_from([True, 1.0, "2"]),
    "timeout": durations,
    "deadline": durations,
}


class TestOtherArguments:
    @FAST
    @given(timeout=durations, deadline=durations)
    async def test_timeouts_and_deadlines(
        self, wire: WireServer, conn: m.Connection, timeout: Any, deadline: Any
    ) -> None:
        """Any timeout or deadline is a TypeError or ValueError, or the call is sent as asked."""
        outcome, request = await attempt(
            wire, lambda: conn.request("GET", "/t", timeout=timeout, deadline=deadline)
        )
        TALLY.outcome("call timeouts and deadlines", outcome)
        if request is not None:
            assert isinstance(outcome, m.NotFoundError | m.RequestTimeoutError), outcome
            check_same("timeouts path", "/t", request.path)

    @FAST
    @given(connect=durations, read=durations, total=durations, pool=durations)
    def test_timeouts_fields(self, connect: Any, read: Any, total: Any, pool: Any) -> None:
        """`Timeouts` takes finite positive numbers (or None) and refuses the rest, typed."""
        try:
            timeouts = m.Timeouts(connect=connect, read=read, total=total, pool=pool)
        except (TypeError, ValueError) as exc:
            TALLY.outcome("Timeouts fields", exc)
            return
        TALLY.outcome("Timeouts fields", timeouts)
        for value in (timeouts.connect, timeouts.read, timeouts.total, timeouts.pool):
            assert value is None or (not isinstance(value, bool) and 0 < value <= 1e9)

    @FAST
    @given(kwargs=mixed(LISTING_GOOD, LISTING_HOSTILE))
    async def test_listing_arguments(
        self, wire: WireServer, conn: m.Connection, kwargs: dict[str, Any]
    ) -> None:
        """A typed listing's arguments are refused typed, or its first page is asked for with
        them (the query decodes strictly, with the page and per_page asked for)."""
        outcome, request = await attempt(wire, lambda: conn.eam.work_orders.list(**kwargs).first())
        TALLY.outcome("listing arguments", outcome)
        if request is not None:
            assert isinstance(outcome, m.NotFoundError), outcome
            check_same("listing path", WORK_ORDERS, request.path)
            query = received_query(request)
            check_same("listing page", [str(kwargs["page"])], [v for k, v in query if k == "page"])
            per_page = kwargs["per_page"]
            wanted = [] if per_page is None else [str(per_page)]
            check_same("listing per_page", wanted, [v for k, v in query if k == "per_page"])

    @FAST
    @given(kwargs=mixed(FAN_OUT_GOOD, FAN_OUT_HOSTILE))
    async def test_fan_out_arguments(
        self,
        registry: m.ConnectionRegistry,
        conn: m.Connection,  # noqa: ARG002 - registers the connection the jobs run for
        kwargs: dict[str, Any],
    ) -> None:
        """``registry.map`` refuses bad arguments typed at once, or runs every job."""

        async def job(connection: m.Connection, item: object = None) -> object:
            return (connection.id, item)

        options = dict(kwargs)
        connections = options.pop("connections")
        try:
            fan = registry.map(job, connections, **options)
        except (m.MakiniError, TypeError, ValueError) as exc:
            TALLY.outcome("fan-out arguments", exc)
            return
        async with fan as outcomes:
            results = [outcome async for outcome in outcomes]
        TALLY.outcome("fan-out arguments", results)
        items = kwargs["items"]
        assert len(results) == (1 if items is None else len(items))
        for outcome in results:  # a tiny timeout or deadline may cut a job: typed, then
            assert outcome.ok or outcome.skipped or isinstance(outcome.error, m.RequestTimeoutError)

    @FAST
    @given(
        form=st.none()
        | st.dictionaries(texts, texts, max_size=3)
        | st.sampled_from([[("a", "b")], {"a": 1}, "a=b"]),
        filename=texts | st.sampled_from([5, None]),
        content_type=st.sampled_from(["text/plain", "text/plain; charset=utf-8", "a\r\nb", "", 5])
        | texts,
    )
    async def test_forms_and_uploads(
        self, wire: WireServer, conn: m.Connection, form: Any, filename: Any, content_type: Any
    ) -> None:
        """Form fields and uploads are refused typed (before any I/O), or sent: a form arrives
        decoding to exactly its fields, an upload as one multipart POST."""
        outcome, request = await attempt(wire, lambda: conn.request("POST", "/form", form=form))
        TALLY.outcome("forms", outcome)
        if request is not None:
            assert isinstance(outcome, m.NotFoundError), outcome
            body = parse_qsl(request.body.decode("ascii"), keep_blank_values=True)
            check_same("form body", list(form.items()) if form else [], body)

        def upload() -> Any:
            file = m.Upload(b"data", filename=filename, content_type=content_type)
            return conn.request("POST", "/upload", form=form, files={"f": file})

        outcome, request = await attempt(wire, upload)
        TALLY.outcome("uploads", outcome)
        if request is not None:
            assert isinstance(outcome, m.NotFoundError), outcome
            (kind,) = request.values("Content-Type")
            assert kind.startswith("multipart/form-data; boundary=")


CONSTRUCTOR_VALUES: Final[dict[str, list[object]]] = {
    "retry": [None, m.RetryPolicy(), 5, "x"],
    "timeouts": [None, m.Timeouts(), 5, {"connect": 1}],
    "limit": [1, 0, True, 1.5, "5", 10**400],
    "limit_per_connection": [None, 1, 0, True, 2.0],
    "ssl": [True, False, 1, "yes", None],
    "proxy": [None, "http://proxy:3128", "socks5://p", 5, b"http://p"],
    "trust_env": [False, True, 1, "yes", None],
    "trace_configs": [(), [5], "abc", 5, None],
    "user_agent": [None, "agent/1", "a\r\nb", " a", "é", "", 5],
    "max_response_size": [1, 0, -1, True, 1.5],
    "max_upload_size": [1, 0, True],
    "max_open_sessions": [None, 1, 0, True],
    "close_timeout": [0, 10.0, math.nan, math.inf, -1, "x", 10**400, True],
    "clock": [None, VirtualClock(), 5, SimpleNamespace(monotonic=1)],
    "budget": [None, 5, SimpleNamespace()],
    "credentials": [None, 5, SimpleNamespace()],
    "instruments": [(), [5], "abc", 5, None],
    "on_reconnect": [None, 5, print],
}
BASE_URLS: Final = [
    "http://127.0.0.1:1",
    "https://api.makini.io/v1/",
    "http://",
    "http:///x",
    "http://h:99999",
    "http://h:abc",
    "http://h\udcff",
    "http://h x",
    "http://h/v%31",
    "http://h/a/../b",
    "http://u:p@h",
    "http://h?x",
    "ftp://h",
    5,
    None,
]


async def _construct(base_url: object, options: dict[str, Any]) -> object:
    """Build (and close) a registry; the exception when the constructor refuses."""
    try:
        registry = m.ConnectionRegistry(base_url, **options)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        return exc
    await registry.aclose()
    return "built"


class TestConstructor:
    @FAST
    @given(
        options=mixed(
            {"base_url": st.just("http://127.0.0.1:1")},
            {"base_url": st.sampled_from(BASE_URLS) | texts},
        ),
        more=st.lists(st.sampled_from(sorted(CONSTRUCTOR_VALUES)), max_size=2, unique=True).flatmap(
            lambda names: st.fixed_dictionaries(
                {name: st.sampled_from(CONSTRUCTOR_VALUES[name]) for name in names}
            )
        ),
    )
    async def test_constructor_arguments_fail_typed_and_quietly(
        self, options: dict[str, Any], more: dict[str, Any]
    ) -> None:
        """A bad constructor argument is a TypeError or ValueError; the half-built registry
        leaves no ``Exception ignored in __del__`` and no warning behind."""
        unraisable: list[object] = []
        previous = sys.unraisablehook
        sys.unraisablehook = unraisable.append
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                outcome = await _construct(options["base_url"], more)
                gc.collect(1)  # the young generations: where the half-built registry is
        finally:
            sys.unraisablehook = previous
        TALLY.outcome("constructor arguments", outcome)
        assert unraisable == []
        assert [str(w.message) for w in caught if "TLS certificate" not in str(w.message)] == []

    def test_a_signature_error_leaves_nothing_behind(self) -> None:
        """A constructor refused by its very signature prints nothing from ``__del__``."""
        unraisable: list[object] = []
        previous = sys.unraisablehook
        sys.unraisablehook = unraisable.append
        try:
            with pytest.raises(TypeError):
                m.ConnectionRegistry("http://h", 5)  # type: ignore[arg-type,call-arg]
            with pytest.raises(TypeError):
                m.ConnectionRegistry(bogus=1)  # type: ignore[call-arg]
            gc.collect()
        finally:
            sys.unraisablehook = previous
        assert unraisable == []
