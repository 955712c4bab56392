"""List pages decoded straight from their bytes into records, with msgspec (the ``speedups`` extra).

Without msgspec nothing here runs: `page_decoder` returns None and pages take the reference path
(`_json`, then the structure functions of `_wire` and `_tolerant`). With it, a page body is
parsed by msgspec into private *wire structs*, one per model with a field per wire name, and
generated functions turn those into the models by running the reference path's own conversion
code on each field. Both paths give equal records: the fast path only takes what it can decode
exactly as the reference path does, and declines the rest of a page otherwise.

Each wire field starts *precise*: text, timestamps with a zone, integers, booleans and lists of
strings are typed so that msgspec reads each value exactly as the record stores it (one
attribute store, no conversion); decimals and open enums take the JSON types whose conversion
needs no tolerance (a decimal string is parsed by msgspec itself). When a page does not fit, the
field to blame is adapted for good, and the page decoded again:

- a field typed to be stored as read is *widened* when it gets another JSON type the reference
  path converts (a numeric id in a text field, a naive timestamp, a numeric string for an
  integer, a lone string for a list): it takes those too, and the reference path's own lines
  convert them;
- any other field that got a value it does not take, or whose conversion refused the value, is
  *loosened*: msgspec keeps its raw JSON, which the reference path's decoder and tolerant
  conversion then read, so a value that does not fit lands in ``invalid`` as on the reference
  path;
- a key the model does not know is *learned* (up to `_MAX_EXTRAS` per model) and read into
  ``extra``.

So a customer's odd field or custom field costs one more attempt, once, and a little per record
after that. What cannot be adapted (malformed JSON, an integer past 64 bits, which orjson reads as
a float, a record that is not an object, too many adaptations) is left to the reference path.

The records' ``raw`` is not built: each keeps a `RawRef` into the page's bytes, decoded on the
first read of ``raw``.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Final, cast

import attrs

from makini_async import _json
from makini_async._optional import LazyModule, installed

from ._base import Model, RawPage
from ._tolerant import invalid_count, keep_invalid, tolerant_function
from ._wire import (
    compile_source,
    decoded_fields,
    environment,
    field_source,
    resolve_type,
    store,
    wire_names,
)

if TYPE_CHECKING:
    import msgspec

    from makini_async.typing import JSON
else:  # imported when the first typed page is decoded, not with the package
    msgspec = LazyModule("msgspec")

__all__ = ["AVAILABLE", "TypedPage", "forget_adaptations", "page_decoder", "set_enabled"]

#: Whether msgspec is installed (and list pages are decoded from their bytes).
AVAILABLE: Final = installed("msgspec")

_NESTED_MANY: Final = re.compile(r"^tuple\[(\w+), \.\.\.\]$")
_NESTED_ONE: Final = re.compile(r"^(\w+) \| None$")
_OPEN_ENUM: Final = re.compile(r"^(\w+) \| str \| None$")
_AT: Final = re.compile(r" - at `\$(.*)`$")
_SEGMENT: Final = re.compile(r"\.([^.\[]+)|\[\d+\]")
_UNKNOWN: Final = re.compile(r"^Object contains unknown field `(.*)`$", re.DOTALL)
_GOT_INT: Final = "got `int`"
#: Unknown keys learned per model; a model whose records carry more takes the reference path.
_MAX_EXTRAS: Final = 32
#: Adaptations tried while decoding one page before it is left to the reference path.
_MAX_TRIES: Final = 16
_PRECISE, _WIDE, _LOOSE = 0, 1, 2
_Convert = Callable[[object, object], Model]


class TypedPage(Mapping[str, "JSON"]):
    """A list body decoded straight into records; as a mapping it reads as the JSON body.

    Attributes:
        model: The records' model.
        records: The records, in order.
        meta: The body's ``meta``, decoded.
        links: The body's ``links``, decoded.
        tainted: Whether a value did not fit (and was kept in a record's ``invalid``).
    """

    __slots__ = ("_page", "links", "meta", "model", "records", "tainted")

    def __init__(
        self,
        model: type[Model],
        records: list[Model],
        meta: JSON,
        links: JSON,
        page: RawPage,
        *,
        tainted: bool,
    ) -> None:
        self.model = model
        self.records = records
        self.meta = meta
        self.links = links
        self.tainted = tainted
        self._page = page

    def json(self) -> dict[str, JSON]:
        """The body as decoded JSON (decoded on the first call)."""
        return cast("dict[str, JSON]", self._page.body())

    def __getitem__(self, key: str) -> JSON:
        return self.json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.json())

    def __len__(self) -> int:
        return len(self.json())

    def __repr__(self) -> str:
        return f"<TypedPage of {len(self.records)} {self.model.__name__}>"


class _Misfit(Exception):  # noqa: N818 - a signal between the converters and the decoder
    """A converter refused the value of ``cls``'s field ``wire``."""

    def __init__(self, cls: type, wire: str) -> None:
        super().__init__(cls, wire)
        self.cls = cls
        self.wire = wire


def _whole() -> Any:  # noqa: ANN401 - a type expression, combined with | by the callers
    """Integers orjson keeps as integers (it reads those past 64 bits as floats), for msgspec."""
    return Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


@functools.cache
def _stored_types() -> dict[str, object]:
    """The precise wire types whose values msgspec reads exactly as the records store them."""
    whole = _whole()
    return {
        "str | None": str | None,
        # A naive timestamp is UTC to the reference path: it widens the field.
        "datetime | None": Annotated[datetime, msgspec.Meta(tz=True)] | None,
        "int | None": whole | None,
        "bool | None": bool | None,
        "tuple[str, ...]": tuple[str, ...] | None,  # null reads as ()
    }


@functools.cache
def _converted_types() -> dict[str, object]:
    """The wire type of each scalar annotation whose values the reference path's lines convert.

    Decimals and open enums are read so from the start; the annotations of `_stored_types`
    once widened.
    """
    whole = _whole()
    obj = dict[str, Any]
    return {
        "str | None": str | whole | None,  # widened: numeric ids; also open enums
        # msgspec parses RFC 3339 strings and decimal strings itself (a string it cannot parse
        # fails the field); numbers and {} go to the reference path's converters.
        "datetime | None": datetime | whole | float | obj | None,
        "Decimal | None": Decimal | whole | float | obj | None,
        "int | None": whole | str | float | obj | None,
        "bool | None": bool | whole | str | obj | None,
    }


#: A list of keys that msgspec read as a list of strings, a lone string or null.
_KEYS: Final = (
    "    if v is None:\n        v = ()\n    elif v.__class__ is str:\n        v = (v,)\n"
    "    else:\n        v = tuple(v)"
)
#: Conversion of the values msgspec parsed: exactly what the reference path makes of the same
#: strings (a naive timestamp is UTC; a non-finite decimal does not fit).
_PARSED: Final = {
    "datetime | None": (
        "    if v is not None:\n"
        "        if v.__class__ is _datetime:\n"
        "            if v.tzinfo is None:\n                v = v.replace(tzinfo=_UTC)\n"
        "        elif v.__class__ is dict and not v:\n            v = None\n"
        "        else:\n            v = _dt(v, {path})"
    ),
    "Decimal | None": (
        "    if v is not None:\n"
        "        if v.__class__ is _Decimal:\n"
        "            if not v.is_finite():\n"
        "                raise RecordDecodeError({path}, 'expected a finite number')\n"
        "        elif v.__class__ is dict and not v:\n            v = None\n"
        "        else:\n            v = _num(v, {path})"
    ),
}


@attrs.frozen
class _Adaptations:
    """What the wire structs have learned: each field's level, and each model's extra keys."""

    levels: Mapping[tuple[type, str], int] = attrs.field(factory=dict)
    extras: Mapping[type, tuple[str, ...]] = attrs.field(factory=dict)

    def level(self, cls: type, wire: str) -> int:
        return self.levels.get((cls, wire), _PRECISE)

    def raised(self, cls: type, wire: str, level: int) -> _Adaptations:
        return attrs.evolve(self, levels={**self.levels, (cls, wire): level})

    def learned(self, cls: type, key: str) -> _Adaptations:
        return attrs.evolve(self, extras={**self.extras, cls: (*self.extras.get(cls, ()), key)})


class _Builder:
    """Builds the wire struct and conversion function of each model, for one `_Adaptations`."""

    def __init__(self, adaptations: _Adaptations) -> None:
        self.adaptations = adaptations
        self.structs: dict[type, type] = {}
        self.converters: dict[type, _Convert] = {}
        self.building: set[type] = set()

    def build(self, cls: type[Model]) -> type:
        """The wire struct of ``cls`` (and its conversion function, in `converters`).

        Raises:
            TypeError: A self-referencing model, or a field type msgspec cannot express.
        """
        found = self.structs.get(cls)
        if found is not None:
            return found
        if cls in self.building:
            raise TypeError(f"{cls.__name__} refers to itself")
        self.building.add(cls)
        try:
            struct, converter = self._build(cls)
        finally:
            self.building.discard(cls)
        self.structs[cls] = struct
        self.converters[cls] = converter
        return struct

    def _build(self, cls: type[Model]) -> tuple[type, _Convert]:
        env = environment(cls)
        env.update(
            _map=map,
            _zip=zip,
            _repeat=itertools.repeat,
            _count=itertools.count,
            _json_loads=_json.decode_plain,
            _datetime=datetime,
            _invalid=keep_invalid,
            _Misfit=_Misfit,
        )
        direct = env["_twin"] is not cls
        spec: list[tuple[str, object, object]] = []
        body = ["    o = _new(_twin)" if direct else "    o = _new(_cls)"]
        loose_fields = False
        for field in decoded_fields(cls):
            names = wire_names(cls, field.name)
            slots = [f"s.f{len(spec) + index}" for index in range(len(names))]
            level = max(self.adaptations.level(cls, name) for name in names)
            if level == _LOOSE:
                loose_fields = True
                wire_type: object = msgspec.Raw
                lines = self._loose(cls, field, names, slots, env)
            else:
                wire_type, lines = self._field(cls, field, names[0], slots, env, level=level)
            spec += [
                (slot[2:], wire_type, msgspec.field(default=None, name=name))
                for slot, name in zip(slots, names, strict=True)
            ]
            body += lines
        extras = self.adaptations.extras.get(cls, ())
        if extras:
            body.append("    e = {}")
            for key in extras:
                slot = f"f{len(spec)}"
                spec.append((slot, msgspec.Raw, msgspec.field(default=None, name=key)))
                body.append(
                    f"    if s.{slot} is not None:\n        e[{key!r}] = _raw_json(s.{slot})"
                )
        body += [
            store("extra", "_proxy(e) if e else _EMPTY" if extras else "_EMPTY", direct=direct),
            store("_raw", "ref", direct=direct),
            store(
                "invalid",
                "_proxy(bad) if bad else _EMPTY" if loose_fields else "_EMPTY",
                direct=direct,
            ),
            "    o.__class__ = _cls" if direct else "",
            "    return o",
        ]
        if loose_fields:
            body.insert(0, "    bad = {}")
        source = [
            "def convert(s, ref):",
            "    try:",
            *(f"    {line}" for chunk in body for line in chunk.split("\n")),
            "    except RecordDecodeError as exc:",
            "        raise _Misfit(_cls, exc.path[1:].partition('[')[0]) from None",
        ]
        env["_raw_json"] = _raw_json
        struct = msgspec.defstruct(
            f"_Wire{cls.__name__}", spec, forbid_unknown_fields=True, gc=False
        )
        return struct, cast("_Convert", compile_source(source, cls, "convert", env))

    def _loose(
        self,
        cls: type,
        field: attrs.Attribute[object],
        names: tuple[str, ...],
        slots: list[str],
        env: dict[str, object],
    ) -> list[str]:
        """Lines that read a loosened field as the reference path's tolerant decoder does."""
        direct = env["_twin"] is not cls
        local = {name: f"r{index}" for index, name in enumerate(names)}
        lines = [
            f"    {local[name]} = _raw_json({slot})"
            for name, slot in zip(names, slots, strict=True)
        ]
        *convert, store_line = field_source(
            cls, field, env, local.__getitem__, direct=direct, nested=tolerant_function
        )
        values = "{" + ", ".join(f"{name!r}: {local[name]}" for name in names) + "}"
        empty = "()" if str(field.type).startswith("tuple[") else "None"
        return [
            *lines,
            "    try:",
            *(f"    {line}" for chunk in convert for line in chunk.split("\n")),
            "    except RecordDecodeError:",
            f"        v = _invalid(_cls, bad, {values}, {names!r}, {empty})",
            store_line,
        ]

    def _field(
        self,
        cls: type,
        field: attrs.Attribute[object],
        wire: str,
        slots: list[str],
        env: dict[str, object],
        *,
        level: int,
    ) -> tuple[object, list[str]]:
        """The wire type of a precise (or widened) field, and its conversion lines.

        ``slots`` says where each wire name's value is read, e.g. ``s.f3`` (the v3 name first:
        the v4 one is read when it is None).
        """
        annotation = str(field.type)
        direct = env["_twin"] is not cls
        path = repr("." + wire)
        read = [f"    v = {slots[0]}"]
        read += [f"    if v is None:\n        v = {other}" for other in slots[1:]]
        stored = _stored_types().get(annotation)
        if stored is not None and level == _PRECISE:
            if len(slots) == 1 and annotation != "tuple[str, ...]":
                return stored, [store(field.name, slots[0], direct=direct)]
            if annotation == "tuple[str, ...]":
                read.append("    if v is None:\n        v = ()")
            return stored, [*read, store(field.name, "v", direct=direct)]
        custom: dict[str, tuple[object, str]] = {
            "tuple[str, ...]": (list[str] | str | None, _KEYS),
            "JSON": (msgspec.Raw, "    v = _raw_json(v)"),
        }
        if annotation in _PARSED:
            custom[annotation] = (
                _converted_types()[annotation],
                _PARSED[annotation].format(path=path),
            )
        if annotation in custom:
            wire_type, convert = custom[annotation]
            return wire_type, [*read, convert, store(field.name, "v", direct=direct)]
        converted = _converted_types()
        if annotation in converted or _OPEN_ENUM.match(annotation):
            # The reference path's own lines, on the values msgspec read.
            source = dict(zip(wire_names(cls, field.name), slots, strict=True))
            lines = field_source(cls, field, env, source.__getitem__, direct=direct)
            return converted.get(annotation, converted["str | None"]), lines
        wire_type, lines = self._nested(cls, field, wire, env)
        return wire_type, [*read, *lines, store(field.name, "v", direct=direct)]

    def _nested(
        self, cls: type, field: attrs.Attribute[object], wire: str, env: dict[str, object]
    ) -> tuple[object, list[str]]:
        """The wire type and conversion lines of a field holding nested models."""
        annotation = str(field.type)
        if match := _NESTED_MANY.match(annotation):
            nested = cast("type[Model]", resolve_type(cls, match.group(1)))
            struct = self.build(nested)
            name = nested.__name__
            env[f"_c_{name}"] = self.converters[nested]
            return list[struct] | None, [  # type: ignore[valid-type]
                "    if v:",
                # (ref, wire, index) for each item, made in C rather than by a comprehension.
                f"        refs = _zip(_repeat(ref), _repeat({wire!r}), _count())",
                f"        v = tuple(_map(_c_{name}, v, refs))",
                "    else:\n        v = ()",
            ]
        if match := _NESTED_ONE.match(annotation):
            nested = cast("type[Model]", resolve_type(cls, match.group(1)))
            struct = self.build(nested)
            env[f"_c_{nested.__name__}"] = self.converters[nested]
            return struct | None, [
                f"    if v is not None:\n        v = _c_{nested.__name__}(v, (ref, {wire!r}))",
            ]
        raise TypeError(f"{cls.__name__}.{field.name}: no wire type for {annotation!r}")


def _raw_json(value: object) -> object:
    """The JSON a loosened field kept raw, decoded as the reference path decodes it."""
    return None if value is None else _json.decode_plain(bytes(cast("bytes", value)))


class _State:
    """The adaptations learned so far (replaced whole, never changed) and their builder."""

    def __init__(self) -> None:
        self.adaptations = _Adaptations()
        self.builder = _Builder(self.adaptations)

    def adapt(self, adaptations: _Adaptations) -> None:
        self.adaptations = adaptations
        self.builder = _Builder(adaptations)


_state = _State()


def forget_adaptations() -> None:
    """Start again from precise wire structs (the adaptations are otherwise kept for good)."""
    _state.adapt(_Adaptations())


def _field_of(cls: type, wire: str) -> attrs.Attribute[object] | None:
    for field in decoded_fields(cls):
        if wire in wire_names(cls, field.name):
            return field
    return None


def _nested_of(cls: type, field: attrs.Attribute[object]) -> type | None:
    annotation = str(field.type)
    scalars = ("JSON", "tuple[str, ...]")
    if annotation in _converted_types() or annotation in scalars or _OPEN_ENUM.match(annotation):
        return None
    match = _NESTED_MANY.match(annotation) or _NESTED_ONE.match(annotation)
    if match is None:
        return None
    nested = resolve_type(cls, match.group(1))
    return nested if issubclass(nested, Model) else None


def _blame(model: type, message: str) -> _Adaptations | None:
    """The adaptation that answers msgspec's complaint about a page of ``model``, if any."""
    at = _AT.search(message)
    segments = [m.group(1) for m in _SEGMENT.finditer(at.group(1))] if at else []
    if segments[:2] != ["data", None]:
        return None
    cls, rest = model, segments[2:]
    while rest:
        wire = rest.pop(0)
        field = None if wire is None else _field_of(cls, wire)
        if wire is None or field is None:
            return None
        nested = _nested_of(cls, field)
        if rest and nested is not None and rest[0] is None:
            rest.pop(0)  # an index into a list of nested objects
        if not rest or nested is None:  # the value of this field is to blame
            return _widen(cls, field, wire, message)
        cls = nested
    unknown = _UNKNOWN.match(message[: at.start()] if at else "")
    adaptations = _state.adaptations
    learned = adaptations.extras.get(cls, ())
    if unknown is None or len(learned) >= _MAX_EXTRAS or unknown.group(1) in learned:
        return None
    return adaptations.learned(cls, unknown.group(1))


def _widen(
    cls: type, field: attrs.Attribute[object], wire: str, message: str
) -> _Adaptations | None:
    """Widen a precise field that got a value its wider type takes; loosen any other field."""
    adaptations = _state.adaptations
    annotation = str(field.type)
    # Text takes only integers besides: anything else it gets does not fit.
    widens = annotation != "str | None" or _GOT_INT in message
    if adaptations.level(cls, wire) == _PRECISE and annotation in _stored_types() and widens:
        return adaptations.raised(cls, wire, _WIDE)
    return _loosen(cls, wire)


class _PageDecoder:
    """Decodes the pages of one model, rebuilding its wire structs after each adaptation."""

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        self.adaptations: _Adaptations | None = None
        self.parse: Callable[[bytes], Any] | None = None
        self.convert: _Convert | None = None

    def _prepare(self) -> tuple[Callable[[bytes], Any], _Convert]:
        if self.adaptations is not _state.adaptations or self.parse is None or self.convert is None:
            adaptations, builder = _state.adaptations, _state.builder
            struct = builder.build(self.model)
            envelope = msgspec.defstruct(
                f"_Wire{self.model.__name__}Page",
                [("data", list[struct]), ("meta", Any, None), ("links", Any, None)],  # type: ignore[valid-type]
                gc=False,
            )
            self.parse = msgspec.json.Decoder(envelope).decode
            self.convert = builder.converters[self.model]
            self.adaptations = adaptations
        return self.parse, self.convert

    def __call__(self, body: bytes) -> TypedPage | None:
        try:
            for _ in range(_MAX_TRIES):
                page = self._attempt(body)
                if not isinstance(page, _Adaptations):
                    return page
                _state.adapt(page)
        except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError):
            # Not expected; whatever it is, the reference path decides what the body gives.
            return None
        return None

    def _attempt(self, body: bytes) -> TypedPage | _Adaptations | None:
        """The page, or the adaptation to try it again with, or None to leave it."""
        parse, convert = self._prepare()
        try:
            parsed = parse(body)
        except msgspec.ValidationError as exc:
            return _blame(self.model, str(exc))
        except msgspec.DecodeError:
            return None
        page = RawPage(body)
        before = invalid_count()
        try:
            records = [convert(item, (page, index)) for index, item in enumerate(parsed.data)]
        except _Misfit as misfit:
            return _loosen(misfit.cls, misfit.wire)
        tainted = invalid_count() != before
        return TypedPage(self.model, records, parsed.meta, parsed.links, page, tainted=tainted)


def _loosen(cls: type, wire: str) -> _Adaptations | None:
    adaptations = _state.adaptations
    if adaptations.level(cls, wire) == _LOOSE:
        return None
    return adaptations.raised(cls, wire, _LOOSE)


_decoders: dict[type, Callable[[bytes], TypedPage | None] | None] = {}
_enabled: list[bool] = [True]


def set_enabled(enabled: bool) -> None:
    """Switch the fast path on or off (off: every page takes the reference path).

    For comparisons, such as ``benchmarks/bench_resources.py``; it is on whenever msgspec is
    installed.
    """
    _enabled[0] = enabled


def page_decoder(model: type[Model]) -> Callable[[bytes], TypedPage | None] | None:
    """The body decoder for list pages of ``model``, or None without msgspec.

    The decoder returns a `TypedPage`, or None for a body it leaves to the reference path.

    Args:
        model: The records' model.

    Returns:
        A function of the body's bytes, for `makini_async._json.use_body_decoder`.
    """
    if not _enabled[0]:
        return None
    if model in _decoders:
        return _decoders[model]
    decoder: Callable[[bytes], TypedPage | None] | None = None
    if AVAILABLE:
        decoder = _PageDecoder(model)
        try:
            decoder(b'{"data": []}')  # builds the wire structs now, where a failure shows
        except TypeError:  # a model msgspec cannot express: the reference path takes it
            decoder = None
    _decoders[model] = decoder
    return decoder
