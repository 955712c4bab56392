"""Bad input always gets the contract's envelope with the right status, never a 500."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from makini_async.sandbox import Sandbox
from tests.sandbox.support import Api

WO = "/api/eam/work-orders"


class TestBadInput:
    async def test_unknown_path_is_404_envelope(self, api: Api) -> None:
        """An unknown path answers 404 NOT_FOUND with X-Request-Id matching the body."""
        reply = await api.get("/api/eam/spaceships")
        assert reply.status == 404
        assert reply.error_code == "NOT_FOUND"
        assert reply.body["error"]["request_id"] == reply.headers["X-Request-Id"]
        assert reply.body["error"]["request_id"].startswith("req_")

    async def test_unknown_method_is_405(self, api: Api) -> None:
        """A method the path does not serve answers 405 with Allow."""
        reply = await api.request("PATCH", WO, json={})
        assert reply.status == 405
        assert reply.headers["Allow"] == "GET, POST"
        token = await api.request("GET", "/link/token")
        assert token.status == 405

    async def test_malformed_json_is_400(self, api: Api) -> None:
        """A body that is not JSON answers 400 INVALID_REQUEST."""
        reply = await api.post(WO, data=b"{nope", headers={"Content-Type": "application/json"})
        assert reply.status == 400
        assert reply.error_code == "INVALID_REQUEST"

    async def test_non_object_body_is_400(self, api: Api) -> None:
        """A JSON array where an object belongs answers 400."""
        reply = await api.post(WO, json=[1, 2])
        assert reply.status == 400

    async def test_wrong_content_type_is_415(self, api: Api) -> None:
        """A body in another content type answers 415."""
        reply = await api.post(WO, data=b"title=x", headers={"Content-Type": "text/plain"})
        assert reply.status == 415
        assert reply.body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        upload = await api.post("/api/eam/documents", json={"name": "x"})
        assert upload.status == 415

    async def test_oversized_body_is_413(self, api: Api) -> None:
        """A body over the limit answers 413, whether announced or chunked."""
        async with Sandbox(max_body=1000) as small:
            client = Api(api.session, small)
            big = b'{"title": "' + b"x" * 1010 + b'"}'
            reply = await client.post(WO, data=big, headers={"Content-Type": "application/json"})
            assert reply.status == 413
            assert reply.error_code == "PAYLOAD_TOO_LARGE"

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(3):
                    yield b"x" * 600

            chunked = await client.post(
                WO, data=chunks(), headers={"Content-Type": "application/json"}
            )
            assert chunked.status == 413

    async def test_missing_multipart_file_is_422(self, api: Api) -> None:
        """A document upload without a file answers 422 with the field."""
        reply = await api.post("/api/eam/documents", data={"name": "x"})
        assert reply.status in {415, 422}
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("name", "x")
        form.add_field("other", b"1", filename="a.bin")
        reply = await api.post("/api/eam/documents", data=form)
        assert reply.status == 422
        assert "file" in reply.body["error"]["details"]["fields"]

    @pytest.mark.parametrize(
        "raw",
        [
            "/api/eam/work-orders?%zz=1",
            "/api/eam/work-orders?filter%5B=1",
            "/api/eam/work-orders?page=%00",
            "/api/eam/work-orders?sort[]=1",
            "/api/eam/work-orders?filter[:gt]=1",
            "/api/eam/work-orders?per_page=99999999999999999999999",
            "/api/eam/work-orders/%00",
            "/api/eam/work-orders/..%2F..%2Fetc",
            "/api/eam//work-orders",
            "/api/eam/work-orders?filter[title]=%ff%fe",
            "/api/eam/statuses/",
            "/api/",
            "/",
        ],
    )
    async def test_odd_requests_never_500(self, sandbox: Sandbox, raw: str) -> None:
        """Odd paths and query strings answer a 2xx or 4xx envelope, never a 500."""
        token = sandbox.connections["c1"]
        reader, writer = await asyncio.open_connection(sandbox.host, sandbox.port)
        try:
            writer.write(
                f"GET {raw} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
        status = int(data.split(b" ", 2)[1])
        assert status < 500, data[:300]
        if status >= 400:
            assert b'"error"' in data or status == 400

    async def test_head_answers_like_get(self, api: Api) -> None:
        """HEAD on a list answers 200 without a body."""
        reply = await api.request("HEAD", WO)
        assert reply.status == 200
        assert reply.text == ""


class TestHostileBodies:
    async def test_deeply_nested_json_is_400(self, api: Api) -> None:
        """JSON nested past the parser's depth answers 400, not 500."""
        deep = b"[" * 100_000 + b"]" * 100_000
        reply = await api.post(WO, data=deep, headers={"Content-Type": "application/json"})
        assert reply.status == 400

    async def test_large_form_to_link_token_is_413(self, api: Api) -> None:
        """A form body over the limit at /link/token answers the 413 envelope."""
        async with Sandbox(max_body=1000) as small:
            client = Api(api.session, small, connection=None)
            reply = await client.post(
                "/link/token", data={"grant_type": "client_credentials", "pad": "x" * 5000}
            )
            assert reply.status == 413
            assert reply.error_code == "PAYLOAD_TOO_LARGE"

    async def test_malformed_multipart_is_400(self, api: Api) -> None:
        """A multipart body that does not parse answers 400 or 422, never 500."""
        reply = await api.post(
            "/api/eam/documents",
            data=b"--b\r\nnonsense\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert reply.status in {400, 422}
        assert reply.body["error"]["code"] in {"INVALID_REQUEST", "VALIDATION_ERROR"}

    async def test_control_plane_wrong_method_is_405(self, api: Api) -> None:
        """A control route called with the wrong method answers 405 with Allow."""
        reply = await api.as_connection(None).request("PUT", "/_sandbox/faults")
        assert reply.status == 405
        assert reply.headers["Allow"] == "GET, POST, DELETE"


class TestQueryFuzz:
    async def test_random_queries_answer_200_or_400(self, api: Api) -> None:
        """Hundreds of random filter, sort and paging parameters answer 200 or a 400 envelope."""
        rng = random.Random(20)  # noqa: S311 - a reproducible fuzz, not a secret
        names = ["filter", "sort", "page", "per_page", "filterMatch", "modified_after", "x"]
        fields = ["title", "createdAt", "estimatedTime", "nope", "", "tasks", "_updatedAt"]
        ops = ["", ":gt", ":lteq", ":contains", ":lted", ":like", ":", "::gt"]
        values = ["1", "0", "-3", "", "null", "2024-01-01", "abc", "%", "1e309", "[]", "2024-13-45"]
        for _ in range(300):
            params = []
            for _ in range(rng.randint(1, 4)):
                name = rng.choice(names)
                if name in {"filter", "sort"}:
                    name = f"{name}[{rng.choice(fields)}{rng.choice(ops)}]"
                params.append((name, rng.choice(values)))
            reply = await api.get(WO, params=params)
            assert reply.status in {200, 400}, (params, reply.text)
            if reply.status == 400:
                assert reply.error_code == "INVALID_REQUEST"
            else:
                assert set(reply.body) == {"data", "links", "meta"}
