"""Bytes a decoder really sees, for the fuzz tests: hypothesis strategies of random bytes,
valid events cut short or flipped, framed with a wrong or foreign schema id, written with
a field of the wrong type or without a field, or carrying absurd values.

Absurd values go through a *permissive* writer: the registered schema with every decimal's
precision raised to 40 and one more symbol in every enum. The binary layout is the
registered one (a decimal is its unscaled bytes; an enum its index), so the bytes are what a
writer that does not check ``precision`` or enum symbols (another language's client, a
hand-rolled producer) would put on the topic, framed with the real schema id.
"""

from __future__ import annotations

import copy
import io
import struct
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import fastavro
from hypothesis import strategies as st

from engine.wire.codec import MAGIC, Codec, RegisteredSchema, to_record

HEADER = struct.Struct(">bI")
#: The symbol the permissive writer adds to every enum: an index the reader's enum lacks.
FUZZ_SYMBOL = "ZZ_FUZZ"
#: Decimal precision of the permissive writer: 10^12 and far beyond are written as they are.
PERMISSIVE_PRECISION = 40

# --- absurd values ---------------------------------------------------------------------

ABSURD_STRINGS: tuple[str, ...] = (
    "", " ", "   ", "\x00", "\x00\x00\x00", "E11.9\x00", "\x0099214", "99214\x00", "I10\x00\x00", "M54.5\n",
    "\t", "\r\n", "Ω≈ç√∫˜µ", "Ｅ１１．９", "𝟗𝟗𝟐𝟏𝟒", "😀", "\u202eE11.9", "e\u0301", "\ufeff", "\ud7ff", "ß", "İ",
    "99214 ", " 25", "a" * 300, "NaN", "-1", "0", "null", "'; DROP TABLE claims;--", "%s%s%n", "{}", "\\x00",
)
#: Int fields are Avro ``int`` (32-bit) or ``long``: the edges of both, and beyond the int's.
ABSURD_INTS: tuple[int, ...] = (
    -1, 0, 1, 2, 3, 4, 5, 13, 99, 100, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32, 2**53, 2**63 - 1, -(2**63),
)
#: Money: the schemas say decimal(12, 2), so 9,999,999,999.99 is the largest amount; 10^12
#: and 10^40 are beyond it (a writer that does not check precision still writes them).
ABSURD_MONEY: tuple[Decimal, ...] = (
    Decimal("0.00"), Decimal("0.01"), Decimal("-0.01"), Decimal("-1.00"), Decimal("140.00"), Decimal("123456.78"),
    Decimal("-123456.78"), Decimal("9999999999.99"), Decimal("-9999999999.99"),
    Decimal("1000000000000"), Decimal("-1000000000000"), Decimal("1234567890123.45"),
    Decimal("1E+40"), Decimal("-1E+40"),
)
#: The largest amount decimal(12, 2) holds, and its negative (see the posting/claims bugs).
MAX_MONEY = Decimal("9999999999.99")
ABSURD_DATES: tuple[date, ...] = (date(1, 1, 1), date(9999, 12, 31), date(1970, 1, 1), date(2000, 2, 29),
                                  date(2026, 2, 27), date(2099, 1, 1), date(1900, 1, 1))
ABSURD_TIMES: tuple[datetime, ...] = (
    datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC), datetime(2026, 3, 2, 14, 30, tzinfo=UTC),
)

strings = st.one_of(st.sampled_from(ABSURD_STRINGS), st.text(max_size=24))
ints = st.one_of(st.sampled_from(ABSURD_INTS), st.integers(-3, 60))
money = st.one_of(st.sampled_from(ABSURD_MONEY),
                  st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False, allow_infinity=False))
dates = st.one_of(st.sampled_from(ABSURD_DATES), st.dates())
times = st.one_of(st.sampled_from(ABSURD_TIMES), st.datetimes(timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)))

# --- framing and writing ----------------------------------------------------------------


def frame(schema_id: int, body: bytes, magic: int = MAGIC) -> bytes:
    """Confluent framing: magic byte, 4-byte big-endian schema id, the Avro body."""
    return HEADER.pack(magic, schema_id) + body


def body_of(framed: bytes) -> bytes:
    return framed[HEADER.size:]


def permissive(raw: Any) -> Any:
    """A copy of a raw schema whose decimals take any precision, whose ints take 64 bits
    (``int`` and ``long`` are the same zig-zag varint) and whose enums take one more
    symbol: the binary layout is unchanged."""

    def loosen(node: Any) -> Any:
        if node == "int":
            return "long"
        if isinstance(node, list):
            return [loosen(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: loosen(value) if key in ("type", "items", "values", "fields") else value
                for key, value in node.items()}
        if "fields" in node and isinstance(node["fields"], list):
            node["fields"] = [{**f, "type": loosen(f["type"])} if isinstance(f, dict) and "name" in f else f
                              for f in node["fields"]]
        if node.get("logicalType") == "decimal":
            node["precision"] = PERMISSIVE_PRECISION
        if node.get("logicalType") == "date":
            node["type"] = "int"  # a date stays an int: fastavro checks the logical type's base
        if node.get("type") == "enum" and FUZZ_SYMBOL not in node["symbols"]:
            node["symbols"] = [*node["symbols"], FUZZ_SYMBOL]
        return node

    return loosen(copy.deepcopy(raw))


#: Parsed permissive schemas, by the registered schema they loosen (the session's codec keeps them alive).
_PERMISSIVE: dict[int, tuple[RegisteredSchema, Any]] = {}


def _permissive_parsed(schema: RegisteredSchema) -> Any:
    if id(schema) not in _PERMISSIVE:
        _PERMISSIVE[id(schema)] = (schema, fastavro.parse_schema(permissive(schema.raw), named_schemas={}))
    return _PERMISSIVE[id(schema)][1]


def write(schema: RegisteredSchema, record: Mapping[str, Any], *, raw: Any = None,
          schema_id: int | None = None) -> bytes:
    """``record`` written with ``raw`` (default: the permissive form of ``schema``), framed
    with ``schema_id`` (default: ``schema``'s)."""
    if raw is None:
        parsed = _permissive_parsed(schema)
    else:
        parsed = fastavro.parse_schema(raw, named_schemas={})
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, dict(record))
    return frame(schema.schema_id if schema_id is None else schema_id, buf.getvalue())


def latest(codec: Codec, event_type: type) -> RegisteredSchema:
    return codec.registry.latest[event_type.SCHEMA]  # type: ignore[attr-defined]


# --- records: leaves and replacements ----------------------------------------------------

Path = tuple[str | int, ...]


def leaves(node: Any, path: Path = ()) -> list[tuple[Path, Any]]:
    """Every replaceable value of a record tree: scalars and lists (a list is a leaf as a
    whole, and so is each of its items); ``None`` is not (its branch's type is unknown)."""
    found: list[tuple[Path, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += leaves(value, (*path, key))
    elif isinstance(node, list):
        found.append((path, node))
        for index, value in enumerate(node):
            found += leaves(value, (*path, index))
    elif node is not None:
        found.append((path, node))
    return found


def replaced(node: Any, path: Path, value: Any) -> Any:
    """A copy of ``node`` with ``value`` at ``path``."""
    if not path:
        return value
    head, *rest = path
    if isinstance(node, dict):
        return {**node, head: replaced(node[head], tuple(rest), value)}
    items = list(node)
    items[head] = replaced(items[head], tuple(rest), value)  # type: ignore[index]
    return items


def absurd_for(value: Any, path: Path, nested: Mapping[str, st.SearchStrategy[bytes]]) -> st.SearchStrategy[Any]:
    """Values of ``value``'s own type (so the permissive writer takes them) that no sane
    sender sends."""
    name = next((p for p in reversed(path) if isinstance(p, str)), "")
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, Enum):
        return st.sampled_from([*(m for m in type(value) if m != value), FUZZ_SYMBOL])
    if isinstance(value, str):
        return strings
    if isinstance(value, int):
        return ints
    if isinstance(value, Decimal):
        return money
    if isinstance(value, datetime):
        return times
    if isinstance(value, date):
        return dates
    if isinstance(value, bytes):
        random = st.binary(max_size=64)
        return st.one_of(nested[name], random) if name in nested else random
    if isinstance(value, list):
        grown = (st.integers(2, 120).map(lambda n: [copy.deepcopy(value[0]) for _ in range(n)]) if value
                 else st.nothing())
        return st.one_of(st.just([]), grown)
    raise TypeError(f"no absurd values for {type(value).__name__} at {path}")  # pragma: no cover


# --- strategies of framed bytes -------------------------------------------------------------

#: A top-level field retyped to one of these, with a value of that type.
WRONG_TYPES: tuple[tuple[Any, st.SearchStrategy[Any]], ...] = (
    ("string", st.text(max_size=12)),
    ("long", st.integers(-(2**63), 2**63 - 1)),
    ("boolean", st.booleans()),
    ("double", st.floats(allow_nan=True)),
    ("bytes", st.binary(max_size=24)),
    ("null", st.none()),
    ({"type": "array", "items": "string"}, st.lists(st.text(max_size=4), max_size=3)),
    ({"type": "map", "values": "long"},
     st.dictionaries(st.text(max_size=4), st.integers(-(2**63), 2**63 - 1), max_size=3)),
)


@st.composite
def absurd_record(draw: st.DrawFn, template: Any, nested: Mapping[str, st.SearchStrategy[bytes]] | None = None,
                  max_changes: int = 3) -> dict[str, Any]:
    """``template``'s record with one to ``max_changes`` values replaced by absurd ones."""
    record: dict[str, Any] = to_record(template)
    originals = leaves(record)  # each change is of the template's value's type
    for _ in range(draw(st.integers(1, max_changes))):
        path, value = draw(st.sampled_from(originals))
        if reachable(record, path):  # not inside a list an earlier change emptied
            record = replaced(record, path, draw(absurd_for(value, path, nested or {})))
    return record


def reachable(node: Any, path: Path) -> bool:
    for step in path:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return False
    return True


def absurd_event(codec: Codec, template: Any, nested: Mapping[str, st.SearchStrategy[bytes]] | None = None
                 ) -> st.SearchStrategy[bytes]:
    """``template`` with absurd values, written permissively under its own schema id."""
    schema = latest(codec, type(template))
    return absurd_record(template, nested).map(lambda record: write(schema, record))


def _parses(raw: Any) -> bool:
    try:
        fastavro.parse_schema(raw, named_schemas={})
    except Exception:  # a field defined a named type a later field refers to
        return False
    return True


def _without(raw: Any, names: set[str]) -> Any:
    return {**raw, "fields": [f for f in raw["fields"] if f["name"] not in names]}


def _retyped(raw: Any, index: int, new_type: Any) -> Any:
    return {**raw, "fields": [{**f, "type": new_type} if i == index else f for i, f in enumerate(raw["fields"])]}


def wrong_type(codec: Codec, template: Any) -> st.SearchStrategy[bytes]:
    """One top-level field written as another type (the reader still expects its own)."""
    schema = latest(codec, type(template))
    raw = permissive(schema.raw)
    record = to_record(template)
    choices = [(index, new_type, values) for index in range(len(raw["fields"]))
               for new_type, values in WRONG_TYPES if _parses(_retyped(raw, index, new_type))]

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        index, new_type, values = draw(st.sampled_from(choices))
        return write(schema, {**record, raw["fields"][index]["name"]: draw(values)}, raw=_retyped(raw, index, new_type))

    return build()


def missing_field(codec: Codec, template: Any) -> st.SearchStrategy[bytes]:
    """One to three fields left out by the writer (the reader still expects them)."""
    schema = latest(codec, type(template))
    raw = permissive(schema.raw)
    record = to_record(template)
    droppable = [f["name"] for f in raw["fields"] if _parses(_without(raw, {f["name"]}))]

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        dropped = draw(st.sets(st.sampled_from(droppable), min_size=1, max_size=3))
        if not _parses(_without(raw, dropped)):
            dropped = {sorted(dropped)[0]}
        return write(schema, {k: v for k, v in record.items() if k not in dropped}, raw=_without(raw, dropped))

    return build()


@st.composite
def truncated(draw: st.DrawFn, valid: bytes) -> bytes:
    return valid[:draw(st.integers(0, len(valid) - 1))]


@st.composite
def trailing(draw: st.DrawFn, valid: bytes) -> bytes:
    return valid + draw(st.binary(min_size=1, max_size=16))


@st.composite
def bit_flipped(draw: st.DrawFn, valid: bytes) -> bytes:
    """1 to 4 bytes of the body XOR-ed with a non-zero mask (the header is left alone)."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(HEADER.size, len(data) - 1))
        data[at] ^= draw(st.integers(1, 255))
    return bytes(data)


@st.composite
def foreign_id(draw: st.DrawFn, codec: Codec, valid: bytes, expected: str) -> bytes:
    """The valid body under a wrong header: another registered schema's id (an older
    version of the same event, or another event), an id nobody registered, or a bad magic byte."""
    registered = sorted(codec.registry.by_id)
    own = codec.registry.latest[expected].schema_id
    choice = draw(st.sampled_from(["other", "unregistered", "magic"]))
    if choice == "other":
        return frame(draw(st.sampled_from([i for i in registered if i != own])), body_of(valid))
    if choice == "unregistered":
        unregistered = st.one_of(st.sampled_from([0, max(registered) + 1, 2**31 - 1, 2**31, 2**32 - 1]),
                                 st.integers(max(registered) + 1, 2**32 - 1))
        return frame(draw(unregistered), body_of(valid))
    return frame(own, body_of(valid), magic=draw(st.one_of(st.integers(1, 127), st.integers(-128, -1))))


@st.composite
def foreign_event(draw: st.DrawFn, codec: Codec, samples: Mapping[type, Any], expected: type) -> bytes:
    """Another event, framed as itself (a record on the wrong topic) or under the expected
    event's schema id (a writer that used the wrong schema)."""
    other = draw(st.sampled_from(sorted((t for t in samples if t is not expected), key=lambda t: t.__name__)))
    encoded = codec.encode(samples[other])
    if draw(st.booleans()):
        return encoded
    return frame(latest(codec, expected).schema_id, body_of(encoded))


def framed_random(codec: Codec, expected: type) -> st.SearchStrategy[bytes]:
    """The expected event's header on a random body."""
    return st.binary(max_size=96).map(lambda body: frame(latest(codec, expected).schema_id, body))


def fuzzed_values(codec: Codec, samples: Mapping[type, Any], template: Any,
                  nested: Mapping[str, st.SearchStrategy[bytes]] | None = None,
                  tombstone: bool = True) -> st.SearchStrategy[bytes | None]:
    """Every kind of bad input for a topic whose events are ``type(template)`` (``None``, a
    tombstone, unless ``tombstone`` is false)."""
    event_type = type(template)
    valid = codec.encode(template)
    kinds: list[st.SearchStrategy[bytes | None]] = [
        st.binary(max_size=64),
        framed_random(codec, event_type),
        truncated(valid),
        trailing(valid),
        bit_flipped(valid),
        foreign_id(codec, valid, event_type.SCHEMA),
        foreign_event(codec, samples, event_type),
        wrong_type(codec, template),
        missing_field(codec, template),
        absurd_event(codec, template, nested),
        absurd_event(codec, template, nested),  # twice the weight: the values the handlers see
    ]
    if tombstone:
        kinds.append(st.none())
    strategy = st.one_of(kinds)
    # Deferred: its repr is one line, not the templates' (hypothesis prints strategies it gives up on).
    return st.deferred(lambda: strategy)


def nested_values(codec: Codec, samples: Mapping[type, Any], template: Any,
                  nested: Mapping[str, st.SearchStrategy[bytes]] | None = None) -> st.SearchStrategy[bytes]:
    """For a bytes field that carries a framed event (a coder's corrected encounter, a
    biller's replacement claim): the valid one, or any bad one."""
    strategy = st.one_of(st.just(codec.encode(template)), fuzzed_values(codec, samples, template, nested,
                                                                          tombstone=False))
    return st.deferred(lambda: strategy)  # type: ignore[arg-type, return-value]
