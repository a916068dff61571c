"""engine.claims.build: fee schedule, claim ids, claim building, and the claim stage — once-only
billing, eligibility before the claim (parked, or decided from a cached answer), the
front desk for members not covered, and the scrubber gate."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from engine.claims.build import FeeSchedule, build_claim, claim_id_for
from engine.claims.eligibility import EligibilityCache, eligibility_request, front_desk_item_id
from engine.claims.scrubber import ScrubContext, scrub_claim, scrub_item_id
from engine.claims.stage import ClaimStageState, TakenOn, bill_coded, decide, on_eligibility
from engine.model.codes import SELF
from engine.model.events import (
    ClaimState,
    ClaimStatus,
    ClaimSubmitted,
    CodedEncounter,
    CodedLine,
    DeadLetter,
    DuplicateDropped,
    EligibilityRequest,
    EligibilityResponse,
    EligibilityStatus,
    FrontDeskItem,
    Provider,
    ScrubRejected,
    Severity,
    Subscriber,
)
from engine.runtime.stages import DEAD_LETTER_TOPIC, ProcessingError, SourceMessage, run_stage
from engine.wire.topics import Topic
from tests.unit.claims.conftest import HOME

ACTIVE, INACTIVE, NOT_FOUND = EligibilityStatus.ACTIVE, EligibilityStatus.INACTIVE, EligibilityStatus.NOT_FOUND
TTL = timedelta(hours=24)


@pytest.fixture(scope="module")
def chargemaster(settings) -> dict[str, Decimal]:
    """The fee schedule file read independently of FeeSchedule.load."""
    with settings.fee_schedule_file.open(newline="") as handle:
        rows = [line for line in handle if line.strip() and not line.startswith("#")]
    return {row["code"]: Decimal(row["charge"]) for row in csv.DictReader(rows)}


def new_state(codec, ttl: timedelta = TTL) -> ClaimStageState:
    return ClaimStageState({}, EligibilityCache({}, codec, ttl))


def coded_message(codec, coded: CodedEncounter, offset: int = 40, partition: int = 2) -> SourceMessage:
    return SourceMessage("claims.coded", partition, offset, coded.encounter_id.encode(), codec.encode(coded))


def answer_to(request: EligibilityRequest, at: datetime, status: EligibilityStatus = ACTIVE,
              start: date | None = date(2020, 1, 1), end: date | None = None,
              reason: str | None = None) -> EligibilityResponse:
    """The payer's 271 for ``request``."""
    active = status == ACTIVE
    return EligibilityResponse(
        request_id=request.request_id, encounter_id=request.encounter_id, payer_id=request.payer_id,
        member_id=request.member_id, date_of_service=request.date_of_service, status=status,
        plan_id=f"{request.payer_id}-GOLD" if status != NOT_FOUND else None,
        coverage_start=start if status != NOT_FOUND else None, coverage_end=end if status != NOT_FOUND else None,
        copay=Decimal("20.00") if active else None, deductible_remaining=Decimal("283.00") if active else None,
        reason=reason, responded_at=at,
    )


def park(coded, codec, state, ctx, now, offset: int = 40) -> EligibilityRequest:
    """bill_coded with no cached answer: the encounter is parked and the payer asked."""
    (emit,) = bill_coded(coded, coded_message(codec, coded, offset), state, ctx, now)
    assert (emit.topic, emit.key) == ("eligibility-requests", coded.encounter_id)
    assert isinstance(emit.event, EligibilityRequest)
    return emit.event


# --- fee schedule ---------------------------------------------------------------


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


def test_claim_context_loads_the_master_data(claim_ctx, settings, codec, fees):
    assert claim_ctx.fees == fees
    assert claim_ctx.providers.billing.entity_type == "2"
    assert len(claim_ctx.providers.rendering) == 6
    assert set(claim_ctx.payers) == {"MCR01", "MCA01", "MCD01", "PPO01", "HMO01"}
    assert {"11", "21", "22"} <= claim_ctx.places_of_service
    assert claim_ctx.eligibility_ttl == timedelta(seconds=settings.eligibility_ttl_s)
    assert claim_ctx.codec is codec


# --- building the claim -----------------------------------------------------------


def test_build_claim_totals_and_lines(coded, claim_ctx, chargemaster, now):
    claim = build_claim(coded, claim_ctx, now)
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


def test_build_claim_header(coded, claim_ctx, now):
    claim = build_claim(coded, claim_ctx, now)
    assert claim.claim_id == claim_id_for(coded.encounter_id) == claim.patient_control_number
    assert claim.frequency_code == "1" and claim.original_claim_id is None
    assert (claim.encounter_id, claim.encounter_occurred_at, claim.payer_id, claim.member_id, claim.patient_id,
            claim.billing_npi, claim.rendering_npi, claim.date_of_service, claim.place_of_service,
            claim.diagnoses) == (
        coded.encounter_id, coded.encounter_occurred_at, coded.payer_id, coded.member_id, coded.patient_id,
        coded.billing_npi, coded.rendering_npi, coded.date_of_service, coded.place_of_service, coded.diagnoses)
    assert claim.submitted_at == now


def test_build_claim_fills_providers_payer_and_patient(coded, claim_ctx, rendering_npi, now):
    claim = build_claim(coded, claim_ctx, now)
    assert claim.billing_provider == claim_ctx.providers.billing
    assert claim.billing_provider.name == "CLAIMFLOW FAMILY MEDICINE GROUP" and claim.billing_provider.tax_id
    assert claim.rendering_provider == claim_ctx.providers.rendering[rendering_npi]
    assert claim.rendering_provider.entity_type == "1" and claim.rendering_provider.name
    assert (claim.payer_name, claim.claim_filing_indicator) == ("MEDICARE PART B", "MB")
    assert (claim.patient_first_name, claim.patient_last_name, claim.patient_birth_date, claim.patient_sex,
            claim.patient_address) == ("Ana", "Chen", date(1958, 7, 14), "F", HOME)


def test_a_patient_who_is_the_subscriber_is_relationship_18(coded, claim_ctx, now):
    assert coded.subscriber is None
    claim = build_claim(coded, claim_ctx, now)
    assert SELF == "18"
    assert claim.subscriber == Subscriber(relationship="18", first_name="Ana", last_name="Chen",
                                          birth_date=date(1958, 7, 14), sex="F", address=HOME)


def test_a_dependent_carries_the_encounter_s_subscriber(coded, claim_ctx, now):
    parent = Subscriber("19", "Lee", "Chen", date(1980, 4, 2), "M", HOME, "GRP-1")
    claim = build_claim(dataclasses.replace(coded, subscriber=parent), claim_ctx, now)
    assert claim.subscriber == parent
    # The patient is still the patient.
    assert (claim.patient_first_name, claim.patient_birth_date) == ("Ana", date(1958, 7, 14))


def test_unknown_npis_and_payer_are_carried_with_empty_names(coded, claim_ctx, now):
    odd = dataclasses.replace(coded, billing_npi="1234567893", rendering_npi="1912301953", payer_id="NOPE1")
    claim = build_claim(odd, claim_ctx, now)
    assert claim.billing_provider == Provider("1234567893", "2", "", "", "", "", None)
    assert claim.rendering_provider == Provider("1912301953", "1", "", "", "", "", None)
    assert (claim.billing_npi, claim.rendering_npi) == ("1234567893", "1912301953")
    assert (claim.payer_id, claim.payer_name, claim.claim_filing_indicator) == ("NOPE1", "", "")
    # The billing provider's NPI used as the rendering one is not a rendering provider.
    own = build_claim(dataclasses.replace(coded, rendering_npi=claim_ctx.providers.billing.npi), claim_ctx, now)
    assert own.rendering_provider.name == ""


def test_claim_round_trips_through_the_codec(coded, claim_ctx, codec, now):
    for subscriber in (None, Subscriber("01", "Wei", "Chen", None, "M")):
        claim = build_claim(dataclasses.replace(coded, subscriber=subscriber), claim_ctx, now)
        assert codec.decode(codec.encode(claim), ClaimSubmitted) == claim


def test_claim_id_is_deterministic_and_short():
    ids = {claim_id_for(f"ENC-1-{i:07d}") for i in range(2000)}
    assert len(ids) == 2000
    assert claim_id_for("ENC-1-0000001") == claim_id_for("ENC-1-0000001")
    assert claim_id_for("ENC-1-0000001") != claim_id_for("ENC-1-0000002")
    assert all(len(i) <= 38 for i in ids)
    assert len(claim_id_for("E" * 500)) <= 38


# --- the claim stage: eligibility first -----------------------------------------------


def test_a_new_encounter_is_parked_and_the_payer_asked(coded, claim_ctx, codec, now):
    state = new_state(codec)
    message = coded_message(codec, coded)
    (emit,) = bill_coded(coded, message, state, claim_ctx, now)
    assert (emit.topic, emit.key) == ("eligibility-requests", coded.encounter_id)
    assert emit.event == eligibility_request(coded, now)
    assert {e: TakenOn.loads(v).claim_id for e, v in state.billed.items()} == {
        coded.encounter_id: claim_id_for(coded.encounter_id)}
    assert dict(state.awaiting) == {coded.encounter_id: message.value}
    assert codec.decode(state.awaiting[coded.encounter_id], CodedEncounter) == coded
    assert dict(state.answers.entries) == {}


def test_a_covered_member_gets_a_claim_submitted_with_its_status(coded, claim_ctx, codec, now):
    state = new_state(codec)
    request = park(coded, codec, state, claim_ctx, now)
    later = now + timedelta(seconds=2)
    emits = on_eligibility(answer_to(request, later), state, claim_ctx, later)
    assert [e.topic for e in emits] == ["claims-submitted", "claim-status"]
    claim = emits[0].event
    assert isinstance(claim, ClaimSubmitted)
    assert emits[0].key == claim.claim_id == emits[1].key == claim_id_for(coded.encounter_id)
    assert claim == build_claim(coded, claim_ctx, later)
    status = emits[1].event
    assert isinstance(status, ClaimStatus)
    assert (status.claim_id, status.encounter_id, status.payer_id, status.status, status.billed_amount,
            status.updated_at) == (claim.claim_id, coded.encounter_id, coded.payer_id, ClaimState.SUBMITTED,
                                   claim.total_charge, later)
    assert status.paid_amount is None and status.denial_queue is None and status.remittance_id is None
    assert dict(state.awaiting) == {}
    assert {e: TakenOn.loads(v) for e, v in state.billed.items()} == {
        coded.encounter_id: TakenOn(claim.claim_id, parked=False, origins=[])}  # decided
    assert list(state.answers.entries) == [f"{coded.payer_id}|{coded.member_id}"]


@pytest.mark.parametrize(
    "status, start, end, reason, expected_status, expected_reason",
    [
        (INACTIVE, date(2019, 1, 1), date(2025, 12, 31), "coverage ended 2025-12-31", INACTIVE,
         "coverage ended 2025-12-31"),
        (INACTIVE, date(2026, 4, 1), None, None, INACTIVE, "coverage not in force on 2026-02-27"),
        (NOT_FOUND, None, None, "member not found", NOT_FOUND, "member not found"),
        # ACTIVE, but its period does not include the date of service: not covered either.
        (ACTIVE, date(2019, 1, 1), date(2026, 1, 31), None, INACTIVE, "coverage not in force on 2026-02-27"),
    ],
    ids=["inactive-lapsed", "inactive-not-started-no-reason", "not-found", "active-period-misses-the-day"],
)
def test_a_member_not_covered_goes_to_the_front_desk(coded, claim_ctx, codec, now, status, start, end, reason,
                                                     expected_status, expected_reason):
    state = new_state(codec)
    message = coded_message(codec, coded)
    (request_emit,) = bill_coded(coded, message, state, claim_ctx, now)
    (emit,) = on_eligibility(answer_to(request_emit.event, now, status, start, end, reason), state, claim_ctx, now)
    assert (emit.topic, emit.key) == ("front-desk", coded.encounter_id)
    item = emit.event
    assert item == FrontDeskItem(
        work_item_id=front_desk_item_id(coded.encounter_id), encounter_id=coded.encounter_id,
        payer_id=coded.payer_id, status=expected_status, reason=expected_reason,
        date_of_service=coded.date_of_service, coded=message.value, created_at=now,
    )
    assert codec.decode(item.coded, CodedEncounter) == coded  # the encounter as received, for registration to fix
    assert codec.decode(codec.encode(item), FrontDeskItem) == item
    assert dict(state.awaiting) == {}
    assert coded.encounter_id in state.billed  # taken on: a resend is a duplicate, not a second front-desk item


def test_a_scrub_error_rejects_the_claim_with_its_findings(coded, claim_ctx, codec, now):
    """A mistyped rendering NPI (wrong check digit): the claim is built but not submitted."""
    npi = coded.rendering_npi
    mistyped = dataclasses.replace(coded, rendering_npi=npi[:-1] + str((int(npi[-1]) + 1) % 10))
    state = new_state(codec)
    request = park(mistyped, codec, state, claim_ctx, now)
    (emit,) = on_eligibility(answer_to(request, now), state, claim_ctx, now)
    claim_id = claim_id_for(coded.encounter_id)
    assert (emit.topic, emit.key) == ("scrub-rejected", claim_id)
    rejected = emit.event
    assert isinstance(rejected, ScrubRejected)
    assert (rejected.work_item_id, rejected.claim_id, rejected.encounter_id, rejected.payer_id,
            rejected.rejected_at) == (scrub_item_id(claim_id), claim_id, coded.encounter_id, coded.payer_id, now)
    errors = {(f.rule_id, f.element) for f in rejected.findings if f.severity == Severity.ERROR}
    assert ("SCRUB_NPI_INVALID", "rendering_provider.npi") in errors
    assert ("SCRUB_REQUIRED", "rendering_provider.name") in errors  # not a provider of the practice either
    severities = [f.severity for f in rejected.findings]
    assert severities == sorted(severities, key=lambda s: s != Severity.ERROR)  # errors first
    claim = codec.decode(rejected.claim, ClaimSubmitted)
    assert claim == build_claim(mistyped, claim_ctx, now)
    assert codec.decode(codec.encode(rejected), ScrubRejected) == rejected
    assert dict(state.awaiting) == {}


def test_a_warning_does_not_stop_the_claim(coded, claim_ctx, codec):
    """A PPO claim 85 days after its date of service (90-day limit): near the limit, still submitted."""
    ppo = dataclasses.replace(coded, payer_id="PPO01", member_id="PPO123456789")
    at = datetime.combine(ppo.date_of_service + timedelta(days=85), datetime.min.time(), UTC)
    state = new_state(codec)
    request = park(ppo, codec, state, claim_ctx, at)
    emits = on_eligibility(answer_to(request, at), state, claim_ctx, at)
    assert [e.topic for e in emits] == ["claims-submitted", "claim-status"]
    claim = emits[0].event
    assert (claim.payer_name, claim.claim_filing_indicator) == ("COMMERCIAL PPO", "CI")
    findings = scrub_claim(claim, ScrubContext(claim_ctx.payers["PPO01"], None, at.date(), claim_ctx.places_of_service))
    assert [(f.rule_id, f.severity) for f in findings] == [("SCRUB_TIMELY_FILING_NEAR", Severity.WARNING)]
    # Past the limit the same claim is rejected.
    late = at + timedelta(days=6)
    (emit,) = decide(ppo, codec.encode(ppo), answer_to(request, late), claim_ctx, late)
    assert emit.topic == "scrub-rejected"
    assert [f.rule_id for f in emit.event.findings if f.severity == Severity.ERROR] == ["SCRUB_TIMELY_FILING"]


def test_a_cached_answer_skips_the_request(coded, claim_ctx, codec, now):
    state = new_state(codec)
    request = park(coded, codec, state, claim_ctx, now)
    on_eligibility(answer_to(request, now), state, claim_ctx, now)
    # The same member's next visit (the next day's date of service), asked about within the TTL.
    next_visit = dataclasses.replace(coded, encounter_id="ENC-UNIT-0000002",
                                     date_of_service=coded.date_of_service + timedelta(days=1))
    later = now + timedelta(hours=3)
    emits = bill_coded(next_visit, coded_message(codec, next_visit, 41), state, claim_ctx, later)
    assert [e.topic for e in emits] == ["claims-submitted", "claim-status"]
    assert emits[0].event.encounter_id == "ENC-UNIT-0000002"
    assert dict(state.awaiting) == {}
    assert set(state.billed) == {coded.encounter_id, "ENC-UNIT-0000002"}


def test_a_cached_not_covered_answer_sends_the_next_visit_to_the_front_desk(coded, claim_ctx, codec, now):
    state = new_state(codec)
    request = park(coded, codec, state, claim_ctx, now)
    on_eligibility(answer_to(request, now, NOT_FOUND, reason="member not found"), state, claim_ctx, now)
    next_visit = dataclasses.replace(coded, encounter_id="ENC-UNIT-0000002")
    message = coded_message(codec, next_visit, 41)
    (emit,) = bill_coded(next_visit, message, state, claim_ctx, now + timedelta(minutes=5))
    assert emit.topic == "front-desk"
    assert (emit.event.status, emit.event.reason, emit.event.coded) == (NOT_FOUND, "member not found", message.value)


def test_an_expired_answer_asks_again(coded, claim_ctx, codec, now):
    state = new_state(codec)
    request = park(coded, codec, state, claim_ctx, now)
    on_eligibility(answer_to(request, now), state, claim_ctx, now)
    next_visit = dataclasses.replace(coded, encounter_id="ENC-UNIT-0000002")
    (emit,) = bill_coded(next_visit, coded_message(codec, next_visit, 41), state, claim_ctx,
                         now + TTL + timedelta(seconds=1))
    assert emit.topic == "eligibility-requests"
    assert list(state.awaiting) == ["ENC-UNIT-0000002"]


def test_a_duplicate_while_parked_is_dropped_and_asks_nothing(coded, claim_ctx, codec, now):
    state = new_state(codec)
    request = park(coded, codec, state, claim_ctx, now)
    parked = dict(state.awaiting)
    again = SourceMessage("claims.coded", 2, 77, coded.encounter_id.encode(), codec.encode(coded))
    (emit,) = bill_coded(coded, again, state, claim_ctx, now)
    assert (emit.topic, emit.key) == ("duplicates", coded.encounter_id)
    dropped = emit.event
    assert isinstance(dropped, DuplicateDropped)
    assert (dropped.claim_id, dropped.encounter_id, dropped.source_topic, dropped.source_partition,
            dropped.source_offset, dropped.dropped_at) == (
        claim_id_for(coded.encounter_id), coded.encounter_id, "claims.coded", 2, 77, now)
    assert dict(state.awaiting) == parked
    # The one answer then decides the one encounter.
    assert [e.topic for e in on_eligibility(answer_to(request, now), state, claim_ctx, now)] == [
        "claims-submitted", "claim-status"]


def test_a_duplicate_after_the_decision_is_dropped(coded, claim_ctx, codec, now):
    state = new_state(codec)
    request = park(coded, codec, state, claim_ctx, now)
    on_eligibility(answer_to(request, now), state, claim_ctx, now)
    (emit,) = bill_coded(coded, coded_message(codec, coded, 78), state, claim_ctx, now)
    assert emit.topic == "duplicates" and emit.event.source_offset == 78
    assert {e: TakenOn.loads(v).claim_id for e, v in state.billed.items()} == {
        coded.encounter_id: claim_id_for(coded.encounter_id)}


def test_a_redelivered_answer_after_the_decision_emits_nothing(coded, claim_ctx, codec, now):
    state = new_state(codec)
    request = park(coded, codec, state, claim_ctx, now)
    answer = answer_to(request, now)
    assert len(on_eligibility(answer, state, claim_ctx, now)) == 2
    assert on_eligibility(answer, state, claim_ctx, now + timedelta(seconds=1)) == []
    assert dict(state.awaiting) == {}
    # An answer nobody waits for (another stage's encounter) is only cached.
    stray = dataclasses.replace(answer, encounter_id="ENC-OTHER", member_id="MCR000000001")
    assert on_eligibility(stray, state, claim_ctx, now) == []
    assert "MCR01|MCR000000001" in state.answers.entries


def test_different_encounters_are_billed_separately(coded, claim_ctx, codec, now):
    state = new_state(codec)
    other = dataclasses.replace(coded, encounter_id="ENC-UNIT-0000002", member_id="MCR987654321")
    requests = [park(coded, codec, state, claim_ctx, now), park(other, codec, state, claim_ctx, now, 41)]
    assert requests[0].request_id != requests[1].request_id
    a, b = (on_eligibility(answer_to(r, now), state, claim_ctx, now) for r in requests)
    assert [e.topic for e in a] == [e.topic for e in b] == ["claims-submitted", "claim-status"]
    assert a[0].event.claim_id != b[0].event.claim_id
    assert len(state.billed) == 2 and dict(state.awaiting) == {}


def test_every_coded_encounter_ends_as_exactly_one_outcome(coded, claim_ctx, codec, now):
    """Covered, not covered, scrub error, duplicate: one outcome each, nothing left parked."""
    state = new_state(codec)
    npi = coded.rendering_npi
    visits = {
        "ENC-COVERED": dataclasses.replace(coded, encounter_id="ENC-COVERED", member_id="MCR000000001"),
        "ENC-LAPSED": dataclasses.replace(coded, encounter_id="ENC-LAPSED", member_id="MCR000000002"),
        "ENC-BADNPI": dataclasses.replace(coded, encounter_id="ENC-BADNPI", member_id="MCR000000003",
                                          rendering_npi=npi[:-1] + str((int(npi[-1]) + 1) % 10)),
    }
    outcomes: list[str] = []
    requests = []
    for offset, visit in enumerate([*visits.values(), visits["ENC-COVERED"]]):
        for emit in bill_coded(visit, coded_message(codec, visit, offset), state, claim_ctx, now):
            if emit.topic == "eligibility-requests":
                requests.append(emit.event)
            else:
                outcomes.append(emit.topic)
    for request in requests:
        lapsed = request.encounter_id == "ENC-LAPSED"
        answer = answer_to(request, now, INACTIVE if lapsed else ACTIVE, end=date(2025, 1, 1) if lapsed else None,
                           reason="coverage ended 2025-01-01" if lapsed else None)
        outcomes += [e.topic for e in on_eligibility(answer, state, claim_ctx, now) if e.topic != "claim-status"]
    assert sorted(outcomes) == ["claims-submitted", "duplicates", "front-desk", "scrub-rejected"]
    assert dict(state.awaiting) == {}


# --- failures ------------------------------------------------------------------------


def test_unknown_code_with_a_cached_answer_is_a_processing_error(coded, claim_ctx, codec, now):
    state = new_state(codec)
    state.answers.put(answer_to(eligibility_request(coded, now), now))
    bad = dataclasses.replace(coded, lines=[*coded.lines, CodedLine(9, "99499", [], 1, [1])])
    with pytest.raises(ProcessingError, match="99499"):
        bill_coded(bad, coded_message(codec, bad), state, claim_ctx, now)


def test_unknown_code_raises_and_does_not_mark_as_billed(coded, claim_ctx, codec, now):
    state = new_state(codec)
    state.answers.put(answer_to(eligibility_request(coded, now), now))
    bad = dataclasses.replace(coded, lines=[*coded.lines, CodedLine(9, "99499", [], 1, [1])])
    with pytest.raises(ProcessingError):
        bill_coded(bad, coded_message(codec, bad), state, claim_ctx, now)
    assert dict(state.billed) == {}


def test_a_parked_encounter_whose_claim_cannot_be_built_is_not_lost(coded, claim_ctx, codec, now):
    state = new_state(codec)
    bad = dataclasses.replace(coded, lines=[*coded.lines, CodedLine(9, "99499", [], 1, [1])])
    request = park(bad, codec, state, claim_ctx, now)
    with pytest.raises(ProcessingError):
        on_eligibility(answer_to(request, now), state, claim_ctx, now)
    assert list(state.awaiting) == [bad.encounter_id]


def test_unknown_code_through_run_stage_becomes_a_dead_letter(coded, claim_ctx, codec, now):
    """Decided at once from a cached answer: the claims stage dead-letters the coded record."""
    bad = dataclasses.replace(coded, lines=[CodedLine(1, "99499", [], 1, [1])])
    bad_bytes = codec.encode(bad)
    good = dataclasses.replace(coded, encounter_id="ENC-UNIT-0000009")
    messages = [
        SourceMessage("claims.coded", 6, 1234, b"ENC-UNIT-0000001", bad_bytes),
        SourceMessage("claims.coded", 6, 1235, b"ENC-UNIT-0000009", codec.encode(good)),
    ]
    state = new_state(codec)
    state.answers.put(answer_to(eligibility_request(coded, now), now))
    result = run_stage("claims", messages, codec, CodedEncounter,
                       lambda c, msg: bill_coded(c, msg, state, claim_ctx, now), now=lambda: now)
    assert [e.topic for e in result.emits] == [DEAD_LETTER_TOPIC, "claims-submitted", "claim-status"]
    (letter,) = result.dead_letters
    assert isinstance(letter, DeadLetter)
    assert result.emits[0].key == "claims.coded:6:1234"
    assert (letter.stage, letter.error_type, letter.source_topic, letter.source_partition, letter.source_offset,
            letter.source_key, letter.original_value, letter.failed_at) == (
        "claims", "ProcessingError", "claims.coded", 6, 1234, b"ENC-UNIT-0000001", bad_bytes, now)
    assert "99499" in letter.reason
    assert codec.decode(codec.encode(letter), DeadLetter) == letter


def test_unknown_code_of_a_parked_encounter_dead_letters_the_answer(coded, claim_ctx, codec, now):
    bad = dataclasses.replace(coded, lines=[CodedLine(1, "99499", [], 1, [1])])
    state = new_state(codec)
    request = park(bad, codec, state, claim_ctx, now)
    answer_bytes = codec.encode(answer_to(request, now))
    message = SourceMessage("claims.eligibility-responses", 1, 9, bad.encounter_id.encode(), answer_bytes)
    result = run_stage("eligibility", [message], codec, EligibilityResponse,
                       lambda a, msg: on_eligibility(a, state, claim_ctx, now), now=lambda: now)
    (letter,) = result.dead_letters
    assert (letter.stage, letter.error_type, letter.source_topic, letter.original_value) == (
        "eligibility", "ProcessingError", "claims.eligibility-responses", answer_bytes)


# --- the stages as the worker runs them (real clock) --------------------------------------


def test_worker_claims_and_eligibility_stages(coded, worker_context, codec):
    from engine.worker.stages import STAGE

    today = datetime.now(UTC).date()
    recent = dataclasses.replace(coded, date_of_service=today - timedelta(days=2))
    visits = [dataclasses.replace(recent, encounter_id=f"ENC-W-{i}", member_id=f"MCR00000000{i}") for i in range(3)]
    ctx = worker_context()
    state = ctx.claim_state
    messages = [coded_message(codec, v, i) for i, v in enumerate(visits)]
    messages.append(SourceMessage("claims.coded", 2, 99, None, b"HL7|not-avro|"))
    asked = STAGE["claims"].run(ctx, codec, messages)
    assert [e.topic for e in asked.emits] == ["eligibility-requests"] * 3 + [DEAD_LETTER_TOPIC]
    answers = [
        SourceMessage("claims.eligibility-responses", 0, i, e.key.encode(),
                      codec.encode(answer_to(e.event, datetime.now(UTC),
                                             NOT_FOUND if i == 2 else ACTIVE, reason="member not found" if i == 2
                                             else None)))
        for i, e in enumerate(asked.emits[:3])
    ]
    decided = STAGE["eligibility"].run(ctx, codec, answers)
    assert [e.topic for e in decided.emits] == ["claims-submitted", "claim-status"] * 2 + ["front-desk"]
    assert dict(state.awaiting) == {}
    again = STAGE["claims"].run(ctx, codec, messages[:1])
    assert [e.topic for e in again.emits] == ["duplicates"]


async def test_an_encounter_whose_claim_stage_output_was_not_delivered_is_taken_on_when_sent_again(
        coded, worker_context, codec):
    """The dedupe entry is written only with the output it stands for: the 270 refused by
    the broker (the coded encounter dead-lettered instead), the encounter is not "taken on",
    and sending it again parks it and asks again instead of dropping it as a duplicate."""
    from aiokafka.errors import RecordTooLargeError

    from engine.runtime.delivery import OutputLimits, deliver_result
    from engine.runtime.staged_state import StagedTable, StateJournal
    from engine.wire.topics import Table
    from engine.worker.stages import STAGE, TABLES

    tables: dict[Table, dict[str, str]] = {table: {} for table in TABLES}
    ctx = worker_context(tables={table: StagedTable(t) for table, t in tables.items()})
    visit = dataclasses.replace(coded, date_of_service=datetime.now(UTC).date() - timedelta(days=2))
    limits = OutputLimits({topic: 1 << 20 for topic in Topic})

    async def refuse_requests(topic: str, key: bytes, value: bytes,
                   headers: object = ()) -> asyncio.Future[object]:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if topic == "eligibility-requests":
            future.set_exception(RecordTooLargeError())
        else:
            future.set_result(None)
        return future

    async def taken(topic: str, key: bytes, value: bytes,
                   headers: object = ()) -> asyncio.Future[object]:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def batch(send, offset: int) -> list[str]:  # type: ignore[no-untyped-def]
        with StateJournal.opened() as journal:
            result = STAGE["claims"].run(ctx, codec, [coded_message(codec, visit, offset)])
            journal.apply(await deliver_result(send, "claims", result, codec, limits, str, datetime.now))
        return [e.topic for e in result.emits]

    assert await batch(refuse_requests, 40) == ["eligibility-requests"]
    assert tables[Table.CLAIMS_BY_ENCOUNTER] == {}
    assert await batch(taken, 41) == ["eligibility-requests"]  # not a duplicate: asked again
    assert TakenOn.loads(tables[Table.CLAIMS_BY_ENCOUNTER][visit.encounter_id]).coded is not None  # parked
    assert await batch(taken, 42) == ["duplicates"]  # now it is one


def test_a_coded_event_delivered_twice_is_answered_once_and_a_resend_is_a_duplicate(
        coded, worker_context, codec):
    """The claim stage tells a redelivered coded event (same origin header: the coding stage's
    batch redone after a crash) from an EHR resend (another origin): the first changes
    nothing, the second is dropped as a duplicate, once."""
    from engine.runtime.stages import SOURCE_HEADER
    from engine.worker.stages import STAGE

    ctx = worker_context()
    visit = dataclasses.replace(coded, date_of_service=datetime.now(UTC).date() - timedelta(days=2))

    def copy(offset: int, origin: bytes) -> SourceMessage:
        return dataclasses.replace(coded_message(codec, visit, offset), headers=((SOURCE_HEADER, origin),))

    def topics(message: SourceMessage) -> list[str]:
        return [e.topic for e in STAGE["claims"].run(ctx, codec, [message]).emits]

    assert topics(copy(40, b"claims.encounters:0:7:0")) == ["eligibility-requests"]
    assert topics(copy(41, b"claims.encounters:0:7:0")) == []  # delivered again: nothing new
    assert topics(copy(42, b"claims.encounters:2:9:0")) == ["duplicates"]  # the EHR sent it again
    assert topics(copy(43, b"claims.encounters:2:9:0")) == []
    assert topics(coded_message(codec, visit, 44)) == ["duplicates"]  # no origin known: a duplicate


def test_a_coded_event_redelivered_onto_an_entry_from_before_parking_moved_into_it_is_parked_again(
        coded, worker_context, codec):
    """An entry written by an earlier version (``parked``, its coded event in a table of its
    own, which is gone): the coded event comes again and it is parked again and the payer
    asked again instead of being ignored; once the answer decided it, another redelivery
    changes nothing."""
    from engine.runtime.stages import SOURCE_HEADER
    from engine.wire.topics import Table
    from engine.worker.stages import STAGE, TABLES

    tables: dict[Table, dict[str, str]] = {table: {} for table in TABLES}
    ctx = worker_context(tables=tables)
    visit = dataclasses.replace(coded, date_of_service=datetime.now(UTC).date() - timedelta(days=2))
    origin = b"claims.encounters:0:7:0"
    message = dataclasses.replace(coded_message(codec, visit, 40), headers=((SOURCE_HEADER, origin),))
    tables[Table.CLAIMS_BY_ENCOUNTER][visit.encounter_id] = "\n".join(
        [claim_id_for(visit.encounter_id), "parked", origin.decode()])

    (request,) = STAGE["claims"].run(ctx, codec, [message]).emits
    assert request.topic == "eligibility-requests"
    answer = SourceMessage("claims.eligibility-responses", 0, 1, visit.encounter_id.encode(),
                           codec.encode(answer_to(request.event, datetime.now(UTC))))
    assert [e.topic for e in STAGE["eligibility"].run(ctx, codec, [answer]).emits] == ["claims-submitted",
                                                                                         "claim-status"]
    assert STAGE["claims"].run(ctx, codec, [message]).emits == []  # decided: nothing again


#: The claim stage's batches in a parked encounter's life: the coded event parks it, the
#: payer's 271 decides it, and then each is delivered again (their offsets not committed).
_LIFE = ("coded", "answer", "coded", "answer")


@pytest.mark.parametrize("kill_at", range(len(_LIFE)))
@pytest.mark.parametrize("writes_kept", range(4))
def test_a_kill_between_two_table_writes_of_a_batch_bills_the_encounter_once(
        kill_at, writes_kept, coded, worker_context, codec):
    """A kill -9 can land between any two of a batch's changelog records: its outputs were
    acknowledged, only the first ``writes_kept`` table writes reached their changelogs,
    and the batch is read again. Whatever prefix survived, the encounter ends with one
    claim, sent from one source (a second source is a second original claim to the payer),
    and the encounter is decided, not parked for good."""
    from engine.runtime.staged_state import StagedTable, StateJournal
    from engine.runtime.stages import SOURCE_HEADER, Emit
    from engine.wire.topics import Table, Topic
    from engine.worker.stages import STAGE, TABLES

    tables: dict[Table, dict[str, str]] = {table: {} for table in TABLES}
    ctx = worker_context(tables={table: StagedTable(t) for table, t in tables.items()})
    visit = dataclasses.replace(coded, date_of_service=datetime.now(UTC).date() - timedelta(days=2))
    origin = ((SOURCE_HEADER, b"claims.encounters:0:7:0"),)
    coded_event = dataclasses.replace(coded_message(codec, visit, 40), headers=origin)
    claim_sources: set[tuple[str, int]] = set()
    answer: SourceMessage | None = None

    def batch(name: str, message: SourceMessage, keep: int | None) -> list[Emit]:
        with StateJournal.opened() as journal:
            emits = STAGE[name].run(ctx, codec, [message]).emits
            if keep is not None:
                journal.writes = journal.writes[:keep]
            journal.apply(lambda _: True)
        claim_sources.update((message.topic, message.offset) for e in emits if e.topic == Topic.CLAIMS_SUBMITTED)
        return emits

    for step, kind in enumerate(_LIFE):
        if kind == "coded":
            emits = batch("claims", coded_event, writes_kept if step == kill_at else None)
            if step == kill_at:  # killed: the same batch again after the restart
                emits += batch("claims", coded_event, None)
            request = next((e.event for e in emits if e.topic == Topic.ELIGIBILITY_REQUESTS), None)
            if request is not None and answer is None:
                answer = SourceMessage("claims.eligibility-responses", 2, 1, visit.encounter_id.encode(),
                                       codec.encode(answer_to(request, datetime.now(UTC))))
        else:
            assert answer is not None
            batch("eligibility", answer, writes_kept if step == kill_at else None)
            if step == kill_at:
                batch("eligibility", answer, None)
    assert len(claim_sources) == 1, claim_sources
    entry = tables[Table.CLAIMS_BY_ENCOUNTER][visit.encounter_id]
    assert entry.split("\n")[1] == "decided"
