"""The machinery every service shares: filters, sorting, listing, decoding, and the verb mixins.

A service holds its connection and its collection path; a verb exists on a service only when
Makini serves it (the generated classes mix in exactly those).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeVar, cast
from urllib.parse import quote

import attrs

from makini_async._bodies import Upload
from makini_async._errors import ResponseDecodeError
from makini_async._pagination import Listing, Page, PageMeta
from makini_async.models import Entity, Material, MaterialItem, Model, Status, Writable
from makini_async.models._wire import RecordDecodeError, decode, decode_list, encode, wire_name

if TYPE_CHECKING:
    from makini_async._registry import Connection
    from makini_async._request import APIResponse
    from makini_async._transport import Timeouts
    from makini_async.typing import JSON

__all__ = [
    "Creatable",
    "Deliverable",
    "Filter",
    "FilterOp",
    "HasChildren",
    "HasInventory",
    "HasMaterials",
    "Listable",
    "Listing",
    "Namespace",
    "Retrievable",
    "Service",
    "StatusLists",
    "StatusSettable",
    "Updatable",
    "Uploadable",
    "WritableMaterials",
    "decode_one",
    "decode_page",
    "quote_key",
]

T = TypeVar("T", bound=Entity)
M = TypeVar("M", bound=Model)
W = TypeVar("W", bound=Writable)


class FilterOp(enum.StrEnum):
    """The comparison operators of Makini's ``filter[field:op]`` query syntax.

    .. versionadded:: 0.1.0
    """

    EQ = "eq"
    CONTAINS = "contains"
    STARTS_WITH = "startsWith"
    ENDS_WITH = "endsWith"
    GT = "gt"
    GTEQ = "gteq"
    LT = "lt"
    LTEQ = "lteq"


def _op(value: FilterOp | str) -> FilterOp:
    try:
        return FilterOp(value)
    except ValueError:
        known = ", ".join(op.value for op in FilterOp)
        raise ValueError(f"Unknown filter operator {value!r}; use one of {known}.") from None


@attrs.frozen(slots=True)
class Filter:
    """One condition of a listing, e.g. ``Filter("updated_at", "gt", watermark)``.

    Args:
        field: An attribute of the listed model (``updated_at``) or a wire name
            (``x_costCenter``, for custom fields).
        op: A `FilterOp` or its value (``"contains"``, ``"gteq"``...).
        value: A string, number, boolean or aware datetime.

    .. versionadded:: 0.1.0
    """

    field: str
    op: FilterOp = attrs.field(converter=_op)
    value: object


FilterMatch = Literal["all", "any"]


def quote_key(key: object) -> str:
    """Quote a record key as one path segment (``/`` and ``?`` included).

    Raises:
        TypeError: The key is not a string.
        ValueError: The key is empty.
    """
    if not isinstance(key, str):
        raise TypeError(f"A record key must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError("A record key must not be empty")
    return quote(key, safe="")


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("Filter datetimes must be timezone-aware (e.g. tzinfo=UTC)")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, str | int | float | Decimal):
        return str(value)
    raise TypeError(f"Cannot filter on a {type(value).__name__}; use a str, number or datetime")


def _field(model: type[Model], name: str) -> str:
    fields = attrs.fields_dict(model)
    return wire_name(model, name) if name in fields else name


def build_query(  # noqa: C901, PLR0912 - one flat checklist of arguments
    model: type[Model],
    *,
    where: Mapping[str, object] | Iterable[Filter] | None,
    match: FilterMatch | None,
    sort: str | Sequence[str] | None,
    modified_after: datetime | None,
    per_page: int | None,
) -> list[tuple[str, str]]:
    """Turn listing arguments into Makini's query parameters.

    Raises:
        TypeError: A value of a type the query cannot carry.
        ValueError: A bad operator, match, per_page or naive datetime.
    """
    params: list[tuple[str, str]] = []
    conditions: list[Filter]
    if where is None:
        conditions = []
    elif isinstance(where, Mapping):
        conditions = [Filter(str(name), FilterOp.EQ, value) for name, value in where.items()]
    else:
        conditions = list(where)
    for condition in conditions:
        if not isinstance(condition, Filter):
            raise TypeError("where must be a mapping of equalities or an iterable of Filter")
        name = _field(model, condition.field)
        suffix = "" if condition.op is FilterOp.EQ else f":{condition.op.value}"
        params.append((f"filter[{name}{suffix}]", _query_value(condition.value)))
    if match is not None:
        if match not in {"all", "any"}:
            raise ValueError(f"match must be 'all' or 'any', got {match!r}")
        params.append(("filterMatch", match))
    if sort is not None:
        for item in [sort] if isinstance(sort, str) else sort:
            descending = item.startswith("-")
            name = item.removeprefix("-")
            if not name:
                raise ValueError("sort names a field, e.g. '-created_at' for newest first")
            params.append((f"sort[{_field(model, name)}]", "1" if descending else "0"))
    if modified_after is not None:
        params.append(("modified_after", _query_value(modified_after)))
    if per_page is not None:
        if type(per_page) is not int or per_page < 1:
            raise ValueError(f"per_page must be an int >= 1, got {per_page!r}")
        params.append(("per_page", str(per_page)))
    return params


# -- decoding ---------------------------------------------------------------------------------


def _decode_error(problem: str, response: APIResponse, call: str) -> ResponseDecodeError:
    return ResponseDecodeError(
        f"{problem} ({call})", status=response.status, request_id=response.request_id
    )


def _int(value: object, default: int | None) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return default


def decode_page(response: APIResponse, model: type[M], number: int, call: str) -> Page[M]:
    """Decode a list response into a `Page`.

    Raises:
        ResponseDecodeError: Not a list envelope, or a record of the wrong shape (the message
            names the path, e.g. ``$.data[3].dueAt``).
    """
    body = response.data
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise _decode_error("Expected a list response with a 'data' array", response, call)
    try:
        records = decode_list(body["data"], model, ".data")
    except RecordDecodeError as exc:
        raise _decode_error(f"Unexpected value: {exc}", response, call) from None
    raw_meta = body.get("meta")
    meta_in: Mapping[str, JSON] = raw_meta if isinstance(raw_meta, dict) else {}
    current = _int(meta_in.get("current_page"), number) or number
    meta = PageMeta(
        current_page=current,
        last_page=_int(meta_in.get("last_page"), current) or current,
        per_page=_int(meta_in.get("per_page"), None),
        total=_int(meta_in.get("total"), None),
        first_index=_int(meta_in.get("from"), None),
        last_index=_int(meta_in.get("to"), None),
    )
    raw_links = body.get("links")
    links = (
        {str(k): v if isinstance(v, str) else None for k, v in raw_links.items()}
        if isinstance(raw_links, dict)
        else {}
    )
    return Page(records=tuple(records), meta=meta, links=links, request_id=response.request_id)


def decode_one(response: APIResponse, model: type[M], call: str) -> M:
    """Decode a ``{"data": {...}}`` response into ``model``.

    Raises:
        ResponseDecodeError: Not a record envelope, or a field of the wrong type.
    """
    body = response.data
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise _decode_error("Expected a response with a 'data' object", response, call)
    try:
        return decode(body["data"], model, ".data")
    except RecordDecodeError as exc:
        raise _decode_error(f"Unexpected value: {exc}", response, call) from None


# -- services ---------------------------------------------------------------------------------


class Service:
    """One collection of one connection (e.g. ``conn.eam.work_orders``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_conn",)
    _path: ClassVar[str] = ""
    _model: ClassVar[type[Entity]] = Entity
    _status_field: ClassVar[str] = "status"

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path} of {self._conn.id!r}>"

    def _listing(
        self,
        path: str,
        model: type[M],
        params: list[tuple[str, str]],
        *,
        page: int = 1,
        max_pages: int | None = None,
        prefetch: int = 0,
        timeout: Timeouts | float | None = None,
    ) -> Listing[M]:
        connection = self._conn

        async def fetch(number: int) -> Page[M]:
            response = await connection.request(
                "GET", path, params=[*params, ("page", str(number))], timeout=timeout
            )
            return decode_page(response, model, number, f"GET {path}")

        return Listing(fetch, page=page, max_pages=max_pages, prefetch=prefetch)

    def _sublist(self, tail: str, model: type[M], per_page: int | None) -> Listing[M]:
        path = self._path.rsplit("/", 1)[0] + "/" + tail
        params = build_query(
            model, where=None, match=None, sort=None, modified_after=None, per_page=per_page
        )
        return self._listing(path, model, params)

    async def _write(
        self,
        method: str,
        path: str,
        body: JSON,
        model: type[M],
        *,
        idempotency_key: str | None,
        timeout: Timeouts | float | None,
    ) -> M:
        response = await self._conn.request(
            method, path, json=body, idempotency_key=idempotency_key, timeout=timeout
        )
        return decode_one(response, model, f"{method} {path}")


def _body(body: Writable | Mapping[str, JSON]) -> JSON:
    if isinstance(body, Writable):
        return cast("JSON", encode(body))
    if isinstance(body, Mapping):
        return dict(body)
    raise TypeError(f"A write body is a model input or a mapping, not {type(body).__name__}")


class Listable(Service, Generic[T]):
    """A service with ``list()``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def list(
        self,
        *,
        where: Mapping[str, object] | Iterable[Filter] | None = None,
        match: FilterMatch | None = None,
        sort: str | Sequence[str] | None = None,
        modified_after: datetime | None = None,
        per_page: int | None = None,
        page: int = 1,
        max_pages: int | None = None,
        prefetch: int = 0,
        timeout: Timeouts | float | None = None,
    ) -> Listing[T]:
        """List records, following page numbers to the end.

        Args:
            where: Equalities (``{"status": "open"}``) or `Filter` conditions; fields are model
                attributes (``updated_at``) or wire names (custom fields).
            match: ``"all"`` (AND, the default) or ``"any"`` (OR) of the conditions.
            sort: Attribute names, ``-`` first for descending (``"-updated_at"``).
            modified_after: Only records changed after this aware datetime.
            per_page: Records per page (the server's default when None).
            page: The page to start from (to resume a listing).
            max_pages: Stop after this many pages.
            prefetch: Pages fetched concurrently once the last page is known (0: none).
            timeout: Per-request timeout.

        Returns:
            A `Listing`: ``async for record in ...``, or ``.pages()`` for pages with ``meta``.

        Raises:
            TypeError: A filter value of the wrong type (at once, before any I/O).
            ValueError: A bad operator, match, per_page or page (at once).

        .. versionadded:: 0.1.0
        """
        model = cast("type[T]", self._model)
        params = build_query(
            model,
            where=where,
            match=match,
            sort=sort,
            modified_after=modified_after,
            per_page=per_page,
        )
        return self._listing(
            self._path,
            model,
            params,
            page=page,
            max_pages=max_pages,
            prefetch=prefetch,
            timeout=timeout,
        )


class Retrievable(Service, Generic[T]):
    """A service with ``get(key)``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def get(self, key: str, *, timeout: Timeouts | float | None = None) -> T:
        """Fetch one record by its key.

        Args:
            key: The record's key (quoted as one path segment).
            timeout: Per-request timeout.

        Returns:
            The record.

        Raises:
            NotFoundError: No such record.
            ResponseDecodeError: The record does not fit the model.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}"
        response = await self._conn.request("GET", path, timeout=timeout)
        return decode_one(response, cast("type[T]", self._model), f"GET {path}")


class Uploadable(Service, Generic[T]):
    """A service whose records are created by uploading a file (``multipart/form-data``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def upload(
        self,
        file: Upload,
        *,
        name: str | None = None,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
    ) -> T:
        """Upload a file as a new record: a ``multipart/form-data`` POST of ``file`` and ``name``.

        The file is read into memory once, when the call starts (at most the registry's
        ``max_upload_size`` bytes), so a reconnect after a 401 replays exactly the same body.
        Like every POST, the upload is retried only after a connect error (nothing was sent)
        or when ``idempotency_key`` is given.

        Args:
            file: The `Upload`: content, file name and content type.
            name: The record's name (default: the file name).
            idempotency_key: Makes the POST safe to retry (sent as ``Idempotency-Key``).
            timeout: Per-request timeout.

        Returns:
            The new record, as the server answered it; ``get(record.key)`` reads it back.

        Raises:
            ValidationError: 422, e.g. no file part.
            OperationNotSupportedError: The source system cannot store documents.
            TypeError: ``file`` is not an `Upload`, or ``name`` is not a str (before any I/O).
            ValueError: An empty ``name``, or a file over ``max_upload_size`` (before any I/O).

        .. versionadded:: 0.1.0
        """
        if not isinstance(file, Upload):
            raise TypeError(
                f"file must be an Upload, not {type(file).__name__}; "
                "wrap it as Upload(content, filename=...)"
            )
        if name is None:
            name = file.filename
        elif not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        elif not name:
            raise ValueError("name must not be empty; leave it out to use the file name")
        response = await self._conn.request(
            "POST",
            self._path,
            form={"name": name},
            files={"file": file},
            idempotency_key=idempotency_key,
            timeout=timeout,
        )
        return decode_one(response, cast("type[T]", self._model), f"POST {self._path}")


class Creatable(Service, Generic[T, W]):
    """A service with ``create(body)``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def create(
        self,
        body: W | Mapping[str, JSON],
        *,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
    ) -> T:
        """Create a record; only the fields set on ``body`` are sent.

        Args:
            body: The model's ``...Input`` (or a mapping of wire names to JSON values).
            idempotency_key: Makes the POST safe to retry (sent as ``Idempotency-Key``).
            timeout: Per-request timeout.

        Returns:
            The created record, as the server answered it.

        Raises:
            ValidationError: 422; ``fields`` maps wire field names to messages.
            OperationNotSupportedError: The source system cannot do this write.

        .. versionadded:: 0.1.0
        """
        return await self._write(
            "POST",
            self._path,
            _body(body),
            cast("type[T]", self._model),
            idempotency_key=idempotency_key,
            timeout=timeout,
        )


class Updatable(Service, Generic[T, W]):
    """A service with ``update(key, body)``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def update(
        self,
        key: str,
        body: W | Mapping[str, JSON],
        *,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
    ) -> T:
        """Update a record; only the fields set on ``body`` are sent.

        Args:
            key: The record's key.
            body: The model's ``...Input`` (or a mapping of wire names to JSON values).
            idempotency_key: Makes the PUT safe to retry.
            timeout: Per-request timeout.

        Returns:
            The updated record.

        Raises:
            ValidationError: 422; ``fields`` maps wire field names to messages.
            NotFoundError: No such record.

        .. versionadded:: 0.1.0
        """
        return await self._write(
            "PUT",
            f"{self._path}/{quote_key(key)}",
            _body(body),
            cast("type[T]", self._model),
            idempotency_key=idempotency_key,
            timeout=timeout,
        )


class StatusSettable(Service, Generic[T]):
    """A service with ``set_status(key, status)``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def set_status(
        self,
        key: str,
        status: str,
        *,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
    ) -> T:
        """Move a record to another status (work orders take a status key).

        Args:
            key: The record's key.
            status: The new status (for work orders a key from ``statuses.work_orders``).
            idempotency_key: Makes the PUT safe to retry.
            timeout: Per-request timeout.

        Returns:
            The updated record.

        Raises:
            ValidationError: 422, e.g. an unknown status.

        .. versionadded:: 0.1.0
        """
        if not status:
            raise ValueError("status must be a non-empty str")
        return await self._write(
            "PUT",
            f"{self._path}/{quote_key(key)}/status",
            {self._status_field: status},
            cast("type[T]", self._model),
            idempotency_key=idempotency_key,
            timeout=timeout,
        )


class HasMaterials(Service):
    """A service whose records list materials (``GET /{key}/materials``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def materials(
        self, key: str, *, per_page: int | None = None, prefetch: int = 0
    ) -> Listing[MaterialItem]:
        """List the materials of one record.

        Args:
            key: The record's key.
            per_page: Records per page.
            prefetch: Pages fetched concurrently.

        Returns:
            A `Listing` of `MaterialItem`.

        .. versionadded:: 0.1.0
        """
        params = build_query(
            MaterialItem, where=None, match=None, sort=None, modified_after=None, per_page=per_page
        )
        path = f"{self._path}/{quote_key(key)}/materials"
        return self._listing(path, MaterialItem, params, prefetch=prefetch)


class WritableMaterials(Service, Generic[T]):
    """Work orders: add a material, or change one (``POST``/``PUT /{key}/materials``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def add_material(
        self,
        key: str,
        body: Mapping[str, JSON],
        *,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
    ) -> T:
        """Add a material to a record.

        Args:
            key: The record's key.
            body: ``materialKey``, ``storeroomKey``, ``requiredQuantity``, ``usedQuantity``.
            idempotency_key: Makes the POST safe to retry.
            timeout: Per-request timeout.

        Returns:
            The updated parent record (its ``material_count`` moves on).

        Raises:
            ValidationError: 422, e.g. a missing quantity.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}/materials"
        model = cast("type[T]", self._model)
        return await self._write(
            "POST", path, _body(body), model, idempotency_key=idempotency_key, timeout=timeout
        )

    async def update_material(
        self,
        key: str,
        material_key: str,
        body: Mapping[str, JSON],
        *,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
    ) -> T:
        """Change a material of a record.

        Args:
            key: The record's key.
            material_key: The material's key.
            body: The fields to change (wire names).
            idempotency_key: Makes the PUT safe to retry.
            timeout: Per-request timeout.

        Returns:
            The updated parent record.

        Raises:
            ValidationError: 422.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}/materials/{quote_key(material_key)}"
        model = cast("type[T]", self._model)
        return await self._write(
            "PUT", path, _body(body), model, idempotency_key=idempotency_key, timeout=timeout
        )


class HasChildren(Service):
    """Materials: the bill-of-materials children (``GET /{key}/children``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def children(self, key: str, *, per_page: int | None = None) -> Listing[MaterialItem]:
        """List the children of one material.

        Args:
            key: The material's key.
            per_page: Records per page.

        Returns:
            A `Listing` of `MaterialItem`.

        .. versionadded:: 0.1.0
        """
        params = build_query(
            MaterialItem, where=None, match=None, sort=None, modified_after=None, per_page=per_page
        )
        path = f"{self._path}/{quote_key(key)}/children"
        return self._listing(path, MaterialItem, params)


class HasInventory(Service):
    """Materials: set a material's inventory (``PUT /{key}/inventory``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def update_inventory(
        self,
        key: str,
        body: Mapping[str, JSON],
        *,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
    ) -> Material:
        """Set a material's inventory.

        Args:
            key: The material's key.
            body: ``code``, ``name``, ``quantity``, ``unitCost``, ``locationKey``.
            idempotency_key: Makes the PUT safe to retry.
            timeout: Per-request timeout.

        Returns:
            The material, with its new ``inventory``.

        Raises:
            ValidationError: 422.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}/inventory"
        return await self._write(
            "PUT", path, _body(body), Material, idempotency_key=idempotency_key, timeout=timeout
        )


class Deliverable(Service, Generic[T]):
    """Shipment orders: mark one delivered (``POST /{key}/delivered``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def mark_delivered(
        self,
        key: str,
        *,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
    ) -> T:
        """Mark a shipment order delivered.

        Args:
            key: The shipment order's key.
            idempotency_key: Makes the POST safe to retry.
            timeout: Per-request timeout.

        Returns:
            The shipment order, as the server answered it.

        Raises:
            NotFoundError: No such record.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}/delivered"
        model = cast("type[T]", self._model)
        return await self._write(
            "POST", path, {}, model, idempotency_key=idempotency_key, timeout=timeout
        )


class StatusLists:
    """The status lists of one API (``/api/eam/statuses/work-orders``...).

    Use ``conn.eam.statuses.list("work-orders")``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_conn", "_domain", "entities")

    def __init__(self, connection: Connection, domain: str, entities: tuple[str, ...]) -> None:
        self._conn = connection
        self._domain = domain
        #: The entities with a status list, e.g. ``("purchase-orders", "work-orders")``.
        self.entities = entities

    def list(self, entity: str, *, per_page: int | None = None) -> Listing[Status]:
        """List the statuses an entity's records can take.

        Args:
            entity: The entity's path name, e.g. ``"work-orders"``.
            per_page: Records per page.

        Returns:
            A `Listing` of `Status` records.

        Raises:
            ValueError: The API has no status list for that entity.

        .. versionadded:: 0.1.0
        """
        if entity not in self.entities:
            raise ValueError(f"No status list for {entity!r}; use one of {list(self.entities)}")
        params = build_query(
            Status, where=None, match=None, sort=None, modified_after=None, per_page=per_page
        )
        path = f"/api/{self._domain}/statuses/{entity}"
        service = Service(self._conn)
        return service._listing(path, Status, params)  # noqa: SLF001 - the same machinery


class Namespace:
    """The resources of one API on one connection (``conn.eam``, ``conn.erp``, ``conn.wms``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_conn", "_services")

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._services: dict[type, object] = {}

    def _service(self, cls: type[S]) -> S:
        found = self._services.get(cls)
        if found is None:
            found = self._services[cls] = cls(self._conn)
        return cast("S", found)

    def _statuses(self, entities: tuple[str, ...]) -> StatusLists:
        domain = type(self).__name__.lower()
        return StatusLists(self._conn, domain, entities)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._conn.id!r}>"


S = TypeVar("S", bound=Service)
