"""Fuzz the decoder (``engine.wire.codec.Codec.decode``) with every event type: whatever the
bytes, it returns exactly the event that was written or raises ``UndecodableEvent`` (the
error every stage dead-letters), never another exception and never a changed value."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.model.events import EVENT_TYPES, CodedLine, Encounter, Procedure, Remittance
from engine.wire.codec import Codec, UndecodableEvent, from_record, to_record
from tests.unit.fuzz import mutations as mut
from tests.unit.fuzz.cases import count, fuzz

TYPES = sorted(EVENT_TYPES, key=lambda t: t.__name__)
INT32 = range(-(2**31), 2**31)


def in_domain(schema: Any, value: Any, named: dict[str, Any] | None = None) -> bool:
    """Whether ``value`` (a record as written) lies in ``schema``'s domain as Avro defines
    it: an ``int`` has 32 bits, a decimal at most ``precision`` digits at its scale, an enum
    one of its symbols. (The test's oracle, written apart from the codec's own check.)"""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in named:
            return in_domain(named[schema], value, named)
        return value in INT32 if schema == "int" else True
    if isinstance(schema, list):
        return value is None or any(in_domain(branch, value, named) for branch in schema if branch != "null")
    kind = schema["type"]
    if "name" in schema:
        named[schema["name"]] = named[f"{schema.get('namespace', 'org.claimflow.events')}.{schema['name']}"] = schema
    if schema.get("logicalType") == "decimal":
        unscaled = (value * 10 ** schema.get("scale", 0)).to_integral_value()
        return len(str(abs(int(unscaled)))) <= int(schema["precision"])
    if kind == "record":
        return isinstance(value, dict) and all(in_domain(f["type"], value.get(f["name"]), named)
                                               for f in schema["fields"])
    if kind == "array":
        return all(in_domain(schema["items"], item, named) for item in value)
    if kind == "enum":
        return value in schema["symbols"]
    if isinstance(kind, dict | list):
        return in_domain(kind, value, named)
    return value in INT32 if kind == "int" and "logicalType" not in schema else True


def decode_outcome(codec: Codec, data: bytes | None, event_type: type) -> Any:
    """The decoded event, or the ``UndecodableEvent``; any other exception fails the test."""
    try:
        return codec.decode(data, event_type)
    except UndecodableEvent as exc:
        assert str(exc), "an UndecodableEvent says why"
        return exc


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.__name__)
@fuzz(60)
@given(data=st.data())
def test_absurd_values_decode_as_written_or_are_refused(codec, samples, event_type, data) -> None:
    """Values of the right type, written with a permissive writer: in the schema's domain
    (empty and NUL strings, year 1 and 9999, negative units) they come back exactly; beyond
    it (10^12 charges, 2^31 units, an unknown enum symbol) the event is refused, never
    rounded or cut to fit."""
    template = samples[event_type]
    schema = mut.latest(codec, event_type)
    record = data.draw(mut.absurd_record(template), label="record")
    count(f"decoder: absurd values, {event_type.__name__}")
    outcome = decode_outcome(codec, mut.write(schema, record), event_type)
    if in_domain(schema.raw, record):
        assert outcome == from_record(event_type, record)
    else:
        assert isinstance(outcome, UndecodableEvent), f"decoded a record beyond its schema: {outcome!r}"


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.__name__)
@fuzz(60)
@given(data=st.data())
def test_any_bytes_decode_to_the_event_or_raise_undecodable(codec, samples, event_type, data) -> None:
    """Random bytes, truncations, flipped bits, foreign headers and events, wrong field
    types, missing fields: an event of the type asked for, which encodes again to the same
    event, or ``UndecodableEvent``."""
    value = data.draw(mut.fuzzed_values(codec, samples, samples[event_type]), label="value")
    count(f"decoder: any bytes, {event_type.__name__}")
    outcome = decode_outcome(codec, value, event_type)
    if not isinstance(outcome, UndecodableEvent):
        assert type(outcome) is event_type
        assert codec.decode(codec.encode(outcome), event_type) == outcome


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.__name__)
@fuzz(25)
@given(data=st.data())
def test_a_valid_event_cut_short_or_with_bytes_after_it_never_decodes(codec, samples, event_type, data) -> None:
    valid = codec.encode(samples[event_type])
    value = data.draw(st.one_of(mut.truncated(valid), mut.trailing(valid)), label="value")
    count(f"decoder: truncated or trailing, {event_type.__name__}")
    outcome = decode_outcome(codec, value, event_type)
    assert isinstance(outcome, UndecodableEvent)
    if len(value) > len(valid):
        assert "trailing bytes" in str(outcome)


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.__name__)
@fuzz(25)
@given(data=st.data())
def test_a_wrong_header_is_refused_and_named(codec, samples, event_type, data) -> None:
    """Another event's id, an id nobody registered, a bad magic byte: refused, and the reason
    names what was wrong. (An older version's id with today's body may decode: into the
    expected type, or not at all.)"""
    value = data.draw(mut.foreign_id(codec, codec.encode(samples[event_type]), event_type.SCHEMA), label="value")
    count(f"decoder: wrong header, {event_type.__name__}")
    magic, schema_id = mut.HEADER.unpack_from(value)
    outcome = decode_outcome(codec, value, event_type)
    if magic != 0:
        assert isinstance(outcome, UndecodableEvent) and f"magic byte {magic}" in str(outcome)
    elif schema_id not in codec.registry.by_id:
        assert isinstance(outcome, UndecodableEvent) and f"unknown schema id {schema_id}" in str(outcome)
    elif codec.registry.by_id[schema_id].name != event_type.SCHEMA:
        assert isinstance(outcome, UndecodableEvent) and f"id {schema_id}" in str(outcome)
        assert f"where {event_type.SCHEMA} was expected" in str(outcome)
    else:
        assert isinstance(outcome, UndecodableEvent | event_type)


# --- the absurd values of the issue, one by one -----------------------------------------------


def test_charges_beyond_decimal_12_2_are_refused_not_rounded(codec, make_remittance) -> None:
    """decimal(12, 2) holds 9,999,999,999.99. fastavro reads 1,234,567,890,123.45 with the
    schema's precision as its context and rounds it to 1,234,567,890,120 without a word:
    an amount changed by the decoder. It must be refused (a dead letter), not posted."""
    schema = mut.latest(codec, Remittance)
    for amount in ("1234567890123.45", "1000000000000", "-1000000000000", "10000000000.00", "1E+40"):
        record = to_record(make_remittance(billed_amount=Decimal(amount)))
        with pytest.raises(UndecodableEvent, match="billed_amount"):
            codec.decode(mut.write(schema, record), Remittance)
    largest = to_record(make_remittance(billed_amount=mut.MAX_MONEY, paid_amount=-mut.MAX_MONEY))
    decoded = codec.decode(mut.write(schema, largest), Remittance)
    assert (decoded.billed_amount, decoded.paid_amount) == (mut.MAX_MONEY, -mut.MAX_MONEY)


def test_units_beyond_an_avro_int_are_refused(codec, make_encounter) -> None:
    """An Avro ``int`` is 32 bits; fastavro reads a varint of up to 64 into it. 2^31 units is
    not an int any reader of the schema (Java, the reference implementation) takes."""
    schema = mut.latest(codec, Encounter)
    for units in (2**31, -(2**31) - 1, 2**63 - 1):
        record = to_record(make_encounter(procedures=[Procedure("99213", [], units, [1])]))
        with pytest.raises(UndecodableEvent, match=r"procedures\[0\]\.units"):
            codec.decode(mut.write(schema, record), Encounter)
    for units in (2**31 - 1, -(2**31), -1, 0):
        event = make_encounter(procedures=[Procedure("99213", [], units, [1])])
        assert codec.decode(codec.encode(event), Encounter) == event


def test_an_unknown_enum_symbol_is_refused(codec, make_encounter) -> None:
    record = to_record(make_encounter())
    record["patient"] = {**record["patient"], "sex": mut.FUZZ_SYMBOL}
    with pytest.raises(UndecodableEvent):
        codec.decode(mut.write(mut.latest(codec, Encounter), record), Encounter)


def test_values_in_the_schemas_domain_come_back_exactly(codec, make_encounter, make_coded_encounter) -> None:
    """Year 1 and 9999, unicode and NUL in codes, empty ids, 10,000 lines and diagnoses:
    absurd, but Avro values; the decoder hands them on as they are (the stages judge them)."""
    events = [
        make_encounter(encounter_id="", member_id="", payer_id="", billing_npi="", date_of_service=date(1, 1, 1),
                       occurred_at=datetime(1, 1, 1, tzinfo=UTC), patient={"birth_date": date(9999, 12, 31)}),
        make_encounter(date_of_service=date(9999, 12, 31),
                       occurred_at=datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
        make_encounter(diagnoses=["E11.9\x00", "\x00", "Ｅ１１．９", "😀", "I10\u202e"],
                       procedures=[Procedure("99214\x00", ["2\x005", "Ω"], 1, [1])]),
        make_encounter(diagnoses=[f"E11.{i % 10}" for i in range(10_000)],
                       procedures=[Procedure("99213", [], -1, [1, 2, 3, 4, 5]) for _ in range(10_000)]),
        make_coded_encounter(encounter_id="\x00", lines=[CodedLine(n, "J3301", [], 2**31 - 1, [1])
                                                         for n in range(1, 10_001)]),
    ]
    count("decoder: explicit absurd values", len(events))
    for event in events:
        assert codec.decode(codec.encode(event), type(event)) == event


def test_a_tombstone_and_short_records_are_refused(codec) -> None:
    for value in (None, b"", b"\x00", b"\x00\x00\x00\x00"):
        with pytest.raises(UndecodableEvent, match="too short"):
            codec.decode(value, Encounter)


def test_an_older_version_s_body_under_its_own_id_still_reads(codec, samples) -> None:
    """Not an error: evolution. An Encounter v1 record reads as today's, defaults filled."""
    v1 = next(s for s in codec.registry.by_id.values() if s.name == Encounter.SCHEMA and s.version == 1)
    event = dataclasses.replace(samples[Encounter], patient_address=None, subscriber=None)
    assert codec.decode(mut.write(v1, to_record(event), raw=v1.raw), Encounter) == event
