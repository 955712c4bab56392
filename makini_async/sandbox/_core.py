"""The parts of one sandbox, built and wired together once.

The HTTP app and the public `Sandbox` object both work through a `Core`; neither reaches the
other. Bottom to top: settings, clock and lifecycle; tokens, faults, the request log and
webhooks; connections; the auth flows and syncs that span them.
"""

from __future__ import annotations

import attrs

from makini_async.sandbox._auth_flows import AuthFlows
from makini_async.sandbox._clock import SandboxClock
from makini_async.sandbox._connections import Connections
from makini_async.sandbox._faults import FaultBoard
from makini_async.sandbox._lifecycle import Lifecycle
from makini_async.sandbox._request_log import RequestLog
from makini_async.sandbox._settings import Settings
from makini_async.sandbox._spec import Spec, load_spec
from makini_async.sandbox._sync import Syncs
from makini_async.sandbox._tokens import TokenTable
from makini_async.sandbox._webhooks import WebhookHub

__all__ = ["Core"]


@attrs.frozen
class Core:
    """Every collaborator of one sandbox; each owns its own state."""

    settings: Settings
    spec: Spec
    clock: SandboxClock
    lifecycle: Lifecycle
    tokens: TokenTable
    webhooks: WebhookHub
    connections: Connections
    auth: AuthFlows
    syncs: Syncs
    faults: FaultBoard
    request_log: RequestLog

    @classmethod
    def build(cls, settings: Settings, *, host: str, port: int, time_scale: float) -> Core:
        """Create the collaborators for ``settings`` and wire them together.

        Args:
            settings: The fixed configuration.
            host: The interface to listen on.
            port: The port (0: a free one).
            time_scale: The initial factor on simulated waits.

        Returns:
            A core with an admin token pair and no connections yet.
        """
        spec = load_spec()
        clock = SandboxClock(time_scale)
        lifecycle = Lifecycle(host, port)
        tokens = TokenTable(clock)
        webhooks = WebhookHub(clock, settings.webhook_timeout, settings.seed)
        connections = Connections(settings, spec, clock, tokens, webhooks)
        tokens.issue_admin_pair()
        return cls(
            settings=settings,
            spec=spec,
            clock=clock,
            lifecycle=lifecycle,
            tokens=tokens,
            webhooks=webhooks,
            connections=connections,
            auth=AuthFlows(connections, tokens, webhooks, clock),
            syncs=Syncs(connections, webhooks, clock, lifecycle, settings.sync_duration),
            faults=FaultBoard(),
            request_log=RequestLog(),
        )
