"""The verbs of the services: a mixin per verb, combined by the generated classes.

A verb exists on a service only when Makini serves it: the generated classes mix in exactly
those. `StatusLists` and `Namespace` (``conn.eam``) sit beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from makini_async._bodies import Upload
from makini_async._pagination import Listing
from makini_async._requester import Requester
from makini_async.models import Entity, Material, MaterialItem, Status, Writable

from ._query import Filter, FilterMatch, FilterOp, build_query, quote_key
from ._service import (
    Service,
    body_of,
    collection_of,
    decode_one,
    decode_page,
    is_incremental,
    listing,
    strictness,
)

if TYPE_CHECKING:
    from makini_async._transport import Timeouts
    from makini_async._types import JSON

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
    "Requester",
    "Retrievable",
    "Service",
    "StatusLists",
    "StatusSettable",
    "Updatable",
    "Uploadable",
    "WritableMaterials",
    "collection_of",
    "decode_one",
    "decode_page",
    "is_incremental",
    "listing",
    "quote_key",
]

T = TypeVar("T", bound=Entity)
W = TypeVar("W", bound=Writable)


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
        deadline: float | None = None,
        strict: bool | None = None,
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
            deadline: Seconds for the whole listing, every page and retry included, counted
                from its first request.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

        Returns:
            A `Listing`: ``async for record in ...``, or ``.pages()`` for pages with ``meta``.

        Raises:
            TypeError: A filter value of the wrong type, or a non-number deadline (at once,
                before any I/O).
            ValueError: A bad operator, match, per_page, page or deadline (at once).

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
        return listing(
            self._conn,
            self._path,
            model,
            params,
            page=page,
            max_pages=max_pages,
            prefetch=prefetch,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
        )


class Retrievable(Service, Generic[T]):
    """A service with ``get(key)``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def get(
        self,
        key: str,
        *,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> T:
        """Fetch one record by its key.

        Args:
            key: The record's key (quoted as one path segment).
            timeout: Per-request timeout.
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

        Returns:
            The record.

        Raises:
            NotFoundError: No such record.
            ResponseDecodeError: The record does not fit the model.

        .. versionadded:: 0.1.0
        """
        strictly = strictness(self._conn, strict)
        path = f"{self._path}/{quote_key(key)}"
        response = await self._conn.request("GET", path, timeout=timeout, deadline=deadline)
        model = cast("type[T]", self._model)
        return decode_one(response, model, f"GET {path}", strict=strictly)


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
        deadline: float | None = None,
        strict: bool | None = None,
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
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

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
        strictly = strictness(self._conn, strict)
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
            deadline=deadline,
        )
        model = cast("type[T]", self._model)
        return decode_one(response, model, f"POST {self._path}", strict=strictly)


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
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> T:
        """Create a record; only the fields set on ``body`` are sent.

        Args:
            body: The model's ``...Input`` (or a mapping of wire names to JSON values).
            idempotency_key: Makes the POST safe to retry (sent as ``Idempotency-Key``).
            timeout: Per-request timeout.
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

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
            body_of(body),
            cast("type[T]", self._model),
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
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
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> T:
        """Update a record; only the fields set on ``body`` are sent.

        Args:
            key: The record's key.
            body: The model's ``...Input`` (or a mapping of wire names to JSON values).
            idempotency_key: Makes the PUT safe to retry.
            timeout: Per-request timeout.
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

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
            body_of(body),
            cast("type[T]", self._model),
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
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
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> T:
        """Move a record to another status (work orders take a status key).

        Args:
            key: The record's key.
            status: The new status (for work orders a key from ``statuses.work_orders``).
            idempotency_key: Makes the PUT safe to retry.
            timeout: Per-request timeout.
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

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
            deadline=deadline,
            strict=strict,
        )


class HasMaterials(Service):
    """A service whose records list materials (``GET /{key}/materials``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def materials(
        self,
        key: str,
        *,
        per_page: int | None = None,
        prefetch: int = 0,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> Listing[MaterialItem]:
        """List the materials of one record.

        Args:
            key: The record's key.
            per_page: Records per page.
            prefetch: Pages fetched concurrently.
            timeout: Per-request timeout.
            deadline: Seconds for the whole listing, from its first request.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

        Returns:
            A `Listing` of `MaterialItem`.

        .. versionadded:: 0.1.0
        """
        params = build_query(
            MaterialItem, where=None, match=None, sort=None, modified_after=None, per_page=per_page
        )
        path = f"{self._path}/{quote_key(key)}/materials"
        return listing(
            self._conn,
            path,
            MaterialItem,
            params,
            prefetch=prefetch,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
        )


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
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> T:
        """Add a material to a record.

        Args:
            key: The record's key.
            body: ``materialKey``, ``storeroomKey``, ``requiredQuantity``, ``usedQuantity``.
            idempotency_key: Makes the POST safe to retry.
            timeout: Per-request timeout.
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

        Returns:
            The updated parent record (its ``material_count`` moves on).

        Raises:
            ValidationError: 422, e.g. a missing quantity.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}/materials"
        model = cast("type[T]", self._model)
        return await self._write(
            "POST",
            path,
            body_of(body),
            model,
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
        )

    async def update_material(
        self,
        key: str,
        material_key: str,
        body: Mapping[str, JSON],
        *,
        idempotency_key: str | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> T:
        """Change a material of a record.

        Args:
            key: The record's key.
            material_key: The material's key.
            body: The fields to change (wire names).
            idempotency_key: Makes the PUT safe to retry.
            timeout: Per-request timeout.
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

        Returns:
            The updated parent record.

        Raises:
            ValidationError: 422.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}/materials/{quote_key(material_key)}"
        model = cast("type[T]", self._model)
        return await self._write(
            "PUT",
            path,
            body_of(body),
            model,
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
        )


class HasChildren(Service):
    """Materials: the bill-of-materials children (``GET /{key}/children``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def children(
        self,
        key: str,
        *,
        per_page: int | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> Listing[MaterialItem]:
        """List the children of one material.

        Args:
            key: The material's key.
            per_page: Records per page.
            timeout: Per-request timeout.
            deadline: Seconds for the whole listing, from its first request.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

        Returns:
            A `Listing` of `MaterialItem`.

        .. versionadded:: 0.1.0
        """
        params = build_query(
            MaterialItem, where=None, match=None, sort=None, modified_after=None, per_page=per_page
        )
        path = f"{self._path}/{quote_key(key)}/children"
        return listing(
            self._conn,
            path,
            MaterialItem,
            params,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
        )


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
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> Material:
        """Set a material's inventory.

        Args:
            key: The material's key.
            body: ``code``, ``name``, ``quantity``, ``unitCost``, ``locationKey``.
            idempotency_key: Makes the PUT safe to retry.
            timeout: Per-request timeout.
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

        Returns:
            The material, with its new ``inventory``.

        Raises:
            ValidationError: 422.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}/inventory"
        return await self._write(
            "PUT",
            path,
            body_of(body),
            Material,
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
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
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> T:
        """Mark a shipment order delivered.

        Args:
            key: The shipment order's key.
            idempotency_key: Makes the POST safe to retry.
            timeout: Per-request timeout.
            deadline: Seconds for the whole call, retries included.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

        Returns:
            The shipment order, as the server answered it.

        Raises:
            NotFoundError: No such record.

        .. versionadded:: 0.1.0
        """
        path = f"{self._path}/{quote_key(key)}/delivered"
        model = cast("type[T]", self._model)
        return await self._write(
            "POST",
            path,
            {},
            model,
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline=deadline,
            strict=strict,
        )


class StatusLists:
    """The status lists of one API (``/api/eam/statuses/work-orders``...).

    Use ``conn.eam.statuses.list("work-orders")``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_conn", "_domain", "entities")

    def __init__(self, connection: Requester, domain: str, entities: tuple[str, ...]) -> None:
        self._conn = connection
        self._domain = domain
        #: The entities with a status list, e.g. ``("purchase-orders", "work-orders")``.
        self.entities = entities

    def list(
        self,
        entity: str,
        *,
        per_page: int | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
        strict: bool | None = None,
    ) -> Listing[Status]:
        """List the statuses an entity's records can take.

        Args:
            entity: The entity's path name, e.g. ``"work-orders"``.
            per_page: Records per page.
            timeout: Per-request timeout.
            deadline: Seconds for the whole listing, from its first request.
            strict: Raise `ResponseDecodeError` for a value that does not fit its field,
                instead of keeping it in the record's ``invalid`` (None: the
                connection's ``strict``).

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
        return listing(
            self._conn, path, Status, params, timeout=timeout, deadline=deadline, strict=strict
        )


class Namespace:
    """The resources of one API on one connection (``conn.eam``, ``conn.erp``, ``conn.wms``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_conn", "_services")

    def __init__(self, connection: Requester) -> None:
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
        return f"<{type(self).__name__} of {getattr(self._conn, 'id', None)!r}>"


S = TypeVar("S", bound=Service)
