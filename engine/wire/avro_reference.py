"""avro-python3, the reference Avro implementation our user named, wired to our schemas.

avro-python3 1.10.2 reads and writes logical types as their underlying Avro types
(decimal as two's-complement bytes, date as days, timestamp-millis as ms). The Avro
specification defines those mappings; this module applies them on the way in and out
so values compare with what fastavro produces. It is not on the hot path: tests and
``bench/codec.py`` use it to prove both implementations agree byte for byte.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import avro.io
import avro.schema

EPOCH_DATE = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReferenceCodec:
    """Body-only (unframed) Avro encode/decode of one schema with avro-python3."""

    def __init__(self, schema_json: dict[str, Any]) -> None:
        self.schema_json = schema_json
        self.schema = avro.schema.parse(json.dumps(schema_json))
        self._writer = avro.io.DatumWriter(self.schema)
        self._reader = avro.io.DatumReader(self.schema)
        self._named: dict[str, Any] = {}
        _collect_named(schema_json, self._named)

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        self._writer.write(_walk(self.schema_json, record, _to_underlying, self._named), avro.io.BinaryEncoder(buf))
        return buf.getvalue()

    def decode(self, body: bytes) -> dict[str, Any]:
        raw = self._reader.read(avro.io.BinaryDecoder(io.BytesIO(body)))
        return _walk(self.schema_json, raw, _to_logical, self._named)  # type: ignore[no-any-return]


def _to_underlying(logical: str, schema: dict[str, Any], value: Any) -> Any:
    if logical == "decimal":
        scale, precision = int(schema.get("scale", 0)), int(schema["precision"])
        scaled = Decimal(value).scaleb(scale)
        if scaled != scaled.to_integral_value() or len(scaled.to_integral_value().as_tuple().digits) > precision:
            raise ValueError(f"{value} does not fit decimal({precision},{scale})")  # as fastavro refuses it
        unscaled = int(scaled)
        length = max(1, (unscaled.bit_length() + 8) // 8)
        return unscaled.to_bytes(length, "big", signed=True)
    if logical == "date":
        return (value - EPOCH_DATE).days
    if logical == "timestamp-millis":
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return value


def _to_logical(logical: str, schema: dict[str, Any], value: Any) -> Any:
    if logical == "decimal":
        return Decimal(int.from_bytes(value, "big", signed=True)).scaleb(-int(schema.get("scale", 0)))
    if logical == "date":
        return EPOCH_DATE + timedelta(days=value)
    if logical == "timestamp-millis":
        return EPOCH + timedelta(milliseconds=value)
    return value


def _walk(
    schema: Any, value: Any, convert: Callable[[str, dict[str, Any], Any], Any], named: dict[str, Any]
) -> Any:
    """Apply ``convert`` to every logical-typed value in ``value`` per ``schema``."""
    if isinstance(schema, str):
        return _walk(named[schema], value, convert, named) if schema in named else value
    if isinstance(schema, list):  # union: our unions are ["null", X]
        if value is None:
            return None
        branch = next(s for s in schema if s != "null")
        return _walk(branch, value, convert, named)
    kind = schema["type"]
    if "logicalType" in schema:
        return convert(schema["logicalType"], schema, value)
    if kind == "record":
        return {f["name"]: _walk(f["type"], value[f["name"]], convert, named) for f in schema["fields"]}
    if kind == "array":
        return [_walk(schema["items"], item, convert, named) for item in value]
    if kind == "enum":
        return str(value)
    if isinstance(kind, (dict, list)):
        return _walk(kind, value, convert, named)
    return value


def _collect_named(schema: Any, named: dict[str, Any]) -> None:
    """Every named record in the schema by its short name, wherever it is defined."""
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            named[schema["name"]] = schema
            for f in schema["fields"]:
                _collect_named(f["type"], named)
        elif schema.get("type") == "array":
            _collect_named(schema["items"], named)
        elif isinstance(schema.get("type"), (dict, list)):
            _collect_named(schema["type"], named)
