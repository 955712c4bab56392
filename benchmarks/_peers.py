"""Peer decoders of work-order pages, built from our models, for the typed-record benchmarks.

Each takes a list body's bytes and returns the decoded page; none keeps ``extra``, ``raw`` or
``invalid``, and none is tolerant: they show what a typed decode costs elsewhere, as information.

- ``pydantic``: pydantic v2 models with the same fields and wire names (``model_validate_json``);
- ``msgspec``: frozen msgspec Structs with the same fields and wire names, lax mode (it reads
  ``"43"`` into a Decimal, as our rules do);
- ``msgspec-attrs``: msgspec decoding straight into *our own* attrs classes, through msgspec's
  attrs support. msgspec names attrs fields by their attribute names and has no renaming for
  them, so each class gets a private subclass that adds no slot, whose wire names (``dueAt``)
  are aliases of the model's slot descriptors (``due_at``) and whose ``__attrs_attrs__`` lists
  the wire names. This is what msgspec's own C construction of attrs records costs: it shows
  whether handing record construction to msgspec would help the models as they are.

Each is present only when its package can be imported (``pip install --target /tmp/peers
pydantic msgspec`` and ``PYTHONPATH=/tmp/peers`` put them beside the project).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import attrs

from makini_async import models
from makini_async.models._wire import decoded_fields, wire_name

_ANNOTATIONS: dict[str, object] = {
    "str | None": str | None,
    # The sandbox (like Makini's generated examples) sends {} for some unset stamps and numbers.
    "datetime | None": datetime | dict[str, Any] | None,
    "Decimal | None": Decimal | dict[str, Any] | None,
    "int | None": int | str | None,
    "bool | None": bool | None,
    "tuple[str, ...]": tuple[str, ...] | str | None,
    "JSON": Any,
    "Level | str | None": str | None,
}
_MANY = re.compile(r"^tuple\[(\w+), \.\.\.\]$")
_ONE = re.compile(r"^(\w+) \| None$")

Decode = Callable[[bytes], object]


def _optional(name: str) -> Any:  # noqa: ANN401 - an optional module of unknown shape
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _fields(cls: type, build: Callable[[type], Any]) -> list[tuple[str, str, object]]:
    """(attribute, wire name, annotation) of each decoded field; ``build`` makes nested models."""
    out: list[tuple[str, str, object]] = []
    for field in decoded_fields(cls):
        text = str(field.type)
        many = _MANY.match(text)
        one = _ONE.match(text)
        annotation: Any
        if text in _ANNOTATIONS:
            annotation = _ANNOTATIONS[text]
        elif many:
            annotation = list.__class_getitem__(build(getattr(models, many.group(1)))) | None
        elif one:
            annotation = build(getattr(models, one.group(1))) | None
        else:
            annotation = Any
        out.append((field.name, wire_name(cls, field.name), annotation))
    return out


def _pydantic(pydantic: Any) -> Decode:  # noqa: ANN401 - an optional module
    built: dict[type, type] = {}

    def build(cls: type) -> type:
        if cls not in built:
            config = pydantic.ConfigDict(extra="allow", populate_by_name=True)
            spec = {
                name: (annotation, pydantic.Field(None, alias=wire))
                for name, wire, annotation in _fields(cls, build)
            }
            built[cls] = pydantic.create_model(f"P{cls.__name__}", __config__=config, **spec)
        return built[cls]

    records = list.__class_getitem__(build(models.WorkOrder))
    page = pydantic.create_model("PPage", data=(records, ...), meta=(dict[str, Any], ...))
    return page.model_validate_json  # type: ignore[no-any-return]


def _msgspec_structs(msgspec: Any) -> Decode:  # noqa: ANN401 - an optional module
    built: dict[type, type] = {}

    def build(cls: type) -> type:
        if cls not in built:
            spec = [
                (name, annotation, msgspec.field(default=None, name=wire))
                for name, wire, annotation in _fields(cls, build)
            ]
            built[cls] = msgspec.defstruct(f"M{cls.__name__}", spec, frozen=True)
        return built[cls]

    records = list.__class_getitem__(build(models.WorkOrder))
    page = msgspec.defstruct("MPage", [("data", records), ("meta", dict[str, Any])])
    # msgspec's strict mode refuses "43" for a Decimal; lax mode is the fair match.
    return msgspec.json.Decoder(page, strict=False).decode  # type: ignore[no-any-return]


def _msgspec_attrs(msgspec: Any) -> Decode:  # noqa: ANN401 - an optional module
    built: dict[type, type] = {}

    def build(cls: type) -> type:
        if cls not in built:
            # Every annotated name of the models' classes, so that msgspec evaluates none of the
            # models' own annotations (some name types imported only for type checkers).
            annotations: dict[str, object] = {
                name: Any for k in cls.__mro__ for name in getattr(k, "__annotations__", {})
            }
            namespace: dict[str, object] = {
                "__slots__": (),
                "__module__": __name__,
                "__setattr__": object.__setattr__,
            }
            wire_fields: dict[str, Any] = {}
            for name, wire, annotation in _fields(cls, build):
                owner = next(k for k in cls.__mro__ if name in k.__dict__)
                namespace[wire] = owner.__dict__[name]  # the slot's descriptor, under the wire name
                annotations[wire] = annotation
                wire_fields[wire] = attrs.field(default=None, type=cast("type", annotation))
            namespace["__annotations__"] = annotations
            namespace["__attrs_attrs__"] = attrs.fields(attrs.make_class("Wire", wire_fields))
            built[cls] = type(f"A{cls.__name__}", (cls,), namespace)
        return built[cls]

    records = list.__class_getitem__(build(models.WorkOrder))
    page = msgspec.defstruct("APage", [("data", records), ("meta", dict[str, Any])])
    return msgspec.json.Decoder(page, strict=False).decode  # type: ignore[no-any-return]


def peer_models() -> dict[str, Decode]:
    """The peer decoders whose packages can be imported, by name."""
    peers: dict[str, Decode] = {}
    pydantic = _optional("pydantic")
    if pydantic is not None:
        peers["pydantic"] = _pydantic(pydantic)
    msgspec = _optional("msgspec")
    if msgspec is not None:
        peers["msgspec"] = _msgspec_structs(msgspec)
        peers["msgspec-attrs"] = _msgspec_attrs(msgspec)
    return peers
