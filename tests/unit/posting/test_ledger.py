"""engine.posting.ledger: the claim ledger as a fold of its remittances, patient statements, and
the posting stage (claim status, statement, denial work item), idempotent by remittance id."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml

from engine.model.events import (
    ClaimState,
    ClaimStatus,
    DenialWorkItem,
    GroupCode,
    PatientStatement,
    Remittance,
    RemittanceOutcome,
)
from engine.posting.ledger import Ledger, claim_status, patient_statement, post, post_remittance
from simulators.coverage import Coverage
from simulators.payer.adjudication import Calibration, MemberState, PayerReference, adjudicate
from tests.factories import make_adjustment as adj
from tests.factories import make_claim
from tests.factories import make_remittance as remit
from tests.factories import make_remittance_line as line

UTC = UTC
CO, PR = GroupCode.CO, GroupCode.PR
ZERO = Decimal("0.00")
NOW = datetime(2026, 3, 25, 8, 0, tzinfo=UTC)
PAYMENT_DATE = date(2026, 3, 22)


def paid() -> Remittance:
    """158 billed: CO-45 86.90, copay 20, coinsurance 8.60 → 42.50 paid."""
    return remit([line(1, "140.00", [adj(CO, "45", "77.00"), adj(PR, "3", "20.00"), adj(PR, "2", "8.60")]),
                  line(2, "18.00", [adj(CO, "45", "9.90")], procedure_code="36415")], RemittanceOutcome.PAID)


def partially_paid() -> Remittance:
    return remit([line(1, "140.00", [adj(CO, "45", "40.00"), adj(PR, "1", "100.00")]),
                  line(2, "30.00", [adj(CO, "97", "30.00")], procedure_code="51798")],
                 RemittanceOutcome.PARTIALLY_PAID)


def denied() -> Remittance:
    return remit([line(1, "140.00", [adj(CO, "197", "140.00")]), line(2, "18.00", [adj(CO, "197", "18.00")])],
                 RemittanceOutcome.DENIED)


def test_a_first_remittance_opens_the_ledger_with_its_sums(routing):
    r = paid()
    ledger = post(None, r, routing, None)
    assert ledger == Ledger(
        claim_id=r.claim_id, encounter_id="ENC-1", payer_id="PPO01", billed=Decimal("158.00"),
        status=ClaimState.PAID, allowed=Decimal("71.10"), paid=Decimal("42.50"),
        patient_responsibility=Decimal("28.60"), contractual=Decimal("86.90"), denied=ZERO,
        payer_claim_control_number="PABCDEF0123456", denial_queue=None, last_remittance_id=r.remittance_id,
        remittance_ids=[r.remittance_id],
    )
    assert ledger.balance == ZERO  # 158 − 42.50 − 28.60 − 86.90


def test_posting_the_same_remittance_again_changes_nothing(routing):
    ledger = post(None, paid(), routing, None)
    before = ledger.dumps()
    assert post(ledger, paid(), routing, None) is None
    assert ledger.dumps() == before
    other = post(ledger, dataclasses.replace(paid(), remittance_id="RBBBBBBBBBBBBBBBB"), routing, None)
    assert other is not None and other.paid == Decimal("85.00") and other.remittance_ids == [
        "RAAAAAAAAAAAAAAAA", "RBBBBBBBBBBBBBBBB"]


@pytest.mark.parametrize("make, status, queue, denied_amount, balance", [
    (paid, ClaimState.PAID, None, "0.00", "0.00"),
    (partially_paid, ClaimState.PARTIALLY_PAID, "denials.authorization", "30.00", "30.00"),  # the denied line is open
    (denied, ClaimState.DENIED, "denials.authorization", "158.00", "158.00"),
], ids=["paid", "partially-paid", "denied"])
def test_status_and_balance_follow_the_outcome(routing, make, status, queue, denied_amount, balance):
    r = make()
    ledger = post(None, r, routing, "denials.authorization")
    assert (ledger.status, ledger.denial_queue, ledger.denied) == (status, queue, Decimal(denied_amount))
    assert ledger.balance == Decimal(balance)
    assert ledger.balance == ledger.billed - ledger.paid - ledger.patient_responsibility - ledger.contractual
    assert ledger.contractual == sum((a.amount for a in r.all_adjustments() if a.carc == "45"), ZERO)


# --- a real claim's life: original, reversal, replacement -------------------------------------


@pytest.fixture
def life(book, codec) -> tuple[Remittance, Remittance, Remittance]:
    """An MCR01 visit (deductible, coinsurance, CO-45), then its replacement: the original,
    the reversal, the replacement's remittance."""
    ref = PayerReference(book, {"M1": Coverage("M1", "MCR01", "MCR01-A", "18", None, date(2020, 1, 1), None)}, {},
                         {"99214": Decimal("1000.00")}, 1)
    state, cal = MemberState(), Calibration(claims=1000, denied=1000)
    (original,) = adjudicate(make_claim("C1", [("99214", "500.00")], encounter_occurred_at=NOW), state, ref, cal,
                             codec, NOW).remittances
    replacement_claim = make_claim("C1R", [("99214", "450.00")], encounter_occurred_at=NOW, frequency_code="7",
                                   original_claim_id="C1")
    reversal, replacement = adjudicate(replacement_claim, state, ref, cal, codec, NOW).remittances
    return original, reversal, replacement


def test_a_reversal_takes_everything_back(routing, life):
    original, reversal, replacement = life
    ledger = post(None, original, routing, None)
    assert (ledger.status, ledger.paid, ledger.patient_responsibility, ledger.contractual) == (
        ClaimState.PAID, Decimal("109.60"), Decimal("310.40"), Decimal("80.00"))
    assert ledger.balance == ZERO
    assert (original.claim_status_code, reversal.claim_status_code) == ("1", "22")
    reversed_ = post(ledger, reversal, routing, None)
    assert reversed_.status == ClaimState.REVERSED
    assert (reversed_.paid, reversed_.allowed, reversed_.patient_responsibility, reversed_.contractual,
            reversed_.denied) == (ZERO, ZERO, ZERO, ZERO, ZERO)
    assert reversed_.balance == ZERO and reversed_.billed == Decimal("500.00")
    assert reversed_.remittance_ids == [original.remittance_id, reversal.remittance_id]
    assert reversed_.payer_claim_control_number == original.payer_claim_control_number
    assert post(reversed_, reversal, routing, None) is None
    # The replacement is its own claim with its own ledger.
    assert replacement.claim_id == "C1R"
    fresh = post(None, replacement, routing, None)
    assert (fresh.status, fresh.billed, fresh.paid) == (ClaimState.PAID, Decimal("450.00"), replacement.paid_amount)
    assert fresh.balance == ZERO


def test_a_later_remittance_clears_the_denial_queue(routing):
    ledger = post(None, denied(), routing, "denials.authorization")
    assert ledger.denial_queue == "denials.authorization"
    corrected = dataclasses.replace(paid(), remittance_id="RCCCCCCCCCCCCCCCC")
    ledger = post(ledger, corrected, routing, None)
    assert (ledger.status, ledger.denial_queue) == (ClaimState.PAID, None)


def test_claim_status_reports_the_ledger(routing, codec):
    ledger = post(None, partially_paid(), routing, None)
    status = claim_status(ledger, NOW)
    assert status == ClaimStatus(
        claim_id=ledger.claim_id, encounter_id="ENC-1", payer_id="PPO01", status=ClaimState.PARTIALLY_PAID,
        billed_amount=Decimal("170.00"), paid_amount=Decimal("0.00"), denial_queue=None,
        remittance_id="RAAAAAAAAAAAAAAAA", updated_at=NOW, allowed_amount=Decimal("100.00"),
        patient_responsibility=Decimal("100.00"), contractual_adjustment=Decimal("40.00"),
        denied_amount=Decimal("30.00"), balance=Decimal("30.00"), payer_claim_control_number="PABCDEF0123456",
        remittances_posted=1,
        written_off_amount=ZERO,
        appeal_paid_amount=ZERO,
    )
    assert codec.decode(codec.encode(status), ClaimStatus) == status


# --- statements ---------------------------------------------------------------------------


@pytest.mark.parametrize("due_days", [0, 30, 45])
def test_a_statement_itemises_the_patient_s_share(codec, due_days):
    r = remit([line(1, "140.00", [adj(CO, "45", "20.00"), adj(PR, "1", "50.00"), adj(PR, "2", "5.00"),
                                  adj(PR, "3", "20.00")]),
               line(2, "25.00", [adj(PR, "204", "25.00")], procedure_code="82247"),
               line(3, "10.00", [adj(PR, "2", "1.50")], procedure_code="36415")],
              RemittanceOutcome.PARTIALLY_PAID)
    statement = patient_statement(r, due_days, NOW)
    assert statement == PatientStatement(
        statement_id=statement.statement_id, claim_id=r.claim_id, encounter_id="ENC-1",
        patient_control_number=r.claim_id, payer_id="PPO01", remittance_id=r.remittance_id,
        amount=Decimal("101.50"), deductible=Decimal("50.00"), coinsurance=Decimal("6.50"), copay=Decimal("20.00"),
        other=Decimal("25.00"), statement_date=PAYMENT_DATE, due_date=PAYMENT_DATE + timedelta(days=due_days),
        created_at=NOW,
    )
    assert statement.amount == statement.deductible + statement.coinsurance + statement.copay + statement.other
    assert statement.statement_id.startswith("ST-") and len(statement.statement_id) == 19
    assert patient_statement(r, due_days, NOW + timedelta(days=1)).statement_id == statement.statement_id
    other = patient_statement(dataclasses.replace(r, remittance_id="RDDDDDDDDDDDDDDDD"), due_days, NOW)
    assert other.statement_id != statement.statement_id
    assert codec.decode(codec.encode(statement), PatientStatement) == statement


def test_a_reversal_gives_a_credit_statement(life):
    original, reversal, _ = life
    bill = patient_statement(original, 30, NOW)
    credit = patient_statement(reversal, 30, NOW)
    assert (bill.amount, bill.deductible, bill.coinsurance) == (Decimal("310.40"), Decimal("283.00"),
                                                                Decimal("27.40"))
    assert (credit.amount, credit.deductible, credit.coinsurance, credit.copay, credit.other) == (
        -bill.amount, -bill.deductible, -bill.coinsurance, ZERO, ZERO)
    assert credit.claim_id == original.claim_id and credit.remittance_id == reversal.remittance_id
    assert credit.due_date == reversal.payment_date + timedelta(days=30)


@pytest.mark.parametrize("make", [denied, lambda: remit([line(1, "40.00", [adj(CO, "45", "10.00")])],
                                                           RemittanceOutcome.PAID)], ids=["denied", "no-pr"])
def test_no_statement_when_the_patient_owes_nothing(make):
    assert patient_statement(make(), 30, NOW) is None


# --- the posting stage ----------------------------------------------------------------------


def topics_of(emits: list[Any]) -> list[tuple[str, str]]:
    return [(e.topic, e.key) for e in emits]


def test_post_remittance_emits_status_and_statement_then_nothing_on_a_repeat(routing, codec):
    ledgers: dict[str, str] = {}
    r = paid()
    emits = list(post_remittance(r, ledgers, routing, 30, NOW))
    assert topics_of(emits) == [("claim-status", r.claim_id), ("statements", r.claim_id)]
    status, statement = emits[0].event, emits[1].event
    assert (status.status, status.paid_amount, status.balance, status.remittances_posted) == (
        ClaimState.PAID, Decimal("42.50"), ZERO, 1)
    assert (statement.amount, statement.copay, statement.coinsurance) == (
        Decimal("28.60"), Decimal("20.00"), Decimal("8.60"))
    assert statement.due_date == PAYMENT_DATE + timedelta(days=30)
    assert Ledger.loads(ledgers[r.claim_id]) == post(None, r, routing, None)
    assert codec.decode(codec.encode(status), ClaimStatus) == status
    before = dict(ledgers)
    assert list(post_remittance(r, ledgers, routing, 30, NOW + timedelta(hours=1))) == []
    assert ledgers == before


def test_a_denial_goes_to_its_queue(routing, codec):
    ledgers: dict[str, str] = {}
    r = denied()
    emits = list(post_remittance(r, ledgers, routing, 30, NOW))
    assert topics_of(emits) == [("claim-status", r.claim_id), ("denials.authorization", r.claim_id)]
    status, item = emits[0].event, emits[1].event
    assert (status.status, status.denial_queue, status.denied_amount, status.balance) == (
        ClaimState.DENIED, "denials.authorization", Decimal("158.00"), Decimal("158.00"))
    assert isinstance(item, DenialWorkItem)
    assert (item.carc, item.category, item.remittance_id) == ("197", "authorization", r.remittance_id)
    assert codec.decode(codec.encode(item), DenialWorkItem) == item
    assert list(post_remittance(r, ledgers, routing, 30, NOW)) == []


def test_a_partial_denial_is_a_work_item_for_its_denied_line(routing):
    ledgers: dict[str, str] = {}
    emits = list(post_remittance(partially_paid(), ledgers, routing, 30, NOW))
    assert [e.topic for e in emits] == ["claim-status", "statements", "denials.bundling"]
    assert emits[0].event.status == ClaimState.PARTIALLY_PAID and emits[0].event.denial_queue == "denials.bundling"
    assert emits[2].event.amount_at_risk == Decimal("30.00")


def test_posting_a_claim_s_life_through_the_stage(routing, life, codec):
    original, reversal, replacement = life
    ledgers: dict[str, str] = {}
    emitted = [e for r in (original, reversal, replacement, original, reversal)
               for e in post_remittance(r, ledgers, routing, 30, NOW)]
    assert [(e.topic, e.key) for e in emitted] == [
        ("claim-status", "C1"), ("statements", "C1"),
        ("claim-status", "C1"), ("statements", "C1"),
        ("claim-status", "C1R"), ("statements", "C1R"),
    ]  # the redeliveries at the end: nothing
    assert emitted[2].event.status == ClaimState.REVERSED and emitted[2].event.balance == ZERO
    assert emitted[3].event.amount == -emitted[1].event.amount
    assert set(ledgers) == {"C1", "C1R"}
    assert len(Ledger.loads(ledgers["C1"]).remittance_ids) == 2
    for e in emitted:
        assert codec.decode(codec.encode(e.event), type(e.event)) == e.event


def test_the_stage_s_topics_are_declared(settings, routing):
    declared = {t["name"]: t["schema"] for t in yaml.safe_load(settings.topics_file.read_text())["topics"]}
    assert declared["claim-status"] == ClaimStatus.SCHEMA
    assert declared["statements"] == PatientStatement.SCHEMA
    assert all(declared[q] == DenialWorkItem.SCHEMA for q in routing.queues())


def test_ledger_round_trips(routing, life):
    full = Ledger("C1", "ENC-1", "PPO01", Decimal("158.00"), ClaimState.DENIED, Decimal("1.10"), Decimal("-2.20"),
                  Decimal("3.30"), Decimal("4.40"), Decimal("5.50"), "PABC", "denials.coding", "RX", ["RW", "RX"])
    assert Ledger.loads(full.dumps()) == full
    bare = Ledger("C2", "ENC-2", "MCR01", Decimal("10.00"))
    assert Ledger.loads(bare.dumps()) == bare and bare.status == ClaimState.SUBMITTED
    original, reversal, _ = life
    ledger = post(post(None, original, routing, None), reversal, routing, None)
    assert Ledger.loads(ledger.dumps()) == ledger
