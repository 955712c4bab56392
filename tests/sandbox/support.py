"""Helpers for the sandbox tests: an HTTP client that talks to a sandbox as a client would."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDict

from makini_async.sandbox import Sandbox


@attrs.frozen
class Reply:
    """A finished HTTP exchange: status, headers and the decoded JSON body (or None)."""

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str

    @property
    def error_code(self) -> str:
        """The contract error code of an error reply."""
        return str(self.body["error"]["code"])


@attrs.define
class Api:
    """Sends requests to a sandbox with one connection's token."""

    session: aiohttp.ClientSession
    sandbox: Sandbox
    connection: str | None = "c1"
    token: str | None = None

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.token
        if token is None and self.connection is not None:
            token = self.sandbox.connections[self.connection]
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request and read the whole reply."""
        async with self.session.request(
            method,
            self.sandbox.url + path,
            params=params,
            json=json,
            data=data,
            headers=self._headers(headers),
            allow_redirects=False,
        ) as response:
            text = await response.text()
            try:
                body = await response.json(content_type=None) if text else None
            except ValueError:
                body = None
            return Reply(response.status, CIMultiDict(response.headers), body, text)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        """GET a path."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        """POST a path."""
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Reply:
        """PUT a path."""
        return await self.request("PUT", path, **kwargs)

    def as_connection(self, connection: str | None, token: str | None = None) -> Api:
        """The same helper for another connection (or an explicit token)."""
        return Api(self.session, self.sandbox, connection, token)
