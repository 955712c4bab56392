"""``conn.eam.documents.upload``: a multipart POST to the sandbox, read back by its key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from makini_async import (
    APIError,
    Connection,
    ConnectionRegistry,
    ConnectionState,
    OperationNotSupportedError,
    ReauthorizationRequiredError,
    ReconnectEvent,
    ResponseDecodeError,
    ServiceUnavailableError,
    Upload,
    ValidationError,
    resources,
)
from makini_async.models import Document
from makini_async.sandbox import Sandbox
from tests.support import ZERO_WAIT, MakeRegistry, Reply, ScriptedApp

PATH = "/api/eam/documents"


class TestUpload:
    async def test_upload_and_read_back(self, conn: Connection, sandbox: Sandbox) -> None:
        """The upload answers the typed new Document, and get(key) reads the same record."""
        upload = Upload(b"%PDF-1.7 manual", filename="pump.pdf", content_type="application/pdf")
        document = await conn.eam.documents.upload(upload, name="Pump manual")
        assert isinstance(document, Document)
        assert document.key
        assert document.name == "Pump manual"
        assert document.content_type == "application/pdf"
        assert document.url == "sandbox://documents/pump.pdf"
        assert document.created_at is not None
        assert await conn.eam.documents.get(document.key) == document
        listed = [d.key async for d in conn.eam.documents.list()]
        assert document.key in listed
        (record,) = sandbox.requests("c1", path=PATH, method="POST")
        assert record.headers["Content-Type"].startswith("multipart/form-data; boundary=")
        assert record.status == 200

    async def test_name_defaults_to_the_file_name(self, conn: Connection) -> None:
        """Without a name, the record is named after the file (from a binary file object)."""
        stream = io.BytesIO(b"col1,col2\n1,2\n")
        document = await conn.eam.documents.upload(
            Upload(stream, filename="readings.csv", content_type="text/csv")
        )
        assert document.name == "readings.csv"
        assert document.content_type == "text/csv"
        assert stream.read() == b""  # read to its end, once

    async def test_quoted_and_non_ascii_file_names_arrive_safely(self, conn: Connection) -> None:
        """A ``"`` is percent-encoded (as browsers send it) and UTF-8 names arrive intact."""
        quoted = await conn.eam.documents.upload(Upload(b"x", filename='Pump "A".pdf'))
        assert quoted.url == "sandbox://documents/Pump %22A%22.pdf"
        accented = await conn.eam.documents.upload(Upload(b"x", filename="café-naïve.pdf"))
        assert accented.url == "sandbox://documents/café-naïve.pdf"
        assert accented.name == "café-naïve.pdf"

    async def test_sends_exactly_name_then_file(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """The body is the contract's two parts, the name defaulting to the file name."""
        app, url = scripted
        app.default = Reply(body={"data": {"key": "13abc", "name": "n.txt"}})
        conn = make_registry(url).add("c", "tok")
        document = await conn.eam.documents.upload(Upload(b"hello", filename="n.txt"))
        assert document == Document(key="13abc", name="n.txt")
        (seen,) = app.seen
        assert (seen.method, seen.path) == ("POST", PATH)
        boundary = seen.headers["Content-Type"].removeprefix("multipart/form-data; boundary=")
        assert (
            seen.body
            == (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="name"\r\n\r\n'
                "n.txt\r\n"
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="file"; filename="n.txt"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
                "hello\r\n"
                f"--{boundary}--\r\n"
            ).encode()
        )

    async def test_undecodable_answer_is_a_decode_error(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A 200 that is not a record envelope raises ResponseDecodeError naming the call."""
        app, url = scripted
        app.default = Reply(body={"data": ["not", "a", "record"]})
        conn = make_registry(url).add("c", "tok")
        with pytest.raises(ResponseDecodeError, match="POST /api/eam/documents"):
            await conn.eam.documents.upload(Upload(b"x", filename="x"))

    def test_the_service_has_the_verb(self, conn: Connection) -> None:
        """documents is still the generated service (and the eam statuses still work)."""
        documents = conn.eam.documents
        assert isinstance(documents, resources.EAMDocuments)
        assert conn.eam.documents is documents
        assert conn.eam.statuses.entities  # the namespace still knows its domain
        assert "upload" not in dir(conn.eam.assets)

    async def test_bad_arguments_fail_before_io(self, conn: Connection, sandbox: Sandbox) -> None:
        """A non-Upload file or a bad name is refused without a request."""
        with pytest.raises(TypeError, match="Upload"):
            await conn.eam.documents.upload(b"raw")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="name"):
            await conn.eam.documents.upload(Upload(b"x", filename="x"), name=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="name"):
            await conn.eam.documents.upload(Upload(b"x", filename="x"), name="")
        assert sandbox.requests("c1", path=PATH) == []


class TestErrors:
    async def test_unsupported_write_is_typed(self, conn: Connection, sandbox: Sandbox) -> None:
        """A source system that cannot store documents answers 405, raised typed."""
        sandbox.configure("c1", unsupported=["documents"])
        with pytest.raises(OperationNotSupportedError) as info:
            await conn.eam.documents.upload(Upload(b"x", filename="x.txt"))
        assert info.value.status == 405
        assert info.value.request_id

    async def test_oversized_body_is_a_4xx(self) -> None:
        """A body over the server's limit is refused by the server with a typed 413."""
        async with (
            Sandbox(connections=1, max_body=1024) as small,
            ConnectionRegistry(small.url, retry=ZERO_WAIT) as registry,
        ):
            conn = registry.add("c1", small.connections["c1"])
            with pytest.raises(APIError) as info:
                await conn.eam.documents.upload(Upload(b"x" * 4096, filename="big.bin"))
        assert type(info.value) is APIError  # 413 has no class of its own
        assert info.value.status == 413
        assert info.value.code == "PAYLOAD_TOO_LARGE"

    async def test_5xx_is_not_retried_without_a_key(
        self, conn: Connection, sandbox: Sandbox
    ) -> None:
        """An upload is a POST: a 503 is raised at once, and one document at most is made."""
        sandbox.inject(503, path=PATH, method="POST")
        with pytest.raises(ServiceUnavailableError):
            await conn.eam.documents.upload(Upload(b"x", filename="x.txt"))
        assert len(sandbox.requests("c1", path=PATH, method="POST")) == 1

    async def test_5xx_is_retried_with_an_idempotency_key(
        self, conn: Connection, sandbox: Sandbox
    ) -> None:
        """With an idempotency key the upload is retried, and replaying it makes no second one."""
        before = len(sandbox.records("c1", "eam/documents"))
        sandbox.inject(503, path=PATH, method="POST")
        upload = Upload(b"report", filename="r.pdf", content_type="application/pdf")
        first = await conn.eam.documents.upload(upload, idempotency_key="doc-r-1")
        again = await conn.eam.documents.upload(upload, idempotency_key="doc-r-1")
        assert again.key == first.key
        assert len(sandbox.records("c1", "eam/documents")) == before + 1
        assert len(sandbox.requests("c1", path=PATH, method="POST")) == 3

    async def test_missing_file_part_is_a_validation_error(self, conn: Connection) -> None:
        """Posting the form without its file part is the server's 422, with the field named."""
        with pytest.raises(ValidationError) as info:
            await conn.request(
                "POST",
                PATH,
                form={"name": "no file"},
                files={"attachment": Upload(b"x", filename="x")},
            )
        assert "file" in info.value.fields


class TestReconnect:
    async def test_expired_token_replays_the_upload_once(self, sandbox: Sandbox) -> None:
        """After a 401 the hook's new token replays the same upload; one document is made."""
        events: list[ReconnectEvent] = []

        async def hook(event: ReconnectEvent) -> str | None:
            events.append(event)
            return sandbox.issue_token(event.connection_id)

        before = len(sandbox.records("c1", "eam/documents"))
        async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT, on_reconnect=hook) as registry:
            conn = registry.add("c1", sandbox.connections["c1"])
            sandbox.expire_token("c1")
            document = await conn.eam.documents.upload(
                Upload(io.BytesIO(b"one-shot"), filename="once.txt", content_type="text/plain")
            )
            assert document.name == "once.txt"
            assert len(events) == 1
            assert conn.generation == 2
        assert len(sandbox.records("c1", "eam/documents")) == before + 1
        assert [r.status for r in sandbox.requests("c1", path=PATH, method="POST")] == [401, 200]

    async def test_changed_credentials_without_a_hook(
        self, conn: Connection, sandbox: Sandbox
    ) -> None:
        """Without a hook, a refused token parks the connection and the upload fails typed."""
        sandbox.change_credentials("c1")
        with pytest.raises(ReauthorizationRequiredError):
            await conn.eam.documents.upload(Upload(b"x", filename="x"))
        assert conn.state is ConnectionState.REAUTHORIZATION_REQUIRED


class TestFromPath:
    async def test_a_file_on_disk_is_read_by_each_call(
        self, conn: Connection, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """from_path guesses the content type, reads the file per call and leaves it closed."""
        manual = tmp_path / "pump manual.pdf"
        manual.write_bytes(b"%PDF-1.7 first")
        upload = Upload.from_path(manual)
        assert (upload.filename, upload.content_type) == ("pump manual.pdf", "application/pdf")
        first = await conn.eam.documents.upload(upload)
        manual.write_bytes(b"%PDF-1.7 second edition")
        second = await conn.eam.documents.upload(upload, name="Second")
        assert first.name == "pump manual.pdf"
        assert second.name == "Second"
        sizes = [
            part.size
            for r in sandbox.requests("c1", path=PATH, method="POST")
            for part in r.parts
            if part.filename
        ]
        assert sizes == [len(b"%PDF-1.7 first"), len(b"%PDF-1.7 second edition")]
        empty = tmp_path / "empty.bin"
        empty.write_bytes(b"")
        assert (await conn.eam.documents.upload(Upload.from_path(empty))).name == "empty.bin"

    async def test_a_missing_file_is_a_value_error_and_sends_nothing(
        self, conn: Connection, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        with pytest.raises(ValueError, match="No file to upload"):
            Upload.from_path(tmp_path / "absent.pdf")
        with pytest.raises(TypeError):
            Upload.from_path(b"raw")  # type: ignore[arg-type]
        doomed = tmp_path / "doomed.txt"
        doomed.write_text("soon gone")
        upload = Upload.from_path(doomed, filename="notes.txt", content_type="text/plain")
        doomed.unlink()
        with pytest.raises(ValueError, match=r"Reading the upload 'notes\.txt' failed"):
            await conn.eam.documents.upload(upload)
        assert sandbox.requests("c1", path=PATH, method="POST") == []
