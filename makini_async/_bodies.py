"""Request bodies other than JSON: URL-encoded forms and ``multipart/form-data`` uploads.

Every body is encoded to bytes once, before the first attempt, so that retries and the replay
after a reconnect send exactly the same bytes. A file object is therefore read into memory once
(in a worker thread, under ``max_upload_size``) rather than streamed: a one-shot stream cannot be
re-read, and a seekable one may have been moved by the time a replay would rewind it.

Nothing a caller passes is written raw into a part's headers: field names and file names get
``"`` percent-encoded (as browsers do, WHATWG HTML "multipart/form-data encoding algorithm"),
and CR, LF, NUL, other control characters and backslashes are refused, as is a content type
that is not a plain ``type/subtype; param=value`` (aiohttp CVE-2026-34514 was a CRLF in exactly
that place).
"""

from __future__ import annotations

import asyncio
import inspect
import mimetypes
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Protocol, Self
from urllib.parse import urlencode

import attrs

__all__ = [
    "DEFAULT_MAX_UPLOAD_SIZE",
    "BinaryReadable",
    "Multipart",
    "Upload",
    "encode_form",
    "multipart",
]

#: Default cap on the file bytes of one call (every file of a multipart body together).
DEFAULT_MAX_UPLOAD_SIZE: Final = 32 * 1024 * 1024

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"

_READ_CHUNK: Final = 1024 * 1024
# Controls and the backslash: a quoted-string parser reads `\"` as an escaped quote, so a
# trailing backslash would swallow the closing quote of a parameter.
_UNSAFE_IN_PARAM: Final = re.compile(r"[\x00-\x1f\x7f\\]")
# RFC 9110 media types: token "/" token *( OWS ";" OWS token "=" ( token / quoted-string ) ).
_TCHARS: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_VALUE: Final = rf'(?:{_TCHARS}|"[^"\\\x00-\x1f\x7f]*")'
_CONTENT_TYPE: Final = re.compile(rf"{_TCHARS}/{_TCHARS}(?:[ \t]*;[ \t]*{_TCHARS}={_PARAM_VALUE})*")


class BinaryReadable(Protocol):
    """A blocking binary file object: ``open(path, "rb")``, ``io.BytesIO``, a pipe's reader.

    .. versionadded:: 0.1.0
    """

    def read(self, size: int = ..., /) -> bytes | None:
        """Up to ``size`` bytes; ``b""`` at the end (None: a non-blocking stream has none yet)."""
        ...


def _check_param(what: str, value: object) -> str:
    """A field or file name that can go into a quoted ``Content-Disposition`` parameter.

    Raises:
        TypeError: Not a str.
        ValueError: Empty, or holding a control character or a backslash.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if _UNSAFE_IN_PARAM.search(value):
        raise ValueError(
            f"{what} {value!r} contains a control character (CR, LF, NUL...) or a backslash, "
            "which cannot be sent safely in a multipart header"
        )
    _check_utf8(f"{what} {value!r}", value)
    return value


def _check_utf8(what: str, value: str) -> None:
    """Refuse a str that cannot be encoded as UTF-8 (it holds a lone surrogate).

    Raises:
        ValueError: Naming ``what`` (never quoting ``value``: form values may be secrets).
    """
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} holds a lone surrogate, which cannot be sent") from None


def _quoted(value: str) -> bytes:
    # Only `"` is left to escape once _check_param has run; UTF-8 is what browsers send.
    return b'"' + value.replace('"', "%22").encode("utf-8") + b'"'


def _check_filename(_instance: object, _attribute: attrs.Attribute[str], value: object) -> None:
    _check_param("An upload's filename", value)


def _check_content_type(_instance: object, _attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"An upload's content_type must be a str, not {type(value).__name__}")
    if not value.isascii() or not _CONTENT_TYPE.fullmatch(value):
        raise ValueError(
            f"An upload's content_type must look like 'type/subtype' (with optional "
            f"'; name=value' parameters) and hold no control characters, got {value!r}"
        )


def _check_content(
    _instance: object, _attribute: attrs.Attribute[bytes | BinaryReadable], value: object
) -> None:
    if isinstance(value, bytes | Path):
        return
    if isinstance(value, str):
        raise TypeError(
            "An upload's content must be bytes or a binary file, not str; encode it, or use "
            "Upload.from_path() for a file name"
        )
    read = getattr(value, "read", None)
    if not callable(read):
        raise TypeError(
            f"An upload's content must be bytes or a binary file object, not {type(value).__name__}"
        )
    if inspect.iscoroutinefunction(read):
        raise TypeError(
            "An upload's content must be a blocking binary file object; read an async file "
            "into bytes first"
        )


def _to_bytes(
    value: bytes | bytearray | memoryview | BinaryReadable | Path,
) -> bytes | BinaryReadable | Path:
    """Snapshot bytearray and memoryview content, so later changes do not alter the body."""
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


@attrs.frozen(slots=True)
class Upload:
    """A file to send in a ``multipart/form-data`` body.

    The content is read into memory once, when the call starts, so that a retry or the replay
    after a reconnect sends the very same bytes. A file object is read from its current position
    to its end, in a worker thread, and never rewound; one with nothing left to read is refused,
    since it was most likely used up by an earlier call (pass ``b""`` to upload an empty file).

    Args:
        content: The file's bytes, a binary file object (``open(path, "rb")``, ``BytesIO``),
            or a `pathlib.Path`, opened and read by each call (see `from_path`).
        filename: The file name the server sees. A ``"`` is sent percent-encoded, as browsers
            do; control characters (CR, LF, NUL...) and backslashes are refused.
        content_type: The part's ``Content-Type``, ``type/subtype`` with optional parameters.

    Raises:
        TypeError: Content that is neither bytes nor a binary file object, or a non-str name.
        ValueError: An empty or unsafe file name, or a malformed content type.

    .. versionadded:: 0.1.0
    """

    content: bytes | BinaryReadable | Path = attrs.field(
        repr=False, converter=_to_bytes, validator=_check_content
    )
    filename: str = attrs.field(kw_only=True, validator=_check_filename)
    content_type: str = attrs.field(
        default="application/octet-stream", kw_only=True, validator=_check_content_type
    )

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Self:
        """An upload of a file on disk, opened and read by each call that sends it.

        Every call reads the file afresh (once, in a worker thread) and closes it again, so one
        `Upload` can be sent any number of times, and no file stays open between calls.

        Args:
            path: The file.
            filename: The name the server sees (default: the file's own name).
            content_type: The part's ``Content-Type`` (default: guessed from the file name,
                ``application/octet-stream`` when it cannot be).

        Raises:
            TypeError: ``path`` is not a str or a path.
            ValueError: No regular file at ``path``, or an unsafe file name or content type.

        .. versionadded:: 0.1.0
        """
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, not {type(path).__name__}")
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"No file to upload at {str(file)!r}")
        name = file.name if filename is None else filename
        if content_type is None:
            guessed, _ = mimetypes.guess_type(name)
            content_type = guessed or "application/octet-stream"
        return cls(file, filename=name, content_type=content_type)


def _check_fields(what: str, fields: object) -> list[tuple[str, str]]:
    if not isinstance(fields, Mapping):
        raise TypeError(f"{what} must be a mapping of str to str, not {type(fields).__name__}")
    checked: list[tuple[str, str]] = []
    for key, value in fields.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"{what} names and values must be str, got {type(key).__name__} "
                f"and {type(value).__name__}"
            )
        _check_utf8(f"The {what} name {key!r}", key)
        _check_utf8(f"The {what} value of {key!r}", value)
        checked.append((key, value))
    return checked


def encode_form(form: Mapping[str, str]) -> bytes:
    """Encode an ``application/x-www-form-urlencoded`` body (UTF-8, spaces as ``+``).

    Raises:
        TypeError: Not a mapping, or a name or value that is not a str.
        ValueError: A str that cannot be encoded as UTF-8 (a lone surrogate).
    """
    return urlencode(_check_fields("form", form)).encode("ascii")


class _TooLargeError(Exception):
    """The file passed the cap (turned into a ValueError that names the cap)."""


def _read_stream(stream: BinaryReadable, limit: int) -> bytes:
    """Read a binary stream to its end, refusing to hold more than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit - size + 1))
        if chunk is None:  # a non-blocking raw stream with no data ready
            raise ValueError("The upload's file is non-blocking and had no data ready")
        if not chunk:
            break
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(
                f"The upload's file returned {type(chunk).__name__}; open it in binary mode"
            )
        size += len(chunk)
        if size > limit:
            raise _TooLargeError
        chunks.append(bytes(chunk))
    return b"".join(chunks)


def _read_path(path: Path, limit: int) -> bytes:
    """Read a whole file (an empty one is fine), refusing to hold more than ``limit`` bytes."""
    with path.open("rb") as stream:
        return _read_stream(stream, limit)


def _new_boundary(contents: list[bytes]) -> bytes:
    while True:
        boundary = b"makini-" + secrets.token_hex(16).encode("ascii")
        # A random 128-bit boundary practically never occurs in the content, but checking
        # costs one scan and makes a corrupted body impossible.
        if not any(boundary in content for content in contents):
            return boundary


class Multipart:
    """A ``multipart/form-data`` body whose arguments are checked and whose files are unread."""

    __slots__ = ("_fields", "_files")

    def __init__(self, fields: list[tuple[str, str]], files: list[tuple[str, Upload]]) -> None:
        self._fields = fields
        self._files = files

    async def encode(self, max_size: int) -> tuple[bytes, str]:
        """Read the files (each once) and encode the body.

        Returns:
            The body and its ``Content-Type`` (with the boundary).

        Raises:
            ValueError: The files together pass ``max_size`` bytes, a file object has nothing
                left to read, or reading it failed.
            TypeError: A file object opened in text mode.
        """
        contents: list[bytes] = []
        left = max_size
        for _, upload in self._files:
            data = await _read_upload(upload, left, max_size)
            left -= len(data)
            contents.append(data)
        texts = [value.encode("utf-8") for _, value in self._fields]
        boundary = _new_boundary([*texts, *contents])
        delimiter = b"--" + boundary + b"\r\n"
        chunks: list[bytes] = []
        for (name, _), text in zip(self._fields, texts, strict=True):
            disposition = b"Content-Disposition: form-data; name=" + _quoted(name)
            chunks += (delimiter, disposition, b"\r\n\r\n", text, b"\r\n")
        for (name, upload), data in zip(self._files, contents, strict=True):
            disposition = b"Content-Disposition: form-data; name=" + _quoted(name)
            disposition += b"; filename=" + _quoted(upload.filename)
            content_type = b"Content-Type: " + upload.content_type.encode("ascii")
            chunks += (delimiter, disposition, b"\r\n", content_type, b"\r\n\r\n", data, b"\r\n")
        chunks.append(b"--" + boundary + b"--\r\n")
        # One join: the body is the only copy of the files made here.
        return b"".join(chunks), "multipart/form-data; boundary=" + boundary.decode("ascii")


async def _read_upload(upload: Upload, left: int, max_size: int) -> bytes:
    """One file's bytes: as given, or read (once, in a worker thread) from its file or path.

    Raises:
        ValueError: Over the cap, a file object with nothing left to read, or a failed read.
        TypeError: A file object opened in text mode.
    """
    content = upload.content
    if isinstance(content, bytes):
        if len(content) > left:
            raise _too_large(upload, max_size)
        return content
    try:
        if isinstance(content, Path):
            return await asyncio.to_thread(_read_path, content, left)  # an empty file is fine
        data = await asyncio.to_thread(_read_stream, content, left)
    except _TooLargeError:
        raise _too_large(upload, max_size) from None
    except OSError as exc:
        raise ValueError(
            f"Reading the upload {upload.filename!r} failed ({type(exc).__name__})"
        ) from exc
    if not data:
        raise ValueError(
            f"The upload {upload.filename!r} has nothing left to read: its file was "
            "probably used up by an earlier call. Pass a fresh file object, or b'' "
            "to upload an empty file."
        )
    return data


def _too_large(upload: Upload, max_size: int) -> ValueError:
    return ValueError(
        f"The upload {upload.filename!r} takes the call past max_upload_size={max_size} bytes; "
        "nothing was sent. Raise ConnectionRegistry(max_upload_size=...) to send larger files."
    )


def multipart(form: Mapping[str, str] | None, files: Mapping[str, Upload]) -> Multipart:
    """Check a multipart body's text fields and files; nothing is read yet.

    Raises:
        TypeError: Not mappings, a non-str name or value, or a file that is not an `Upload`.
        ValueError: An empty or unsafe field name, or no file at all.
    """
    fields = [] if form is None else _check_fields("form", form)
    for name, _ in fields:
        _check_param("A form field name", name)
    if not isinstance(files, Mapping):
        raise TypeError(
            f"files must be a mapping of field name to Upload, not {type(files).__name__}"
        )
    checked: list[tuple[str, Upload]] = []
    for name, upload in files.items():
        _check_param("A file field name", name)
        if not isinstance(upload, Upload):
            raise TypeError(
                f"files[{name!r}] must be an Upload, not {type(upload).__name__}; "
                "wrap it as Upload(content, filename=...)"
            )
        checked.append((name, upload))
    if not checked:
        raise ValueError("files must hold at least one Upload; send text fields with form=")
    return Multipart(fields, checked)
