"""What a sandbox is configured with and never changes: defaults, credentials and limits."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = ["Settings"]


@attrs.frozen
class Settings:
    """The fixed configuration of one sandbox (see `Sandbox` for each argument).

    ``provider``, ``sizes``, ``v4``, ``read_only`` and ``rate_limit`` are the defaults of new
    connections; each connection may be configured otherwise later.
    """

    seed: int = 0
    provider: str = "sandbox"
    sizes: Mapping[str, int] = attrs.Factory(dict)
    v4: bool = False
    read_only: bool = False
    rate_limit: int = 600
    sync_duration: float = 5.0
    webhook_timeout: float = 10.0
    client_id: str = "sandbox-client"
    client_secret: str = attrs.field(default="sandbox-secret", repr=False)
    max_body: int = 1024 * 1024
    log_body_limit: int = 64 * 1024
