"""The request log keeps what each request sent: the body (capped), its media type and parts."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from makini_async import Connection, ConnectionRegistry, LinkClient, Upload
from makini_async.models import Level, WorkOrderInput
from makini_async.sandbox import FormPart, RequestRecord, Sandbox
from tests.sandbox.support import Api
from tests.support import ZERO_WAIT

WO = "/api/eam/work-orders"
DOCUMENTS = "/api/eam/documents"
CAP = 64 * 1024


@pytest.fixture(name="conn")
async def _conn(sandbox: Sandbox) -> AsyncIterator[Connection]:
    async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT) as registry:
        yield registry.add("c1", sandbox.connections["c1"])


def _only(sandbox: Sandbox, path: str, method: str = "POST") -> RequestRecord:
    (record,) = sandbox.requests(path=path, method=method)
    return record


class TestJsonBodies:
    async def test_create_body_is_logged_and_decodes(
        self, conn: Connection, sandbox: Sandbox
    ) -> None:
        """A typed create's JSON arrives in the log as sent, and json() decodes it."""
        created = await conn.eam.work_orders.create(
            WorkOrderInput(title="Replace seal", severity=Level.HIGH)
        )
        record = _only(sandbox, WO)
        assert record.status == 200
        assert record.content_type == "application/json"
        assert record.json() == {"title": "Replace seal", "severity": "high"}
        assert record.body_size == len(record.body) > 0
        assert not record.body_truncated
        assert record.parts == ()
        assert created.title == "Replace seal"  # the handler still read the same body

    async def test_body_is_logged_even_when_a_fault_answers(
        self, api: Api, sandbox: Sandbox
    ) -> None:
        """An injected 503 answers before any handler, and the log still has the body."""
        sandbox.inject(503, path=WO, method="POST")
        reply = await api.post(WO, json={"title": "Fix pump"})
        assert reply.status == 503
        record = _only(sandbox, WO)
        assert record.fault == "status"
        assert record.json() == {"title": "Fix pump"}

    async def test_repr_hides_the_body(self, api: Api, sandbox: Sandbox) -> None:
        """repr() of a record leaves the body out, whatever it holds."""
        await api.post(WO, json={"title": "canary-7f3a"})
        record = _only(sandbox, WO)
        assert b"canary-7f3a" in record.body
        assert "canary-7f3a" not in repr(record)
        assert "canary-7f3a" not in repr(sandbox.requests())

    async def test_json_of_a_body_that_is_not_json_raises(self, api: Api, sandbox: Sandbox) -> None:
        """json() raises ValueError naming the request when the body is not JSON."""
        reply = await api.post(WO, data=b"title=x", headers={"Content-Type": "text/plain"})
        assert reply.status == 415
        record = _only(sandbox, WO)
        assert record.body == b"title=x"
        assert record.content_type == "text/plain"
        with pytest.raises(ValueError, match=r"body of POST /api/eam/work-orders is not JSON"):
            record.json()
        with pytest.raises(ValueError, match="text/plain, not application/x-www-form-urlencoded"):
            record.form()


class TestEmptyBodies:
    async def test_get_has_an_empty_body(self, api: Api, sandbox: Sandbox) -> None:
        """A GET is logged with no body, no media type and nothing cut."""
        await api.get(WO, params={"per_page": "1"})
        record = _only(sandbox, WO, "GET")
        assert record.body == b""
        assert record.body_size == 0
        assert record.content_type == ""
        assert not record.body_truncated
        with pytest.raises(ValueError, match="sent no body"):
            record.json()


class TestFormBodies:
    async def test_token_form_is_logged_and_repr_hides_the_secret(self, sandbox: Sandbox) -> None:
        """A client-credentials grant logs its form fields; repr() shows no client secret."""
        async with LinkClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url
        ) as link:
            pair = await link.client_credentials()
        assert pair.access_token == sandbox.admin_token
        record = _only(sandbox, "/link/token")
        assert record.status == 200
        assert record.content_type == "application/x-www-form-urlencoded"
        assert dict(record.form()) == {
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        }
        assert sandbox.client_secret.encode() in record.body
        assert sandbox.client_secret not in repr(record)
        assert sandbox.client_secret not in repr(sandbox.requests())

    async def test_form_keeps_order_repeats_and_blanks(self, api: Api, sandbox: Sandbox) -> None:
        """form() returns every pair in order, as query does, percent-escapes decoded."""
        await api.as_connection(None).post(
            "/link/token",
            data=b"scope=a&scope=b&empty=&name=caf%C3%A9+bar",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        record = _only(sandbox, "/link/token")
        assert record.form() == [
            ("scope", "a"),
            ("scope", "b"),
            ("empty", ""),
            ("name", "café bar"),
        ]


class TestMultipartBodies:
    async def test_upload_is_logged_with_its_parts_and_succeeds(
        self, conn: Connection, sandbox: Sandbox
    ) -> None:
        """An upload still makes its document, and the log lists its parts with the raw body."""
        upload = Upload(b"%PDF-1.7 manual", filename="pump.pdf", content_type="application/pdf")
        document = await conn.eam.documents.upload(upload, name="Pump manual")
        assert (document.name, document.content_type) == ("Pump manual", "application/pdf")
        assert document.url == "sandbox://documents/pump.pdf"
        record = _only(sandbox, DOCUMENTS)
        assert record.status == 200
        assert record.content_type == "multipart/form-data"
        assert record.parts == (
            FormPart(
                name="name",
                filename=None,
                content_type=None,
                size=len("Pump manual"),
                value="Pump manual",
            ),
            FormPart(name="file", filename="pump.pdf", content_type="application/pdf", size=15),
        )
        assert b"%PDF-1.7 manual" in record.body
        assert not record.body_truncated
        with pytest.raises(ValueError, match="not application/x-www-form-urlencoded"):
            record.form()

    async def test_large_upload_is_cut_but_lists_every_part(
        self, conn: Connection, sandbox: Sandbox
    ) -> None:
        """A file bigger than the cap is cut in the log; its part still reports its full size."""
        content = b"\x00\x01" * (100 * 1024)
        document = await conn.eam.documents.upload(Upload(content, filename="big.bin"))
        assert document.name == "big.bin"
        record = _only(sandbox, DOCUMENTS)
        assert len(record.body) == CAP
        assert record.body_size is not None
        assert record.body_size > len(content)
        assert record.body_truncated
        assert [(p.name, p.filename, p.size) for p in record.parts] == [
            ("name", None, len("big.bin")),
            ("file", "big.bin", len(content)),
        ]

    async def test_malformed_multipart_is_logged_without_parts(
        self, api: Api, sandbox: Sandbox
    ) -> None:
        """A multipart body that does not parse is refused as before and logged with no parts."""
        raw = b"--b\r\nnonsense\r\n"
        reply = await api.post(
            DOCUMENTS, data=raw, headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert reply.status in {400, 422}
        record = _only(sandbox, DOCUMENTS)
        assert record.body == raw
        assert record.parts == ()


class TestCap:
    async def test_body_over_the_cap_is_cut_and_says_so(self, api: Api, sandbox: Sandbox) -> None:
        """A body over 64 KiB keeps its first 64 KiB and its full size; json() refuses it."""
        raw = json.dumps({"title": "Long", "description": "x" * (CAP + 100)}).encode()
        reply = await api.post(WO, data=raw, headers={"Content-Type": "application/json"})
        assert reply.status < 500
        record = _only(sandbox, WO)
        assert record.body == raw[:CAP]
        assert record.body_size == len(raw)
        assert record.body_truncated
        with pytest.raises(ValueError, match=f"was cut at {CAP} of {len(raw)} bytes"):
            record.json()

    async def test_body_at_the_cap_is_whole(self, api: Api, sandbox: Sandbox) -> None:
        """A body of exactly the cap's size is kept whole and not marked as cut."""
        raw = json.dumps({"title": "x" * (CAP - 13)}).encode()
        assert len(raw) == CAP
        await api.post(WO, data=raw, headers={"Content-Type": "application/json"})
        record = _only(sandbox, WO)
        assert record.body == raw
        assert not record.body_truncated
        assert record.json() == {"title": "x" * (CAP - 13)}

    async def test_the_cap_is_a_sandbox_setting(self, session: aiohttp.ClientSession) -> None:
        """log_body_limit sets the cap (0 keeps no body, only its size); negative is refused."""
        with pytest.raises(ValueError, match="log_body_limit"):
            Sandbox(log_body_limit=-1)
        async with Sandbox(log_body_limit=0) as small:
            await Api(session, small).post(WO, json={"title": "x"})
            record = _only(small, WO)
        assert record.body == b""
        assert record.body_size == len(b'{"title": "x"}')
        assert record.body_truncated

    async def test_body_over_max_body_is_refused_unread(
        self, session: aiohttp.ClientSession
    ) -> None:
        """A body over max_body, announced or chunked, is answered 413 and logged as unknown."""

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"x" * 600

        async with Sandbox(max_body=1000) as small:
            client = Api(session, small)
            announced = await client.post(WO, data=b"x" * 1500, headers={"Content-Type": "a/b"})
            chunked = await client.post(WO, data=chunks(), headers={"Content-Type": "a/b"})
            records = small.requests(path=WO)
        assert (announced.status, chunked.status) == (413, 413)
        assert chunked.error_code == "PAYLOAD_TOO_LARGE"
        assert [(r.status, r.body, r.body_size, r.body_truncated) for r in records] == [
            (413, b"", None, True),
            (413, b"", None, True),
        ]
        with pytest.raises(ValueError, match="cut at 0 of more than max_body bytes"):
            records[0].json()


class TestControlPlane:
    async def test_requests_route_serves_text_bodies(self, api: Api, sandbox: Sandbox) -> None:
        """GET /_sandbox/requests carries a UTF-8 body as text, with its size and no cut."""
        await api.post(WO, json={"title": "Fix pump"})
        log = await api.as_connection(None).get(
            "/_sandbox/requests", params={"connection": "c1", "method": "POST"}
        )
        (entry,) = log.body
        assert json.loads(entry["body"]) == {"title": "Fix pump"}
        assert entry["body"].encode() == _only(sandbox, WO).body
        assert entry["body_encoding"] == "utf-8"
        assert entry["body_size"] == len(entry["body"].encode())
        assert entry["body_truncated"] is False
        assert entry["content_type"] == "application/json"
        assert entry["parts"] == []
        assert entry["headers"]["Authorization"] == "[redacted]"

    async def test_control_plane_last_n(self, api: Api) -> None:
        """?last=N returns only the N most recent matching requests; a bad N is refused."""
        for title in ("one", "two", "three"):
            await api.post(WO, json={"title": title})
        control = api.as_connection(None)
        log = await control.get(
            "/_sandbox/requests", params={"connection": "c1", "method": "POST", "last": "2"}
        )
        assert [json.loads(entry["body"])["title"] for entry in log.body] == ["two", "three"]
        none = await control.get("/_sandbox/requests", params={"last": "0"})
        assert none.body == []
        bad = await control.get("/_sandbox/requests", params={"last": "-1"})
        assert bad.status == 400

    async def test_requests_route_serves_binary_bodies_as_base64(
        self, conn: Connection, sandbox: Sandbox, api: Api
    ) -> None:
        """A body that is not UTF-8 comes as base64, and the parts as objects."""
        await conn.eam.documents.upload(Upload(b"\xff\xfe\x00", filename="raw.bin"))
        log = await api.as_connection(None).get("/_sandbox/requests", params={"method": "POST"})
        (entry,) = log.body
        assert entry["body_encoding"] == "base64"
        assert base64.b64decode(entry["body"]) == _only(sandbox, DOCUMENTS).body
        assert entry["parts"][1] == {
            "name": "file",
            "filename": "raw.bin",
            "content_type": "application/octet-stream",
            "size": 3,
            "value": None,
        }
        assert entry["parts"][0]["value"] == "raw.bin"  # the name field, a text part
