"""One codec for the state the stages keep in faust tables (str → str): a dataclass as
compact JSON under its own field names, read back by its type hints, so a field added
with a default reads old state. Decimal travels as a string, bytes as base64."""

from __future__ import annotations

import base64
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Hashable
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any, Self, TypeVar

T = TypeVar("T")


class StateRecord:
    """Mixin for a table value: ``dumps`` and ``loads`` through this module's codec."""

    def dumps(self) -> str:
        return dumps(self)

    @classmethod
    def loads(cls, raw: str | None) -> Self:
        """The state in ``raw``; empty or missing: a fresh one (every field defaulted)."""
        return loads(cls, raw) if raw else cls()


def dumps(obj: Any) -> str:
    return json.dumps(_to_json(obj), separators=(",", ":"))


def loads(cls: type[T], raw: str) -> T:
    value: T = _reader(typing.cast(Hashable, cls))(json.loads(raw))
    return value


def _to_json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_json(v) for v in obj]
    return obj


Reader = Callable[[Any], Any]


@cache
def _reader(hint: Any) -> Reader:
    """How to turn the JSON of a value of type ``hint`` back into it (built once per type)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        read_inner = _reader(inner)
        return lambda v: None if v is None else read_inner(v)
    if origin is list:
        read_item = _reader(typing.get_args(hint)[0])
        return lambda v: [read_item(x) for x in v]
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        read_key, read_value = _reader(key_type), _reader(value_type)
        return lambda v: {read_key(k): read_value(x) for k, x in v.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_reader(hint)
    if hint is Decimal:
        return Decimal
    if hint is bytes:
        return base64.b64decode
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if hint is int:
        return int
    if hint in (str, float, bool, Any):
        return lambda v: v
    raise TypeError(f"no state codec for {hint!r}")


def _dataclass_reader(cls: type) -> Reader:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _reader(hints[f.name])) for f in dataclasses.fields(cls) if f.init]

    def read(doc: dict[str, Any]) -> Any:
        return cls(**{name: read_field(doc[name]) for name, read_field in fields if name in doc})

    return read
