"""simulators.payer.app: eligibility answers (270 → 271) and the payer runtime — intake
re-keyed by payer|member, adjudication against the member's state in a table (a plain
dict here), remittances held until their payment date, and recovery after a restart.

Adjudication itself is tested in test_adjudication.py."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest

from engine.model.events import (
    Address,
    ClaimSubmitted,
    EligibilityRequest,
    EligibilityResponse,
    EligibilityStatus,
    Remittance,
    RemittanceOutcome,
    Subscriber,
)
from engine.runtime.stages import SourceMessage, StageResult
from engine.settings import Settings
from simulators.coverage import Authorization, Coverage, PatientRecord, write_master_data
from simulators.payer import member_store
from simulators.payer.adjudication import Calibration, MemberState, release_at
from simulators.payer.app import PAYER_STAGE, PayerRuntime, answer_eligibility, member_key
from tests import factories

UTC = UTC
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DOS = date(2026, 2, 27)
SCALE = 86_400.0  # one real second per simulated day


# --- eligibility (270 → 271) ----------------------------------------------------------


@pytest.fixture
def members() -> dict[str, Coverage]:
    spouse = Subscriber("01", "Wei", "Chen", date(1956, 1, 30), "M")
    return {
        "PPO000000001": Coverage("PPO000000001", "PPO01", "PPO01-GOLD", "18", None, date(2021, 1, 1), None),
        "PPO000000002": Coverage("PPO000000002", "PPO01", "PPO01-SILVER", "01", spouse, date(2019, 5, 1),
                                 date(2025, 11, 30)),
        "PPO000000003": Coverage("PPO000000003", "PPO01", "PPO01-BRONZE", "18", None, date(2026, 4, 1), None),
        "MCR000000004": Coverage("MCR000000004", "MCR01", "MCR01-GOLD", "18", None, date(2011, 7, 1),
                                 date(2026, 12, 31)),
        "PPO000000005": Coverage("PPO000000005", "PPO01", "PPO01-BRONZE", "18", None, date(2021, 1, 1), None),
        "PPO000000006": Coverage("PPO000000006", "PPO01", "PPO01-SILVER", "18", None, date(2021, 1, 1), None),
    }


def request_for(member_id: str, payer_id: str = "PPO01", day: date = DOS) -> EligibilityRequest:
    return EligibilityRequest(f"ER-{member_id}", f"ENC-{member_id}", payer_id, member_id, "Chen", date(1958, 7, 14),
                              day, NOW)


def test_an_active_member_gets_the_plan_s_copay_and_deductible(members, book):
    answer = answer_eligibility(request_for("PPO000000001"), members, book, NOW)
    assert answer == EligibilityResponse(
        request_id="ER-PPO000000001", encounter_id="ENC-PPO000000001", payer_id="PPO01", member_id="PPO000000001",
        date_of_service=DOS, status=EligibilityStatus.ACTIVE, plan_id="PPO01-GOLD", coverage_start=date(2021, 1, 1),
        coverage_end=None, copay=Decimal("20.00"), deductible_remaining=Decimal("500.00"), reason=None,
        responded_at=NOW,
    )
    # The last day of coverage is covered.
    last_day = answer_eligibility(request_for("MCR000000004", "MCR01", date(2026, 12, 31)), members, book, NOW)
    assert last_day.status == EligibilityStatus.ACTIVE


@pytest.mark.parametrize("member_id, payer_id, copay, deductible", [
    ("PPO000000001", "PPO01", "20.00", "500.00"),  # GOLD
    ("PPO000000006", "PPO01", "30.00", "1500.00"),  # SILVER: no such tier, the default plan
    ("PPO000000005", "PPO01", "0.00", "3000.00"),  # BRONZE: no office copay
    ("MCR000000004", "MCR01", "0.00", "283.00"),  # Medicare Part B 2026
])
def test_copay_and_deductible_come_from_the_member_s_plan(members, book, member_id, payer_id, copay, deductible):
    answer = answer_eligibility(request_for(member_id, payer_id), members, book, NOW)
    assert (answer.status, answer.copay, answer.deductible_remaining) == (
        EligibilityStatus.ACTIVE, Decimal(copay), Decimal(deductible))
    plan = book.payers[payer_id].plan(members[member_id].plan_id)
    assert answer.deductible_remaining == plan.deductible


def test_a_lapsed_member_is_inactive_with_the_end_date(members, book):
    answer = answer_eligibility(request_for("PPO000000002"), members, book, NOW)
    assert (answer.status, answer.reason) == (EligibilityStatus.INACTIVE, "coverage ended 2025-11-30")
    assert (answer.plan_id, answer.coverage_start, answer.coverage_end) == (
        "PPO01-SILVER", date(2019, 5, 1), date(2025, 11, 30))
    assert answer.copay is None and answer.deductible_remaining is None
    after_the_end = answer_eligibility(request_for("MCR000000004", "MCR01", date(2027, 1, 1)), members, book, NOW)
    assert (after_the_end.status, after_the_end.reason) == (EligibilityStatus.INACTIVE, "coverage ended 2026-12-31")


def test_a_visit_before_coverage_starts_is_inactive_with_the_start_date(members, book):
    answer = answer_eligibility(request_for("PPO000000003"), members, book, NOW)
    assert (answer.status, answer.reason) == (EligibilityStatus.INACTIVE, "coverage starts 2026-04-01")
    assert (answer.coverage_start, answer.coverage_end, answer.copay) == (date(2026, 4, 1), None, None)
    early = answer_eligibility(request_for("PPO000000002", day=date(2019, 4, 30)), members, book, NOW)
    assert (early.status, early.reason) == (EligibilityStatus.INACTIVE, "coverage starts 2019-05-01")


@pytest.mark.parametrize("member_id, payer_id", [("PPO999999999", "PPO01"), ("PPO000000001", "HMO01"),
                                                 ("MCR000000004", "PPO01")],
                         ids=["unknown-member", "payer-mismatch", "payer-mismatch-other-way"])
def test_an_unknown_member_or_another_payer_s_member_is_not_found(members, book, member_id, payer_id):
    answer = answer_eligibility(request_for(member_id, payer_id), members, book, NOW)
    assert (answer.status, answer.reason) == (EligibilityStatus.NOT_FOUND, "member not found")
    assert (answer.plan_id, answer.coverage_start, answer.coverage_end, answer.copay,
            answer.deductible_remaining) == (None, None, None, None, None)
    assert (answer.payer_id, answer.member_id, answer.request_id) == (payer_id, member_id, f"ER-{member_id}")


def test_every_answer_round_trips_through_the_codec(members, book, codec):
    for member_id, coverage in members.items():
        for day in (DOS, date(2027, 6, 1), date(2010, 1, 1)):
            answer = answer_eligibility(request_for(member_id, coverage.payer_id, day), members, book, NOW)
            assert codec.decode(codec.encode(answer), EligibilityResponse) == answer
            assert (answer.status == EligibilityStatus.ACTIVE) == coverage.covers(day)


# --- the runtime ------------------------------------------------------------------------


AUTHORIZED = Authorization("PA123", "PPO01", "PPO000000001", "20610", date(2026, 1, 1), date(2026, 6, 30))


@pytest.fixture
def local(settings, members, tmp_path) -> Settings:
    """Settings whose master data (coverage and authorizations) are these members, in tmp_path."""
    here = dataclasses.replace(settings, state_dir=tmp_path, payer_time_scale=SCALE, seed=7)
    records = [PatientRecord(factories.make_patient(patient_id=f"MRN{i}"), Address("1 OAK ST", "DENVER", "CO", "80202"),
                             coverage)
               for i, coverage in enumerate(members.values())]
    write_master_data(records, here.master_data_dir, [AUTHORIZED])
    return here


def quiet(runtime: PayerRuntime) -> PayerRuntime:
    """No stochastic denials: every payer's calibration far ahead of its target."""
    for payer_id in runtime.book.payers:
        runtime.calibration[payer_id] = Calibration(claims=10_000, denied=10_000)
    return runtime


CHARGES = {"99213": Decimal("140.00"), "20610": Decimal("185.00"), "36415": Decimal("18.00")}


def lines_of(*codes: str) -> list[tuple[str, Decimal]]:
    """Claim lines (``tests.factories.make_claim``'s short form) of ``codes`` at the practice's charges."""
    return [(code, CHARGES[code]) for code in codes]


#: The claims the payer is sent (a 99213 unless a test says): PPO01 member PPO000000001's
#: knee visit on DOS, sent at NOW.
make_claim = partial(factories.make_claim, payer_id="PPO01", member_id="PPO000000001", encounter_occurred_at=NOW,
                     submitted_at=NOW, diagnoses=["M17.11"])


def messages(codec, *claims: ClaimSubmitted, topic: str = "claims.payer-claims") -> list[SourceMessage]:
    return [SourceMessage(topic, 0, i, member_key(c).encode(), codec.encode(c)) for i, c in enumerate(claims)]


def adjudicate(runtime: PayerRuntime, batch: list[SourceMessage], table: dict[str, str]) -> StageResult:
    """The payer's adjudication stage over ``table`` as its member table."""
    runtime.member_table = table
    return PAYER_STAGE["payer"].run(runtime, runtime.codec, batch)


def test_the_runtime_answers_from_the_master_data_files(local, members, codec):
    runtime = PayerRuntime(local, codec)
    requests = [request_for("PPO000000001"), request_for("PPO000000002"), request_for("PPO999999999")]
    msgs = [SourceMessage("claims.eligibility-requests", 0, i, r.encounter_id.encode(), codec.encode(r))
            for i, r in enumerate(requests)]
    msgs.append(SourceMessage("claims.eligibility-requests", 0, 3, None, b"HL7|not-avro|"))
    emits = PAYER_STAGE["payer-eligibility"].run(runtime, codec, msgs).emits
    assert [(e.topic, e.key) for e in emits[:3]] == [("eligibility-responses", r.encounter_id) for r in requests]
    assert [e.event.status for e in emits[:3]] == [EligibilityStatus.ACTIVE, EligibilityStatus.INACTIVE,
                                                    EligibilityStatus.NOT_FOUND]
    assert emits[3].topic == "dead-letter" and emits[3].event.stage == "payer-eligibility"
    assert runtime.members == members


def test_intake_rekeys_by_payer_and_member_and_passes_the_bytes_on(local, codec, samples):
    runtime = PayerRuntime(local, codec)
    claims = [make_claim("C1"), make_claim("C2", member_id="MCR000000004", payer_id="MCR01")]
    msgs = [SourceMessage("claims.claims-submitted", 2, i, c.claim_id.encode(), codec.encode(c))
            for i, c in enumerate(claims)]
    msgs.append(SourceMessage("claims.claims-submitted", 2, 9, b"C3", codec.encode(samples[Remittance])))
    emits = PAYER_STAGE["payer-intake"].run(runtime, codec, msgs).emits
    assert [(e.topic, e.key) for e in emits[:2]] == [("payer-claims", "PPO01|PPO000000001"),
                                                      ("payer-claims", "MCR01|MCR000000004")]
    assert [e.event for e in emits[:2]] == [m.value for m in msgs[:2]]  # unchanged: not re-encoded
    assert emits[2].topic == "dead-letter" and emits[2].event.stage == "payer-intake"


def pending_of(table: dict[str, str], key: str, codec) -> list[tuple[float, Remittance]]:
    return [(p.due_at, codec.decode(p.remittance, Remittance)) for p in MemberState.loads(table[key]).pending]


def test_remittances_wait_for_their_payment_date(local, codec):
    runtime = quiet(PayerRuntime(local, codec))
    table: dict[str, str] = {}
    claims = [make_claim("C1"),
              make_claim("C2", member_id="MCR000000004", payer_id="MCR01", submitted_at=NOW + timedelta(days=3))]
    result = adjudicate(runtime, messages(codec, *claims), table)
    assert result.emits == []
    for claim in claims:
        key = member_key(claim)
        ((due, remit),) = pending_of(table, key, codec)
        assert remit.claim_id == claim.claim_id
        assert due == release_at(claim, remit.payment_date, SCALE)
        days = (remit.payment_date - claim.submitted_at.date()).days
        assert due == pytest.approx(claim.submitted_at.timestamp() + days)  # one second per simulated day
        assert runtime.next_due[key] == due
        assert set(member_store.member_claims(table, key)) == {claim.claim_id}
        assert MemberState.loads(table[key]).claims == {}  # each claim is an entry of its own


def test_time_scale_zero_emits_at_once_keyed_by_claim(local, codec):
    runtime = quiet(PayerRuntime(dataclasses.replace(local, payer_time_scale=0), codec))
    table: dict[str, str] = {}
    original = make_claim("C1")
    (emit,) = adjudicate(runtime, messages(codec, original), table).emits
    assert (emit.topic, emit.key, emit.event.claim_id) == ("remittances", "C1", "C1")
    assert emit.event.outcome == RemittanceOutcome.PAID
    state = MemberState.loads(table["PPO01|PPO000000001"])
    assert state.pending == [] and set(member_store.member_claims(table, "PPO01|PPO000000001")) == {"C1"}
    assert runtime.next_due == {}
    # A redelivery gives nothing; a replacement gives the reversal (keyed by the original) and itself.
    assert adjudicate(runtime, messages(codec, original), table).emits == []
    replacement = make_claim("C1R", lines_of("99213", "36415"), frequency_code="7", original_claim_id="C1")
    reversal, own = adjudicate(runtime, messages(codec, replacement), table).emits
    assert [(e.topic, e.key, e.event.claim_status_code) for e in (reversal, own)] == [
        ("remittances", "C1", "22"), ("remittances", "C1R", "1")]
    assert reversal.event.paid_amount == -emit.event.paid_amount


def test_authorizations_come_from_the_master_data(local, codec):
    runtime = quiet(PayerRuntime(dataclasses.replace(local, payer_time_scale=0), codec))
    table: dict[str, str] = {}
    with_auth = make_claim("C1", lines_of("99213", "20610"))
    without = make_claim("C2", lines_of("99213", "20610"), member_id="PPO000000006")
    first, second = adjudicate(runtime, messages(codec, with_auth, without), table).emits
    assert first.event.outcome == RemittanceOutcome.PAID
    assert second.event.outcome == RemittanceOutcome.PARTIALLY_PAID
    assert [a.carc for a in second.event.lines[1].adjustments] == ["197"]


def release(runtime: PayerRuntime, table: dict[str, str], now: float, codec) -> list[tuple[str, str]]:
    """What the release timer does: send what is due (here: list it), then drop it from the state."""
    sent = []
    for key, _, due in runtime.due_payments(table, now):
        sent += [(key, codec.decode(p.remittance, Remittance).claim_id) for p in due]
        runtime.forget_released(table, key, due)
    return sent


def test_due_payments_releases_only_what_is_due(local, codec):
    runtime = quiet(PayerRuntime(local, codec))
    table: dict[str, str] = {}
    early = make_claim("C1")
    late = make_claim("C2", member_id="MCR000000004", payer_id="MCR01", submitted_at=NOW + timedelta(days=40))
    again = make_claim("C3", lines_of("36415"), submitted_at=NOW + timedelta(days=60))  # the first member, later
    adjudicate(runtime, messages(codec, early, late, again), table)
    ppo, mcr = member_key(early), member_key(late)
    (due_early, _), (due_again, _) = pending_of(table, ppo, codec)
    ((due_late, _),) = pending_of(table, mcr, codec)
    assert due_early < due_late < due_again

    assert runtime.due_payments(table, due_early - 1) == []
    snapshot = dict(table)
    ((key, state, due),) = runtime.due_payments(table, due_early)
    assert key == ppo and [codec.decode(p.remittance, Remittance).claim_id for p in due] == ["C1"]
    assert len(state.pending) == 2 and table == snapshot  # it only reads: the timer removes what it sent
    assert runtime.next_due == {mcr: due_late, ppo: due_again}
    assert runtime.due_payments(table, due_early) == []  # noted once

    runtime = quiet(PayerRuntime(local, codec))
    runtime.rescan(table)
    assert release(runtime, table, due_early, codec) == [(ppo, "C1")]
    assert release(runtime, table, due_late, codec) == [(mcr, "C2")]
    assert release(runtime, table, due_again - 0.5, codec) == []
    assert release(runtime, table, due_again, codec) == [(ppo, "C3")]
    assert runtime.next_due == {}
    assert all(MemberState.loads(raw).pending == [] for _, raw in member_store.member_records(table))


def test_rescan_finds_pending_payments_after_a_restart(local, codec):
    first = quiet(PayerRuntime(local, codec))
    table: dict[str, str] = {}
    claims = [make_claim("C1"),
              make_claim("C2", member_id="MCR000000004", payer_id="MCR01", submitted_at=NOW + timedelta(days=5))]
    adjudicate(first, messages(codec, *claims), table)
    expected = dict(first.next_due)
    assert len(expected) == 2
    restarted = PayerRuntime(local, codec)  # the table survives (a changelog topic); the notes do not
    far_future = max(expected.values()) + 1
    assert restarted.due_payments(table, far_future) == []
    restarted.rescan(table)
    assert restarted.next_due == expected
    released = restarted.due_payments(table, far_future)
    assert sorted(key for key, _, _ in released) == sorted(expected)
    # A member with nothing pending is not noted.
    table["PPO01|NOBODY"] = MemberState().dumps()
    again = PayerRuntime(local, codec)
    again.rescan(table)
    assert set(again.next_due) == set(expected)


def test_bad_claims_become_dead_letters(local, codec):
    runtime = PayerRuntime(dataclasses.replace(local, payer_time_scale=0), codec)
    table: dict[str, str] = {}
    unknown_payer = make_claim("C9", payer_id="NOPE9")
    msgs = [SourceMessage("claims.payer-claims", 1, 5, b"PPO01|X", b"HL7|not-avro|"),
            *messages(codec, unknown_payer), *messages(codec, make_claim("C1"))]
    emits = adjudicate(runtime, msgs, table).emits
    assert [e.topic for e in emits] == ["dead-letter", "dead-letter", "remittances"]
    undecodable, unknown = emits[0].event, emits[1].event
    assert (undecodable.stage, undecodable.error_type, undecodable.original_value) == (
        "payer", "UndecodableEvent", b"HL7|not-avro|")
    assert (unknown.stage, unknown.error_type) == ("payer", "ProcessingError")
    assert "NOPE9" in unknown.reason and "unknown to the simulator" in unknown.reason
    assert {key for key, _ in member_store.member_records(table)} == {"PPO01|PPO000000001"}
    assert set(member_store.member_claims(table, "PPO01|PPO000000001")) == {"C1"}


def test_calibration_is_kept_per_payer(local, codec):
    runtime = PayerRuntime(dataclasses.replace(local, payer_time_scale=0), codec)
    table: dict[str, str] = {}
    claims = [make_claim(f"C{i}", lines_of(*codes))
              for i, codes in enumerate([("99213",), ("36415",), ("99213", "36415")])]
    claims.append(make_claim("M1", member_id="MCR000000004", payer_id="MCR01"))
    adjudicate(runtime, messages(codec, *claims), table)
    assert {p: c.claims for p, c in runtime.calibration.items()} == {"PPO01": 3, "MCR01": 1}


def test_a_payment_sent_is_forgotten_and_what_came_meanwhile_is_kept(local, codec):
    """The whole remittance stays in the state only while it is pending: the release forgets
    it, and keeps a payment the adjudication added while the first was being sent."""
    runtime = quiet(PayerRuntime(local, codec))
    table: dict[str, str] = {}
    adjudicate(runtime, messages(codec, make_claim("C1")), table)
    key = member_key(make_claim("C1"))
    ((_, _, due),) = runtime.due_payments(table, float("inf"))
    adjudicate(runtime, messages(codec, make_claim("C2", lines_of("36415"))), table)  # while C1 is being sent
    runtime.forget_released(table, key, due)
    state = MemberState.loads(table[key])
    assert [codec.decode(p.remittance, Remittance).claim_id for p in state.pending] == ["C2"]
    assert set(member_store.member_claims(table, key)) == {"C1", "C2"}  # what duplicates and reversals need stays
    runtime.forget_released(table, key, due)  # sent twice (a crash in between): nothing more goes
    assert len(MemberState.loads(table[key]).pending) == 1


def test_the_member_table_keeps_a_window_of_plan_years(local, codec):
    runtime = quiet(PayerRuntime(dataclasses.replace(local, payer_time_scale=0), codec))
    table: dict[str, str] = {}
    years = [date(2024, 3, 4), date(2025, 3, 4), date(2026, 3, 4)]
    claims = [make_claim(f"C{day.year}", date_of_service=day, submitted_at=datetime.combine(
        day + timedelta(days=2), datetime.min.time(), tzinfo=UTC)) for day in years]
    adjudicate(runtime, messages(codec, *claims), table)
    state = MemberState.loads(table["PPO01|PPO000000001"])
    assert set(state.accumulators) == {2025, 2026} and state.claims == {}
    assert set(member_store.member_claims(table, "PPO01|PPO000000001")) == {"C2024", "C2025", "C2026"}


class WriteLog(dict[str, str]):
    """A member table that counts the bytes written to it."""

    written = 0

    def __setitem__(self, key: str, value: str) -> None:
        self.written += len(key) + len(value)
        super().__setitem__(key, value)


def test_a_members_next_claim_costs_what_the_first_did(local, codec):
    """The whole member state was rewritten with every claim (86 % of the broker's bytes in
    a load run, growing with the member's claims): now a claim writes its own entry, its two
    index entries and the member's record, which holds no claims."""
    runtime = quiet(PayerRuntime(dataclasses.replace(local, payer_time_scale=0), codec))
    table = WriteLog()
    costs = []
    for day in range(60):
        before = table.written
        dos = DOS + timedelta(days=day)
        claim = make_claim(f"C{day:03}", date_of_service=dos, submitted_at=datetime.combine(
            dos + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
        adjudicate(runtime, messages(codec, claim), table)
        costs.append(table.written - before)
    assert max(costs[-10:]) <= costs[0] * 1.1
    assert costs[0] < 1_500
    (key, record), = member_store.member_records(table)
    assert len(record) < 300


def test_a_member_record_written_before_the_window_is_read_and_goes_on(local, codec):
    """The table's record as the payer wrote it before: each claim inside it with its whole
    remittance, no plan year. The stage reads it, reverses from it, and writes it back
    trimmed, its claims moved out into entries of their own."""
    runtime = quiet(PayerRuntime(dataclasses.replace(local, payer_time_scale=0), codec))
    table: dict[str, str] = {}
    (first,) = adjudicate(runtime, messages(codec, make_claim("C1")), table).emits
    key = "PPO01|PPO000000001"
    doc = json.loads(table[key])
    entry = json.loads(table[member_store.entry_key(key, member_store.CLAIM, "C1")])["claim"]
    del doc["newest_plan_year"], doc["seq"], entry["plan_year"]
    entry["remittance"] = base64.b64encode(codec.encode(first.event)).decode()
    doc["claims"] = {"C1": entry}  # the claim inside the member's record, no entry beside it
    table.clear()
    table[key] = json.dumps(doc)
    assert adjudicate(runtime, messages(codec, make_claim("C1")), table).emits == []  # still known
    replacement = make_claim("C1R", lines_of("99213", "36415"), frequency_code="7", original_claim_id="C1")
    reversal, _ = adjudicate(runtime, messages(codec, replacement), table).emits
    assert (reversal.event.claim_status_code, reversal.event.paid_amount) == ("22", -first.event.paid_amount)
    assert (reversal.event.payer_claim_control_number, reversal.event.encounter_id) == (
        first.event.payer_claim_control_number, first.event.encounter_id)
    state = MemberState.loads(table[key])
    c1 = member_store.member_claims(table, key)["C1"]  # moved out of the record into its own entry
    assert (state.newest_plan_year, state.claims, c1.plan_year, c1.remittance) == (DOS.year, {}, DOS.year, b"")


class Prefix(dict[str, str]):
    """A member table that keeps the order of its writes, to replay a kill between any two
    of them (each write is a changelog record; a kill -9 leaves a prefix of a batch's)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.writes: list[tuple[str, str]] = []

    def __setitem__(self, key: str, value: str) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)


def _settled(runtime: PayerRuntime, table: dict[str, str], key: str, codec) -> tuple[Any, ...]:
    state = MemberState.loads(table[key])
    claims = member_store.member_claims(table, key)
    return (state.accumulators, sorted(codec.decode(p.remittance, Remittance).claim_id for p in state.pending),
            {cid: c.reversed for cid, c in claims.items()})


@pytest.mark.parametrize("scale", [0, SCALE])
def test_a_kill_between_a_claims_writes_is_redelivered_into_the_same_state(local, codec, scale):
    """A claim writes several entries (its own, the indexes, the member's record, an original
    it reverses); a kill can land between any two after its outputs were sent. Read again,
    the claim must end where an uninterrupted run ends: the member charged once, its payment
    pending once, a replacement not denied for an original it already reversed."""
    settings = dataclasses.replace(local, payer_time_scale=scale)
    original = make_claim("C1", lines_of("99213", "36415"))
    replacement = make_claim("C1R", lines_of("99213"), frequency_code="7", original_claim_id="C1")
    key = member_key(original)

    whole = Prefix()
    runtime = quiet(PayerRuntime(settings, codec))
    adjudicate(runtime, messages(codec, original), whole)
    before = dict(whole)
    whole.writes.clear()
    expected = adjudicate(runtime, messages(codec, replacement), whole).emits
    writes = list(whole.writes)
    assert len(writes) >= 3
    for cut in range(len(writes)):
        table = Prefix(before)
        for k, v in writes[:cut]:
            table[k] = v
        again = quiet(PayerRuntime(settings, codec))
        emits = adjudicate(again, messages(codec, replacement), table).emits
        if scale == 0 and emits:
            assert [(e.key, e.event.claim_status_code) for e in emits] == [
                (e.key, e.event.claim_status_code) for e in expected], cut
        assert _settled(again, table, key, codec) == _settled(runtime, whole, key, codec), cut


class CountingTable(dict[str, str]):
    """A member table that counts full reads (``items``): what a rescan costs."""

    scans = 0

    def items(self):  # type: ignore[override]
        self.scans += 1
        return super().items()


def test_the_release_timer_rescans_only_after_a_recovery(local, codec):
    """A rescan reads every entry of a table that grows with every claim; the timer did one
    every 5 s whatever happened. Payments the process has no note of come only with a
    recovered table (a start, a rebalance)."""
    runtime = quiet(PayerRuntime(local, codec))
    table = CountingTable()
    adjudicate(runtime, messages(codec, make_claim("C1")), table)
    expected = dict(runtime.next_due)
    runtime.next_due.clear()
    runtime.rescan_if_recovered(table)  # a fresh process: its table was just recovered
    assert table.scans == 1 and runtime.next_due == expected
    for _ in range(3):
        runtime.rescan_if_recovered(table)
    assert table.scans == 1
    runtime.next_due.clear()
    runtime.table_recovered()
    runtime.rescan_if_recovered(table)
    assert table.scans == 2 and runtime.next_due == expected
