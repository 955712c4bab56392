"""Requests per second of the request core against raw aiohttp and httpx, in one run.

Usage::

    .venv/bin/python benchmarks/bench_request.py [--requests 20000] [--concurrency 64]

One local server (``_server.py``, its own process, pinned to CPU 1) serves a 50-record
work-order page and a tiny JSON body. Each client variant runs in child processes of this
script (pinned to CPU 0), one after another, against that same server:

- ``raw-json``: aiohttp ``ClientSession.get`` + ``resp.json()`` (stdlib json): the baseline;
- ``raw-orjson``: the same with ``resp.json(loads=orjson.loads)``;
- ``makini-json``: ``conn.request("GET", path)`` with orjson blocked (stdlib decoder);
- ``makini-hooked``: as ``makini-json``, with one instrument whose observer hears every event
  of every call and does nothing with it (the cost of the instrumentation hooks);
- ``makini-orjson``: ``conn.request("GET", path)`` with orjson (the default when installed),
  with ``opentelemetry`` blocked as on an install without the ``otel`` extra;
- ``makini-otel-off``: as ``makini-orjson``, with the ``otel`` extra installed but no instrument
  (the child checks that nothing imported ``opentelemetry``);
- ``makini-otel-noop``: as ``makini-orjson``, with ``OpenTelemetryInstrument`` on the API's no-op
  tracer and meter providers;
- ``makini-otel-sdk``: the same on the SDK's providers: every span sampled, batched to an exporter
  that drops it, and every metric aggregated (the cost of tracing every call);
- ``httpx``: ``httpx.AsyncClient.get`` + ``resp.json()``.

Each round runs every variant once, each in a fresh child process: it warms up, then sends a
fixed number of requests at a fixed concurrency to each endpoint and reports req/s and CPU use
as JSON on its standard output. Variants take turns round by round, and the best round of each
counts; a variant whose best round was disturbed by other processes (seen in /proc/stat) gets up
to ``--extra-rounds`` more. The parent prints a table and the ratios held against their
targets. The exit code is 0 whatever the numbers: a benchmark reports, it does not assert.
``--variants`` runs some variants only (e.g. ``--variants makini-orjson,makini-otel-off``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, cast

__all__ = ["VARIANTS", "main"]

VARIANTS: Final = (
    "raw-json",
    "raw-orjson",
    "makini-json",
    "makini-hooked",
    "makini-orjson",
    "makini-otel-off",
    "makini-otel-noop",
    "makini-otel-sdk",
    "httpx",
)
_OTEL: Final = {"makini-otel-noop": "noop", "makini-otel-sdk": "sdk"}
_LABELS: Final = {
    "raw-json": "raw aiohttp+json",
    "raw-orjson": "raw aiohttp+orjson",
    "makini-json": "makini (json)",
    "makini-hooked": "makini+hooks",
    "makini-orjson": "makini (orjson)",
    "makini-otel-off": "otel installed, off",
    "makini-otel-noop": "otel no-op",
    "makini-otel-sdk": "otel SDK",
    "httpx": "httpx",
}
ENDPOINTS: Final = ("page", "tiny")
_ENDPOINT_LABELS: Final = {"page": "50-record page", "tiny": "tiny body"}
_TOKEN: Final = "bench_0123456789abcdef0123456789abcdef"  # noqa: S105 - a fake token
_CHILD_TIMEOUT: Final = 600.0
_BUSY_WARN: Final = 0.9
_OTHERS_WARN: Final = 0.05

FetchOne = Callable[[], Awaitable[object]]


@dataclass
class Round:
    """One measured round of one endpoint for one variant."""

    rps: float  # requests / wall seconds
    cpu_us: float  # client CPU microseconds per request (user + system)
    client_busy: float  # client CPU seconds / wall seconds
    server_busy: float | None  # the same for the server process, when /proc can tell
    others_busy: float | None  # CPU time other processes took on the client's and server's CPUs


# -- the load ------------------------------------------------------------------------------


async def _drive(fetch: FetchOne, total: int, concurrency: int) -> float:
    """Run ``total`` fetches on ``concurrency`` workers; returns the wall seconds taken."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await fetch()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


def _check_body(endpoint: str, data: object) -> None:
    """Every variant must really decode the same document (guards against a no-op)."""
    assert isinstance(data, dict), f"{endpoint}: decoded {type(data).__name__}, not a dict"
    inner = data.get("data")
    if endpoint == "page":
        assert isinstance(inner, list), "page: no data list"
        assert len(inner) == 50, f"page: {len(inner)} records"
    else:
        assert inner == {"ok": True}, f"tiny: unexpected body {data!r}"


async def _measure(
    endpoint: str,
    fetch: FetchOne,
    *,
    requests: int,
    warmup: int,
    concurrency: int,
    server_pid: int,
) -> Round:
    from _server import CLIENT_CPU, SERVER_CPU, cpu_busy_seconds, server_cpu_seconds

    _check_body(endpoint, await fetch())
    await _drive(fetch, warmup, concurrency)
    cpus_before = cpu_busy_seconds()
    server_before = server_cpu_seconds(server_pid)
    cpu_before = time.process_time()
    wall = await _drive(fetch, requests, concurrency)
    cpu = time.process_time() - cpu_before
    server_after = server_cpu_seconds(server_pid)
    cpus_after = cpu_busy_seconds()
    server: float | None = None
    if server_before is not None and server_after is not None:
        server = server_after - server_before
    others: float | None = None
    pinned = os.sched_getaffinity(0) == {CLIENT_CPU} if hasattr(os, "sched_getaffinity") else False
    if pinned and server is not None and cpus_before is not None and cpus_after is not None:
        ours = sum(cpus_after[c] - cpus_before[c] for c in (CLIENT_CPU, SERVER_CPU))
        others = max(0.0, ours - cpu - server) / (2 * wall)
    return Round(
        rps=requests / wall,
        cpu_us=cpu / requests * 1e6,
        client_busy=cpu / wall,
        server_busy=None if server is None else server / wall,
        others_busy=others,
    )


# -- the clients (each runs in its own child process) ---------------------------------------


async def _run_raw(
    base_url: str, paths: dict[str, str], *, use_orjson: bool, **kw: int
) -> dict[str, Round]:
    import aiohttp

    loads: Callable[[str], object] = json.loads
    if use_orjson:
        import orjson

        loads = orjson.loads
    connector = aiohttp.TCPConnector(limit=kw["concurrency"])
    headers = {"Authorization": f"Bearer {_TOKEN}", "Accept": "application/json"}
    results: dict[str, Round] = {}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        for endpoint, path in paths.items():
            url = base_url + path

            async def fetch(url: str = url) -> object:
                async with session.get(url) as resp:
                    return await resp.json(loads=loads)

            results[endpoint] = await _measure(endpoint, fetch, **kw)
    return results


def _otel_instrument(kind: str) -> object:
    """An `OpenTelemetryInstrument` on no-op providers, or on SDK providers that drop the data."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from makini_async.otel import OpenTelemetryInstrument

    if kind == "noop":
        return OpenTelemetryInstrument(NoOpTracerProvider(), NoOpMeterProvider())
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropping(SpanExporter):
        """Takes the batches and keeps nothing: the cost measured is ours and the SDK's."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            del spans
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropping()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetryInstrument(tracer_provider, meter_provider)


async def _run_makini(
    base_url: str,
    paths: dict[str, str],
    *,
    expect_backend: str,
    hooked: bool = False,
    otel: str | None = None,
    **kw: int,
) -> dict[str, Round]:
    from makini_async import CallObserver, CallStarted, ConnectionRegistry, Instrument, _json

    class Listening:
        """An instrument that hears every event of every call and keeps nothing."""

        def call_started(self, event: CallStarted) -> CallObserver:
            del event
            return CallObserver()

    assert expect_backend == _json.BACKEND, f"decoder is {_json.BACKEND}, not {expect_backend}"
    concurrency = kw["concurrency"]
    results: dict[str, Round] = {}
    instruments: list[Instrument] = []
    if hooked:
        instruments.append(Listening())
    if otel is not None:
        instruments.append(cast("Instrument", _otel_instrument(otel)))
    async with ConnectionRegistry(
        base_url,
        limit=concurrency,
        limit_per_connection=concurrency,
        instruments=instruments,
    ) as registry:
        conn = registry.add("bench", _TOKEN)
        for endpoint, path in paths.items():

            async def fetch(path: str = path) -> object:
                return (await conn.request("GET", path)).data

            results[endpoint] = await _measure(endpoint, fetch, **kw)
    return results


async def _run_httpx(base_url: str, paths: dict[str, str], **kw: int) -> dict[str, Round]:
    import httpx

    concurrency = kw["concurrency"]
    # Keep-alive for every connection: httpx's default (20) would reconnect 44 of the 64.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {_TOKEN}", "Accept": "application/json"}
    results: dict[str, Round] = {}
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:
        for endpoint, path in paths.items():
            url = base_url + path

            async def fetch(url: str = url) -> object:
                resp = await client.get(url)
                return resp.json()

            results[endpoint] = await _measure(endpoint, fetch, **kw)
    return results


def _child(args: argparse.Namespace) -> None:
    """Measure one round of one variant and print the results as one JSON line."""
    variant: str = args.child
    if variant in {"makini-json", "makini-hooked"}:
        # Before makini_async is imported: make `import orjson` fail, as on an install
        # without the speedups extra.
        sys.modules["orjson"] = None  # type: ignore[assignment]
    if variant == "makini-orjson":
        # As on an install without the otel extra.
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    from _server import PAGE_PATH, TINY_PATH, pin_client

    pinned = pin_client()
    httpx_variant = variant == "httpx"
    kw = {
        "requests": args.httpx_requests if httpx_variant else args.requests,
        "warmup": args.httpx_warmup if httpx_variant else args.warmup,
        "concurrency": args.concurrency,
        "server_pid": args.server_pid,
    }
    paths = {"page": PAGE_PATH, "tiny": TINY_PATH}
    runner: Awaitable[dict[str, Round]]
    if variant == "raw-json":
        runner = _run_raw(args.base_url, paths, use_orjson=False, **kw)
    elif variant == "raw-orjson":
        runner = _run_raw(args.base_url, paths, use_orjson=True, **kw)
    elif variant == "makini-json":
        runner = _run_makini(args.base_url, paths, expect_backend="json", **kw)
    elif variant == "makini-hooked":
        runner = _run_makini(args.base_url, paths, expect_backend="json", hooked=True, **kw)
    elif variant in {"makini-orjson", "makini-otel-off"}:
        runner = _run_makini(args.base_url, paths, expect_backend="orjson", **kw)
    elif variant in _OTEL:
        runner = _run_makini(
            args.base_url, paths, expect_backend="orjson", otel=_OTEL[variant], **kw
        )
    else:
        runner = _run_httpx(args.base_url, paths, **kw)
    results = asyncio.run(runner)
    if variant == "makini-otel-off":
        imported = sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")
        assert not imported, f"makini_async imported {imported} with no instrument"
    out = {
        "variant": variant,
        "pinned": pinned,
        "rounds": {k: asdict(v) for k, v in results.items()},
    }
    sys.stdout.write(json.dumps(out) + "\n")


# -- the parent: one server, one child per variant and round, then the report --------------


def _run_child(args: argparse.Namespace, variant: str, base_url: str, pid: int) -> dict[str, Round]:
    """One fresh process measures one round of ``variant`` on every endpoint.

    Raises:
        RuntimeError: The child failed (its standard error is in the message).
    """
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        variant,
        "--base-url",
        base_url,
        "--server-pid",
        str(pid),
        "--requests",
        str(args.requests),
        "--warmup",
        str(args.warmup),
        "--httpx-requests",
        str(args.httpx_requests),
        "--httpx-warmup",
        str(args.httpx_warmup),
        "--concurrency",
        str(args.concurrency),
    ]
    proc = subprocess.run(  # noqa: S603 - our own interpreter and script
        argv, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr or proc.stdout).strip()[-2000:])
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    return {endpoint: Round(**parsed["rounds"][endpoint]) for endpoint in ENDPOINTS}


Report = dict[tuple[str, str], list[Round]]


def _best(report: Report, variant: str, endpoint: str) -> Round | None:
    rounds = report.get((variant, endpoint))
    return max(rounds, key=lambda r: r.rps) if rounds else None


def _rps(report: Report, variant: str, endpoint: str) -> float | None:
    best = _best(report, variant, endpoint)
    return None if best is None else best.rps


def _cpu_us(report: Report, variant: str, endpoint: str) -> float | None:
    rounds = report.get((variant, endpoint))
    return min(r.cpu_us for r in rounds) if rounds else None


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ran(report: Report, errors: dict[str, str]) -> list[str]:
    """The variants that ran (or failed to), in table order."""
    return [v for v in VARIANTS if v in errors or any((v, e) in report for e in ENDPOINTS)]


def _print_table(title: str, variants: list[str], cell: Callable[[str, str], str]) -> None:
    width = 20
    print()
    print(title)
    print(f"{'endpoint':<16}" + "".join(f"{_LABELS[v]:>{width}}" for v in variants))
    for endpoint in ENDPOINTS:
        row = f"{_ENDPOINT_LABELS[endpoint]:<16}"
        row += "".join(f"{cell(v, endpoint):>{width}}" for v in variants)
        print(row)


def _print_rounds(report: Report, errors: dict[str, str]) -> None:
    print()
    print("Rounds: req/s (CPU busy: client / server / other processes on those 2 CPUs):")
    for variant in _ran(report, errors):
        if variant in errors:
            print(f"  {_LABELS[variant]}: FAILED TO RUN:\n{errors[variant]}")
            continue
        for endpoint in ENDPOINTS:
            cells = ", ".join(
                f"{r.rps:,.0f} ({r.client_busy:.0%}/{_fmt(r.server_busy, '.0%')}"
                f"/{_fmt(r.others_busy, '.0%')})"
                for r in report.get((variant, endpoint), [])
            )
            print(f"  {_LABELS[variant]:<20} {_ENDPOINT_LABELS[endpoint]:<15} {cells}")


_CHECKS: Final[tuple[tuple[str, str, str, str, float | None], ...]] = (
    ("makini(json)   / raw(json)  ", "makini-json", "raw-json", "page", 0.95),
    ("makini(json)   / raw(json)  ", "makini-json", "raw-json", "tiny", 0.95),
    ("makini+hooks   / makini(json)", "makini-hooked", "makini-json", "page", None),
    ("makini+hooks   / makini(json)", "makini-hooked", "makini-json", "tiny", None),
    ("makini(orjson) / raw(json)  ", "makini-orjson", "raw-json", "page", 1.5),
    ("makini(orjson) / raw(json)  ", "makini-orjson", "raw-json", "tiny", None),
    ("makini(orjson) / raw(orjson)", "makini-orjson", "raw-orjson", "page", None),
    ("makini(orjson) / raw(orjson)", "makini-orjson", "raw-orjson", "tiny", None),
    ("httpx          / raw(json)  ", "httpx", "raw-json", "page", None),
    ("httpx          / raw(json)  ", "httpx", "raw-json", "tiny", None),
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _print_ratios(report: Report) -> None:
    print()
    print("Ratios against their targets; 'by CPU' = the same ratio from CPU per request:")
    for name, num, den, endpoint, target in _CHECKS:
        if (num, endpoint) not in report or (den, endpoint) not in report:
            continue  # not run (--variants), or failed (told under Rounds)
        by_rps = _ratio(_rps(report, num, endpoint), _rps(report, den, endpoint))
        by_cpu = _ratio(_cpu_us(report, den, endpoint), _cpu_us(report, num, endpoint))
        if target is None:
            verdict = "(info)"
        elif by_rps is None:
            verdict = f"target >= {target:.2f}  FAIL (not measured)"
        else:
            verdict = f"target >= {target:.2f}  {'PASS' if by_rps >= target else 'FAIL'}"
        label = f"{name} {_ENDPOINT_LABELS[endpoint]}"
        cpu = _fmt(by_cpu, ".2f")
        print(f"  {label:<46} {_fmt(by_rps, '.2f'):>5}x  (by CPU {cpu:>5}x)  {verdict}")


#: (label, variant, baseline, target on the CPU ratio or None for information)
_OTEL_CHECKS: Final[tuple[tuple[str, str, str, float | None], ...]] = (
    ("otel installed, off / makini(orjson)", "makini-otel-off", "makini-orjson", 0.98),
    ("otel no-op          / makini(orjson)", "makini-otel-noop", "makini-orjson", None),
    ("otel SDK            / makini(orjson)", "makini-otel-sdk", "makini-orjson", None),
)


def _print_otel(report: Report) -> None:
    """The OpenTelemetry variants against the same client without the extra, by CPU."""
    if not any((variant, e) in report for _, variant, _, _ in _OTEL_CHECKS for e in ENDPOINTS):
        return
    print()
    print("OpenTelemetry: client CPU per request against makini (orjson) without the extra")
    print("(ratio = baseline CPU / variant CPU, so 1.00 is free; +us = the extra CPU per request):")
    for name, variant, baseline, target in _OTEL_CHECKS:
        for endpoint in ENDPOINTS:
            ours = _cpu_us(report, variant, endpoint)
            base = _cpu_us(report, baseline, endpoint)
            ratio = _ratio(base, ours)
            extra = None if ours is None or base is None else ours - base
            if target is None:
                verdict = "(info)"
            elif ratio is None:
                verdict = f"target >= {target:.2f}  FAIL (not measured)"
            else:
                verdict = f"target >= {target:.2f}  {'PASS' if ratio >= target else 'FAIL'}"
            label = f"{name} {_ENDPOINT_LABELS[endpoint]}"
            print(
                f"  {label:<52} {_fmt(ratio, '.3f'):>6}x  ({_fmt(extra, '+.1f'):>6} us)  {verdict}"
            )


def _print_report(report: Report, errors: dict[str, str]) -> None:
    variants = _ran(report, errors)
    _print_table(
        "Requests/second (best round; higher is better):",
        variants,
        lambda v, e: _fmt(_rps(report, v, e)),
    )
    _print_table(
        "Client CPU microseconds per request (lowest round; lower is better):",
        variants,
        lambda v, e: _fmt(_cpu_us(report, v, e), ".1f"),
    )
    _print_rounds(report, errors)
    _print_ratios(report)
    _print_otel(report)
    disturbed = [
        f"{_LABELS[v]} / {_ENDPOINT_LABELS[e]}"
        for v in VARIANTS
        for e in ENDPOINTS
        if (best := _best(report, v, e)) is not None and _is_disturbed(best)
    ]
    if disturbed:
        print(
            "\nNOTE: other processes took CPU time during the best round of "
            + "; ".join(disturbed)
            + ". Those numbers are low; re-run on a quiet machine, or with more --rounds."
        )


def _is_disturbed(measured: Round) -> bool:
    """True when other processes visibly took CPU time from this round."""
    if measured.others_busy is not None:
        return measured.others_busy > _OTHERS_WARN
    # Without /proc: neither side was busy, so something else must have been.
    return measured.client_busy < _BUSY_WARN and (measured.server_busy or 0.0) < _BUSY_WARN


def _disturbed_variants(report: Report) -> list[str]:
    return [
        v
        for v in VARIANTS
        if any((best := _best(report, v, e)) is not None and _is_disturbed(best) for e in ENDPOINTS)
    ]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant (best wins)")
    parser.add_argument(
        "--extra-rounds",
        type=int,
        default=1,
        help="at most this many more rounds for variants whose best round was disturbed",
    )
    parser.add_argument("--warmup", type=int, default=2_000, help="warm-up requests per round")
    parser.add_argument(
        "--httpx-requests", type=int, default=1_500, help="requests per round for httpx (slow)"
    )
    parser.add_argument("--httpx-warmup", type=int, default=300, help="warm-up requests, httpx")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated variants to run (default: all)",
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or not args.variants:
        parser.error(f"--variants takes some of {', '.join(VARIANTS)}")
    for name in ("requests", "concurrency", "rounds", "httpx_requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("warmup", "httpx_warmup", "extra_rounds"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one round of one variant); always returns 0."""
    args = _parse(argv)
    if args.child:
        _child(args)
        return 0
    import aiohttp
    import httpx
    from _server import PAGE_PATH, pin_client, running_server, tiny_body, work_order_page

    pin_client()  # the parent only waits, but keep it off the server's CPU too
    try:
        import orjson

        orjson_version = orjson.__version__
    except ImportError:
        orjson_version = "not installed"
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"aiohttp {aiohttp.__version__}, orjson {orjson_version}, httpx {httpx.__version__}, "
        f"{os.cpu_count()} CPU(s)"
    )
    print(
        f"concurrency {args.concurrency}; per round {args.warmup:,} warm-up + "
        f"{args.requests:,} measured requests per endpoint (httpx: {args.httpx_warmup:,} + "
        f"{args.httpx_requests:,}); {args.rounds} round(s) "
        f"(+ up to {args.extra_rounds} if disturbed), each in a fresh process"
    )
    print(
        f"endpoints: GET {PAGE_PATH} ({len(work_order_page()):,} bytes, 50 records), "
        f"GET /tiny ({len(tiny_body())} bytes)"
    )
    report: Report = {}
    errors: dict[str, str] = {}
    started = time.perf_counter()
    with running_server() as server:
        placement = "server on CPU 1, clients on CPU 0" if server.pinned else "not pinned"
        print(f"server {server.url} (pid {server.pid}, {placement})")
        total = args.rounds + args.extra_rounds
        for number in range(1, total + 1):
            # Variants take turns round by round, so a burst of outside load hits one round of
            # several variants rather than every round of one. Extra rounds re-run only the
            # variants (httpx aside) whose best round so far was disturbed by other processes.
            if number <= args.rounds:
                todo = [v for v in VARIANTS if v in args.variants and v not in errors]
                print(f"  round {number}/{args.rounds}:", end="", flush=True)
            else:
                todo = [v for v in _disturbed_variants(report) if v != "httpx" and v not in errors]
                if not todo:
                    break
                print(f"  extra round {number - args.rounds} (disturbed):", end="", flush=True)
            for variant in todo:
                print(f" {variant}", end="", flush=True)
                try:
                    rounds = _run_child(args, variant, server.url, server.pid)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
                    errors[variant] = str(exc)
                    print("(error)", end="", flush=True)
                    continue
                for endpoint, measured in rounds.items():
                    report.setdefault((variant, endpoint), []).append(measured)
            print(f"  [{time.perf_counter() - started:.0f}s]", flush=True)
    _print_report(report, errors)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
