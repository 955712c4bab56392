"""Bodies other than JSON, and calls without a token, as loopback servers receive them.

Form bodies, ``multipart/form-data`` uploads (exact bytes, header-injection refusals, the size
cap, one read per call so that retries and the replay after a 401 resend the same bytes) and the
registry's tokenless channel (no ``Authorization``, no reconnect hook, no state change, its own
429 gate, retries and timeouts as usual).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import threading
import uuid

import pytest
from aiohttp import web

import makini_async as m
from makini_async import ConnectionState, ReconnectEvent, StateChange, Upload
from makini_async._bodies import _new_boundary
from makini_async.testing import VirtualClock
from tests.support import (
    MakeRegistry,
    RawHandler,
    ScriptedApp,
    StartApp,
    StartRaw,
    error_reply,
    read_request,
)
from tests.test_secrets import Echo, assert_no_leak, closed_port, envelope, failure

BOUNDARY = re.compile(r"multipart/form-data; boundary=(makini-[0-9a-f]{32})")


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart Content-Type we sent (and proof of its exact shape)."""
    match = BOUNDARY.fullmatch(content_type)
    assert match is not None, content_type
    return match.group(1).encode()


def expected_multipart(
    boundary: bytes,
    fields: list[tuple[bytes, bytes]],
    files: list[tuple[bytes, bytes, bytes, bytes]],
) -> bytes:
    """The body we must send: text fields first, then files (name, filename, type, content)."""
    out = b""
    for name, value in fields:
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"
    for name, filename, content_type, content in files:
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename
        out += b'"\r\nContent-Type: ' + content_type + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


class OneShot(io.RawIOBase):
    """A non-seekable stream (a pipe, a socket): it hands out its bytes once, then only EOF."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.handed_out = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.reads += 1
        chunk = self._data[self.handed_out : self.handed_out + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.handed_out += len(chunk)
        return len(chunk)


class Hook:
    """A reconnect hook that hands out the next token and counts its calls."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.events: list[ReconnectEvent] = []

    async def __call__(self, event: ReconnectEvent) -> str | None:
        self.events.append(event)
        return self.tokens.pop(0) if self.tokens else None


def recording(seen: list[tuple[str, dict[str, str], bytes]]) -> RawHandler:
    """A raw-socket handler that records each request exactly as read and answers 200."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            body = b'{"data": {"ok": true}}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()

    return handle


# --------------------------------------------------------------------------------------------
# Form bodies.


class TestForm:
    async def test_form_is_sent_urlencoded(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A form goes out as UTF-8 application/x-www-form-urlencoded bytes, in order."""
        seen: list[tuple[str, dict[str, str], bytes]] = []
        conn = make_registry(await raw_server(recording(seen))).add("c", "tok")
        form = {"grant_type": "refresh_token", "note": "a b&c=d/é+", "empty": ""}
        await conn.request("POST", "/link/token", form=form)
        line, headers, body = seen[0]
        assert line == "POST /link/token HTTP/1.1"
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        assert body == b"grant_type=refresh_token&note=a+b%26c%3Dd%2F%C3%A9%2B&empty="
        assert headers["content-length"] == str(len(body))
        assert headers["authorization"] == "Bearer tok"

    async def test_json_with_form_or_files_is_refused_before_io(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """json= together with form= or files= is a ValueError, and nothing is sent."""
        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        upload = Upload(b"x", filename="x.txt")
        with pytest.raises(ValueError, match="not both"):
            await conn.request("POST", "/x", json={"a": 1}, form={"a": "1"})
        with pytest.raises(ValueError, match="not both"):
            await conn.request("POST", "/x", json={"a": 1}, files={"file": upload})
        assert app.seen == []

    @pytest.mark.parametrize(
        "form",
        [{1: "a"}, {"a": 1}, {"a": None}, {"a": b"bytes"}, [("a", "b")], "a=b"],
        ids=["int-name", "int-value", "none-value", "bytes-value", "pairs", "str"],
    )
    async def test_non_str_form_is_a_type_error_before_io(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, form: object
    ) -> None:
        """A form that is not a mapping of str to str is a TypeError, and nothing is sent."""
        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        with pytest.raises(TypeError, match="form"):
            await conn.request("POST", "/x", form=form)  # type: ignore[arg-type]
        assert app.seen == []

    async def test_unencodable_form_value_is_a_value_error(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A lone surrogate cannot be UTF-8 encoded: ValueError, and nothing is sent."""
        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        with pytest.raises(ValueError, match="surrogate"):
            await conn.request("POST", "/x", form={"a": "\udc80"})
        assert app.seen == []

    async def test_form_replayed_identically_after_a_401(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """The replay after a reconnect sends the same form bytes with the new token."""
        app, url = scripted
        app.by_token["old"] = error_reply(401, "TOKEN_EXPIRED")
        conn = make_registry(url, on_reconnect=Hook("new")).add("c", "old")
        await conn.request("PUT", "/x", form={"status": "closed"})
        assert [s.token for s in app.seen] == ["old", "new"]
        assert [s.body for s in app.seen] == [b"status=closed"] * 2
        assert {s.headers["Content-Type"] for s in app.seen} == {
            "application/x-www-form-urlencoded"
        }


# --------------------------------------------------------------------------------------------
# Multipart bodies.


class TestMultipartBytes:
    async def test_exact_bytes_and_headers(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """Text fields, then the file part; the boundary, length and token are as announced."""
        seen: list[tuple[str, dict[str, str], bytes]] = []
        conn = make_registry(await raw_server(recording(seen))).add("c", "tok")
        content = b"%PDF-1.7\x00\xff\r\n--not-our-boundary\r\n"
        upload = Upload(content, filename="manual.pdf", content_type="application/pdf")
        response = await conn.request(
            "POST", "/api/eam/documents", form={"name": "Pump manual"}, files={"file": upload}
        )
        assert response.data == {"data": {"ok": True}}
        line, headers, body = seen[0]
        assert line == "POST /api/eam/documents HTTP/1.1"
        boundary = boundary_of(headers["content-type"])
        assert body == expected_multipart(
            boundary,
            [(b"name", b"Pump manual")],
            [(b"file", b"manual.pdf", b"application/pdf", content)],
        )
        assert headers["content-length"] == str(len(body))
        assert headers["authorization"] == "Bearer tok"
        assert "transfer-encoding" not in headers

    async def test_default_content_type_and_several_files(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """Files go in order; a file without a content type is application/octet-stream."""
        seen: list[tuple[str, dict[str, str], bytes]] = []
        conn = make_registry(await raw_server(recording(seen))).add("c", "tok")
        files = {
            "first": Upload(b"one", filename="1.bin"),
            "second": Upload(
                bytearray(b"two"), filename="2.txt", content_type='text/plain; charset="utf-8"'
            ),
        }
        await conn.request("POST", "/up", files=files)
        _, headers, body = seen[0]
        assert body == expected_multipart(
            boundary_of(headers["content-type"]),
            [],
            [
                (b"first", b"1.bin", b"application/octet-stream", b"one"),
                (b"second", b"2.txt", b'text/plain; charset="utf-8"', b"two"),
            ],
        )

    async def test_empty_bytes_and_memoryview_content(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """b"" uploads an empty file; a memoryview is copied when the Upload is made."""
        seen: list[tuple[str, dict[str, str], bytes]] = []
        conn = make_registry(await raw_server(recording(seen))).add("c", "tok")
        buffer = bytearray(b"before")
        view = Upload(memoryview(buffer), filename="v.bin")
        buffer[:] = b"AFTER!"
        await conn.request(
            "POST", "/up", files={"empty": Upload(b"", filename="e.txt"), "view": view}
        )
        _, headers, body = seen[0]
        assert body == expected_multipart(
            boundary_of(headers["content-type"]),
            [],
            [
                (b"empty", b"e.txt", b"application/octet-stream", b""),
                (b"view", b"v.bin", b"application/octet-stream", b"before"),
            ],
        )

    async def test_a_real_multipart_parser_reads_it_back(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """aiohttp's server parser reads every field, file name, type and byte back."""
        parsed: list[dict[str, object]] = []

        async def handler(request: web.Request) -> web.Response:
            form = await request.post()
            out: dict[str, object] = {}
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    out[key] = (value.filename, value.content_type, value.file.read())
                else:
                    out[key] = value
            parsed.append(out)
            return web.json_response({"data": {}})

        app = web.Application()
        app.router.add_post("/up", handler)
        conn = make_registry(await app_server(app)).add("c", "tok")
        content = bytes(range(256)) * 64
        await conn.request(
            "POST",
            "/up",
            form={"name": 'Pump "A" — manual\r\nline two'},
            files={"file": Upload(content, filename="café.pdf", content_type="application/pdf")},
        )
        assert parsed == [
            {
                "name": 'Pump "A" — manual\r\nline two',
                "file": ("café.pdf", "application/pdf", content),
            }
        ]

    async def test_boundary_is_never_found_in_the_content(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A boundary candidate that occurs in a part is dropped for a fresh one."""
        candidates = iter(["0" * 32, "1" * 32])
        monkeypatch.setattr("makini_async._bodies.secrets.token_hex", lambda _n: next(candidates))
        content = b"prefix makini-" + b"0" * 32 + b" suffix"
        assert _new_boundary([b"text", content]) == b"makini-" + b"1" * 32


class TestHeaderInjection:
    @pytest.mark.parametrize(
        "filename",
        ["a.pdf\r\nX-Injected: 1", "a\n.pdf", "a\r.pdf", "a\x00.pdf", "a\x7f.pdf", "C:\\a.pdf", ""],
        ids=["crlf", "lf", "cr", "nul", "del", "backslash", "empty"],
    )
    def test_unsafe_filename_is_refused(self, filename: str) -> None:
        """A file name with a control character or a backslash is a ValueError."""
        with pytest.raises(ValueError, match="filename"):
            Upload(b"x", filename=filename)

    @pytest.mark.parametrize(
        "content_type",
        [
            "text/plain\r\nX-Injected: 1",
            "text/plain; charset=utf-8\r\n",
            'text/plain; name="a\r\nb"',
            "text/plain\x00",
            "text",
            "text/plain; charset",
            "tëxt/plain",
            "",
        ],
        ids=[
            "crlf",
            "trailing-crlf",
            "crlf-in-quoted",
            "nul",
            "no-slash",
            "bare-param",
            "utf8",
            "empty",
        ],
    )
    def test_unsafe_content_type_is_refused(self, content_type: str) -> None:
        """A content type that is not a plain media type is a ValueError."""
        with pytest.raises(ValueError, match="content_type"):
            Upload(b"x", filename="x", content_type=content_type)

    @pytest.mark.parametrize(
        ("form", "files"),
        [
            ({"na\r\nme": "x"}, {"file": Upload(b"x", filename="x")}),
            (None, {"fi\nle": Upload(b"x", filename="x")}),
            (None, {"": Upload(b"x", filename="x")}),
            ({"a\\": "x"}, {"file": Upload(b"x", filename="x")}),
        ],
        ids=["crlf-form-name", "lf-file-name", "empty-file-name", "backslash-form-name"],
    )
    async def test_unsafe_field_name_is_refused_before_io(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        form: dict[str, str] | None,
        files: dict[str, Upload],
    ) -> None:
        """A field name that cannot be sent safely is a ValueError, and nothing is sent."""
        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        with pytest.raises(ValueError, match="name"):
            await conn.request("POST", "/x", form=form, files=files)
        assert app.seen == []

    async def test_quotes_are_percent_encoded_never_raw(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A ``"`` in a field or file name is sent as %22 and cannot end the parameter early."""
        seen: list[tuple[str, dict[str, str], bytes]] = []
        conn = make_registry(await raw_server(recording(seen))).add("c", "tok")
        evil = 'x"; name="admin'
        await conn.request(
            "POST", "/x", form={evil: "v"}, files={"file": Upload(b"c", filename=evil + '".pdf')}
        )
        _, headers, body = seen[0]
        assert body == expected_multipart(
            boundary_of(headers["content-type"]),
            [(b"x%22; name=%22admin", b"v")],
            [(b"file", b"x%22; name=%22admin%22.pdf", b"application/octet-stream", b"c")],
        )
        for line in body.split(b"\r\n"):
            if line.startswith(b"Content-Disposition"):
                assert line.count(b'"') == (4 if b"filename" in line else 2)

    @pytest.mark.parametrize(
        ("content", "filename", "content_type", "match"),
        [
            ("text", "x", "text/plain", "not str"),
            (42, "x", "text/plain", "int"),
            (b"x", b"x", "text/plain", "filename must be a str"),
            (b"x", "x", None, "content_type must be a str"),
        ],
        ids=["str-content", "int-content", "bytes-filename", "none-content-type"],
    )
    def test_wrong_types_are_type_errors(
        self, content: object, filename: object, content_type: object, match: str
    ) -> None:
        """Content that is neither bytes nor a binary file, or a non-str name, is a TypeError."""
        with pytest.raises(TypeError, match=match):
            Upload(content, filename=filename, content_type=content_type)  # type: ignore[arg-type]

    def test_an_async_file_is_refused(self) -> None:
        """A file whose read is a coroutine function is a TypeError (it cannot be read once)."""

        class AsyncFile:
            async def read(self, size: int = -1) -> bytes:
                return b"" * size

        with pytest.raises(TypeError, match="async"):
            Upload(AsyncFile(), filename="x")  # type: ignore[arg-type]

    async def test_a_non_upload_file_is_a_type_error_before_io(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """files maps names to Upload values; raw bytes or a non-mapping are TypeErrors."""
        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        with pytest.raises(TypeError, match="Upload"):
            await conn.request("POST", "/x", files={"file": b"raw"})  # type: ignore[dict-item]
        with pytest.raises(TypeError, match="mapping"):
            await conn.request("POST", "/x", files=[("file", Upload(b"x", filename="x"))])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at least one"):
            await conn.request("POST", "/x", form={"a": "b"}, files={})
        assert app.seen == []


# --------------------------------------------------------------------------------------------
# One read per call: retries and the replay send the same bytes.


class TestReplay:
    async def test_401_replay_sends_the_identical_multipart_body(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """After a 401 and a reconnect, the replay carries byte-for-byte the first body."""
        app, url = scripted
        app.by_token["old"] = error_reply(401, "TOKEN_EXPIRED")
        hook = Hook("new")
        conn = make_registry(url, on_reconnect=hook).add("c", "old")
        content = b"\x89PNG" + bytes(range(256)) * 40
        upload = Upload(io.BytesIO(content), filename="p.png", content_type="image/png")
        await conn.request("POST", "/up", form={"name": "plate"}, files={"file": upload})
        assert len(hook.events) == 1
        assert [s.token for s in app.seen] == ["old", "new"]
        first, replay = app.seen
        assert replay.body == first.body
        assert replay.headers["Content-Type"] == first.headers["Content-Type"]
        assert first.body == expected_multipart(
            boundary_of(first.headers["Content-Type"]),
            [(b"name", b"plate")],
            [(b"file", b"p.png", b"image/png", content)],
        )

    async def test_one_shot_stream_is_read_once_and_replayed_from_memory(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A non-seekable stream is read once; the replay after a 401 is complete, not empty."""
        app, url = scripted
        app.by_token["old"] = error_reply(401, "TOKEN_EXPIRED")
        conn = make_registry(url, on_reconnect=Hook("new")).add("c", "old")
        content = b"line\n" * 50_000
        stream = OneShot(content)
        assert not stream.seekable()
        await conn.request("POST", "/up", files={"file": Upload(stream, filename="log.txt")})
        assert stream.handed_out == len(content)
        reads = stream.reads
        assert len(app.seen) == 2
        assert app.seen[0].body == app.seen[1].body
        assert content in app.seen[1].body
        # A second call with the used-up stream is refused instead of uploading nothing.
        with pytest.raises(ValueError, match="nothing left to read"):
            await conn.request("POST", "/up", files={"file": Upload(stream, filename="log.txt")})
        assert stream.reads == reads + 1
        assert len(app.seen) == 2

    async def test_seekable_stream_is_read_from_its_position_and_not_rewound(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A file object is read from where it stands; the replay resends those same bytes."""
        app, url = scripted
        app.by_token["old"] = error_reply(401, "TOKEN_EXPIRED")
        conn = make_registry(url, on_reconnect=Hook("new")).add("c", "old")
        stream = io.BytesIO(b"HEADERbody-bytes")
        stream.seek(6)
        await conn.request("POST", "/up", files={"file": Upload(stream, filename="b.bin")})
        assert stream.tell() == 16
        expected = expected_multipart(
            boundary_of(app.seen[0].headers["Content-Type"]),
            [],
            [(b"file", b"b.bin", b"application/octet-stream", b"body-bytes")],
        )
        assert [s.body for s in app.seen] == [expected, expected]

    async def test_upload_post_is_not_retried_on_a_5xx(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """An upload without an idempotency key is a POST: a 503 is raised, not retried."""
        app, url = scripted
        app.script.append(error_reply(503, "SYSTEM_UNAVAILABLE"))
        conn = make_registry(url).add("c", "tok")
        with pytest.raises(m.ServiceUnavailableError):
            await conn.request("POST", "/up", files={"file": Upload(b"x", filename="x")})
        assert len(app.seen) == 1

    async def test_upload_with_idempotency_key_is_retried_with_the_same_body(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """With an idempotency key, a 503 is retried, with the same key and the same bytes."""
        app, url = scripted
        app.script.extend([error_reply(503, "SYSTEM_UNAVAILABLE"), error_reply(502, "UPSTREAM")])
        conn = make_registry(url).add("c", "tok")
        stream = OneShot(b"payload" * 1000)
        response = await conn.request(
            "POST",
            "/up",
            files={"file": Upload(stream, filename="x")},
            idempotency_key="upload-1",
        )
        assert response.status == 200
        assert len(app.seen) == 3
        assert len({s.body for s in app.seen}) == 1
        assert {s.headers["Idempotency-Key"] for s in app.seen} == {"upload-1"}

    async def test_upload_is_retried_after_a_connect_error(
        self, make_registry: MakeRegistry, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A POST that cannot have reached the server (connection refused) is retried."""
        caplog.set_level(logging.INFO, logger="makini_async")
        conn = make_registry(f"http://127.0.0.1:{closed_port()}").add("c", "tok")
        with pytest.raises(m.ConnectError) as info:
            await conn.request("POST", "/up", files={"file": Upload(b"abc", filename="a")})
        assert not info.value.may_have_reached_server
        retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Retrying")]
        assert retries == [
            f"Retrying POST /up after ConnectError (attempt {n} of 4, waiting 0.000s)"
            for n in (2, 3, 4)
        ]


# --------------------------------------------------------------------------------------------
# The size cap and unreadable files.


class TestSizeCap:
    async def test_bytes_over_the_cap_are_refused_naming_it(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """More file bytes than max_upload_size is a ValueError naming the cap; nothing is sent."""
        app, url = scripted
        conn = make_registry(url, max_upload_size=16).add("c", "tok")
        await conn.request("POST", "/up", files={"file": Upload(b"x" * 16, filename="ok")})
        with pytest.raises(ValueError, match="max_upload_size=16 bytes"):
            await conn.request("POST", "/up", files={"file": Upload(b"x" * 17, filename="big")})
        with pytest.raises(ValueError, match="max_upload_size=16"):
            await conn.request(
                "POST",
                "/up",
                files={"a": Upload(b"x" * 9, filename="a"), "b": Upload(b"x" * 8, filename="b")},
            )
        assert len(app.seen) == 1

    async def test_stream_over_the_cap_is_refused_without_reading_it_all(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A stream is read only just past the cap before the call is refused."""
        app, url = scripted
        conn = make_registry(url, max_upload_size=1000).add("c", "tok")
        stream = OneShot(b"y" * 10_000_000)
        with pytest.raises(ValueError, match="max_upload_size=1000"):
            await conn.request("POST", "/up", files={"file": Upload(stream, filename="s")})
        assert stream.handed_out == 1001
        assert app.seen == []

    @pytest.mark.parametrize("value", [0, -1, 1.5, None])
    def test_bad_cap_is_refused(self, make_registry: MakeRegistry, value: object) -> None:
        """max_upload_size must be an int >= 1."""
        with pytest.raises(ValueError, match="max_upload_size"):
            make_registry("http://127.0.0.1:9", max_upload_size=value)

    async def test_text_mode_file_is_a_type_error(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A file opened in text mode (its read returns str) is a TypeError; nothing is sent."""
        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        text = Upload(io.StringIO("text"), filename="t.txt")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="binary mode"):
            await conn.request("POST", "/up", files={"file": text})
        assert app.seen == []

    async def test_non_blocking_stream_without_data_is_refused(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A non-blocking stream that has no data ready (read returns None) is a ValueError."""

        class Idle(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: memoryview) -> int | None:  # type: ignore[override]
                del buffer
                return None

        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        with pytest.raises(ValueError, match="non-blocking"):
            await conn.request("POST", "/up", files={"file": Upload(Idle(), filename="p")})
        assert app.seen == []

    async def test_failing_read_is_a_value_error_with_its_cause(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """An OSError while reading the file becomes a ValueError; nothing is sent."""

        class Broken(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
                raise OSError(5, f"Input/output error after {len(buffer)}")

        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        with pytest.raises(ValueError, match="failed") as info:
            await conn.request("POST", "/up", files={"file": Upload(Broken(), filename="b")})
        assert isinstance(info.value.__cause__, OSError)
        assert app.seen == []

    async def test_slow_stream_read_counts_against_the_deadline(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Reading the file happens off the event loop and inside the call's deadline."""
        release = threading.Event()

        class Slow(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
                release.wait(5)
                return 0 * len(buffer)

        app, url = scripted
        conn = make_registry(url).add("c", "tok")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        running = asyncio.create_task(ticker())
        try:
            with pytest.raises(m.RequestTimeoutError) as info:
                await conn.request(
                    "POST", "/up", files={"file": Upload(Slow(), filename="s")}, deadline=0.1
                )
        finally:
            release.set()
            running.cancel()
        assert not info.value.may_have_reached_server
        assert ticks >= 5  # the loop kept running while the file was being read
        assert app.seen == []


# --------------------------------------------------------------------------------------------
# The tokenless channel.


class TestTokenless:
    async def test_sends_no_authorization_header(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A tokenless call carries no Authorization; a connection's call still does."""
        seen: list[tuple[str, dict[str, str], bytes]] = []
        registry = make_registry(await raw_server(recording(seen)))
        conn = registry.add("c", "tok")
        channel = registry.tokenless()
        await channel.request("POST", "/link/token", form={"grant_type": "client_credentials"})
        await conn.request("GET", "/x")
        await channel.request("GET", "/y")
        (_, tokenless, body), (_, bearer, _), (_, again, _) = seen
        assert "authorization" not in tokenless
        assert "authorization" not in again
        assert bearer["authorization"] == "Bearer tok"
        assert tokenless["accept"] == "application/json"
        assert body == b"grant_type=client_credentials"

    async def test_is_no_connection(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """The channel is never listed, counted, found by id or counted as a session."""
        _, url = scripted
        registry = make_registry(url)
        conn = registry.add("c", "tok")
        channel = registry.tokenless()
        assert registry.tokenless() is channel
        await channel.request("GET", "/x")
        await conn.request("GET", "/x")
        assert len(registry) == 1
        assert list(registry) == [conn]
        assert "<tokenless>" not in registry
        assert registry.open_sessions == 1
        assert registry._transport.open_sessions == 2
        assert "connections=1" in repr(registry)
        assert repr(channel) == "<TokenlessChannel>"

    @pytest.mark.parametrize(
        ("code", "error_class"),
        [
            ("AUTHENTICATION_FAILED", m.AuthenticationError),
            ("TOKEN_EXPIRED", m.TokenExpiredError),
            ("REAUTHORIZATION_REQUIRED", m.ReauthorizationRequiredError),
        ],
    )
    async def test_401_is_typed_and_touches_nothing(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        code: str,
        error_class: type[m.AuthenticationError],
    ) -> None:
        """A 401 raises its class as is: no hook, no state change, no listener, no replay."""
        app, url = scripted
        hook = Hook("would-be-token")
        registry = make_registry(url, on_reconnect=hook)
        changes: list[StateChange] = []
        registry.subscribe(changes.append)
        channel = registry.tokenless()
        app.script.append(error_reply(401, code))
        with pytest.raises(m.AuthenticationError) as info:
            await channel.request("POST", "/link/token", form={"grant_type": "x"})
        assert type(info.value) is error_class
        assert info.value.code == code
        assert info.value.request_id == "req_e"
        assert len(app.seen) == 1
        assert hook.events == []
        assert changes == []
        assert channel._channel.state is ConnectionState.ACTIVE
        assert channel._channel.generation == 0  # it has no token, so no generation
        # The next call is sent as usual: nothing was parked.
        await channel.request("POST", "/link/token", form={"grant_type": "x"})
        assert len(app.seen) == 2

    async def test_retries_and_post_rules_apply(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A tokenless GET is retried on a 503; a tokenless POST is not."""
        app, url = scripted
        channel = make_registry(url).tokenless()
        app.script.append(error_reply(503, "SYSTEM_UNAVAILABLE"))
        assert (await channel.request("GET", "/x")).status == 200
        assert len(app.seen) == 2
        app.script.append(error_reply(503, "SYSTEM_UNAVAILABLE"))
        with pytest.raises(m.ServiceUnavailableError):
            await channel.request("POST", "/link/token", form={"grant_type": "x"})
        assert len(app.seen) == 3

    async def test_429_gate_is_its_own(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        clock: VirtualClock,
    ) -> None:
        """A 429 on the tokenless channel pauses it alone; a connection's 429 never pauses it."""
        app, url = scripted
        registry = make_registry(url)
        conn = registry.add("c", "tok")
        channel = registry.tokenless()
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "2"}))
        start = clock.monotonic()
        with pytest.raises(m.RateLimitError):
            await channel.request("POST", "/link/token", form={"grant_type": "x"})
        await conn.request("GET", "/data")
        assert app.seen[-1].at == start  # the connection was not held
        await channel.request("POST", "/link/token", form={"grant_type": "x"})
        assert app.seen[-1].at >= start + 2.0  # the channel waited out its own Retry-After
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "30"}))
        with pytest.raises(m.RateLimitError):
            await conn.request("POST", "/data", json={})
        before = clock.monotonic()
        await channel.request("GET", "/free")
        assert app.seen[-1].at == before

    async def test_timeouts_apply(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A slow answer to a tokenless call times out as any call does."""
        app, url = scripted
        app.delay = 2.0
        channel = make_registry(url).tokenless()
        with pytest.raises(m.RequestTimeoutError):
            await channel.request("POST", "/link/token", form={"a": "b"}, timeout=0.05)

    async def test_closed_registry_refuses(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """After aclose the channel refuses calls, and no new one is handed out."""
        app, url = scripted
        registry = make_registry(url)
        channel = registry.tokenless()
        await channel.request("GET", "/x")
        await registry.aclose()
        with pytest.raises(m.RegistryClosedError):
            await channel.request("GET", "/x")
        with pytest.raises(m.RegistryClosedError):
            registry.tokenless()
        assert len(app.seen) == 1

    async def test_redacted_body_values_never_reach_errors_or_logs(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Secrets sent in a tokenless body and echoed back are cut out of the error."""
        caplog.set_level(logging.DEBUG)
        secret = "cs_CANARY_" + uuid.uuid4().hex

        async def handler(request: web.Request) -> web.Response:
            form = await request.post()
            echoed = str(form["client_secret"])
            return envelope(401, "AUTHENTICATION_FAILED", f"bad secret {echoed}", secret=echoed)

        app = web.Application()
        app.router.add_post("/link/token", handler)
        channel = make_registry(await app_server(app)).tokenless()
        error = await failure(
            channel.request(
                "POST", "/link/token", form={"client_secret": secret}, redact=(secret, "")
            )
        )
        assert isinstance(error, m.AuthenticationError)
        assert "bad secret" in str(error)
        assert_no_leak(secret, records=caplog.records, error=error, objects=[channel])

    async def test_connections_redact_body_secrets_too(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """`redact` is the same on a connection; a bare str is refused before any I/O."""
        secret = "pw_CANARY_" + uuid.uuid4().hex

        async def handler(request: web.Request) -> web.Response:
            echoed = str((await request.post())["password"])
            return envelope(422, "VALIDATION_ERROR", f"bad password {echoed}")

        app = web.Application()
        app.router.add_post("/api/system/connections", handler)
        conn = make_registry(await app_server(app)).add("c1", "t")
        error = await failure(
            conn.request(
                "POST", "/api/system/connections", form={"password": secret}, redact=[secret]
            )
        )
        assert "bad password" in str(error)
        assert_no_leak(secret, records=[], error=error, objects=[conn])
        with pytest.raises(TypeError, match="sequence of str"):
            await conn.request("POST", "/x", form={"password": secret}, redact=secret)


# --------------------------------------------------------------------------------------------
# The token never leaks from the new paths.


class TestSecrets:
    async def test_upload_401_echoing_the_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A multipart POST refused with the token echoed fails typed; the token is nowhere."""
        caplog.set_level(logging.DEBUG)
        canary = "tok_CANARY_" + uuid.uuid4().hex
        echo = Echo(lambda auth: envelope(401, "TOKEN_EXPIRED", f"expired: {auth}", seen=auth))
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        upload = Upload(b"file", filename="f.pdf", content_type="application/pdf")
        error = await failure(
            conn.request("POST", "/api/eam/documents", form={"name": "n"}, files={"file": upload})
        )
        assert isinstance(error, m.ReauthorizationRequiredError)
        assert echo.auth == [f"Bearer {canary}"]
        assert_no_leak(
            canary, records=caplog.records, error=error, objects=[registry, conn, upload]
        )

    async def test_upload_value_errors_do_not_carry_the_token(
        self, make_registry: MakeRegistry
    ) -> None:
        """Refusals of bad uploads name the argument, never the connection's token."""
        canary = "tok_CANARY_" + uuid.uuid4().hex
        conn = make_registry("http://127.0.0.1:9", max_upload_size=1).add("c1", canary)
        with pytest.raises(ValueError, match="max_upload_size") as info:
            await conn.request("POST", "/up", files={"file": Upload(b"xx", filename="f")})
        assert_no_leak(canary, error=info.value, objects=[conn])

    def test_upload_repr_hides_the_content(self) -> None:
        """An Upload's repr shows its name and type, never its bytes."""
        canary = "CANARY_" + uuid.uuid4().hex
        upload = Upload(canary.encode(), filename="a.txt", content_type="text/plain")
        assert repr(upload) == "Upload(filename='a.txt', content_type='text/plain')"
        assert_no_leak(canary, objects=[upload])


class TestLargeBodies:
    async def test_a_body_over_a_mebibyte_is_sent_whole_without_a_warning(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """A 3 MiB body reaches the server byte for byte, and aiohttp has nothing to warn about."""
        received: list[bytes] = []

        async def handler(request: web.Request) -> web.Response:
            received.append(await request.read())
            return web.json_response({"data": {}})

        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/x", handler)
        conn = make_registry(await app_server(app)).add("c", "tok")
        content = bytes(range(256)) * (3 * 4096)
        await conn.request("POST", "/x", files={"file": Upload(content, filename="big.bin")})
        assert len(received) == 1
        assert content in received[0]
