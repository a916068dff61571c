"""engine.claims: fee schedule, claim ids, claim building and once-only billing."""

from __future__ import annotations

import csv
import dataclasses
from decimal import Decimal

import pytest

from engine.claims import FeeSchedule, bill_coded, build_claim, claim_id_for
from engine.coding import code_encounter
from engine.events import (
    ClaimState,
    ClaimStatus,
    ClaimSubmitted,
    CodedEncounter,
    CodedLine,
    DeadLetter,
    DuplicateDropped,
)
from engine.pipeline import DEAD_LETTER_TOPIC, ProcessingError, SourceMessage, run_stage


@pytest.fixture(scope="module")
def chargemaster(settings) -> dict[str, Decimal]:
    """The fee schedule file read independently of FeeSchedule.load."""
    with settings.fee_schedule_file.open(newline="") as handle:
        rows = [line for line in handle if line.strip() and not line.startswith("#")]
    return {row["code"]: Decimal(row["charge"]) for row in csv.DictReader(rows)}


@pytest.fixture
def coded(make_encounter, coding_ref, now) -> CodedEncounter:
    (emit,) = code_encounter(make_encounter(), b"", coding_ref, now)
    assert emit.topic == "coded"
    return emit.event


def test_fee_schedule_loads_every_row_of_the_file(fees, chargemaster):
    assert fees.charges == chargemaster
    assert len(chargemaster) > 20
    assert all(isinstance(v, Decimal) and v > 0 for v in fees.charges.values())


def test_fee_schedule_skips_comments_and_normalises_codes(tmp_path):
    path = tmp_path / "fees.csv"
    path.write_text("# a comment\ncode,charge\n j1100 ,12.50\n99213,140\n# trailing comment\n")
    schedule = FeeSchedule.load(path)
    assert schedule.charges == {"J1100": Decimal("12.50"), "99213": Decimal("140")}
    assert schedule.charge("99213", 2) == Decimal("280.00")
    assert str(schedule.charge("99213", 1)) == "140.00"  # always cents


def test_charge_is_per_unit_times_units(fees, chargemaster):
    for code, per_unit in chargemaster.items():
        for units in (1, 3):
            assert fees.charge(code, units) == per_unit * units


def test_unknown_procedure_code_is_a_processing_error(fees):
    with pytest.raises(ProcessingError, match="99499"):
        fees.charge("99499", 1)


def test_build_claim_totals_and_lines(coded, fees, chargemaster, now):
    claim = build_claim(coded, fees, now)
    assert [line.line_number for line in claim.lines] == [line.line_number for line in coded.lines]
    for coded_line, line in zip(coded.lines, claim.lines, strict=True):
        assert line.procedure_code == coded_line.procedure_code
        assert line.units == coded_line.units
        assert line.modifiers == coded_line.modifiers
        assert line.dx_pointers == coded_line.dx_pointers
        assert line.charge == chargemaster[line.procedure_code] * line.units
        assert line.date_of_service == coded.date_of_service
    assert claim.total_charge == sum(line.charge for line in claim.lines)
    assert claim.total_charge.as_tuple().exponent == -2
    # The J3301 line of the fixture bills 4 units.
    assert any(line.units == 4 for line in claim.lines)


def test_build_claim_header(coded, fees, now):
    claim = build_claim(coded, fees, now)
    assert claim.claim_id == claim_id_for(coded.encounter_id) == claim.patient_control_number
    assert claim.frequency_code == "1" and claim.original_claim_id is None
    assert (claim.encounter_id, claim.encounter_occurred_at, claim.payer_id, claim.member_id, claim.patient_id,
            claim.billing_npi, claim.rendering_npi, claim.date_of_service, claim.place_of_service,
            claim.diagnoses) == (
        coded.encounter_id, coded.encounter_occurred_at, coded.payer_id, coded.member_id, coded.patient_id,
        coded.billing_npi, coded.rendering_npi, coded.date_of_service, coded.place_of_service, coded.diagnoses)
    assert claim.submitted_at == now


def test_claim_round_trips_through_the_codec(coded, fees, codec, now):
    claim = build_claim(coded, fees, now)
    assert codec.decode(codec.encode(claim), ClaimSubmitted) == claim


def test_claim_id_is_deterministic_and_short():
    ids = {claim_id_for(f"ENC-1-{i:07d}") for i in range(2000)}
    assert len(ids) == 2000
    assert claim_id_for("ENC-1-0000001") == claim_id_for("ENC-1-0000001")
    assert claim_id_for("ENC-1-0000001") != claim_id_for("ENC-1-0000002")
    assert all(len(i) <= 38 for i in ids)
    assert len(claim_id_for("E" * 500)) <= 38


def test_bill_coded_once_then_duplicate(coded, fees, now):
    billed: dict[str, str] = {}
    first_msg = SourceMessage("claims.coded", 2, 40, coded.encounter_id.encode(), b"")
    first = list(bill_coded(coded, first_msg, billed, fees, now))
    assert [e.topic for e in first] == ["claims-submitted", "claim-status"]
    claim = first[0].event
    assert isinstance(claim, ClaimSubmitted)
    assert first[0].key == claim.claim_id == first[1].key
    status = first[1].event
    assert isinstance(status, ClaimStatus)
    assert (status.claim_id, status.encounter_id, status.payer_id, status.status, status.billed_amount) == (
        claim.claim_id, coded.encounter_id, coded.payer_id, ClaimState.SUBMITTED, claim.total_charge)
    assert status.paid_amount is None and status.denial_queue is None and status.remittance_id is None
    assert billed == {coded.encounter_id: claim.claim_id}

    again_msg = SourceMessage("claims.coded", 2, 77, coded.encounter_id.encode(), b"")
    second = list(bill_coded(coded, again_msg, billed, fees, now))
    assert len(second) == 1
    assert second[0].topic == "duplicates" and second[0].key == coded.encounter_id
    dropped = second[0].event
    assert isinstance(dropped, DuplicateDropped)
    assert (dropped.claim_id, dropped.encounter_id, dropped.source_topic, dropped.source_partition,
            dropped.source_offset, dropped.dropped_at) == (
        claim.claim_id, coded.encounter_id, "claims.coded", 2, 77, now)
    assert billed == {coded.encounter_id: claim.claim_id}


def test_different_encounters_are_billed_separately(coded, fees, now):
    billed: dict[str, str] = {}
    other = dataclasses.replace(coded, encounter_id="ENC-UNIT-0000002")
    msg = SourceMessage("claims.coded", 0, 1, None, b"")
    a = list(bill_coded(coded, msg, billed, fees, now))
    b = list(bill_coded(other, msg, billed, fees, now))
    assert [e.topic for e in a] == [e.topic for e in b] == ["claims-submitted", "claim-status"]
    assert a[0].event.claim_id != b[0].event.claim_id
    assert len(billed) == 2


def test_unknown_code_raises_and_does_not_mark_as_billed(coded, fees, now):
    bad = dataclasses.replace(coded, lines=[*coded.lines, CodedLine(9, "99499", [], 1, [1])])
    billed: dict[str, str] = {}
    with pytest.raises(ProcessingError):
        list(bill_coded(bad, SourceMessage("claims.coded", 0, 5, None, b""), billed, fees, now))
    assert billed == {}


def test_unknown_code_through_run_stage_becomes_a_dead_letter(coded, fees, codec, now):
    bad = dataclasses.replace(coded, lines=[CodedLine(1, "99499", [], 1, [1])])
    bad_bytes = codec.encode(bad)
    good_bytes = codec.encode(dataclasses.replace(coded, encounter_id="ENC-UNIT-0000009"))
    messages = [
        SourceMessage("claims.coded", 6, 1234, b"ENC-UNIT-0000001", bad_bytes),
        SourceMessage("claims.coded", 6, 1235, b"ENC-UNIT-0000009", good_bytes),
    ]
    billed: dict[str, str] = {}
    result = run_stage("claims", messages, codec, CodedEncounter,
                       lambda c, msg: bill_coded(c, msg, billed, fees, now), now=lambda: now)
    assert [e.topic for e in result.emits] == [DEAD_LETTER_TOPIC, "claims-submitted", "claim-status"]
    (letter,) = result.dead_letters
    assert isinstance(letter, DeadLetter)
    assert result.emits[0].key == "claims.coded:6:1234"
    assert (letter.stage, letter.error_type, letter.source_topic, letter.source_partition, letter.source_offset,
            letter.source_key, letter.original_value, letter.failed_at) == (
        "claims", "ProcessingError", "claims.coded", 6, 1234, b"ENC-UNIT-0000001", bad_bytes, now)
    assert "99499" in letter.reason
    assert list(billed) == ["ENC-UNIT-0000009"]
    assert codec.decode(codec.encode(letter), DeadLetter) == letter
