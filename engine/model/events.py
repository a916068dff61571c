"""The events that flow between the stages, as typed dataclasses: GENERATED from the
latest schema of each event in ``schemas/`` by ``python -m engine.wire.generate`` — edit the
``.avsc`` files, not this one (docs/architecture.md: events and their versions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from engine.model.behaviour import RemittanceBehaviour

NAMESPACE = "org.claimflow.events"


class Sex(StrEnum):
    F = "F"
    M = "M"
    U = "U"


class Severity(StrEnum):
    """ERROR stops the claim; WARNING travels with it."""

    ERROR = "ERROR"
    WARNING = "WARNING"


class RemittanceOutcome(StrEnum):
    """How the payer answered the claim; REVERSED is CLP02 22, an earlier payment taken back (replacement or
    void).
    """

    PAID = "PAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    DENIED = "DENIED"
    REVERSED = "REVERSED"


class GroupCode(StrEnum):
    """CAS01 claim adjustment group code (CR is not used in 5010): CO contractual obligation, the provider writes
    it off; PR patient responsibility; OA other adjustment; PI payer-initiated reduction.
    """

    CO = "CO"
    PR = "PR"
    OA = "OA"
    PI = "PI"


class ClaimState(StrEnum):
    """Where a claim stands after the remittances posted to it."""

    SUBMITTED = "SUBMITTED"
    PAID = "PAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    DENIED = "DENIED"
    REVERSED = "REVERSED"


class CodingActionType(StrEnum):
    """FIX: corrected codes, the coding stage re-checks them; QUERY: a question to the provider, the item waits
    for the answer; ANSWER: the provider's reply, the item is back with the coder; AUDIT_AGREE,
    AUDIT_DISAGREE: an audit's outcome; RESOLVED (by the engine): the fix passed and went on to claim
    generation; FIX_REJECTED (by the engine): a fix for a stale revision or a resolved item.
    """

    FIX = "FIX"
    QUERY = "QUERY"
    ANSWER = "ANSWER"
    AUDIT_AGREE = "AUDIT_AGREE"
    AUDIT_DISAGREE = "AUDIT_DISAGREE"
    RESOLVED = "RESOLVED"
    FIX_REJECTED = "FIX_REJECTED"


class EligibilityStatus(StrEnum):
    """ACTIVE: covered on the date; INACTIVE: coverage not in force; NOT_FOUND: no such member."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    NOT_FOUND = "NOT_FOUND"


class DenialActionType(StrEnum):
    """What a biller did to a denial work item (engine/denials/work_items.py has the transitions): CLAIM takes
    the item; RESUBMIT sent a corrected claim (frequency 7); VOID sent a void (frequency 8); APPEAL filed an
    appeal with the payer; WRITE_OFF adjusted the balance off; REOPEN works a closed, unpaid item again;
    APPEAL_DECIDED is the payer's answer to an appeal; RESUBMIT_REJECTED (by the engine): the replacement or
    void failed its checks and was not sent.
    """

    CLAIM = "CLAIM"
    RESUBMIT = "RESUBMIT"
    VOID = "VOID"
    APPEAL = "APPEAL"
    WRITE_OFF = "WRITE_OFF"
    REOPEN = "REOPEN"
    APPEAL_DECIDED = "APPEAL_DECIDED"
    RESUBMIT_REJECTED = "RESUBMIT_REJECTED"


@dataclass(slots=True)
class Patient:
    """PHI: never logged."""

    #: Medical record number (internal id, no PHI).
    patient_id: str
    #: PHI.
    first_name: str
    #: PHI.
    last_name: str
    #: PHI.
    birth_date: date
    #: Administrative sex.
    sex: Sex


@dataclass(slots=True)
class Procedure:
    #: CPT or HCPCS Level II code.
    code: str
    #: Up to 4 two-character modifiers.
    modifiers: list[str]
    #: Units of service.
    units: int
    #: 1-based pointers into diagnoses, 1 to 4 of them.
    dx_pointers: list[int]


@dataclass(slots=True)
class Address:
    """A postal address (837P N3/N4). PHI for a person."""

    #: Street line.
    line1: str
    #: City.
    city: str
    #: Two-letter state code.
    state: str
    #: ZIP code (5 or 9 digits).
    postal_code: str


@dataclass(slots=True)
class Subscriber:
    """The insured person and the patient's relationship to them (837P SBR, loop 2010BA). PHI."""

    #: X12 individual relationship code of the patient to the subscriber: 18 self, 01 spouse, 19 child, G8
    #: other.
    relationship: str
    #: PHI.
    first_name: str
    #: PHI.
    last_name: str
    #: PHI; null when registration did not record it.
    birth_date: date | None
    #: Administrative sex: F, M or U.
    sex: str
    #: PHI.
    address: Address | None = None
    #: Group or plan number on the card.
    group_number: str | None = None


@dataclass(slots=True)
class Encounter:
    """A documented visit as the EHR sends it: who, when, where, what was found and done."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.Encounter"
    #: EHR encounter id; the key of the event. Carries no PHI.
    encounter_id: str
    #: Id of the sending EHR.
    source_system: str
    #: When the EHR emitted the encounter (UTC).
    occurred_at: datetime
    #: The patient.
    patient: Patient
    #: Payer (insurer) id from the patient's coverage.
    payer_id: str
    #: Subscriber member id on the insurance card. PHI.
    member_id: str
    #: Billing provider NPI (10 digits).
    billing_npi: str
    #: Rendering provider NPI (10 digits).
    rendering_npi: str
    #: Date of service.
    date_of_service: date
    #: CMS place-of-service code, 2 digits (11 office, 22 outpatient hospital, ...).
    place_of_service: str
    #: ICD-10-CM codes as documented, principal first; with or without the dot.
    diagnoses: list[str]
    #: Procedures performed.
    procedures: list[Procedure]
    #: Free text from the visit. PHI: never logged.
    clinical_note: str | None = None
    #: The patient's address (PHI).
    patient_address: Address | None = None
    #: The insured, when the patient is not the subscriber; null when the patient is.
    subscriber: Subscriber | None = None


@dataclass(slots=True)
class CodedLine:
    #: 1-based.
    line_number: int
    #: CPT or HCPCS Level II code, upper case.
    procedure_code: str
    #: Modifiers, upper case.
    modifiers: list[str]
    #: Units of service.
    units: int
    #: 1-based pointers into diagnoses.
    dx_pointers: list[int]


@dataclass(slots=True)
class Finding:
    """One result of a coding or claim check."""

    #: Stable id of the rule, e.g. ICD10_NOT_BILLABLE.
    rule_id: str
    #: ERROR stops the claim; WARNING travels with it.
    severity: Severity
    #: What is wrong, in words a coder uses. Never carries PHI.
    message: str
    #: The offending element, e.g. 'diagnoses[1]=M54.5' or 'lines[2].dx_pointers'.
    element: str


@dataclass(slots=True)
class CodedEncounter:
    """An encounter whose codes passed the coding checks, ready for claim generation."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.CodedEncounter"
    #: The encounter.
    encounter_id: str
    #: When the EHR emitted the encounter (for end-to-end latency).
    encounter_occurred_at: datetime
    #: Medical record number.
    patient_id: str
    #: PHI.
    patient_birth_date: date
    #: F, M or U.
    patient_sex: str
    #: Payer id.
    payer_id: str
    #: PHI.
    member_id: str
    #: Billing provider NPI.
    billing_npi: str
    #: Rendering provider NPI.
    rendering_npi: str
    #: Date of service.
    date_of_service: date
    #: CMS place-of-service code.
    place_of_service: str
    #: Normalised ICD-10-CM codes (with the dot), principal first.
    diagnoses: list[str]
    #: Service lines.
    lines: list[CodedLine]
    #: Warnings that travel with the claim.
    findings: list[Finding]
    #: When the coding stage passed it.
    coded_at: datetime
    #: The coder work item this encounter resolves (a correction re-checked clean); null on the first pass.
    review_work_item_id: str | None = None
    #: PHI.
    patient_first_name: str = ''
    #: PHI.
    patient_last_name: str = ''
    #: PHI.
    patient_address: Address | None = None
    #: The insured, when the patient is not the subscriber.
    subscriber: Subscriber | None = None


@dataclass(slots=True)
class CodingReviewItem:
    """An encounter a coder must look at: its codes failed a check, or it was drawn for audit."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.CodingReviewItem"
    #: Deterministic: derived from the encounter id.
    work_item_id: str
    #: The encounter.
    encounter_id: str
    #: Every finding, errors first.
    findings: list[Finding]
    #: True when drawn as a quality-control sample, not for an error.
    is_audit: bool
    #: The original encounter event, exactly as received (Confluent-framed Avro).
    encounter: bytes
    #: When the item was created.
    created_at: datetime
    #: 1 when the item opens; a coder's correction that still fails the checks opens the next revision of
    #: the same item.
    revision: int = 1


@dataclass(slots=True)
class ClaimLine:
    #: LX01.
    line_number: int
    #: SV101-2.
    procedure_code: str
    #: SV101-3..6.
    modifiers: list[str]
    #: SV104.
    units: int
    #: SV102 line charge.
    charge: Decimal
    #: SV107 pointers into diagnoses.
    dx_pointers: list[int]
    #: DTP*472.
    date_of_service: date


@dataclass(slots=True)
class Provider:
    """A billing or rendering provider (837P 2010AA / 2310B)."""

    #: National Provider Identifier (10 digits, Luhn check digit).
    npi: str
    #: 1 person, 2 organisation (NM102).
    entity_type: str
    #: Organisation name, or a person's last name.
    name: str
    #: A person's first name; empty for an organisation.
    first_name: str
    #: Health care provider taxonomy code (PRV03).
    taxonomy: str
    #: Employer identification number (REF*EI).
    tax_id: str
    #: Practice address; required for the billing provider.
    address: Address | None = None


@dataclass(slots=True)
class ClaimSubmitted:
    """A professional claim (837P semantics) as submitted to the payer."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.ClaimSubmitted"
    #: Deterministic id derived from the encounter id: a redelivered encounter makes the same id.
    claim_id: str
    #: The encounter it bills.
    encounter_id: str
    #: When the EHR emitted the encounter.
    encounter_occurred_at: datetime
    #: CLM01: our reference the payer echoes back in the 835 (CLP01).
    patient_control_number: str
    #: CLM05-3: 1 original, 7 replacement, 8 void.
    frequency_code: str
    #: For 7 and 8: the claim being replaced or voided.
    original_claim_id: str | None
    #: Payer id.
    payer_id: str
    #: PHI.
    member_id: str
    #: Medical record number.
    patient_id: str
    #: Billing provider NPI.
    billing_npi: str
    #: Rendering provider NPI.
    rendering_npi: str
    #: Date of service.
    date_of_service: date
    #: CLM05-1.
    place_of_service: str
    #: HI: principal first, up to 12.
    diagnoses: list[str]
    #: Service lines, 1 to 50.
    lines: list[ClaimLine]
    #: CLM02 = sum of the line charges.
    total_charge: Decimal
    #: When the claim was submitted.
    submitted_at: datetime
    #: Loop 2010AA.
    billing_provider: Provider | None = None
    #: Loop 2310B.
    rendering_provider: Provider | None = None
    #: Loop 2010BB payer name.
    payer_name: str = ''
    #: SBR09: MB Medicare Part B, MC Medicaid, CI commercial, HM HMO, 16 Medicare Advantage (HMO Medicare
    #: risk).
    claim_filing_indicator: str = ''
    #: The subscriber (relationship 18: the patient is the subscriber).
    subscriber: Subscriber | None = None
    #: PHI.
    patient_first_name: str = ''
    #: PHI.
    patient_last_name: str = ''
    #: PHI.
    patient_birth_date: date | None = None
    #: F, M or U.
    patient_sex: str = 'U'
    #: PHI.
    patient_address: Address | None = None


@dataclass(slots=True)
class Adjustment:
    """One CAS triplet: group code, reason (CARC), amount, quantity."""

    #: CAS01: CO contractual, PR patient responsibility, OA other, PI payer initiated.
    group_code: GroupCode
    #: Claim adjustment reason code (X12 CARC list).
    carc: str
    #: Adjustment amount; positive reduces payment.
    amount: Decimal
    #: CAS04 units adjusted, if any.
    quantity: int | None = None


@dataclass(slots=True)
class RemittanceLine:
    """One 2110 service line payment: SVC, DTM*472, CAS, AMT*B6, LQ*HE."""

    #: Our LX number (REF*6R).
    line_number: int
    #: SVC01-2.
    procedure_code: str
    #: SVC02.
    billed_amount: Decimal
    #: AMT*B6.
    allowed_amount: Decimal
    #: SVC03.
    paid_amount: Decimal
    #: Line-level CAS.
    adjustments: list[Adjustment]
    #: Line remark codes (LQ*HE).
    rarcs: list[str] = field(default_factory=list)
    #: SVC01-3.. as adjudicated.
    modifiers: list[str] = field(default_factory=list)
    #: SVC05 units paid (SVC07 when the payer changed them).
    units: int = 1
    #: SVC06-2: the code as billed, when the payer adjudicated a different one.
    submitted_procedure_code: str | None = None
    #: SVC06-3..: the modifiers as billed, when the payer changed the procedure.
    submitted_modifiers: list[str] = field(default_factory=list)
    #: DTM*472.
    date_of_service: date | None = None


@dataclass(slots=True)
class Remittance(RemittanceBehaviour):
    """The payer's answer to one claim (835 2100 CLP loop semantics). Balances on the claim and on every line:
    billed - sum(CAS amounts) = paid; patient_responsibility = sum(PR amounts). A reversal (CLP02 22) carries
    the original's amounts negated.
    """

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.Remittance"
    #: Deterministic per claim and adjudication.
    remittance_id: str
    #: Our claim.
    claim_id: str
    #: The encounter.
    encounter_id: str
    #: When the EHR emitted the encounter.
    encounter_occurred_at: datetime
    #: CLP01.
    patient_control_number: str
    #: Payer id.
    payer_id: str
    #: CLP07.
    payer_claim_control_number: str
    #: DTM*232 claim service date.
    date_of_service: date
    #: CLP02: 1 primary, 2 secondary, 4 denied, 22 reversal.
    claim_status_code: str
    #: Paid in full of the allowed amount, partly paid, denied, or a reversal of an earlier payment.
    outcome: RemittanceOutcome
    #: CLP03.
    billed_amount: Decimal
    #: What the payer allows.
    allowed_amount: Decimal
    #: CLP04.
    paid_amount: Decimal
    #: CLP05 = sum of PR adjustments.
    patient_responsibility: Decimal
    #: Claim-level CAS.
    adjustments: list[Adjustment]
    #: Remittance advice remark codes (MOA/LQ).
    rarcs: list[str]
    #: Service line payments (2110 SVC).
    lines: list[RemittanceLine]
    #: BPR16.
    payment_date: date
    #: TRN02 check or EFT trace number.
    trace_number: str
    #: When the payer simulator answered.
    adjudicated_at: datetime
    #: CLP09: 1 original, 7 replacement, 8 void.
    claim_frequency_code: str = '1'
    #: 1000A N1*PR.
    payer_name: str = ''
    #: 1000B N1*PE*..*XX: the billing provider paid.
    payee_npi: str = ''
    #: BPR04: ACH, CHK, or NON (no payment).
    payment_method: str = 'ACH'
    #: Where the remittance came from: the payer simulator, or the 835 file (name) it was read from.
    source: str = 'payer-simulator'


@dataclass(slots=True)
class DenialWorkItem:
    """A denied or partly denied claim in a biller's work queue."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.DenialWorkItem"
    #: Deterministic from the remittance: routing twice makes one item.
    work_item_id: str
    #: The claim.
    claim_id: str
    #: The remittance that denied it.
    remittance_id: str
    #: The encounter.
    encounter_id: str
    #: Payer id.
    payer_id: str
    #: Denial category (eligibility, authorization, coding, ...).
    category: str
    #: Work queue (topic) the item was routed to.
    queue: str
    #: The CARC that decided the category.
    carc: str
    #: Its CAS group code.
    group_code: str
    #: Every CARC on the remittance, in order.
    all_carcs: list[str]
    #: Every RARC on the remittance.
    rarcs: list[str]
    #: The reasons in words.
    reasons: list[str]
    #: Billed minus paid minus patient responsibility: what the denial costs if not worked.
    amount_at_risk: Decimal
    #: Billed charge.
    billed_amount: Decimal
    #: What a biller usually does for this category.
    suggested_action: str
    #: Whether this category is usually recoverable.
    recoverable: bool
    #: Date of service.
    date_of_service: date
    #: When the item was routed.
    created_at: datetime


@dataclass(slots=True)
class ClaimStatus:
    """The posted state of a claim: status and balances after every remittance; keyed by claim id on a compacted
    topic.
    """

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.ClaimStatus"
    #: The claim.
    claim_id: str
    #: The encounter.
    encounter_id: str
    #: Payer id.
    payer_id: str
    #: Where the claim stands.
    status: ClaimState
    #: Billed charge.
    billed_amount: Decimal
    #: Paid so far, once remitted.
    paid_amount: Decimal | None
    #: The work queue holding it, when denied.
    denial_queue: str | None
    #: The remittance that set this status.
    remittance_id: str | None
    #: When the status changed.
    updated_at: datetime
    #: Sum of allowed amounts posted.
    allowed_amount: Decimal | None = None
    #: Sum of PR adjustments posted: billed to the patient.
    patient_responsibility: Decimal | None = None
    #: CO adjustments that are contractual (CARC 45 and alike): written off.
    contractual_adjustment: Decimal | None = None
    #: Adjustments that are denials (not PR, not contractual): at risk.
    denied_amount: Decimal | None = None
    #: billed - paid - patient responsibility - contractual adjustment - written off: what insurance still
    #: owes or denied.
    balance: Decimal | None = None
    #: CLP07 of the last remittance posted.
    payer_claim_control_number: str | None = None
    #: How many distinct remittances have been posted to the claim.
    remittances_posted: int = 0
    #: What billers wrote off from denial work items of this claim (net of reopened write-offs).
    written_off_amount: Decimal | None = None
    #: What the payer paid on appeals it overturned (included in paid_amount).
    appeal_paid_amount: Decimal | None = None


@dataclass(slots=True)
class DuplicateDropped:
    """A coded encounter that already has its claim: not billed twice, recorded here."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.DuplicateDropped"
    #: The claim already built for this encounter.
    claim_id: str
    #: The encounter.
    encounter_id: str
    #: Where the duplicate was read.
    source_topic: str
    #: Its partition.
    source_partition: int
    #: Its offset.
    source_offset: int
    #: When it was dropped.
    dropped_at: datetime


@dataclass(slots=True)
class DeadLetter:
    """An event a stage could not decode, process or deliver, kept with everything needed to replay it."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.DeadLetter"
    #: The stage that gave up (coding, claims, payer, denials).
    stage: str
    #: Class of the error, e.g. UndecodableEvent.
    error_type: str
    #: What went wrong, without PHI.
    reason: str
    #: Topic of the original event.
    source_topic: str
    #: Its partition.
    source_partition: int
    #: Its offset.
    source_offset: int
    #: The original key bytes.
    source_key: bytes | None
    #: The original value bytes: whole, or their first bytes when the dead letter would not fit its topic
    #: (original_truncated).
    original_value: bytes
    #: When it was dead-lettered.
    failed_at: datetime
    #: Size of the original value in bytes (-1: not recorded, a version 1 letter).
    original_size: int = -1
    #: Hex SHA-256 of the whole original value, to match the record still at its source offset.
    original_sha256: str = ''
    #: True when original_value holds only the first bytes.
    original_truncated: bool = False


@dataclass(slots=True)
class CodingAction:
    """One thing a coder (or the provider answering a query) did to a coding work item. The item's state is the
    fold of its actions; nothing is edited in place.
    """

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.CodingAction"
    #: Unique id of this action.
    action_id: str
    #: The coding work item acted on.
    work_item_id: str
    #: The item's encounter (the topic key).
    encounter_id: str
    #: The revision of the item the action was taken on.
    revision: int
    #: By a coder or provider: FIX (corrected codes, re-checked by the coding stage), QUERY (a question to
    #: the provider; the item waits), ANSWER (the provider's reply), AUDIT_AGREE / AUDIT_DISAGREE (an audit
    #: sample's outcome). By the engine (actor 'engine'): RESOLVED (the fix passed and went on to claim
    #: generation), FIX_REJECTED (a fix for a revision that is no longer current, or for a resolved item;
    #: note says why).
    action: CodingActionType
    #: Who acted: a user id, never a name; 'engine' for RESOLVED and FIX_REJECTED.
    actor: str
    #: The question, the answer, or the coder's reason.
    note: str | None
    #: What a FIX changed, one line each, e.g. 'diagnosis 1: M54.5 -> M54.50' (positions 1-based, as coders
    #: count).
    changes: list[str]
    #: FIX only: the corrected encounter (Confluent-framed Avro), same encounter id.
    corrected_encounter: bytes | None
    #: When the action was taken.
    occurred_at: datetime


@dataclass(slots=True)
class EligibilityRequest:
    """270 semantics: is this member covered on this date of service? Keyed by encounter id."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.EligibilityRequest"
    #: Deterministic: derived from the encounter id.
    request_id: str
    #: The encounter waiting for the answer.
    encounter_id: str
    #: Payer asked.
    payer_id: str
    #: Member id on the card. PHI.
    member_id: str
    #: PHI.
    subscriber_last_name: str
    #: PHI.
    subscriber_birth_date: date | None
    #: The date coverage is asked for.
    date_of_service: date
    #: When asked.
    requested_at: datetime


@dataclass(slots=True)
class EligibilityResponse:
    """271 semantics: the payer's answer to one eligibility request."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.EligibilityResponse"
    #: The request answered.
    request_id: str
    #: The encounter waiting for it.
    encounter_id: str
    #: Payer.
    payer_id: str
    #: PHI.
    member_id: str
    #: The date asked about.
    date_of_service: date
    #: The answer.
    status: EligibilityStatus
    #: The member's plan, when found.
    plan_id: str | None
    #: First day of coverage.
    coverage_start: date | None
    #: Last day of coverage; null when open-ended.
    coverage_end: date | None
    #: Office-visit copay.
    copay: Decimal | None
    #: Deductible left this plan year.
    deductible_remaining: Decimal | None
    #: Why not ACTIVE, in words.
    reason: str | None
    #: When answered.
    responded_at: datetime


@dataclass(slots=True)
class FrontDeskItem:
    """Registration work: the member was not covered on the date of service, so no claim was built."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.FrontDeskItem"
    #: Deterministic: derived from the encounter id.
    work_item_id: str
    #: The encounter.
    encounter_id: str
    #: Payer asked.
    payer_id: str
    #: The payer's answer.
    status: EligibilityStatus
    #: Why, in words.
    reason: str
    #: Date of service.
    date_of_service: date
    #: The coded encounter as received (framed Avro).
    coded: bytes
    #: When held.
    created_at: datetime


@dataclass(slots=True)
class ScrubRejected:
    """A claim the scrubber stopped before submission: its findings and the claim."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.ScrubRejected"
    #: Deterministic: derived from the claim id.
    work_item_id: str
    #: The claim built.
    claim_id: str
    #: Its encounter.
    encounter_id: str
    #: Payer it was for.
    payer_id: str
    #: Every scrubber finding, errors first.
    findings: list[Finding]
    #: The built ClaimSubmitted (framed Avro).
    claim: bytes
    #: When stopped.
    rejected_at: datetime


@dataclass(slots=True)
class PatientStatement:
    """What the patient owes after a remittance (the start of patient billing); a credit when a payment is
    reversed.
    """

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.PatientStatement"
    #: Deterministic from the remittance: posting twice makes one statement.
    statement_id: str
    #: The claim.
    claim_id: str
    #: The encounter.
    encounter_id: str
    #: CLP01: links to the patient account without carrying PHI.
    patient_control_number: str
    #: Payer id.
    payer_id: str
    #: The remittance that set the amount.
    remittance_id: str
    #: Total the patient owes from this remittance (negative: a credit).
    amount: Decimal
    #: PR-1.
    deductible: Decimal
    #: PR-2.
    coinsurance: Decimal
    #: PR-3.
    copay: Decimal
    #: Other PR adjustments (non-covered charges the patient agreed to, ...).
    other: Decimal
    #: The payer's payment date: when the patient's share became known.
    statement_date: date
    #: statement_date + CLAIMS_STATEMENT_DUE_DAYS.
    due_date: date
    #: When the engine posted it.
    created_at: datetime


@dataclass(slots=True)
class ProviderAdjustment:
    """One PLB adjustment: reason code, reference, amount (positive reduces the payment)."""

    #: PLB03-1: L6 interest, WO overpayment recovery, FB forwarding balance, 72 authorized return, ...
    reason_code: str
    #: PLB03-2.
    reference: str | None
    #: PLB04.
    amount: Decimal


@dataclass(slots=True)
class PaymentReceived:
    """One 835 transaction (one check or EFT): its total, its provider-level adjustments, and how its claim
    payments were applied.
    """

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.PaymentReceived"
    #: Deterministic from payer, trace, amount and date: ingesting a file twice makes one payment, and two
    #: payments sharing a trace number make two.
    payment_id: str
    #: Payer id (REF*2U or N1*PR N104, else the matched claims' payer).
    payer_id: str
    #: N1*PR.
    payer_name: str
    #: TRN02.
    trace_number: str
    #: BPR04: ACH, CHK, NON.
    payment_method: str
    #: BPR02 = sum(CLP04) - sum(PLB amounts).
    payment_amount: Decimal
    #: BPR16.
    payment_date: date
    #: CLP loops in the transaction.
    claim_payments: int
    #: Claim payments matched to our claims and published as remittances.
    matched: int
    #: Claim payments that went to the unapplied-cash queue.
    unapplied: int
    #: PLB.
    provider_adjustments: list[ProviderAdjustment]
    #: The file it was read from.
    source: str
    #: When it was ingested.
    received_at: datetime


@dataclass(slots=True)
class UnappliedPayment:
    """A claim payment from an 835 that matched none of our claims: cash to apply by hand, never dropped."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.UnappliedPayment"
    #: Deterministic from payer, trace, payer claim control number and status.
    item_id: str
    #: Payer id as read from the 835.
    payer_id: str
    #: N1*PR.
    payer_name: str
    #: TRN02 of its payment.
    trace_number: str
    #: CLP01 as the payer sent it.
    patient_control_number: str
    #: CLP07.
    payer_claim_control_number: str
    #: CLP02.
    claim_status_code: str
    #: CLP03.
    billed_amount: Decimal
    #: CLP04.
    paid_amount: Decimal
    #: Why it could not be applied.
    reason: str
    #: The claim payment loop (CLP to the next CLP) as received: PHI, kept for the cash poster.
    x12_segments: str
    #: The file it was read from.
    source: str
    #: When it was ingested.
    received_at: datetime


@dataclass(slots=True)
class DenialAction:
    """One thing a biller did to a denial work item. The item's state is the fold of its actions
    (engine.workqueue.apply_action); nothing is edited in place. Ids only: no PHI.
    """

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.DenialAction"
    #: Unique id of this action; applying it twice changes nothing.
    action_id: str
    #: The denial work item acted on (DenialWorkItem.work_item_id).
    work_item_id: str
    #: The denied claim (the topic key).
    claim_id: str
    #: CLAIM (a biller takes the item), RESUBMIT (a corrected claim, frequency 7, went out), VOID (a void,
    #: frequency 8, went out), APPEAL (an appeal was filed), WRITE_OFF (the balance is adjusted off), REOPEN
    #: (a closed item is worked again), APPEAL_DECIDED (the payer's answer to the appeal). RESUBMIT_REJECTED
    #: (the engine's verdict: the replacement or void failed the coding checks or the scrubber and was not
    #: sent; the item is back with the biller).
    action: DenialActionType
    #: Who acted: a biller's user id (never a name), 'engine' for the engine's verdicts, 'payer:ID' for the
    #: payer's decisions.
    user: str
    #: When the action was taken.
    at: datetime
    #: The biller's reason; no PHI.
    note: str | None = None
    #: WRITE_OFF only: the reason code the balance is adjusted off with (CARC-like, e.g. 29).
    adjustment_reason: str | None = None
    #: RESUBMIT / VOID only: the claim id of the replacement (7) or void (8) claim.
    replacement_claim_id: str | None = None
    #: APPEAL_DECIDED only: true when the payer overturned its denial.
    appeal_overturned: bool | None = None
    #: WRITE_OFF: the amount written off; APPEAL: the amount appealed; APPEAL_DECIDED (overturned): the
    #: amount the payer pays.
    amount: Decimal | None = None
    #: The payer of the denied claim: where an appeal goes.
    payer_id: str | None = None
    #: RESUBMIT / VOID: the replacement (7) or void (8) claim itself, a Confluent-framed ClaimSubmitted; the
    #: engine checks it (coding checks, scrubber) before it goes to claims-submitted.
    replacement_claim: bytes | None = None


EVENT_TYPES: tuple[type, ...] = (
    Encounter,
    CodedEncounter,
    CodingReviewItem,
    ClaimSubmitted,
    Remittance,
    DenialWorkItem,
    ClaimStatus,
    DuplicateDropped,
    DeadLetter,
    CodingAction,
    EligibilityRequest,
    EligibilityResponse,
    FrontDeskItem,
    ScrubRejected,
    PatientStatement,
    PaymentReceived,
    UnappliedPayment,
    DenialAction,
)
