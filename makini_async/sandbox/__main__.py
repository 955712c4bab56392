"""Run the sandbox from the shell: ``python -m makini_async.sandbox --port 8600``.

It prints the URL, the OAuth client credentials, the admin token and every connection's token,
then serves until SIGINT or SIGTERM, and shuts down cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from makini_async.sandbox._server import Sandbox

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m makini_async.sandbox", description="Serve a local Makini sandbox."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8600, help="port (0: a free one)")
    parser.add_argument("--connections", type=int, default=3, help="connections to create")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--provider", default="sandbox", help="provider slug of the connections")
    parser.add_argument("--work-orders", type=int, default=None, help="work orders per connection")
    parser.add_argument("--v4", action="store_true", help="answer with v4 standard fields")
    parser.add_argument("--read-only", action="store_true", help="writes succeed without change")
    parser.add_argument("--rate-limit", type=int, default=600, help="requests per minute")
    parser.add_argument("--time-scale", type=float, default=1.0, help="factor on simulated waits")
    parser.add_argument(
        "--max-body", type=_count, default=1024 * 1024, help="largest request body (bytes)"
    )
    parser.add_argument(
        "--log-body-limit",
        type=_count,
        default=64 * 1024,
        help="bytes of each request body the request log keeps (0: none)",
    )
    return parser


def _count(text: str) -> int:
    """A whole number of bytes, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


async def _serve(args: argparse.Namespace) -> None:
    sizes = {"work-orders": args.work_orders} if args.work_orders is not None else None
    sandbox = Sandbox(
        connections=args.connections,
        seed=args.seed,
        host=args.host,
        port=args.port,
        provider=args.provider,
        sizes=sizes,
        v4=args.v4,
        read_only=args.read_only,
        rate_limit=args.rate_limit,
        time_scale=args.time_scale,
        max_body=args.max_body,
        log_body_limit=args.log_body_limit,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with sandbox:
        out = sys.stdout
        out.write(f"Makini sandbox listening on {sandbox.url}\n")
        out.write(f"client_id={sandbox.client_id} client_secret={sandbox.client_secret}\n")
        out.write(f"admin token: {sandbox.admin_token}\n")
        for connection_id, token in sandbox.connections.items():
            out.write(f"connection {connection_id}: {token}\n")
        out.flush()
        await stop.wait()
    sys.stdout.write("Makini sandbox stopped\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until interrupted.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    args = _parser().parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
