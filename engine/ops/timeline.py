"""A claim's whole story, read from the events alone (`claims show CLAIM_ID`): the
encounter, its coding findings and the coder's actions, every version of the claim
(original, replacements, voids), the payer's remittances, the statements and the denial
work items. Ids, codes, dates and amounts only: never names, birth dates or member ids."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from engine.model.events import (
    ClaimSubmitted,
    CodedEncounter,
    CodingAction,
    CodingReviewItem,
    DenialAction,
    DenialWorkItem,
    Encounter,
    PatientStatement,
    Remittance,
)
from engine.posting.routing import DenialRouting
from engine.runtime.kafka import read_events
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    stage: str
    what: str


@dataclass(frozen=True, slots=True)
class ClaimEvents:
    """Everything read from the topics, unfiltered; ``claim_timeline`` picks the claim's."""

    encounters: Sequence[Encounter] = ()
    coded: Sequence[CodedEncounter] = ()
    coding_review: Sequence[CodingReviewItem] = ()
    coding_actions: Sequence[CodingAction] = ()
    claims: Sequence[ClaimSubmitted] = ()
    remittances: Sequence[Remittance] = ()
    statements: Sequence[PatientStatement] = ()
    denials: Sequence[DenialWorkItem] = ()
    denial_actions: Sequence[DenialAction] = ()


def claim_family(claim_id: str, claims: Iterable[ClaimSubmitted]) -> list[ClaimSubmitted]:
    """The claim and every other version of the same encounter's claim (replacements,
    voids, the original it replaced), in submission order."""
    claims = list(claims)
    encounter_ids = {c.encounter_id for c in claims if c.claim_id == claim_id}
    return sorted((c for c in claims if c.encounter_id in encounter_ids), key=lambda c: c.submitted_at)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def claim_timeline(claim_id: str, events: ClaimEvents) -> list[TimelineEntry]:
    """The claim's events in time order; empty when no claim has this id."""
    family = claim_family(claim_id, events.claims)
    if not family:
        return []
    encounter_id = family[0].encounter_id
    claim_ids = {c.claim_id for c in family}
    entries: list[TimelineEntry] = []
    for enc in events.encounters:
        if enc.encounter_id == encounter_id:
            entries.append(TimelineEntry(enc.occurred_at, "encounter",
                                         f"encounter {enc.encounter_id} documented, payer {enc.payer_id}"))
    for coded in events.coded:
        if coded.encounter_id == encounter_id:
            rules = ", ".join(sorted({f.rule_id for f in coded.findings})) or "no findings"
            entries.append(TimelineEntry(coded.coded_at, "coding", f"coded ({rules})"))
    for item in events.coding_review:
        if item.encounter_id == encounter_id:
            rules = ", ".join(sorted({f.rule_id for f in item.findings}))
            kind = "audit sample" if item.is_audit else "coding review"
            entries.append(TimelineEntry(item.created_at, "coding",
                                         f"{kind} {item.work_item_id} rev {item.revision}: {rules}"))
    for action in events.coding_actions:
        if action.encounter_id == encounter_id:
            entries.append(TimelineEntry(action.occurred_at, "coding",
                                         f"{action.action} on {action.work_item_id} by {action.actor}"))
    for claim in family:
        kind = {"7": "replacement of " + str(claim.original_claim_id),
                "8": "void of " + str(claim.original_claim_id)}.get(claim.frequency_code, "original")
        codes = " ".join(ln.procedure_code + "".join(f"-{m}" for m in ln.modifiers) for ln in claim.lines)
        entries.append(TimelineEntry(claim.submitted_at, "claim",
                                     f"claim {claim.claim_id} submitted ({kind}), {codes}, "
                                     f"dx {' '.join(claim.diagnoses)}, billed {claim.total_charge:,.2f}"))
    for remit in events.remittances:
        if remit.claim_id in claim_ids:
            carcs = " ".join(sorted({f"{a.group_code}-{a.carc}" for a in remit.all_adjustments()}))
            entries.append(TimelineEntry(remit.adjudicated_at, "payer",
                                         f"remittance {remit.remittance_id} for {remit.claim_id}: CLP02 "
                                         f"{remit.claim_status_code} {remit.outcome}, allowed "
                                         f"{remit.allowed_amount:,.2f}, paid {remit.paid_amount:,.2f}, patient "
                                         f"{remit.patient_responsibility:,.2f} [{carcs}], trace "
                                         f"{remit.trace_number}, paid on {remit.payment_date}"))
    for statement in events.statements:
        if statement.claim_id in claim_ids:
            entries.append(TimelineEntry(statement.created_at, "billing",
                                         f"patient statement {statement.statement_id}: {statement.amount:,.2f}, "
                                         f"due {statement.due_date}"))
    for work_item in events.denials:
        if work_item.claim_id in claim_ids:
            entries.append(TimelineEntry(work_item.created_at, "denials",
                                         f"work item {work_item.work_item_id} in {work_item.queue}: "
                                         f"{work_item.group_code}-{work_item.carc}, at risk "
                                         f"{work_item.amount_at_risk:,.2f}"))
    for denial_action in events.denial_actions:
        if denial_action.claim_id in claim_ids:
            detail = " ".join(f"{k} {v}" for k, v in (("replacement", denial_action.replacement_claim_id),
                                                        ("reason", denial_action.adjustment_reason),
                                                        ("overturned", denial_action.appeal_overturned),
                                                        ("amount", denial_action.amount)) if v is not None)
            entries.append(TimelineEntry(denial_action.at, "denials",
                                         f"{denial_action.action} on {denial_action.work_item_id} by "
                                         f"{denial_action.user} {detail}".strip()))
    return sorted((TimelineEntry(_utc(e.at).astimezone(UTC), e.stage, e.what) for e in entries),
                  key=lambda e: e.at)


async def read_claim_events(settings: Settings, bootstrap: str, codec: Codec) -> ClaimEvents:
    """Every event ``claim_timeline`` looks at, read from the topics (no consumer group).
    A record that does not decode is skipped here: the stage that met it dead-lettered it."""
    routing = DenialRouting.load(settings.denial_routing_file)

    def events(topic: Topic, event_type: type[T]) -> Awaitable[list[T]]:
        return read_events(settings, bootstrap, codec, topic, event_type)

    queues = await asyncio.gather(*(events(queue, DenialWorkItem) for queue in routing.queues()))
    read: list[Any] = await asyncio.gather(
        events(Topic.ENCOUNTERS, Encounter), events(Topic.CODED, CodedEncounter),
        events(Topic.CODING_REVIEW, CodingReviewItem), events(Topic.CODING_ACTIONS, CodingAction),
        events(Topic.CLAIMS_SUBMITTED, ClaimSubmitted), events(Topic.REMITTANCES, Remittance),
        events(Topic.STATEMENTS, PatientStatement), events(Topic.DENIAL_ACTIONS, DenialAction))
    encounters, coded, review, actions, claims, remittances, statements, denial_actions = read
    return ClaimEvents(encounters, coded, review, actions, claims, remittances, statements,
                       [item for queue in queues for item in queue], denial_actions)
