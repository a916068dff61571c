"""The claim stage: one original claim per encounter, ever (the dedupe table), built once
its member is known to be covered (parked while the payer answers the 270) and once it
passes the scrubber. Every coded encounter ends as exactly one of: claim submitted, scrub
rejected, eligibility held (front desk), duplicate dropped (docs/claims.md)."""

from __future__ import annotations

import base64
from collections.abc import MutableMapping
from dataclasses import dataclass, replace
from datetime import datetime

from engine.claims.build import ClaimContext, build_claim, claim_id_for
from engine.claims.eligibility import EligibilityCache, covers, eligibility_request, front_desk_item_id
from engine.claims.scrubber import ScrubContext, scrub_claim, scrub_item_id
from engine.coding.findings import has_errors
from engine.model.events import (
    ClaimState,
    ClaimStatus,
    CodedEncounter,
    DuplicateDropped,
    EligibilityResponse,
    EligibilityStatus,
    FrontDeskItem,
    ScrubRejected,
)
from engine.runtime.stages import Emit, SourceMessage
from engine.wire.topics import Topic


@dataclass(frozen=True)
class ClaimStageState:
    """What the claim stage remembers (faust tables in the worker, dicts in tests): per
    encounter taken on, one entry (its claim id and, while the payer is asked, the parked
    coded event: one record, so a kill cannot keep half of it), and the 271 answers."""

    billed: MutableMapping[str, str]
    answers: EligibilityCache

    @property
    def awaiting(self) -> dict[str, bytes]:
        """The parked encounters: encounter id → the coded event's framed Avro."""
        parked = {key: TakenOn.loads(entry).coded for key, entry in self.billed.items()}
        return {key: coded for key, coded in parked.items() if coded is not None}


def bill_coded(
    coded: CodedEncounter, message: SourceMessage, state: ClaimStageState, ctx: ClaimContext, now: datetime
) -> list[Emit]:
    """A coded encounter: dropped if already taken on (one original claim per encounter,
    ever), else decided now from a cached eligibility answer, or parked while the payer
    is asked. The same coded event delivered again (same origin) changes nothing, unless
    its parking was lost with a crash: then it is taken on again."""
    already = state.billed.get(coded.encounter_id)
    if already is None:
        return _take_on(coded, message, state, ctx, now, [message.origin])
    taken = TakenOn.loads(already)
    if message.origin is not None and message.origin in taken.origins:
        if taken.parked and taken.coded is None:
            # An entry written before parked encounters were kept in it (their own table
            # then): the parking may be lost, so the encounter is parked again.
            return _take_on(coded, message, state, ctx, now, taken.origins)
        return []  # this very coded event delivered again (its batch redone after a crash): answered already
    state.billed[coded.encounter_id] = replace(taken, origins=[*taken.origins, message.origin]).dumps()
    return [Emit(Topic.DUPLICATES, coded.encounter_id, DuplicateDropped(
        claim_id=taken.claim_id, encounter_id=coded.encounter_id, source_topic=message.topic,
        source_partition=message.partition, source_offset=message.offset, dropped_at=now,
    ))]


def _take_on(coded: CodedEncounter, message: SourceMessage, state: ClaimStageState, ctx: ClaimContext,
             now: datetime, origins: list[str | None]) -> list[Emit]:
    taken = TakenOn(claim_id_for(coded.encounter_id), parked=False, origins=origins)
    answer = state.answers.get(coded.payer_id, coded.member_id, coded.date_of_service, now)
    if answer is not None:
        emits = decide(coded, message.value or b"", answer, ctx, now)  # may raise: then not taken on
        state.billed[coded.encounter_id] = taken.dumps()
        return emits
    # Parked in its dedupe entry (a resend while parked is a duplicate) until the 271.
    state.billed[coded.encounter_id] = replace(taken, parked=True, coded=message.value or b"",
                                               coded_at=message.at).dumps()
    return [Emit(Topic.ELIGIBILITY_REQUESTS, coded.encounter_id, eligibility_request(coded, now))]


#: The most origins an encounter's dedupe entry keeps (the coded events it answered: the
#: first, and each resend's), so a redelivered one is told from a new resend.
ORIGINS_KEPT = 10


@dataclass(frozen=True)
class TakenOn:
    """An encounter's dedupe entry, as the table's text: its claim id; ``decided``, or
    ``parked`` with the coded event (base64) while its 271 is awaited; and the origins of
    the coded events answered, one line each."""

    claim_id: str
    parked: bool
    origins: list[str | None]
    coded: bytes | None = None  # the parked coded event's framed Avro
    coded_at: str | None = None  # where it was read (topic:partition:offset), for its claim's source header

    def dumps(self) -> str:
        kept = [o for o in self.origins if o is not None][-ORIGINS_KEPT:]
        state = "decided"
        if self.parked:
            state = "parked" if self.coded is None else f"parked {base64.b64encode(self.coded).decode()}"
            state += f" {self.coded_at}" if self.coded is not None and self.coded_at else ""
        return "\n".join([self.claim_id, state, *kept])

    @classmethod
    def loads(cls, entry: str) -> TakenOn:
        claim_id, *rest = entry.split("\n")
        state, *parked = rest[0].split(" ") if rest else [""]
        if state in ("parked", "decided"):
            coded = base64.b64decode(parked[0]) if state == "parked" and parked and parked[0] else None
            coded_at = parked[1] if coded is not None and len(parked) > 1 else None
            return cls(claim_id, state == "parked", list(rest[1:]), coded, coded_at)
        return cls(claim_id, False, list(rest))  # an entry from before the state line


def on_eligibility(answer: EligibilityResponse, state: ClaimStageState, ctx: ClaimContext, now: datetime
                   ) -> list[Emit]:
    """The payer's answer: cache it, and decide the encounter that waited for it (none
    if the answer is a redelivery and the encounter was already decided)."""
    state.answers.put(answer)
    entry = state.billed.get(answer.encounter_id)
    taken = TakenOn.loads(entry) if entry is not None else None
    if taken is None or not taken.parked or taken.coded is None:
        return []
    # Decided first, released after: if the claim cannot be built the answer is
    # dead-lettered and the encounter stays parked, so replaying the answer retries it.
    emits = decide(ctx.codec.decode(taken.coded, CodedEncounter), taken.coded, answer, ctx, now)
    state.billed[answer.encounter_id] = replace(taken, parked=False, coded=None, coded_at=None).dumps()
    # Made from the parked coded record, as if decided when it was read: deciding it again
    # (its dedupe entry lost with a kill after the claim's ack) is then a redelivery.
    return [replace(emit, made_from=taken.coded_at) for emit in emits]


def decide(coded: CodedEncounter, coded_bytes: bytes, answer: EligibilityResponse, ctx: ClaimContext,
           now: datetime) -> list[Emit]:
    """Not covered on the date of service: a front-desk item, no claim. Covered: the
    claim is built and scrubbed; a clean claim is submitted, one with errors goes to
    the scrub queue with its findings."""
    if not covers(answer, coded.date_of_service):
        reason = answer.reason or f"coverage not in force on {coded.date_of_service.isoformat()}"
        return [Emit(Topic.FRONT_DESK, coded.encounter_id, FrontDeskItem(
            work_item_id=front_desk_item_id(coded.encounter_id), encounter_id=coded.encounter_id,
            payer_id=coded.payer_id,
            status=answer.status if answer.status != EligibilityStatus.ACTIVE else EligibilityStatus.INACTIVE,
            reason=reason, date_of_service=coded.date_of_service, coded=coded_bytes, created_at=now,
        ))]
    claim = build_claim(coded, ctx, now)
    findings = scrub_claim(claim, ScrubContext(payer=ctx.payers.get(claim.payer_id), eligibility=answer,
                                                today=now.date(), places_of_service=ctx.places_of_service))
    if has_errors(findings):
        return [Emit(Topic.SCRUB_REJECTED, claim.claim_id, ScrubRejected(
            work_item_id=scrub_item_id(claim.claim_id), claim_id=claim.claim_id, encounter_id=claim.encounter_id,
            payer_id=claim.payer_id, findings=findings, claim=ctx.codec.encode(claim), rejected_at=now,
        ))]
    return [
        Emit(Topic.CLAIMS_SUBMITTED, claim.claim_id, claim),
        Emit(Topic.CLAIM_STATUS, claim.claim_id, ClaimStatus(
            claim_id=claim.claim_id, encounter_id=claim.encounter_id, payer_id=claim.payer_id,
            status=ClaimState.SUBMITTED, billed_amount=claim.total_charge, paid_amount=None, denial_queue=None,
            remittance_id=None, updated_at=now,
        )),
    ]
