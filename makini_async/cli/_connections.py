"""Where the command's connections come from: a connections file, or a token in the environment.

Tokens never appear in a message: errors name the file, the entry and the connection id.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from makini_async import AdminClient, ConnectionRegistry
from makini_async._registry import resolve_base_url

from ._parser import CommandLineError

__all__ = ["add_connection", "admin_client", "base_url_for", "env_token", "read_connections"]


def read_connections(path: str) -> list[tuple[str, str]]:
    """Read ``id,token`` pairs from a JSON or CSV file.

    JSON may be a list of ``{"id", "token"}`` objects (``connection_id`` works for ``id``), the
    same list under ``"connections"``, or an object of id to token. CSV has one ``id,token``
    line per connection, an optional header and ``#`` comments.

    Args:
        path: The file.

    Returns:
        The pairs, in the file's order.

    Raises:
        CommandLineError: The file cannot be read, is malformed, lists nothing or lists an id twice.
    """
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CommandLineError(f"cannot read the connections file {path!r}: {reason}") from None
    stripped = text.lstrip()
    pairs = _json_pairs(path, stripped) if stripped[:1] in {"[", "{"} else _csv_pairs(path, text)
    if not pairs:
        raise CommandLineError(f"the connections file {path!r} lists no connections")
    seen: set[str] = set()
    for connection_id, _ in pairs:
        if connection_id in seen:
            raise CommandLineError(
                f"the connections file {path!r} lists connection {connection_id!r} twice"
            )
        seen.add(connection_id)
    return pairs


def _json_pairs(path: str, text: str) -> list[tuple[str, str]]:
    try:
        loaded = json.loads(text)
    except ValueError:
        raise CommandLineError(f"the connections file {path!r} is not valid JSON") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("connections"), list):
        loaded = loaded["connections"]
    if isinstance(loaded, dict):
        items: list[object] = [{"id": k, "token": v} for k, v in loaded.items()]
    elif isinstance(loaded, list):
        items = loaded
    else:
        raise CommandLineError(f"the connections file {path!r} must hold a list or an object")
    pairs = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise CommandLineError(
                f"the connections file {path!r}: entry {number} is not an object"
            )
        connection_id = item.get("id", item.get("connection_id"))
        token = item.get("token")
        if not isinstance(connection_id, str) or not connection_id:
            raise CommandLineError(f"the connections file {path!r}: entry {number} has no id")
        if not isinstance(token, str) or not token:
            raise CommandLineError(f"the connections file {path!r}: entry {number} has no token")
        pairs.append((connection_id, token))
    return pairs


def _csv_pairs(path: str, text: str) -> list[tuple[str, str]]:
    pairs = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells[:2]] in (
            ["id", "token"],
            ["connection_id", "token"],
        ):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:  # noqa: PLR2004 - id and token
            raise CommandLineError(
                f"the connections file {path!r}: line {number} is not 'id,token'"
            )
        pairs.append((cells[0], cells[1]))
    return pairs


def env_token(name: str) -> str:
    """Read a token from the environment.

    Args:
        name: The variable, e.g. ``MAKINI_TOKEN``.

    Returns:
        The token, stripped.

    Raises:
        CommandLineError: The variable is unset or blank.
    """
    token = os.environ.get(name, "").strip()
    if not token:
        raise CommandLineError(f"set {name} to a token first")
    return token


def add_connection(
    registry: ConnectionRegistry, connection_id: str, token: str, where: str
) -> None:
    """Register a connection, turning a malformed token into a usage error that hides it.

    Args:
        registry: The registry.
        connection_id: The connection's id.
        token: Its token.
        where: Where the token came from, for the message (a file name or a variable).

    Raises:
        CommandLineError: The registry refused the token.
    """
    try:
        registry.add(connection_id, token)
    except (TypeError, ValueError):
        raise CommandLineError(
            f"{where}: connection {connection_id!r} has a malformed token"
        ) from None


def admin_client(base_url: str) -> AdminClient:
    """The Admin API client from the environment: client credentials, or a bare admin token."""
    client_id = os.environ.get("MAKINI_CLIENT_ID", "").strip()
    client_secret = os.environ.get("MAKINI_CLIENT_SECRET", "").strip()
    admin_token = os.environ.get("MAKINI_ADMIN_TOKEN", "").strip() or None
    if bool(client_id) != bool(client_secret):
        raise CommandLineError("set both MAKINI_CLIENT_ID and MAKINI_CLIENT_SECRET")
    if not client_id and admin_token is None:
        raise CommandLineError(
            "--admin needs MAKINI_CLIENT_ID and MAKINI_CLIENT_SECRET (or MAKINI_ADMIN_TOKEN)"
        )
    try:
        return AdminClient(
            client_id or None, client_secret or None, base_url=base_url, admin_token=admin_token
        )
    except ValueError as exc:
        raise CommandLineError(str(exc)) from None


def base_url_for(given: str | None, connections: str | None) -> str:
    """The base URL a command talks to.

    ``--base-url`` when given; else the ``"base_url"`` of a JSON connections file (as
    ``makini-async sandbox --write-connections`` writes it: its tokens are good only there); else
    ``$MAKINI_BASE_URL``; else Makini's.

    Raises:
        ValueError: A bad URL (one from the file or the environment says where it came from).
    """
    if given is None and connections is not None:
        from_file = _file_base_url(connections)
        if from_file is not None:
            try:
                return resolve_base_url(from_file)
            except ValueError as exc:
                raise ValueError(f"the connections file {connections!r}: base_url: {exc}") from None
    return resolve_base_url(given)


def _file_base_url(path: str) -> str | None:
    try:
        loaded = json.loads(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # read_connections reports what is wrong with the file
    if isinstance(loaded, dict) and isinstance(loaded.get("base_url"), str):
        return str(loaded["base_url"])
    return None
