"""What the engine does with a biller's action on a denial (the worker's ``denial-actions``
agent). Pure functions; the table is a plain mapping.

- RESUBMIT / VOID carry the replacement (7) or void (8) claim. It goes back through the
  coding checks (a replacement only: a void repeats the original) and the scrubber, like a
  new claim. Clean: it goes to ``claims-submitted`` (and ``claim-status`` SUBMITTED), and
  the payer reverses the claim it names. Not clean: a ``RESUBMIT_REJECTED`` verdict, and the
  item is back with the biller.
- WRITE_OFF, REOPEN of a write-off, and an overturned APPEAL_DECIDED move money on the
  denied claim's ledger (the posting table, keyed by claim id like this topic), so the
  claim's balance follows: a write-off zeroes what it wrote off.

Actions are keyed by the denied claim id, so one claim's actions arrive in order at one
worker. The worker keeps each item's status from those actions and applies the same
transition table as the fold (``engine.denials.work_items``) before it does anything, so an action
the fold refuses (two billers at once, a stale screen, the payer answering an appeal that
was refused) sends nothing and moves no money. It cannot see the payer's answers to
replacements (they come keyed by the replacement), so after a RESUBMIT it checks the next
action as if the replacement came back denied. Each action id is handled once
(at-least-once delivery); a claim id is sent once; the ledger records the money actions it
applied, so a redelivery after a crash between two table writes moves nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from engine.claims.build import ClaimContext
from engine.claims.scrubber import ScrubContext, scrub_claim
from engine.coding.findings import errors_first, has_errors
from engine.coding.rules import CodingReference, check_encounter
from engine.denials.work_items import WorkItemState, WorkItemStatus, apply_action
from engine.model.codes import REPLACEMENT, VOID
from engine.model.events import (
    ClaimState,
    ClaimStatus,
    ClaimSubmitted,
    DenialAction,
    DenialActionType,
    Encounter,
    Finding,
    Patient,
    Procedure,
    Sex,
)
from engine.model.money import ZERO
from engine.posting.ledger import Ledger, claim_status
from engine.runtime.stages import Emit, ProcessingError
from engine.wire.codec import Codec
from engine.wire.state import StateRecord
from engine.wire.topics import Topic

log = logging.getLogger(__name__)
A = DenialActionType
ENGINE = "engine"


@dataclass
class ItemMemory:
    """One work item as its actions left it, as far as the worker can see."""

    status: WorkItemStatus = WorkItemStatus.OPEN
    assignee: str | None = None
    replacement_claim_id: str | None = None
    pending_appeal: str | None = None  # the APPEAL awaiting the payer's decision
    written_off: str | None = None  # what its write-off took off the ledger (a REOPEN gives it back)


@dataclass
class DeniedClaimState(StateRecord):
    """What the worker remembers per denied claim: the actions it handled, the claims it
    sent, and each of its work items."""

    handled: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    items: dict[str, ItemMemory] = field(default_factory=dict)


    def refusal(self, action: DenialAction) -> str | None:
        """Why the fold would refuse ``action`` on the item as the worker sees it, or None
        (and then the item's memory follows the action)."""
        memory = self.items.setdefault(action.work_item_id, ItemMemory())
        status = memory.status
        if status == WorkItemStatus.RESUBMITTED and action.action != A.RESUBMIT_REJECTED:
            status = WorkItemStatus.OPEN  # the payer's answer is not visible here: assume denied again
        if action.action == A.APPEAL_DECIDED and action.action_id != f"{memory.pending_appeal}:{A.APPEAL_DECIDED}":
            return f"no pending appeal {memory.pending_appeal} is decided by {action.action_id}"
        state = WorkItemState(action.work_item_id, action.claim_id, ZERO, status=status, assignee=memory.assignee,
                              replacement_claim_id=memory.replacement_claim_id)
        try:
            after = apply_action(state, action)
        except ProcessingError as exc:
            return str(exc)
        memory.status, memory.assignee = after.status, after.assignee
        memory.replacement_claim_id = after.replacement_claim_id
        memory.pending_appeal = action.action_id if action.action == A.APPEAL else None
        return None


def claim_as_encounter(claim: ClaimSubmitted) -> Encounter:
    """The claim as the coding rules read an encounter: codes, modifiers, units, pointers,
    the patient's sex and birth date (for the sex and age edits), payer and providers."""
    if claim.patient_birth_date is None:
        raise ProcessingError(f"claim {claim.claim_id} carries no patient birth date: the coding checks need it")
    sex = claim.patient_sex if claim.patient_sex in Sex.__members__ else Sex.U
    return Encounter(
        encounter_id=claim.encounter_id, source_system="replacement", occurred_at=claim.encounter_occurred_at,
        patient=Patient(claim.patient_id, claim.patient_first_name, claim.patient_last_name,
                        claim.patient_birth_date, Sex(sex)),
        payer_id=claim.payer_id, member_id=claim.member_id, billing_npi=claim.billing_npi,
        rendering_npi=claim.rendering_npi, date_of_service=claim.date_of_service,
        place_of_service=claim.place_of_service, diagnoses=list(claim.diagnoses),
        procedures=[Procedure(ln.procedure_code, list(ln.modifiers), ln.units, list(ln.dx_pointers))
                    for ln in claim.lines],
        patient_address=claim.patient_address, subscriber=claim.subscriber,
    )


def check_successor(claim: ClaimSubmitted, coding: CodingReference, ctx: ClaimContext,
                    now: datetime) -> list[Finding]:
    """Every finding on a replacement or void claim, errors first: the coding checks (not
    for a void, which only repeats the original) and the scrubber. No eligibility answer
    is at hand: the payer decides coverage again."""
    coded = [] if claim.frequency_code == VOID else check_encounter(claim_as_encounter(claim), coding)
    findings = [_on_claim_lines(f, claim) for f in coded]
    findings += scrub_claim(claim, ScrubContext(payer=ctx.payers.get(claim.payer_id), eligibility=None,
                                                today=now.date(), places_of_service=ctx.places_of_service))
    return errors_first(findings)


_PROCEDURE = re.compile(r"procedures\[(\d+)\]")


def _on_claim_lines(finding: Finding, claim: ClaimSubmitted) -> Finding:
    """A coding finding names the encounter's procedure position; a biller reads claim
    line numbers (the ones ``claims denials show`` and the page print)."""
    def line(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"line {claim.lines[index].line_number}" if index < len(claim.lines) else match.group(0)

    return dataclasses.replace(finding, element=_PROCEDURE.sub(line, finding.element),
                               message=_PROCEDURE.sub(line, finding.message))


def rejection_note(findings: list[Finding], limit: int = 5, messages: bool = True) -> str:
    """The errors in a line: rule ids, the element and (for the biller's own screen) the
    message. Without messages for what goes on a topic: a message may quote an age or a
    sex, which stay off the record."""
    errors = [f for f in findings if str(f.severity) == "ERROR"]
    shown = "; ".join(f"{f.rule_id} {f.element}" + (f": {f.message}" if messages else "") for f in errors[:limit])
    return shown + (f"; and {len(errors) - limit} more" if len(errors) > limit else "")


def decode_successor(action: DenialAction, codec: Codec) -> ClaimSubmitted:
    """The claim a RESUBMIT / VOID carries, checked against the action that sent it."""
    if action.replacement_claim is None or not action.replacement_claim_id:
        raise ProcessingError(f"{action.action} {action.action_id} carries no claim")
    claim = codec.decode(action.replacement_claim, ClaimSubmitted)
    expected = REPLACEMENT if action.action == A.RESUBMIT else VOID
    if claim.claim_id != action.replacement_claim_id or claim.frequency_code != expected:
        raise ProcessingError(f"{action.action} {action.action_id}: carries claim {claim.claim_id} frequency "
                              f"{claim.frequency_code}, expected {action.replacement_claim_id} frequency {expected}")
    if not claim.original_claim_id:
        raise ProcessingError(f"{action.action} {action.action_id}: claim {claim.claim_id} names no original")
    return claim


def verdict(action: DenialAction, kind: DenialActionType, note: str, now: datetime) -> Emit:
    return Emit(Topic.DENIAL_ACTIONS, action.claim_id, DenialAction(
        action_id=f"{action.action_id}:{kind}", work_item_id=action.work_item_id, claim_id=action.claim_id,
        action=kind, user=ENGINE, at=now, note=note, replacement_claim_id=action.replacement_claim_id,
        payer_id=action.payer_id))


def _send_successor(action: DenialAction, state: DeniedClaimState, codec: Codec, coding: CodingReference,
                    ctx: ClaimContext, now: datetime) -> list[Emit]:
    try:
        claim = decode_successor(action, codec)
        if claim.claim_id in state.sent:
            return []
        findings = check_successor(claim, coding, ctx, now)
    except Exception as exc:  # a claim that cannot be checked is not sent, and the biller hears why
        log.warning("denial-actions: %s %s not checked: %s", action.action, action.action_id, type(exc).__name__)
        return [verdict(action, A.RESUBMIT_REJECTED, f"the claim could not be checked ({type(exc).__name__})", now)]
    if has_errors(findings):
        return [verdict(action, A.RESUBMIT_REJECTED, rejection_note(findings, messages=False), now)]
    state.sent.append(claim.claim_id)
    return [
        Emit(Topic.CLAIMS_SUBMITTED, claim.claim_id, action.replacement_claim),
        Emit(Topic.CLAIM_STATUS, claim.claim_id, ClaimStatus(
            claim_id=claim.claim_id, encounter_id=claim.encounter_id, payer_id=claim.payer_id,
            status=ClaimState.SUBMITTED, billed_amount=claim.total_charge, paid_amount=None, denial_queue=None,
            remittance_id=None, updated_at=now)),
    ]


def _move_money(action: DenialAction, memory: ItemMemory, ledgers: MutableMapping[str, str],
                now: datetime) -> list[Emit]:
    """A write-off, its reopening, or an appeal payment, on the denied claim's ledger
    (already checked against the item's state)."""
    raw = ledgers.get(action.claim_id)
    if raw is None:
        raise ProcessingError(f"{action.action} {action.action_id}: claim {action.claim_id} has no posted ledger")
    ledger = Ledger.loads(raw)
    if action.action_id in ledger.action_ids:
        return []  # applied before a crash, the action's handling not yet recorded: not twice
    if action.action == A.WRITE_OFF:
        amount = ZERO if action.amount is None else action.amount  # the biller's tools always say how much
        memory.written_off = str(amount)
        ledger.written_off += amount
    elif action.action == A.REOPEN and memory.written_off is not None:
        ledger.written_off -= Decimal(memory.written_off)
        memory.written_off = None
    elif action.action == A.APPEAL_DECIDED and action.appeal_overturned and action.amount:
        ledger.appeal_paid += action.amount
    else:
        return []
    ledger.action_ids.append(action.action_id)
    ledgers[action.claim_id] = ledger.dumps()
    return [Emit(Topic.CLAIM_STATUS, action.claim_id, claim_status(ledger, now))]


def handle_denial_action(action: DenialAction, table: MutableMapping[str, str], ledgers: MutableMapping[str, str],
                         codec: Codec, coding: CodingReference, ctx: ClaimContext, now: datetime) -> list[Emit]:
    """The engine's part of one action: send a checked replacement or void, or move the
    denied claim's balance. CLAIM, APPEAL and the engine's own verdicts change only the
    work item's state (the fold); the payer simulator answers appeals."""
    state = DeniedClaimState.loads(table.get(action.claim_id))
    if action.action_id in state.handled:
        return []  # a redelivery: its outcome was already emitted
    kind = DenialActionType(action.action)
    refusal = state.refusal(action)
    if refusal is not None:  # the fold refuses it too: nothing sent, no money moved
        log.info("denial-actions: %s %s on %s refused: %s", kind, action.action_id, action.work_item_id, refusal)
        emits = []
    elif kind in (A.RESUBMIT, A.VOID):
        emits = _send_successor(action, state, codec, coding, ctx, now)
    elif kind in (A.WRITE_OFF, A.REOPEN, A.APPEAL_DECIDED):
        emits = _move_money(action, state.items[action.work_item_id], ledgers, now)
    else:
        emits = []
    state.handled.append(action.action_id)
    table[action.claim_id] = state.dumps()
    return emits
