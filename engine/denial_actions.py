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
worker. Each action id is handled once (at-least-once delivery); a claim id is sent once.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import MutableMapping

from engine.claims import ClaimContext
from engine.codec import Codec
from engine.coding import CodingReference, check_encounter
from engine.events import (
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
from engine.findings import errors_first, has_errors
from engine.pipeline import Emit, ProcessingError
from engine.posting import Ledger, claim_status
from engine.scrubber import ScrubContext, scrub_claim

A = DenialActionType
ENGINE = "engine"
REPLACEMENT, VOID = "7", "8"
ZERO = Decimal("0.00")


@dataclass
class DeniedClaimState:
    """What the worker remembers per denied claim: the actions it handled, the claims it
    sent, and what each work item wrote off (so a REOPEN gives back exactly that)."""

    handled: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    written_off: dict[str, str] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({"h": self.handled, "s": self.sent, "w": self.written_off}, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | None) -> "DeniedClaimState":
        if not raw:
            return cls()
        d = json.loads(raw)
        return cls(list(d["h"]), list(d["s"]), dict(d["w"]))


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


def rejection_note(findings: list[Finding], limit: int = 5) -> str:
    """The errors in a line: rule ids, the element and the message (codes, no PHI)."""
    errors = [f for f in findings if str(f.severity) == "ERROR"]
    shown = "; ".join(f"{f.rule_id} {f.element}: {f.message}" for f in errors[:limit])
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
    return Emit("denial-actions", action.claim_id, DenialAction(
        action_id=f"{action.action_id}:{kind}", work_item_id=action.work_item_id, claim_id=action.claim_id,
        action=kind, user=ENGINE, at=now, note=note, replacement_claim_id=action.replacement_claim_id,
        payer_id=action.payer_id))


def _send_successor(action: DenialAction, state: DeniedClaimState, codec: Codec, coding: CodingReference,
                    ctx: ClaimContext, now: datetime) -> list[Emit]:
    claim = decode_successor(action, codec)
    if claim.claim_id in state.sent:
        return []
    findings = check_successor(claim, coding, ctx, now)
    if has_errors(findings):
        return [verdict(action, A.RESUBMIT_REJECTED, rejection_note(findings), now)]
    state.sent.append(claim.claim_id)
    return [
        Emit("claims-submitted", claim.claim_id, action.replacement_claim),
        Emit("claim-status", claim.claim_id, ClaimStatus(
            claim_id=claim.claim_id, encounter_id=claim.encounter_id, payer_id=claim.payer_id,
            status=ClaimState.SUBMITTED, billed_amount=claim.total_charge, paid_amount=None, denial_queue=None,
            remittance_id=None, updated_at=now)),
    ]


def _move_money(action: DenialAction, state: DeniedClaimState, ledgers: MutableMapping[str, str],
                now: datetime) -> list[Emit]:
    """A write-off, its reopening, or an appeal payment, on the denied claim's ledger."""
    raw = ledgers.get(action.claim_id)
    if raw is None:
        raise ProcessingError(f"{action.action} {action.action_id}: claim {action.claim_id} has no posted ledger")
    ledger = Ledger.loads(raw)
    if action.action == A.WRITE_OFF:
        if action.work_item_id in state.written_off:
            return []  # the fold refuses a second write-off of one item; so does the ledger
        amount = action.amount if action.amount is not None else ZERO
        state.written_off[action.work_item_id] = str(amount)
        ledger.written_off += amount
    elif action.action == A.REOPEN:
        taken_back = state.written_off.pop(action.work_item_id, None)
        if taken_back is None:
            return []
        ledger.written_off -= Decimal(taken_back)
    elif action.action == A.APPEAL_DECIDED and action.appeal_overturned and action.amount:
        ledger.appeal_paid += action.amount
    else:
        return []
    ledgers[action.claim_id] = ledger.dumps()
    return [Emit("claim-status", action.claim_id, claim_status(ledger, now))]


def handle_denial_action(action: DenialAction, table: MutableMapping[str, str], ledgers: MutableMapping[str, str],
                         codec: Codec, coding: CodingReference, ctx: ClaimContext, now: datetime) -> list[Emit]:
    """The engine's part of one action: send a checked replacement or void, or move the
    denied claim's balance. CLAIM, APPEAL and the engine's own verdicts change only the
    work item's state (the fold); the payer simulator answers appeals."""
    state = DeniedClaimState.loads(table.get(action.claim_id))
    if action.action_id in state.handled:
        return []  # a redelivery: its outcome was already emitted
    kind = DenialActionType(action.action)
    if kind in (A.RESUBMIT, A.VOID):
        emits = _send_successor(action, state, codec, coding, ctx, now)
    elif kind in (A.WRITE_OFF, A.REOPEN, A.APPEAL_DECIDED):
        emits = _move_money(action, state, ledgers, now)
    else:
        emits = []
    state.handled.append(action.action_id)
    table[action.claim_id] = state.dumps()
    return emits
