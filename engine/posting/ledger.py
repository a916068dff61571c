"""Posting: each remittance moves its claim's ledger — status and balances — and the
patient's share becomes a statement; a denial also becomes a work item.

The ledger is a fold of the claim's remittances in arrival order, kept per claim id in a
faust table (remittances are keyed by claim id, so the table is co-partitioned). A
remittance already posted (a redelivery, or the same payment read back from an 835) is
recognised by its id and changes nothing, so posting is idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from engine.model.events import (
    ClaimState,
    ClaimStatus,
    GroupCode,
    PatientStatement,
    Remittance,
    RemittanceOutcome,
)
from engine.model.money import ZERO
from engine.posting.routing import DenialRouting, amount_at_risk, denial_item
from engine.runtime.stages import Emit, ProcessingError
from engine.wire.state import StateRecord
from engine.wire.topics import Topic

#: PR reasons a statement itemises (CARC 1 deductible, 2 coinsurance, 3 copay).
DEDUCTIBLE, COINSURANCE, COPAY = "1", "2", "3"

_STATE_FOR_OUTCOME = {
    RemittanceOutcome.PAID: ClaimState.PAID,
    RemittanceOutcome.PARTIALLY_PAID: ClaimState.PARTIALLY_PAID,
    RemittanceOutcome.DENIED: ClaimState.DENIED,
    RemittanceOutcome.REVERSED: ClaimState.REVERSED,
}


@dataclass
class Ledger(StateRecord):
    """One claim's posted amounts: sums over its remittances (a reversal adds negatives)."""

    claim_id: str
    encounter_id: str
    payer_id: str
    billed: Decimal
    status: ClaimState = ClaimState.SUBMITTED
    allowed: Decimal = ZERO
    paid: Decimal = ZERO
    patient_responsibility: Decimal = ZERO
    contractual: Decimal = ZERO
    denied: Decimal = ZERO
    payer_claim_control_number: str | None = None
    denial_queue: str | None = None
    last_remittance_id: str | None = None
    remittance_ids: list[str] = field(default_factory=list)
    #: What billers wrote off (denial work items) and what the payer paid on appeals.
    written_off: Decimal = ZERO
    appeal_paid: Decimal = ZERO
    #: Biller and payer actions applied to these amounts (engine.denials.actions), once each.
    action_ids: list[str] = field(default_factory=list)

    @property
    def balance(self) -> Decimal:
        """What insurance has not settled: billed − paid (remittances and appeals) − patient
        share − contractual write-off − what billers wrote off. A reversed claim owes nothing
        (its replacement, if any, carries the balance)."""
        if self.status == ClaimState.REVERSED:
            return ZERO
        return (self.billed - self.paid - self.appeal_paid - self.patient_responsibility - self.contractual
                - self.written_off)


def remittance_id(payer_id: str, pccn: str, status: str, trace: str) -> str:
    """The same for the simulator's remittance and the one read back from its 835."""
    digest = hashlib.blake2b(f"{payer_id}|{pccn}|{status}|{trace}".encode(), digest_size=8).hexdigest().upper()
    return f"R{digest}"


def post(ledger: Ledger | None, remit: Remittance, routing: DenialRouting, denial_queue: str | None) -> Ledger | None:
    """The ledger after ``remit``; None when it was already posted."""
    if ledger is not None and remit.remittance_id in ledger.remittance_ids:
        return None
    if ledger is None:
        ledger = Ledger(remit.claim_id, remit.encounter_id, remit.payer_id, abs(remit.billed_amount))
    adjustments = remit.all_adjustments()
    ledger.allowed += remit.allowed_amount
    ledger.paid += remit.paid_amount
    ledger.patient_responsibility += remit.patient_responsibility
    ledger.contractual += sum((a.amount for a in adjustments
                               if a.group_code != GroupCode.PR and a.carc in routing.not_denials), ZERO)
    ledger.denied += amount_at_risk(remit, routing)
    ledger.status = _STATE_FOR_OUTCOME[remit.outcome]
    ledger.payer_claim_control_number = remit.payer_claim_control_number
    ledger.denial_queue = (denial_queue if remit.outcome in (RemittanceOutcome.DENIED, RemittanceOutcome.PARTIALLY_PAID)
                           else None)
    ledger.last_remittance_id = remit.remittance_id
    ledger.remittance_ids.append(remit.remittance_id)
    return ledger


def claim_status(ledger: Ledger, now: datetime) -> ClaimStatus:
    return ClaimStatus(
        claim_id=ledger.claim_id,
        encounter_id=ledger.encounter_id,
        payer_id=ledger.payer_id,
        status=ledger.status,
        billed_amount=ledger.billed,
        paid_amount=ledger.paid + ledger.appeal_paid,
        denial_queue=ledger.denial_queue,
        remittance_id=ledger.last_remittance_id,
        updated_at=now,
        allowed_amount=ledger.allowed,
        patient_responsibility=ledger.patient_responsibility,
        contractual_adjustment=ledger.contractual,
        denied_amount=ledger.denied,
        balance=ledger.balance,
        payer_claim_control_number=ledger.payer_claim_control_number,
        remittances_posted=len(ledger.remittance_ids),
        written_off_amount=ledger.written_off,
        appeal_paid_amount=ledger.appeal_paid,
    )


def patient_statement(remit: Remittance, due_days: int, now: datetime) -> PatientStatement | None:
    """The patient's share of one remittance, by reason; a credit when it is a reversal."""
    if remit.patient_responsibility == ZERO:
        return None
    by_carc: dict[str, Decimal] = {}
    for a in remit.all_adjustments():
        if a.group_code == GroupCode.PR:
            by_carc[a.carc] = by_carc.get(a.carc, ZERO) + a.amount
    named = by_carc.get(DEDUCTIBLE, ZERO) + by_carc.get(COINSURANCE, ZERO) + by_carc.get(COPAY, ZERO)
    return PatientStatement(
        statement_id="ST-" + hashlib.blake2b(remit.remittance_id.encode(), digest_size=8).hexdigest().upper(),
        claim_id=remit.claim_id,
        encounter_id=remit.encounter_id,
        patient_control_number=remit.patient_control_number,
        payer_id=remit.payer_id,
        remittance_id=remit.remittance_id,
        amount=remit.patient_responsibility,
        deductible=by_carc.get(DEDUCTIBLE, ZERO),
        coinsurance=by_carc.get(COINSURANCE, ZERO),
        copay=by_carc.get(COPAY, ZERO),
        other=remit.patient_responsibility - named,
        statement_date=remit.payment_date,
        due_date=_due_date(remit, due_days),
        created_at=now,
    )


def _due_date(remit: Remittance, due_days: int) -> date:
    try:
        return remit.payment_date + timedelta(days=due_days)
    except OverflowError:  # a payment date of 9999-12-31: no calendar day follows it
        raise ProcessingError(f"remittance {remit.remittance_id}: its payment date leaves no day for a "
                              f"statement due {due_days} days after it") from None


def post_remittance(remit: Remittance, ledgers: MutableMapping[str, str], routing: DenialRouting, due_days: int,
                    now: datetime) -> Iterator[Emit]:
    """The posting stage for one remittance: the claim's new status and balances, the
    patient's statement, and the denial work item — or nothing if already posted."""
    raw = ledgers.get(remit.claim_id)
    item = denial_item(remit, routing, now)
    ledger = post(Ledger.loads(raw) if raw else None, remit, routing, item.queue if item else None)
    if ledger is None:
        return
    ledgers[remit.claim_id] = ledger.dumps()
    yield Emit(Topic.CLAIM_STATUS, remit.claim_id, claim_status(ledger, now))
    statement = patient_statement(remit, due_days, now)
    if statement is not None:
        yield Emit(Topic.STATEMENTS, remit.claim_id, statement)
    if item is not None:
        yield Emit(Topic(item.queue), remit.claim_id, item)
