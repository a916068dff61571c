"""The Avro schemas, the dataclasses and the registry agree; the evolution rule holds."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import shutil
import types
import typing
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import fastavro
import pytest

from engine.model.events import EVENT_TYPES, NAMESPACE, Encounter
from engine.wire.codec import Codec, SchemaRegistry, UndecodableEvent, to_record

TYPE_IDS = [t.__name__ for t in EVENT_TYPES]


@pytest.fixture(scope="module")
def index(settings) -> list[dict[str, Any]]:
    return json.loads((settings.schemas_dir / "registry.json").read_text())["schemas"]


@pytest.fixture(scope="module")
def raw_by_name(settings, index) -> dict[str, dict[str, Any]]:
    return {e["name"]: json.loads((settings.schemas_dir / e["file"]).read_text()) for e in index}


# --- registry -----------------------------------------------------------------


def test_registry_ids_are_unique(index):
    ids = [int(e["id"]) for e in index]
    assert len(ids) == len(set(ids))


def test_registry_name_version_pairs_and_files_are_unique(index):
    assert len({(e["name"], e["version"]) for e in index}) == len(index)
    assert len({e["file"] for e in index}) == len(index)


def test_every_event_type_is_registered_under_its_full_name(index, raw_by_name):
    names = {e["name"] for e in index}
    for event_type in EVENT_TYPES:
        assert event_type.SCHEMA in names
        raw = raw_by_name[event_type.SCHEMA]
        assert f'{raw["namespace"]}.{raw["name"]}' == event_type.SCHEMA
        assert raw["namespace"] == NAMESPACE
        assert raw["name"] == event_type.__name__


def test_every_schema_file_in_the_dir_is_registered(settings, index):
    on_disk = {p.name for p in settings.schemas_dir.glob("*.avsc")}
    assert on_disk == {e["file"] for e in index}


# --- dataclasses mirror the schemas ---------------------------------------------


def _record_fields(raw: dict[str, Any]) -> list[str]:
    return [f["name"] for f in raw["fields"]]


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=TYPE_IDS)
def test_dataclass_has_exactly_the_schema_fields_in_order(raw_by_name, event_type):
    raw = raw_by_name[event_type.SCHEMA]
    assert [f.name for f in dataclasses.fields(event_type)] == _record_fields(raw)


def _named_definitions(schema: Any, found: dict[str, list[Any]]) -> None:
    """Every named type defined in the schema (record, enum, fixed), by short name."""
    if isinstance(schema, list):
        for branch in schema:
            _named_definitions(branch, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed"):
            found.setdefault(schema["name"], []).append(schema)
        if kind == "record":
            for f in schema["fields"]:
                _named_definitions(f["type"], found)
        elif kind == "array":
            _named_definitions(schema["items"], found)
        elif isinstance(kind, (dict, list)):
            _named_definitions(kind, found)


def _resolve(schema: Any, named: dict[str, Any]) -> Any:
    if isinstance(schema, str) and schema in named:
        return named[schema]
    if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        return schema["type"]
    return schema


def _check_shape(hint: Any, schema: Any, named: dict[str, Any], where: str) -> None:
    """The Python type hint and the Avro type describe the same value."""
    schema = _resolve(schema, named)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        assert type(None) in args and len(args) == 2, where
        assert isinstance(schema, list) and schema[0] == "null" and len(schema) == 2, f"{where}: {schema}"
        (inner,) = [a for a in args if a is not type(None)]
        _check_shape(inner, schema[1], named, where)
        return
    assert not isinstance(schema, list), f"{where}: union in the schema, not Optional in the dataclass"
    if origin is list:
        assert schema["type"] == "array", where
        _check_shape(typing.get_args(hint)[0], schema["items"], named, f"{where}[]")
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        assert schema["type"] == "record" and schema["name"] == hint.__name__, where
        hints = typing.get_type_hints(hint)
        assert [f.name for f in dataclasses.fields(hint)] == _record_fields(schema), where
        for f in schema["fields"]:
            _check_shape(hints[f["name"]], f["type"], named, f"{where}.{f['name']}")
        return
    if isinstance(hint, type) and issubclass(hint, Enum):
        assert schema["type"] == "enum" and schema["name"] == hint.__name__, where
        assert schema["symbols"] == [m.value for m in hint], where
        return
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    expected: dict[type, Any] = {
        str: ("string", None),
        bool: ("boolean", None),
        bytes: ("bytes", None),
        Decimal: ("bytes", "decimal"),
        date: ("int", "date"),
        datetime: ("long", "timestamp-millis"),
    }
    if hint is int:
        assert schema in ("int", "long"), f"{where}: {schema}"
        return
    avro_type = schema["type"] if isinstance(schema, dict) else schema
    assert (avro_type, logical) == expected[hint], f"{where}: {hint} vs {schema}"
    if hint is Decimal:
        assert schema["scale"] == 2, f"{where}: money has cents"


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=TYPE_IDS)
def test_field_types_match_including_nested_records_and_enums(raw_by_name, event_type):
    raw = raw_by_name[event_type.SCHEMA]
    named: dict[str, list[Any]] = {}
    _named_definitions(raw, named)
    _check_shape(event_type, raw, {k: v[0] for k, v in named.items()}, event_type.__name__)


def test_named_types_are_identical_wherever_they_appear(raw_by_name):
    """Finding is defined in two files, Adjustment in one: each name means one type."""
    definitions: dict[str, list[tuple[str, Any]]] = {}
    for name, raw in raw_by_name.items():
        found: dict[str, list[Any]] = {}
        _named_definitions(raw, found)
        for short, defs in found.items():
            definitions.setdefault(short, []).extend((name, d) for d in defs)
    shared = {short: defs for short, defs in definitions.items() if len(defs) > 1}
    assert "Finding" in shared  # the case that makes this test meaningful
    assert {"Finding", "Adjustment"} <= set(definitions)
    for short, defs in shared.items():
        first = defs[0][1]
        for where, definition in defs[1:]:
            assert definition == first, f"{short} differs between {defs[0][0]} and {where}"


def test_a_named_type_is_defined_once_per_schema(raw_by_name):
    for name, raw in raw_by_name.items():
        found: dict[str, list[Any]] = {}
        _named_definitions(raw, found)
        assert all(len(defs) == 1 for defs in found.values()), name


# --- evolution ------------------------------------------------------------------

REFERRAL = {"name": "referral_id", "type": ["null", "string"], "default": None}
V2_ID = 101  # the test's own next version of Encounter ("v2" here: one after the latest)
LATEST_ENCOUNTER = "encounter.v2.avsc"  # the newest Encounter in schemas/registry.json
LATEST_ENCOUNTER_ID = 13


def _schemas_copy(settings, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(settings.schemas_dir, target)
    return target


def _add_encounter_v2(schemas: Path, field: dict[str, Any]) -> None:
    raw = json.loads((schemas / LATEST_ENCOUNTER).read_text())
    v2 = copy.deepcopy(raw)
    v2["fields"].append(field)
    (schemas / "encounter_v2.avsc").write_text(json.dumps(v2, indent=2))
    index = json.loads((schemas / "registry.json").read_text())
    index["schemas"].append({"id": V2_ID, "name": Encounter.SCHEMA, "version": 99, "file": "encounter_v2.avsc"})
    (schemas / "registry.json").write_text(json.dumps(index, indent=2))


@pytest.fixture
def v1_codec(settings, tmp_path) -> Codec:
    return Codec.from_dir(_schemas_copy(settings, tmp_path, "v1"))


@pytest.fixture
def v2_codec(settings, tmp_path) -> Codec:
    schemas = _schemas_copy(settings, tmp_path, "v2")
    _add_encounter_v2(schemas, REFERRAL)
    return Codec.from_dir(schemas)


def _v2_bytes(v2_codec: Codec, enc: Encounter, referral: str | None) -> bytes:
    schema = v2_codec.registry.latest[Encounter.SCHEMA]
    assert schema.schema_id == V2_ID and schema.version == 99
    return v2_codec.encode_record(schema, {**to_record(enc), "referral_id": referral})


def test_old_data_new_reader(v1_codec, v2_codec, make_encounter):
    enc = make_encounter()
    old = v1_codec.encode(enc)
    assert old[1:5] == LATEST_ENCOUNTER_ID.to_bytes(4, "big")
    name, record = v2_codec.decode_record(old)
    assert name == Encounter.SCHEMA
    assert record["referral_id"] is None  # the default fills the new field
    assert v2_codec.decode(old, Encounter) == enc


def test_new_data_new_reader_keeps_the_field(v2_codec, make_encounter):
    data = _v2_bytes(v2_codec, make_encounter(), "REF-778")
    _, record = v2_codec.decode_record(data)
    assert record["referral_id"] == "REF-778"
    assert v2_codec.decode(data, Encounter) == make_encounter()


def test_new_data_old_reader_schema_ignores_the_field(settings, tmp_path, make_encounter):
    """Confluent model: the writer schema is found by id, the reader keeps its own (v1) schema."""
    schemas = _schemas_copy(settings, tmp_path, "shared")
    _add_encounter_v2(schemas, REFERRAL)
    registry = SchemaRegistry(schemas)
    v2_writer = Codec(registry)
    data = _v2_bytes(v2_writer, make_encounter(), "REF-778")
    old_registry = SchemaRegistry(schemas)
    old_registry.latest[Encounter.SCHEMA] = old_registry.by_id[LATEST_ENCOUNTER_ID]  # the old reader's own
    name, record = Codec(old_registry).decode_record(data)
    assert "referral_id" not in record
    assert Codec(old_registry).decode(data, Encounter) == make_encounter()


def test_an_id_the_reader_has_not_registered_is_a_clear_error(v1_codec, v2_codec, make_encounter):
    """Rollout rule: registry.json (with the new .avsc) reaches readers before any writer
    uses the new id. A reader that was skipped names the id it lacks (-> dead letter)."""
    data = _v2_bytes(v2_codec, make_encounter(), "REF-778")
    with pytest.raises(UndecodableEvent, match=f"unknown schema id {V2_ID}"):
        v1_codec.decode(data, Encounter)


def test_new_data_read_with_fastavro_v1_reader_schema_ignores_the_field(v1_codec, v2_codec, make_encounter):
    """The Avro resolution rule itself, independent of the registry: v2 writer, v1 reader."""
    data = _v2_bytes(v2_codec, make_encounter(), "REF-778")
    writer = v2_codec.registry.by_id[V2_ID].parsed
    reader = v1_codec.registry.latest[Encounter.SCHEMA].parsed
    buf = io.BytesIO(data[5:])
    record = fastavro.schemaless_reader(buf, writer, reader)
    assert buf.tell() == len(data) - 5
    assert "referral_id" not in record
    assert record == to_record(make_encounter())


def test_new_field_without_default_breaks_old_data(settings, tmp_path, v1_codec, make_encounter):
    schemas = _schemas_copy(settings, tmp_path, "nodefault")
    _add_encounter_v2(schemas, {"name": "referral_id", "type": "string"})
    breaking = Codec.from_dir(schemas)
    old = v1_codec.encode(make_encounter())
    # fastavro itself refuses to resolve the old record into the new schema ...
    writer = breaking.registry.by_id[1].parsed
    reader = breaking.registry.latest[Encounter.SCHEMA].parsed
    with pytest.raises(Exception) as excinfo:
        fastavro.schemaless_reader(io.BytesIO(old[5:]), writer, reader)
    assert "referral_id" in str(excinfo.value)
    # ... and the codec turns that into an undecodable event.
    with pytest.raises(UndecodableEvent, match="referral_id"):
        breaking.decode(old, Encounter)


def _evolves(older: Any, newer: Any, where: str) -> None:
    """``newer`` reads data written with ``older``: records keep their fields in order,
    unchanged or evolved the same way, and only add fields with a default; enums keep
    their symbols in order and may append; everything else is unchanged."""
    if isinstance(older, dict) and isinstance(newer, dict) and older.get("type") == newer.get("type") == "record":
        old_fields = {f["name"]: f for f in older["fields"]}
        kept = [f for f in newer["fields"] if f["name"] in old_fields]
        assert [f["name"] for f in kept] == [f["name"] for f in older["fields"]], where
        for f in kept:
            _evolves(old_fields[f["name"]]["type"], f["type"], f"{where}.{f['name']}")
        added = [f for f in newer["fields"] if f["name"] not in old_fields]
        assert all("default" in f for f in added), (where, added)
    elif isinstance(older, dict) and isinstance(newer, dict) and older.get("type") == newer.get("type") == "enum":
        assert newer["symbols"][: len(older["symbols"])] == older["symbols"], where
        assert {k: v for k, v in newer.items() if k not in ("symbols", "doc")} == \
            {k: v for k, v in older.items() if k not in ("symbols", "doc")}, where
    elif isinstance(older, dict) and isinstance(newer, dict) and older.get("type") == newer.get("type") == "array":
        _evolves(older["items"], newer["items"], f"{where}[]")
    elif isinstance(older, list) and isinstance(newer, list):
        assert len(older) == len(newer), where
        for o, n in zip(older, newer, strict=True):
            _evolves(o, n, where)
    else:
        assert older == newer, where


def test_every_registered_version_follows_the_evolution_rule(settings, index):
    """Each later version of a schema keeps the earlier fields, in order, and only adds
    fields with a default (CodedEncounter v2, CodingReviewItem v2 ...); nested records
    evolve by the same rule and enums only append symbols (Remittance v2: REVERSED)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(index, key=lambda e: (e["name"], e["version"])):
        by_name.setdefault(entry["name"], []).append(entry)
    evolved = {name for name, entries in by_name.items() if len(entries) > 1}
    assert {"org.claimflow.events.CodedEncounter", "org.claimflow.events.Remittance"} <= evolved
    for name in evolved:
        versions = [json.loads((settings.schemas_dir / e["file"]).read_text()) for e in by_name[name]]
        assert [e["version"] for e in by_name[name]] == list(range(1, len(versions) + 1)), name
        for older, newer in zip(versions, versions[1:], strict=False):
            old_names = {f["name"] for f in older["fields"]}
            assert any(f["name"] not in old_names for f in newer["fields"]), name
            _evolves(older, newer, name)


def test_the_evolution_rule_rejects_what_old_data_cannot_feed():
    base = {"type": "record", "name": "R", "fields": [
        {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}}]}
    appended = copy.deepcopy(base)
    appended["fields"][0]["type"]["symbols"].append("Z")
    _evolves(base, appended, "R")
    reordered = copy.deepcopy(base)
    reordered["fields"][0]["type"]["symbols"] = ["Y", "X"]
    with pytest.raises(AssertionError):
        _evolves(base, reordered, "R")
    no_default = copy.deepcopy(base)
    no_default["fields"].append({"name": "b", "type": "string"})
    with pytest.raises(AssertionError):
        _evolves(base, no_default, "R")


def _decimals(schema: Any) -> typing.Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        if schema.get("logicalType") == "decimal":
            yield schema
        for value in schema.values():
            yield from _decimals(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _decimals(item)


def test_every_amount_on_the_wire_is_the_money_modules_decimal(raw_by_name) -> None:
    """engine.model.money.MAX_AMOUNT is what the build refuses beyond: it must be what the
    schemas hold, in every schema."""
    from engine.model.money import MAX_AMOUNT, WIRE_PRECISION

    found = [(d["precision"], d.get("scale", 0)) for raw in raw_by_name.values() for d in _decimals(raw)]
    assert found and set(found) == {(WIRE_PRECISION, 2)}
    assert MAX_AMOUNT == Decimal("9999999999.99")
