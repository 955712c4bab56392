"""The request log: what each request sent, body included, kept for tests to assert on."""

from __future__ import annotations

import collections
import json
from typing import Final
from urllib.parse import parse_qsl

import attrs

__all__ = ["LOG_SIZE", "FormPart", "RequestLog", "RequestRecord"]

#: How many requests the log keeps; the oldest go first.
LOG_SIZE: Final = 10_000


@attrs.frozen
class FormPart:
    """One part of a ``multipart/form-data`` request body, without its content.

    Attributes:
        name: The part's form field name (``None`` if its ``Content-Disposition`` has none).
        filename: The file name of a file part, as sent; ``None`` for a plain field.
        content_type: The part's own ``Content-Type``, or ``None`` if it sent none.
        size: The length of the part's content in bytes.
        value: A text field's value (a part without a file name, of at most 64 KiB), decoded
            in the part's charset; None for files.

    .. versionadded:: 0.1.0
    """

    name: str | None
    filename: str | None
    content_type: str | None
    size: int
    value: str | None = None


@attrs.define
class RequestRecord:
    """One request as the sandbox received it, for tests to assert on.

    ``repr()`` shows neither the body nor credentials: ``Authorization``, ``Cookie`` and
    ``Proxy-Authorization`` are stored as ``[redacted]``, and the body, which carries client
    secrets on ``/link/token``, is left out. Read it through the attributes instead.

    Attributes:
        request_id: The ``X-Request-Id`` the sandbox answered with.
        method: The HTTP method, upper-case.
        path: The URL path, without the query string.
        query: The query string's pairs, in order.
        headers: The request headers, credentials redacted.
        connection: The id of the connection the bearer token opens, if any.
        idempotency_key: The ``Idempotency-Key`` header, if sent.
        time: The sandbox time the request arrived at.
        status: The status answered (``None`` while the request is being served).
        fault: The kind of the injected fault that answered it, if any.
        content_type: The body's media type without parameters, lower-case, e.g.
            ``multipart/form-data`` (the full header, boundary included, is in ``headers``);
            ``""`` if the request sent no ``Content-Type``.
        body: The first ``Sandbox(log_body_limit=...)`` bytes of the body (64 KiB by default),
            as the handlers read it, i.e. after any ``Content-Encoding`` is undone; ``b""``
            for a request without a body.
        body_size: The body's full length in bytes, or ``None`` if it was over the sandbox's
            ``max_body``: the sandbox does not read such a body (routes that take one answer 413).
        parts: The parts of a ``multipart/form-data`` body, all of them even when ``body`` was
            cut; empty for other bodies and for a multipart body that does not parse.

    .. versionadded:: 0.1.0
    """

    request_id: str
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    connection: str | None
    idempotency_key: str | None
    time: float
    status: int | None = None
    fault: str | None = None
    content_type: str = ""
    body: bytes = attrs.field(default=b"", repr=False)
    body_size: int | None = 0
    parts: tuple[FormPart, ...] = ()

    @property
    def body_truncated(self) -> bool:
        """Whether ``body`` holds less than the client sent (cut at the cap, or over max_body)."""
        return self.body_size is None or len(self.body) < self.body_size

    def json(self) -> object:
        """Decode the body as JSON, whatever its ``Content-Type`` says.

        Returns:
            The decoded value, e.g. the ``dict`` of a create.

        Raises:
            ValueError: The request had no body, the body was cut (see ``body_truncated``), or it
                is not JSON.
        """
        self._check_whole()
        if not self.body:
            raise ValueError(f"{self.method} {self.path} sent no body, so there is no JSON.")
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"The body of {self.method} {self.path} is not JSON: {exc}.") from None

    def form(self) -> list[tuple[str, str]]:
        """Decode an ``application/x-www-form-urlencoded`` body into its fields.

        Returns:
            The ``(name, value)`` pairs in the order sent (the shape of ``query``); use
            ``dict(record.form())`` when no name repeats. Empty for an empty body.

        Raises:
            ValueError: The body is another media type (a multipart form's fields are in
                ``parts``), was cut, or is not UTF-8.
        """
        if self.content_type != "application/x-www-form-urlencoded":
            raise ValueError(
                f"The body of {self.method} {self.path} is {self.content_type or 'untyped'}, "
                "not application/x-www-form-urlencoded."
            )
        self._check_whole()
        try:
            text = self.body.decode()
        except UnicodeDecodeError:
            raise ValueError(f"The form of {self.method} {self.path} is not UTF-8.") from None
        return parse_qsl(text, keep_blank_values=True)

    def _check_whole(self) -> None:
        if self.body_truncated:
            size = "more than max_body" if self.body_size is None else f"{self.body_size}"
            raise ValueError(
                f"The body of {self.method} {self.path} was cut at {len(self.body)} of {size} "
                "bytes; raise the sandbox's log_body_limit to decode it."
            )


class RequestLog:
    """The last `LOG_SIZE` requests one sandbox received, oldest first.

    Each record keeps at most ``Sandbox(log_body_limit=...)`` bytes of its body, so the log's
    memory is bounded by both.
    """

    def __init__(self, size: int = LOG_SIZE) -> None:
        self._records: collections.deque[RequestRecord] = collections.deque(maxlen=size)

    def append(self, record: RequestRecord) -> None:
        """Log a request (the oldest record goes once the log is full)."""
        self._records.append(record)

    def select(
        self, connection: str | None = None, *, path: str | None = None, method: str | None = None
    ) -> list[RequestRecord]:
        """Return the records matching every filter given, oldest first."""
        return [
            r
            for r in self._records
            if (connection is None or r.connection == connection)
            and (path is None or r.path == path)
            and (method is None or r.method == method.upper())
        ]

    def clear(self) -> None:
        """Empty the log."""
        self._records.clear()
