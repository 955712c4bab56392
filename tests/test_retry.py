"""Retries: what is retried, how often, Retry-After, deadlines and the per-connection 429 gate."""

from __future__ import annotations

import asyncio
import email.utils
import math
from datetime import UTC, datetime

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

import makini_async as m
from makini_async import RetryPolicy
from makini_async._retry import parse_retry_after
from makini_async.testing import VirtualClock
from tests.support import MakeRegistry, Reply, ScriptedApp, StartApp, error_reply

NOW = 1_800_000_000.0  # Fri, 15 Jan 2027 08:00:00 GMT
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(when: float, form: str) -> str:
    """``when`` in one of RFC 9110's three HTTP-date forms (locale-independent)."""
    d = datetime.fromtimestamp(when, UTC)
    day, month, clock = _DAYS[d.weekday()], _MONTHS[d.month - 1], f"{d:%H:%M:%S}"
    if form == "imf":
        return f"{day[:3]}, {d.day:02d} {month} {d.year} {clock} GMT"
    if form == "rfc850":
        return f"{day}, {d.day:02d}-{month}-{d.year % 100:02d} {clock} GMT"
    return f"{day[:3]} {month} {d.day:2d} {clock} {d.year}"  # asctime


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2", 2.0),
            (" 7 ", 7.0),
            ("0", 0.0),
            (email.utils.formatdate(NOW + 2, usegmt=True), 2.0),
            (email.utils.formatdate(NOW - 60, usegmt=True), 0.0),
            ("-1", None),
            ("nan", None),
            ("inf", None),
            ("1.5", None),
            ("\uff11\uff12", None),  # full-width digits: int() would accept them
            ("9" * 5000, None),
            ("", None),
            (None, None),
            ("Zun, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 100000 08:49:37 GMT", None),
            ("soon", None),
            # RFC 9110 section 5.6.7: the obsolete forms must be accepted too.
            (http_date(NOW + 3, "rfc850"), 3.0),
            (http_date(NOW + 4, "asctime"), 4.0),
            ("Fri Jan 15 08:00:05 2027", 5.0),
            ("Fri Jan  5 08:00:05 2027", 0.0),  # asctime pads a one-digit day with a space
            ("Friday, 15-Jan-27 08:00:06 GMT", 6.0),
            ("fri, 15 jan 2027 08:00:07 gmt", 7.0),  # names in any case
            ("Fri, 15 Jan 2027 09:00:08 +0100", 8.0),  # RFC 5322's numeric zone
            ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # 1994, in the past
            ("Sun Nov  6 08:49:37 1994", 0.0),
            # Slightly off, but they still say how long to wait.
            ("Fri, 15 Jan 2027 03:00:09 EST", 9.0),
            ("Fri, 15 Jan 2027 08:00:10 UTC", 10.0),
            ("Fri, 15-Jan-27 08:00:11 GMT", 11.0),
            ("Friday, 15 Jan 2027 08:00:12 GMT", 12.0),
            ("Fri Jan 15 08:00:13 2027 GMT", 13.0),
            ("Fri, 15 Jan 27 08:00:14 GMT", 14.0),  # RFC 850's two-digit year
            # Not dates.
            ("Fri, 15 Jan 2027 08:00:09", None),  # no zone
            ("Fri, 15 Jan 2027 08:00:09 XYZ", None),
            ("Fri, 31 Feb 2027 08:00:00 GMT", None),
            ("Fri, 15 Jan 2027 24:00:00 GMT", None),
            ("Fri, 15 Jan 2027 08:00:61 GMT", None),
            ("Fri, 15 Foo 2027 08:00:00 GMT", None),
            ("Fridays, 15-Jan-27 08:00:00 GMT", None),
            ("Fri Jan 15 08:00:00 27", None),
        ],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        """Valid delta-seconds and HTTP-dates parse; everything else is ignored, never raised."""
        assert parse_retry_after(value, now=NOW) == expected

    def test_two_digit_years_stay_within_fifty_years(self) -> None:
        """An RFC 850 year more than 50 years ahead is read a century earlier (RFC 9110)."""
        # In 2027, "76" is 2076 (49 years ahead) and "78" is 1978, long past.
        ahead = parse_retry_after("Sunday, 01-Nov-76 00:00:00 GMT", now=NOW)
        assert ahead is not None
        assert ahead > 40 * 365 * 86400
        assert parse_retry_after("Tuesday, 01-Nov-78 00:00:00 GMT", now=NOW) == 0.0

    @settings(max_examples=400, deadline=None)
    @given(
        when=st.integers(min_value=int(NOW) - 10**8, max_value=int(NOW) + 10**8),
        form=st.sampled_from(["imf", "rfc850", "asctime"]),
    )
    def test_every_form_round_trips(self, when: int, form: str) -> None:
        """Any second within three years, written in any of the three forms, reads back."""
        assert parse_retry_after(http_date(when, form), now=NOW) == max(0.0, when - NOW)

    @settings(max_examples=1500, deadline=None)
    @given(
        value=st.text(max_size=60)
        | st.from_regex(r"[A-Za-z]{3,9}, [0-9]{1,2}[ -][A-Za-z]{3}[ -][0-9]{2,5} [0-9:]{8} \w+")
    )
    def test_never_raises(self, value: str) -> None:
        """Any text gives None or a finite wait >= 0."""
        wait = parse_retry_after(value, now=NOW)
        assert wait is None or (wait >= 0 and math.isfinite(wait))

    def test_a_leap_second_is_accepted(self) -> None:
        """23:59:60 is a valid time of day in an HTTP-date."""
        assert parse_retry_after("Fri, 15 Jan 2027 23:59:60 GMT", now=NOW) == 57599.0


class TestPolicy:
    def test_defaults(self) -> None:
        """The default policy is 4 attempts, base 0.5 s, cap 8 s."""
        policy = RetryPolicy()
        assert (policy.attempts, policy.base, policy.cap) == (4, 0.5, 8.0)

    def test_waits_are_jittered_and_capped(self) -> None:
        """Each wait lies in [0, min(cap, base * 2**n)]."""
        policy = RetryPolicy(base=0.5, cap=2.0)
        waits = policy.waits()
        for n in range(8):
            wait = next(waits)
            assert 0.0 <= wait <= min(2.0, 0.5 * 2**n)

    @pytest.mark.parametrize(
        "kwargs", [{"attempts": 0}, {"attempts": True}, {"base": -1.0}, {"cap": float("inf")}]
    )
    def test_bad_values(self, kwargs: dict[str, object]) -> None:
        """Nonsense policies are refused when built."""
        with pytest.raises(ValueError, match="RetryPolicy"):
            RetryPolicy(**kwargs)  # type: ignore[arg-type]

    def test_no_retries(self) -> None:
        """no_retries() makes exactly one attempt."""
        assert RetryPolicy.no_retries().attempts == 1


class TestWhatIsRetried:
    @pytest.mark.parametrize("status", [429, 502, 503, 504])
    async def test_transient_statuses_then_success(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, status: int
    ) -> None:
        """A GET that meets a transient status twice succeeds on the third attempt."""
        app, url = scripted
        app.script.extend([error_reply(status, "X"), error_reply(status, "X")])
        conn = make_registry(url).add("c", "tok_1")
        response = await conn.request("GET", "/api/eam/assets")
        assert response.status == 200
        assert len(app.seen) == 3

    async def test_attempt_count_is_exactly_the_policy(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A GET that always meets 503 is sent exactly `attempts` times, then raises."""
        app, url = scripted
        app.default = error_reply(503, "SYSTEM_UNAVAILABLE")
        conn = make_registry(url, retry=RetryPolicy(attempts=3, base=0, cap=0)).add("c", "t")
        with pytest.raises(m.ServiceUnavailableError) as info:
            await conn.request("GET", "/x")
        assert len(app.seen) == 3
        assert info.value.code == "SYSTEM_UNAVAILABLE"

    async def test_500_is_retried_on_reads_only(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A 500 is retried for GET, but not for a POST even with an idempotency key."""
        app, url = scripted
        app.default = error_reply(500, "INTERNAL_ERROR")
        conn = make_registry(url).add("c", "t")
        with pytest.raises(m.ServerError):
            await conn.request("GET", "/x")
        assert len(app.seen) == 4
        with pytest.raises(m.ServerError):
            await conn.request("POST", "/x", json={"a": 1}, idempotency_key="k")
        assert len(app.seen) == 5

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 418])
    async def test_client_errors_are_not_retried(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, status: int
    ) -> None:
        """4xx answers (other than 429) are raised after one attempt."""
        app, url = scripted
        app.default = error_reply(status, "WHATEVER")
        conn = make_registry(url).add("c", "t")
        with pytest.raises(m.APIError) as info:
            await conn.request("GET", "/x")
        assert info.value.status == status
        # A 401 may replay once through the reconnect path; without a hook it does not.
        assert len(app.seen) == 1

    async def test_post_without_key_is_not_retried(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A POST or PUT without an idempotency key is sent once, even on 503 or 429."""
        app, url = scripted
        app.default = error_reply(503, "SYSTEM_UNAVAILABLE")
        conn = make_registry(url).add("c", "t")
        with pytest.raises(m.ServiceUnavailableError):
            await conn.request("POST", "/x", json={"title": "pump"})
        with pytest.raises(m.ServiceUnavailableError):
            await conn.request("PUT", "/x/1", json={"title": "pump"})
        assert len(app.seen) == 2

    async def test_post_with_key_keeps_the_key(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A keyed POST is retried, and every attempt carries the same key and body."""
        app, url = scripted
        app.script.extend([error_reply(503, "X"), error_reply(429, "RATE_LIMIT_EXCEEDED")])
        conn = make_registry(url).add("c", "t")
        response = await conn.request("POST", "/x", json={"title": "pump"}, idempotency_key="k-1")
        assert response.status == 200
        assert [s.headers.get("Idempotency-Key") for s in app.seen] == ["k-1"] * 3
        assert {s.body for s in app.seen} == {b'{"title":"pump"}'}


class TestRetryAfter:
    async def test_retry_after_is_a_floor(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
    ) -> None:
        """The retry after a 429 with Retry-After: 2 arrives no earlier than 2 s later."""
        app, url = scripted
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "2"}))
        conn = make_registry(url).add("c", "t")
        response = await conn.request("GET", "/x")
        assert response.status == 200
        assert len(app.seen) == 2
        assert app.seen[1].at - app.seen[0].at >= 2.0

    async def test_http_date_retry_after(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        clock: VirtualClock,
    ) -> None:
        """An HTTP-date Retry-After is honoured like seconds."""
        app, url = scripted
        date = email.utils.formatdate(clock.time() + 5, usegmt=True)
        app.script.append(error_reply(503, "SYSTEM_UNAVAILABLE", **{"Retry-After": date}))
        conn = make_registry(url).add("c", "t")
        await conn.request("GET", "/x")
        assert app.seen[1].at - app.seen[0].at >= 4.0

    @pytest.mark.parametrize("form", ["imf", "rfc850", "asctime"])
    async def test_every_http_date_form_is_a_floor(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        clock: VirtualClock,
        form: str,
    ) -> None:
        """A 503's Retry-After in any of RFC 9110's three date forms holds the retry back."""
        app, url = scripted
        date = http_date(int(clock.time()) + 5, form)
        app.script.append(error_reply(503, "SYSTEM_UNAVAILABLE", **{"Retry-After": date}))
        conn = make_registry(url).add("c", "t")
        assert (await conn.request("GET", "/x")).status == 200
        assert len(app.seen) == 2
        assert app.seen[1].at - app.seen[0].at >= 4.0

    async def test_a_repeated_retry_after_is_taken_at_its_longest(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """Two Retry-After field lines: the retry waits for the longer one."""
        arrivals: list[float] = []
        clock = VirtualClock()

        async def handler(_request: web.Request) -> web.Response:
            arrivals.append(clock.monotonic())
            if len(arrivals) > 1:
                return web.json_response({"data": {}})
            headers = CIMultiDict([("Retry-After", "1"), ("Retry-After", "9")])
            return web.json_response({"error": {"code": "X"}}, status=429, headers=headers)

        app = web.Application()
        app.router.add_get("/x", handler)
        conn = make_registry(await app_server(app), clock=clock).add("c", "t")
        assert (await conn.request("GET", "/x")).status == 200
        assert arrivals[1] - arrivals[0] >= 9.0

    async def test_too_long_retry_after_gives_up_at_once(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A Retry-After above max_retry_after raises RateLimitError with retry_after set."""
        app, url = scripted
        app.default = error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "7200"})
        conn = make_registry(url).add("c", "t")
        with pytest.raises(m.RateLimitError) as info:
            await conn.request("GET", "/x")
        assert info.value.retry_after == 7200.0
        assert len(app.seen) == 1
        # The connection stays paused: the next call fails typed without any I/O.
        with pytest.raises(m.RateLimitError) as again:
            await conn.request("GET", "/x")
        assert again.value.retry_after is not None
        assert again.value.retry_after > 7000
        assert len(app.seen) == 1

    async def test_retry_after_past_the_deadline_gives_up(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """When the server's wait would pass the call's deadline, RateLimitError comes at once."""
        app, url = scripted
        app.default = error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "30"})
        conn = make_registry(url).add("c", "t")
        with pytest.raises(m.RateLimitError) as info:
            await conn.request("GET", "/x", deadline=10)
        assert info.value.retry_after == 30.0
        assert len(app.seen) == 1

    @pytest.mark.parametrize("value", ["-1", "nan", "1.5", "\uff11", "", "9" * 5000])
    async def test_invalid_retry_after_falls_back_to_backoff(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, value: str
    ) -> None:
        """A garbage Retry-After is ignored: normal backoff applies and the call succeeds."""
        app, url = scripted
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": value}))
        conn = make_registry(url).add("c", "t")
        assert (await conn.request("GET", "/x")).status == 200
        assert len(app.seen) == 2

    async def test_rate_limit_headers_are_exposed(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """X-RateLimit-* headers appear on APIResponse.rate_limit."""
        app, url = scripted
        app.default = Reply(headers={"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "599"})
        conn = make_registry(url).add("c", "t")
        response = await conn.request("GET", "/x")
        assert response.rate_limit == m.RateLimit(limit=600, remaining=599, reset=None)
        app.default = Reply()
        assert (await conn.request("GET", "/x")).rate_limit is None

    @pytest.mark.parametrize(
        ("lines", "remaining"),
        [
            pytest.param([("X-RateLimit-Remaining", "0, 0")], 0, id="joined-equal"),
            pytest.param(
                [("X-RateLimit-Remaining", "7"), ("X-RateLimit-Remaining", "7")], 7, id="repeated"
            ),
            pytest.param(
                [("X-RateLimit-Remaining", "5"), ("X-RateLimit-Remaining", "0")],
                None,
                id="repeated-different",
            ),
            pytest.param([("X-RateLimit-Remaining", "5, 0")], None, id="joined-different"),
            pytest.param([("X-RateLimit-Remaining", "+5")], None, id="sign"),
            pytest.param([("X-RateLimit-Remaining", "5.0")], None, id="fraction"),
            pytest.param([("X-RateLimit-Remaining", "\uff15")], None, id="full-width"),
        ],
    )
    async def test_rate_limit_values_are_one_number(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        lines: list[tuple[str, str]],
        remaining: int | None,
    ) -> None:
        """X-RateLimit-* is 1*DIGIT; repeated or joined values count only when they agree."""

        async def handler(_request: web.Request) -> web.Response:
            headers = CIMultiDict([("X-RateLimit-Limit", "600"), *lines])
            return web.json_response({"data": {}}, headers=headers)

        app = web.Application()
        app.router.add_get("/x", handler)
        conn = make_registry(await app_server(app)).add("c", "t")
        response = await conn.request("GET", "/x")
        assert response.rate_limit == m.RateLimit(limit=600, remaining=remaining, reset=None)

    async def test_exhausted_budget_pauses_until_reset(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        clock: VirtualClock,
    ) -> None:
        """Remaining 0 with a reset time holds the next request until the reset."""
        app, url = scripted
        reset = int(clock.time()) + 3
        app.script.append(
            Reply(
                headers={
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                }
            )
        )
        conn = make_registry(url).add("c", "t")
        await conn.request("GET", "/x")
        await conn.request("GET", "/x")
        assert app.seen[1].at - app.seen[0].at >= 2.9


class TestGate:
    async def test_429_storm_sends_nothing_inside_the_window(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        clock: VirtualClock,
    ) -> None:
        """After a 429 with Retry-After: 2, no request of that connection arrives inside 2 s."""
        app, url = scripted
        registry = make_registry(url, limit_per_connection=5)
        conn = registry.add("c", "t")
        other = registry.add("other", "t2")
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "2"}))
        window_start = clock.monotonic()
        results = await asyncio.gather(*(conn.request("GET", f"/n{i}") for i in range(50)))
        assert all(r.status == 200 for r in results)
        inside = [s for s in app.seen if s.at < window_start + 2.0]
        # Only the requests already in flight when the 429 came (the 5 slots) arrived early.
        assert len(inside) <= 5
        assert len(app.seen) == 51
        # Another connection was never paused.
        before = clock.monotonic()
        await other.request("GET", "/other")
        assert app.seen[-1].at == before

    async def test_inflight_429s_are_bounded(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
    ) -> None:
        """Requests already in flight may each see a 429; none is sent again inside the window."""
        app, url = scripted
        conn = make_registry(url, limit_per_connection=None).add("c", "t")
        app.gate = asyncio.Event()
        for _ in range(10):
            app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "2"}))
        tasks = [asyncio.create_task(conn.request("GET", f"/n{i}")) for i in range(10)]
        await app.arrivals(10)
        app.gate.set()
        results = await asyncio.gather(*tasks)
        assert all(r.status == 200 for r in results)
        first_429 = min(s.at for s in app.seen[:10])
        assert all(s.at >= first_429 + 2.0 for s in app.seen[10:])
        assert len(app.seen) == 20
