"""fastavro (hot path) and avro-python3 (the reference implementation) agree byte for byte."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from engine.model.events import EVENT_TYPES, Adjustment, ClaimStatus, Encounter, GroupCode, Remittance
from engine.wire.avro_reference import ReferenceCodec
from engine.wire.codec import to_record

TYPE_IDS = [t.__name__ for t in EVENT_TYPES]


@pytest.fixture(scope="module")
def reference(codec):
    """One ReferenceCodec per event type, over the same raw schema fastavro uses."""
    return {t: ReferenceCodec(codec.registry.latest[t.SCHEMA].raw) for t in EVENT_TYPES}


def body(codec, event) -> bytes:
    return codec.encode(event)[5:]


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=TYPE_IDS)
def test_reference_reads_what_fastavro_wrote(codec, reference, samples, event_type):
    event = samples[event_type]
    fast_record = to_record(event)
    decoded = reference[event_type].decode(body(codec, event))
    assert decoded == fast_record
    _, fast_decoded = codec.decode_record(codec.encode(event))
    assert decoded == fast_decoded


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=TYPE_IDS)
def test_reference_writes_the_same_bytes_as_fastavro(codec, reference, samples, event_type):
    event = samples[event_type]
    assert reference[event_type].encode(to_record(event)) == body(codec, event)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=TYPE_IDS)
def test_fastavro_reads_what_the_reference_wrote(codec, reference, samples, event_type):
    event = samples[event_type]
    schema_id = codec.registry.latest[event_type.SCHEMA].schema_id
    framed = b"\x00" + schema_id.to_bytes(4, "big") + reference[event_type].encode(to_record(event))
    assert codec.decode(framed, event_type) == event


AMOUNTS = [
    Decimal("0.00"), Decimal("0.01"), Decimal("-0.01"), Decimal("1.27"), Decimal("1.28"), Decimal("-1.28"),
    Decimal("-1.29"), Decimal("327.67"), Decimal("327.68"), Decimal("-327.68"), Decimal("-327.69"),
    Decimal("9999999999.99"), Decimal("-9999999999.99"), Decimal("140.00"), Decimal("12.5"),
]


@pytest.mark.parametrize("amount", AMOUNTS, ids=str)
def test_decimal_survives_both_ways(codec, reference, samples, amount):
    """Two's-complement byte boundaries (±127/128 cents, ±32767/32768) and the precision limit."""
    status = dataclasses.replace(samples[ClaimStatus], billed_amount=amount, paid_amount=-amount)
    ref = reference[ClaimStatus]
    fast = body(codec, status)
    assert ref.encode(to_record(status)) == fast
    decoded = ref.decode(fast)
    assert decoded["billed_amount"] == amount and decoded["paid_amount"] == -amount
    assert isinstance(decoded["billed_amount"], Decimal)
    assert decoded["billed_amount"].as_tuple().exponent == -2  # scale 2 on the wire
    assert codec.decode(codec.encode(status), ClaimStatus) == status


@pytest.mark.parametrize(
    "instant",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(1900, 1, 1, tzinfo=UTC),
        datetime(2026, 3, 8, 2, 30, 0, 1_000, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),  # past int32 seconds
        datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
    ids=str,
)
def test_timestamp_millis_survives_both_ways(codec, reference, samples, instant):
    status = dataclasses.replace(samples[ClaimStatus], updated_at=instant)
    ref = reference[ClaimStatus]
    fast = body(codec, status)
    assert ref.encode(to_record(status)) == fast
    decoded = ref.decode(fast)["updated_at"]
    assert decoded == instant
    assert decoded.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "day", [date(1970, 1, 1), date(1969, 12, 31), date(1901, 2, 3), date(2026, 2, 28), date(2099, 12, 31)], ids=str
)
def test_date_survives_both_ways(codec, reference, samples, day):
    enc = samples[Encounter]
    enc = dataclasses.replace(enc, date_of_service=day, patient=dataclasses.replace(enc.patient, birth_date=day))
    ref = reference[Encounter]
    fast = body(codec, enc)
    assert ref.encode(to_record(enc)) == fast
    decoded = ref.decode(fast)
    assert decoded["date_of_service"] == day
    assert decoded["patient"]["birth_date"] == day


def test_named_type_reference_inside_an_array_is_converted(codec, reference, samples):
    """RemittanceLine.adjustments refers to Adjustment by name: its decimals still convert."""
    remit = samples[Remittance]
    remit = dataclasses.replace(
        remit,
        lines=[dataclasses.replace(remit.lines[0], adjustments=[Adjustment(GroupCode.OA, "23", Decimal("-12.34"), 2)])],
    )
    fast = body(codec, remit)
    assert reference[Remittance].encode(to_record(remit)) == fast
    line_adj = reference[Remittance].decode(fast)["lines"][0]["adjustments"][0]
    assert line_adj == {"group_code": "OA", "carc": "23", "amount": Decimal("-12.34"), "quantity": 2}


@pytest.mark.parametrize("amount", ["1.00", "9999999999.99"])
def test_both_accept_amounts_that_fit_decimal_12_2(codec, reference, samples, amount):
    status = dataclasses.replace(samples[ClaimStatus], billed_amount=Decimal(amount))
    assert reference[ClaimStatus].encode(to_record(status)) == body(codec, status)


@pytest.mark.parametrize("amount", ["1.005", "12.3456", "123456789012.34"], ids=["half-cent", "4-places", "14-digits"])
def test_fastavro_rejects_amounts_that_do_not_fit_decimal_12_2(codec, samples, amount):
    status = dataclasses.replace(samples[ClaimStatus], billed_amount=Decimal(amount))
    with pytest.raises(ValueError):
        codec.encode(status)


@pytest.mark.parametrize("amount", ["1.005", "12.3456", "123456789012.34"], ids=["half-cent", "4-places", "14-digits"])
def test_reference_rejects_amounts_that_do_not_fit_decimal_12_2(reference, samples, amount):
    status = dataclasses.replace(samples[ClaimStatus], billed_amount=Decimal(amount))
    with pytest.raises(ValueError):
        reference[ClaimStatus].encode(to_record(status))
