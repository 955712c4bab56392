"""Several processes sharing one Makini budget and one token per connection, through Redis.

`RedisRateBudget` and `RedisCredentials` plug into ``ConnectionRegistry(budget=...,
credentials=...)``. Importing this package imports ``redis`` (``pip install
'makini-async[redis]'``); ``import makini_async`` never does.
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401 - only checked here, for a message that says what to do
except ImportError as exc:  # pragma: no cover - the extra is installed in the test environment
    msg = "makini_async.distributed needs the redis extra: pip install 'makini-async[redis]'"
    raise ImportError(msg) from exc

from ._budget import RedisRateBudget
from ._credentials import RedisCredentials

__all__ = ["RedisCredentials", "RedisRateBudget"]
