"""The engine's part of a biller's action (engine/denials/actions.py) and the payer's
appeals desk (simulators/appeals.py), as plain functions over plain mappings."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from engine.coding.findings import has_errors
from engine.denials.actions import (
    DeniedClaimState,
    check_successor,
    claim_as_encounter,
    handle_denial_action,
)
from engine.denials.work_items import ClaimCorrections, LineCorrection, replacement_claim, void_claim
from engine.model.events import ClaimState, ClaimStatus, ClaimSubmitted, DenialAction, DenialActionType, Remittance
from engine.posting.ledger import Ledger
from engine.runtime.stages import ProcessingError
from simulators.appeals import decide_appeal, decision_id
from tests.factories import make_denial_action

A = DenialActionType
#: The day the sample claim is corrected: within every payer's timely-filing window of its
#: date of service, so only what a test changes can fail the scrubber.
LATER = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def original(samples) -> ClaimSubmitted:
    """The sample claim, with the subscriber's birth date the scrubber requires of a dependent."""
    claim = samples[ClaimSubmitted]
    assert claim.subscriber is not None
    return dataclasses.replace(claim, subscriber=dataclasses.replace(claim.subscriber, birth_date=date(1980, 1, 2)))


@pytest.fixture
def handle(codec, coding_ref, claim_ctx):
    def run(action: DenialAction, table: dict[str, str], ledgers: dict[str, str]) -> list:
        return handle_denial_action(action, table, ledgers, codec, coding_ref, claim_ctx, LATER)

    return run


def action(kind: DenialActionType, claim: ClaimSubmitted | None = None, *, action_id: str = "DA-1",
           claim_id: str = "C0000000000000001", codec=None, **fields: object) -> DenialAction:
    extra: dict[str, object] = {}
    if claim is not None:
        extra = {"replacement_claim_id": claim.claim_id, "replacement_claim": codec.encode(claim)}
    return make_denial_action(kind, action_id=action_id, claim_id=claim_id, at=LATER, payer_id="MCA01",
                              **{**extra, **fields})


def ledger_for(claim_id: str, remit: Remittance | None = None) -> dict[str, str]:
    ledger = Ledger(claim_id, "ENC-1", "MCA01", Decimal("298.00"), ClaimState.DENIED,
                    denied=Decimal("298.00"), remittance_ids=["R-1"])
    return {claim_id: ledger.dumps()}


def test_the_claim_reads_as_the_encounter_the_coding_rules_check(original):
    enc = claim_as_encounter(original)
    assert enc.diagnoses == original.diagnoses and enc.date_of_service == original.date_of_service
    assert [(p.code, p.modifiers, p.units, p.dx_pointers) for p in enc.procedures] == [
        (ln.procedure_code, ln.modifiers, ln.units, ln.dx_pointers) for ln in original.lines]
    assert enc.patient.birth_date == original.patient_birth_date and str(enc.patient.sex) == original.patient_sex


def test_a_clean_replacement_is_sent_with_its_submitted_status(original, handle, codec, coding_ref, claim_ctx):
    new = replacement_claim(original, ClaimCorrections(), f"{original.claim_id}-R1", LATER)
    assert not has_errors(check_successor(new, coding_ref, claim_ctx, LATER))
    table: dict[str, str] = {}
    emits = handle(action(A.RESUBMIT, new, claim_id=original.claim_id, codec=codec), table, {})
    assert [(e.topic, e.key) for e in emits] == [("claims-submitted", new.claim_id), ("claim-status", new.claim_id)]
    assert codec.decode(emits[0].event, ClaimSubmitted) == new  # the very bytes the biller's tool built
    assert isinstance(emits[1].event, ClaimStatus) and emits[1].event.status == ClaimState.SUBMITTED
    assert DeniedClaimState.loads(table[original.claim_id]).sent == [new.claim_id]


def test_a_redelivered_action_or_a_second_action_sending_the_same_claim_sends_nothing(original, handle, codec):
    new = replacement_claim(original, ClaimCorrections(), f"{original.claim_id}-R1", LATER)
    table: dict[str, str] = {}
    first = action(A.RESUBMIT, new, claim_id=original.claim_id, codec=codec)
    assert len(handle(first, table, {})) == 2
    assert handle(first, table, {}) == []  # at-least-once: the same action again
    second = dataclasses.replace(first, action_id="DA-2")  # two billers, one state, one claim id
    assert handle(second, table, {}) == []


def test_a_replacement_failing_the_checks_is_rejected_and_not_sent(original, handle, codec):
    bad = replacement_claim(original, ClaimCorrections(lines=(LineCorrection(1, procedure_code="9921X",
                                                                             charge=Decimal("100.00")),)),
                            f"{original.claim_id}-R1", LATER)
    table: dict[str, str] = {}
    emits = handle(action(A.RESUBMIT, bad, claim_id=original.claim_id, codec=codec), table, {})
    assert [e.topic for e in emits] == ["denial-actions"]
    verdict = emits[0].event
    assert (verdict.action, verdict.user, verdict.replacement_claim_id) == (A.RESUBMIT_REJECTED, "engine", bad.claim_id)
    assert verdict.action_id == "DA-1:RESUBMIT_REJECTED" and "PROC_FORMAT line 1" in (verdict.note or "")
    assert DeniedClaimState.loads(table[original.claim_id]).sent == []


def test_a_void_skips_the_coding_checks_but_not_the_scrubber(original, handle, codec, coding_ref, claim_ctx):
    void = void_claim(original, f"{original.claim_id}-V1", LATER)
    assert [e.topic for e in handle(action(A.VOID, void, claim_id=original.claim_id, codec=codec), {}, {})] == [
        "claims-submitted", "claim-status"]
    bad = dataclasses.replace(void, lines=[dataclasses.replace(ln, procedure_code="9921X") for ln in void.lines])
    assert not any(f.rule_id == "PROC_FORMAT" for f in check_successor(bad, coding_ref, claim_ctx, LATER))
    unpayable = dataclasses.replace(void, place_of_service="99X")
    assert has_errors(check_successor(unpayable, coding_ref, claim_ctx, LATER))


@pytest.mark.parametrize("mismatch", ["claim_id", "frequency"])
def test_a_claim_that_does_not_match_its_action_is_rejected_not_sent(original, handle, codec, mismatch):
    """Not a dead letter: the item would wait for a payer's answer that never comes."""
    new = replacement_claim(original, ClaimCorrections(), f"{original.claim_id}-R1", LATER)
    sent = action(A.RESUBMIT, new, claim_id=original.claim_id, codec=codec)
    if mismatch == "claim_id":
        sent = dataclasses.replace(sent, replacement_claim_id="C-OTHER")
    else:
        sent = dataclasses.replace(sent, action=A.VOID)
    (emit,) = handle(sent, {}, {})
    assert emit.topic == "denial-actions" and emit.event.action == A.RESUBMIT_REJECTED
    assert "ProcessingError" in (emit.event.note or "")


def test_a_write_off_takes_the_balance_down_and_a_reopen_gives_it_back(handle):
    ledgers, table = ledger_for("C-9"), {}
    (emit,) = handle(action(A.WRITE_OFF, claim_id="C-9", amount=Decimal("298.00"), adjustment_reason="29"),
                     table, ledgers)
    assert (emit.event.written_off_amount, emit.event.balance) == (Decimal("298.00"), Decimal("0.00"))
    assert handle(action(A.WRITE_OFF, claim_id="C-9", action_id="DA-2", amount=Decimal("298.00"),
                         adjustment_reason="29"), table, ledgers) == []  # the item is written off once
    (back,) = handle(action(A.REOPEN, claim_id="C-9", action_id="DA-3"), table, ledgers)
    assert (back.event.written_off_amount, back.event.balance) == (Decimal("0.00"), Decimal("298.00"))
    assert back.event.remittances_posted == 1  # not a posting: the accounting counts postings only


def test_an_overturned_appeal_pays_on_the_ledger_and_an_upheld_one_moves_nothing(handle):
    ledgers, table = ledger_for("C-9"), {}
    assert handle(action(A.APPEAL, claim_id="C-9", amount=Decimal("120.00")), table, ledgers) == []
    (paid,) = handle(action(A.APPEAL_DECIDED, claim_id="C-9", action_id="DA-1:APPEAL_DECIDED",
                            appeal_overturned=True, amount=Decimal("120.00")), table, ledgers)
    assert (paid.event.appeal_paid_amount, paid.event.paid_amount, paid.event.balance) == (
        Decimal("120.00"), Decimal("120.00"), Decimal("178.00"))
    ledgers, table = ledger_for("C-9"), {}
    handle(action(A.APPEAL, claim_id="C-9", action_id="DA-5"), table, ledgers)
    assert handle(action(A.APPEAL_DECIDED, claim_id="C-9", action_id="DA-5:APPEAL_DECIDED",
                         appeal_overturned=False), table, ledgers) == []


def test_the_payer_answering_an_appeal_the_fold_refused_moves_no_money(handle):
    """Two billers appeal at once: the second APPEAL is refused, and the payer's decision
    on it (the payer sees every APPEAL) pays nothing."""
    ledgers, table = ledger_for("C-9"), {}
    handle(action(A.APPEAL, claim_id="C-9", action_id="DA-1", amount=Decimal("100.00")), table, ledgers)
    handle(action(A.APPEAL, claim_id="C-9", action_id="DA-2", amount=Decimal("100.00")), table, ledgers)
    for decision in ("DA-1:APPEAL_DECIDED", "DA-2:APPEAL_DECIDED"):
        handle(action(A.APPEAL_DECIDED, claim_id="C-9", action_id=decision, appeal_overturned=True,
                      amount=Decimal("100.00")), table, ledgers)
    assert Ledger.loads(ledgers["C-9"]).appeal_paid == Decimal("100.00")


@pytest.mark.parametrize("amount", [Decimal("-50.00"), Decimal("10.00")])
def test_a_write_off_the_fold_refuses_moves_no_money(handle, amount):
    """A negative amount, or a write-off from a stale screen while an appeal is pending."""
    ledgers, table = ledger_for("C-9"), {}
    if amount > 0:
        handle(action(A.APPEAL, claim_id="C-9", action_id="DA-0"), table, ledgers)
    assert handle(action(A.WRITE_OFF, claim_id="C-9", amount=amount, adjustment_reason="29"), table, ledgers) == []
    assert Ledger.loads(ledgers["C-9"]).written_off == Decimal("0.00")


def test_a_money_action_already_on_the_ledger_is_not_applied_twice(handle):
    """Applied, then the worker died before recording it as handled: the ledger knows."""
    ledgers = ledger_for("C-9")
    write_off = action(A.WRITE_OFF, claim_id="C-9", amount=Decimal("298.00"), adjustment_reason="29")
    handle(write_off, {}, ledgers)
    assert handle(write_off, {}, ledgers) == []  # a fresh table: the handled list was lost
    assert Ledger.loads(ledgers["C-9"]).written_off == Decimal("298.00")


def test_money_moves_only_on_a_posted_claim(handle):
    with pytest.raises(ProcessingError, match="no posted ledger"):
        handle(action(A.WRITE_OFF, claim_id="C-NONE", amount=Decimal("1.00"), adjustment_reason="29"), {}, {})


@pytest.mark.parametrize("kind", [A.CLAIM, A.APPEAL, A.RESUBMIT_REJECTED])
def test_actions_that_only_change_the_item_emit_nothing(handle, kind):
    table: dict[str, str] = {}
    assert handle(action(kind, claim_id="C-9"), table, ledger_for("C-9")) == []
    assert DeniedClaimState.loads(table["C-9"]).handled == ["DA-1"]


# --- the payer's appeals desk --------------------------------------------------------------


def appeal(action_id: str, payer_id: str = "PPO01") -> DenialAction:
    return make_denial_action(A.APPEAL, action_id=action_id, claim_id="C-9", at=LATER, note="records attached",
                              amount=Decimal("150.00"), payer_id=payer_id)


def test_an_appeal_gets_one_decision_the_same_every_time(book):
    (first,) = decide_appeal(appeal("DA-1"), book, 5, LATER)
    (again,) = decide_appeal(appeal("DA-1"), book, 5, LATER)
    assert first.event == again.event and first.key == "C-9" and first.topic == "denial-actions"
    decision = first.event
    assert (decision.action, decision.action_id, decision.user) == (A.APPEAL_DECIDED, decision_id(appeal("DA-1")),
                                                                    "payer:PPO01")
    assert decision.amount == (Decimal("150.00") if decision.appeal_overturned else None)


def test_the_overturn_rate_follows_the_payer_profile(book):
    decisions = [decide_appeal(appeal(f"DA-{n}"), book, 5, LATER)[0].event for n in range(2000)]
    overturned = sum(bool(d.appeal_overturned) for d in decisions) / len(decisions)
    assert abs(overturned - book.payers["PPO01"].appeal_overturn_rate) < 0.03


def test_only_appeals_are_decided_and_an_unknown_payer_is_an_error(book):
    assert decide_appeal(dataclasses.replace(appeal("DA-1"), action=A.CLAIM), book, 5, LATER) == []
    with pytest.raises(ProcessingError, match="unknown to the simulator"):
        decide_appeal(appeal("DA-1", payer_id="NOPE"), book, 5, LATER)
