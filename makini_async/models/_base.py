"""Base classes and shared value types of the typed models.

Models know nothing about JSON: the wire names and the decoding rules live in ``_wire``. The one
exception is `RawPage`: a record decoded straight from a list response's bytes keeps a reference
to them instead of its decoded dict, and `Model.raw` decodes them the first time it is read.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeAlias, cast

import attrs

from makini_async import _json

if TYPE_CHECKING:
    from makini_async.typing import JSON

__all__ = ["EMPTY", "UNSET", "Entity", "Level", "Model", "RawPage", "RawRef", "Unset", "Writable"]

#: The read-only empty mapping every record without extra fields shares.
EMPTY: Final[Mapping[str, JSON]] = MappingProxyType({})

#: Where a lazily kept raw record is: ``(page, index)`` for a record of a `RawPage`,
#: ``(parent, key)`` for an object in a field of another, ``(parent, key, index)`` for one in a
#: list field (``parent`` being the other object's ref).
RawRef: TypeAlias = "tuple[object, ...]"


class RawPage:
    """The body of a list response whose records were decoded straight from its bytes.

    The records keep a `RawRef` to it rather than a decoded dict each; the first `Model.raw`
    read decodes the body (once, for the whole page).
    """

    __slots__ = ("_body", "_decoded")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._decoded: JSON = None

    def body(self) -> JSON:
        """The decoded body (decoded on the first call)."""
        decoded = self._decoded
        if decoded is None:
            decoded = self._decoded = cast("JSON", _json.decode_plain(self._body))
        return decoded

    def record(self, index: int) -> JSON:
        """The decoded record at ``index`` of the body's ``data`` array."""
        return cast("dict[str, list[JSON]]", self.body())["data"][index]


def _resolve(ref: RawRef) -> Mapping[str, JSON]:
    """The decoded object a `RawRef` points at."""
    head = ref[0]
    if isinstance(head, RawPage):
        return cast("Mapping[str, JSON]", head.record(cast("int", ref[1])))
    value = _resolve(cast("RawRef", head))[cast("str", ref[1])]
    if len(ref) == 3:  # noqa: PLR2004 - (parent, key, index)
        value = cast("list[JSON]", value)[cast("int", ref[2])]
    return cast("Mapping[str, JSON]", value)


class Level(enum.StrEnum):
    """A severity, priority or criticality level.

    Fields typed ``Level | str`` hold a `Level` for the four known values and the plain string
    for any other value a source system sends.

    .. versionadded:: 0.1.0
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Unset(enum.Enum):
    """The type of `UNSET`: a write field the caller did not set (and that is not sent).

    .. versionadded:: 0.1.0
    """

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


#: The default of every write field: not sent. ``None`` is sent as JSON null.
UNSET: Final = Unset.UNSET


@attrs.frozen(slots=True, kw_only=True)
class Model:
    """The base of every decoded object: the fields a model does not know, and the raw dict.

    Attributes:
        extra: Fields the model does not know (e.g. a customer's custom fields), read-only,
            under their wire names.
        invalid: The values that did not fit their field's declared type, under their wire
            names, exactly as received (the attribute itself reads None, or ``()`` for a
            list). Empty for a record whose every value fits. See the models' docstring for
            what fits.
        raw: The record exactly as decoded from JSON, read-only.

    .. versionadded:: 0.1.0
    """

    extra: Mapping[str, JSON] = attrs.field(default=EMPTY, hash=False, repr=False)
    # The decoded dict itself (the argument ``raw``), or a `RawRef` into the page's bytes for a
    # record decoded straight from them; `raw` wraps it read-only when asked, so that decoding a
    # record allocates no proxy for it.
    _raw: Mapping[str, JSON] | RawRef = attrs.field(default=EMPTY, eq=False, hash=False, repr=False)
    invalid: Mapping[str, JSON] = attrs.field(default=EMPTY, hash=False, repr=False)

    @property
    def raw(self) -> Mapping[str, JSON]:
        """The record exactly as decoded from JSON, read-only."""
        raw = self._raw
        if isinstance(raw, tuple):
            raw = _resolve(raw)
            object.__setattr__(self, "_raw", raw)  # decoded once; the record stays frozen
        return raw if raw.__class__ is MappingProxyType else MappingProxyType(raw)


@attrs.frozen(slots=True, kw_only=True)
class Entity(Model):
    """The base of every record a resource lists: the standard fields of both record shapes.

    The v3 shape names a record by ``key`` and stamps it with ``createdAt``/``updatedAt``/
    ``deletedAt``; the v4 shape adds ``id``, ``_idValue``, ``_displayValue``, ``_implements``
    and the ``_createdAt``/``_updatedAt``/``_deletedAt`` stamps. Both decode into these
    attributes (the v3 stamp wins when both are present).

    Attributes:
        key: The record's opaque key (v3), used in paths.
        id: The Makini UUID (v4).
        id_value: The source system's own id, e.g. ``WO-10042`` (v4).
        display_value: A human label (v4).
        implements: The unified interface the record implements (v4).
        created_at: When the record was created.
        updated_at: When the record last changed.
        deleted_at: When the record was (soft-)deleted; None while it is live.

    .. versionadded:: 0.1.0
    """

    key: str | None = None
    id: str | None = None
    id_value: str | None = None
    display_value: str | None = None
    implements: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None


@attrs.frozen(slots=True, kw_only=True)
class Writable:
    """The base of write bodies: only the fields the caller set are sent.

    Attributes:
        extra: More fields to send as they are, under their wire names (custom fields).

    .. versionadded:: 0.1.0
    """

    extra: Mapping[str, JSON] = attrs.field(default=EMPTY, hash=False)


#: Annotation alias used by the generated models for free-form JSON values.
RawJSON: TypeAlias = "JSON"
