"""Claim generation: a coded encounter becomes one professional claim (837P semantics),
once its member is known to be covered (eligibility) and once the claim passes the
scrubber.

The claim id is derived from the encounter id, so a redelivered or resent encounter
yields the same id; the stage remembers which encounters it took on (a faust table in
the worker, any mapping here) and drops the second one as a duplicate. Every coded
encounter ends as exactly one of: claim submitted, scrub rejected, eligibility held
(front desk), duplicate dropped.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from engine.claims.eligibility import EligibilityCache, covers, eligibility_request, front_desk_item_id
from engine.claims.scrubber import ScrubContext, load_places_of_service, scrub_claim, scrub_item_id
from engine.coding.findings import has_errors
from engine.model.codes import SELF
from engine.model.events import (
    ClaimLine,
    ClaimState,
    ClaimStatus,
    ClaimSubmitted,
    CodedEncounter,
    DuplicateDropped,
    EligibilityResponse,
    EligibilityStatus,
    FrontDeskItem,
    Provider,
    ScrubRejected,
    Subscriber,
)
from engine.model.money import CENTS
from engine.reference.master_data import PayerInfo, Providers, load_payers
from engine.runtime.stages import Emit, ProcessingError, SourceMessage
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic


@dataclass(frozen=True)
class FeeSchedule:
    """Billed charge per unit by procedure code (the practice's chargemaster)."""

    charges: dict[str, Decimal]

    @classmethod
    def load(cls, path: Path) -> FeeSchedule:
        charges: dict[str, Decimal] = {}
        with path.open(newline="") as handle:
            for row in csv.DictReader(line for line in handle if not line.startswith("#")):
                code = row["code"].strip().upper()
                if code in charges:
                    raise ValueError(f"{path}: procedure {code} is listed twice")
                charges[code] = Decimal(row["charge"])
        return cls(charges)

    def charge(self, code: str, units: int) -> Decimal:
        try:
            per_unit = self.charges[code]
        except KeyError:
            raise ProcessingError(f"procedure {code} has no charge in the fee schedule") from None
        return (per_unit * units).quantize(CENTS)


def claim_id_for(encounter_id: str) -> str:
    """Deterministic original-claim id; short enough for CLM01 (max 38 characters)."""
    return "C" + hashlib.blake2b(encounter_id.encode(), digest_size=8).hexdigest().upper()


@dataclass(frozen=True)
class ClaimContext:
    """The reference data a claim is built and scrubbed with, loaded once per worker."""

    fees: FeeSchedule
    providers: Providers
    payers: dict[str, PayerInfo]
    places_of_service: frozenset[str]
    eligibility_ttl: timedelta
    codec: Codec

    @classmethod
    def load(cls, settings: Settings, codec: Codec) -> ClaimContext:
        return cls(
            fees=FeeSchedule.load(settings.fee_schedule_file),
            providers=Providers.load(settings.providers_file),
            payers=load_payers(settings.payers_file),
            places_of_service=load_places_of_service(settings.place_of_service_file),
            eligibility_ttl=timedelta(seconds=settings.eligibility_ttl_s),
            codec=codec,
        )


def build_claim(coded: CodedEncounter, ctx: ClaimContext, now: datetime) -> ClaimSubmitted:
    """The professional claim (837P semantics) for a coded encounter: providers and
    payer from master data, the subscriber (the patient, relationship 18, unless a
    dependent), charges from the fee schedule. Unknown NPIs and payers are carried as
    given, with empty names: the scrubber reports them."""
    claim_id = claim_id_for(coded.encounter_id)
    lines = [
        ClaimLine(
            line_number=line.line_number,
            procedure_code=line.procedure_code,
            modifiers=list(line.modifiers),
            units=line.units,
            charge=ctx.fees.charge(line.procedure_code, line.units),
            dx_pointers=list(line.dx_pointers),
            date_of_service=coded.date_of_service,
        )
        for line in coded.lines
    ]
    payer = ctx.payers.get(coded.payer_id)
    return ClaimSubmitted(
        claim_id=claim_id,
        encounter_id=coded.encounter_id,
        encounter_occurred_at=coded.encounter_occurred_at,
        patient_control_number=claim_id,
        frequency_code="1",
        original_claim_id=None,
        payer_id=coded.payer_id,
        member_id=coded.member_id,
        patient_id=coded.patient_id,
        billing_npi=coded.billing_npi,
        rendering_npi=coded.rendering_npi,
        date_of_service=coded.date_of_service,
        place_of_service=coded.place_of_service,
        diagnoses=list(coded.diagnoses),
        lines=lines,
        total_charge=sum((line.charge for line in lines), Decimal("0.00")),
        submitted_at=now,
        billing_provider=_provider(ctx.providers.billing, coded.billing_npi, "2"),
        rendering_provider=_provider(ctx.providers.rendering.get(coded.rendering_npi), coded.rendering_npi, "1"),
        payer_name=payer.name if payer else "",
        claim_filing_indicator=payer.claim_filing_indicator if payer else "",
        subscriber=coded.subscriber or Subscriber(
            relationship=SELF, first_name=coded.patient_first_name, last_name=coded.patient_last_name,
            birth_date=coded.patient_birth_date, sex=coded.patient_sex, address=coded.patient_address,
        ),
        patient_first_name=coded.patient_first_name,
        patient_last_name=coded.patient_last_name,
        patient_birth_date=coded.patient_birth_date,
        patient_sex=coded.patient_sex,
        patient_address=coded.patient_address,
    )


def _provider(known: Provider | None, npi: str, entity_type: str) -> Provider:
    if known is not None and known.npi == npi:
        return known
    return Provider(npi=npi, entity_type=entity_type, name="", first_name="", taxonomy="", tax_id="", address=None)


@dataclass(frozen=True)
class ClaimStageState:
    """What the claim stage remembers (faust tables in the worker, dicts in tests):
    the claim id of every encounter it took on, the coded encounters waiting for an
    eligibility answer, and the answers."""

    billed: MutableMapping[str, str]
    awaiting: MutableMapping[str, str]  # encounter id -> the coded event's framed Avro, latin-1 text
    answers: EligibilityCache


def bill_coded(
    coded: CodedEncounter, message: SourceMessage, state: ClaimStageState, ctx: ClaimContext, now: datetime
) -> list[Emit]:
    """A coded encounter: dropped if already taken on (one original claim per encounter,
    ever), else decided now from a cached eligibility answer, or parked while the payer
    is asked."""
    already = state.billed.get(coded.encounter_id)
    if already is not None:
        return [Emit(Topic.DUPLICATES, coded.encounter_id, DuplicateDropped(
            claim_id=already, encounter_id=coded.encounter_id, source_topic=message.topic,
            source_partition=message.partition, source_offset=message.offset, dropped_at=now,
        ))]
    answer = state.answers.get(coded.payer_id, coded.member_id, coded.date_of_service, now)
    if answer is not None:
        emits = decide(coded, message.value or b"", answer, ctx, now)  # may raise: then not taken on
        state.billed[coded.encounter_id] = claim_id_for(coded.encounter_id)
        return emits
    state.billed[coded.encounter_id] = claim_id_for(coded.encounter_id)  # a resend while parked is a duplicate
    state.awaiting[coded.encounter_id] = (message.value or b"").decode("latin-1")
    return [Emit(Topic.ELIGIBILITY_REQUESTS, coded.encounter_id, eligibility_request(coded, now))]


def on_eligibility(answer: EligibilityResponse, state: ClaimStageState, ctx: ClaimContext, now: datetime
                   ) -> list[Emit]:
    """The payer's answer: cache it, and decide the encounter that waited for it (none
    if the answer is a redelivery and the encounter was already decided)."""
    state.answers.put(answer)
    parked = state.awaiting.get(answer.encounter_id)
    if parked is None:
        return []
    coded_bytes = parked.encode("latin-1")
    # Decided first, released after: if the claim cannot be built the answer is
    # dead-lettered and the encounter stays parked, so replaying the answer retries it.
    emits = decide(ctx.codec.decode(coded_bytes, CodedEncounter), coded_bytes, answer, ctx, now)
    state.awaiting.pop(answer.encounter_id, None)
    return emits


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
