"""The events that flow between the stages, as typed dataclasses.

Each top-level event mirrors one Avro schema in ``schemas/`` field for field (a test
checks that); ``engine.wire.codec`` turns them into Confluent-framed Avro and back.
Money is ``Decimal``; dates are ``date``; instants are timezone-aware ``datetime``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

NAMESPACE = "org.claimflow.events"


class Sex(StrEnum):
    F = "F"
    M = "M"
    U = "U"


class Severity(StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"


class GroupCode(StrEnum):
    """CAS01 claim adjustment group code (CR is not used in 5010)."""

    CO = "CO"  # contractual obligation: the provider writes it off
    PR = "PR"  # patient responsibility
    OA = "OA"  # other adjustment
    PI = "PI"  # payer-initiated reduction


class RemittanceOutcome(StrEnum):
    PAID = "PAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    DENIED = "DENIED"
    REVERSED = "REVERSED"  # CLP02 22: an earlier payment taken back (replacement or void)


class ClaimState(StrEnum):
    SUBMITTED = "SUBMITTED"
    PAID = "PAID"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    DENIED = "DENIED"
    REVERSED = "REVERSED"


class ClaimStatusCode(StrEnum):
    """CLP02 claim status codes Claimflow writes and reads."""

    PRIMARY = "1"
    SECONDARY = "2"
    TERTIARY = "3"
    DENIED = "4"
    REVERSAL = "22"


class EligibilityStatus(StrEnum):
    """271 answer: the member is covered on the date of service, or why not."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"  # coverage not in force on the date of service
    NOT_FOUND = "NOT_FOUND"  # the payer has no such member


# --- nested records ----------------------------------------------------------


@dataclass(slots=True)
class Patient:
    patient_id: str
    first_name: str
    last_name: str
    birth_date: date
    sex: Sex


@dataclass(slots=True)
class Address:
    """PHI for a person (837P N3/N4)."""

    line1: str
    city: str
    state: str
    postal_code: str


#: X12 individual relationship code (SBR02, PAT01) for "the patient is the subscriber".
SELF = "18"


@dataclass(slots=True)
class Subscriber:
    """The insured person and how the patient relates to them (837P SBR, 2010BA)."""

    relationship: str  # X12 individual relationship code: 18 self, 01 spouse, 19 child, G8 other
    first_name: str
    last_name: str
    birth_date: date | None  # None: registration did not record it
    sex: str  # F, M or U
    address: Address | None = None
    group_number: str | None = None


@dataclass(slots=True)
class Provider:
    """A billing or rendering provider (837P 2010AA / 2310B)."""

    npi: str
    entity_type: str  # 1 person, 2 organisation (NM102)
    name: str  # organisation name, or last name of a person
    first_name: str
    taxonomy: str
    tax_id: str
    address: Address | None = None


@dataclass(slots=True)
class Procedure:
    code: str
    modifiers: list[str]
    units: int
    dx_pointers: list[int]


@dataclass(slots=True)
class Finding:
    rule_id: str
    severity: Severity
    message: str
    element: str


@dataclass(slots=True)
class CodedLine:
    line_number: int
    procedure_code: str
    modifiers: list[str]
    units: int
    dx_pointers: list[int]


@dataclass(slots=True)
class ClaimLine:
    line_number: int
    procedure_code: str
    modifiers: list[str]
    units: int
    charge: Decimal
    dx_pointers: list[int]
    date_of_service: date


@dataclass(slots=True)
class Adjustment:
    group_code: GroupCode
    carc: str
    amount: Decimal
    quantity: int | None = None


@dataclass(slots=True)
class RemittanceLine:
    line_number: int
    procedure_code: str
    billed_amount: Decimal
    allowed_amount: Decimal
    paid_amount: Decimal
    adjustments: list[Adjustment]
    rarcs: list[str] = field(default_factory=list)
    modifiers: list[str] = field(default_factory=list)
    units: int = 1
    #: SVC06: the code as billed, when the payer adjudicated another (None: unchanged).
    submitted_procedure_code: str | None = None
    submitted_modifiers: list[str] = field(default_factory=list)
    date_of_service: date | None = None


@dataclass(slots=True)
class ProviderAdjustment:
    """One PLB adjustment; a positive amount reduces the payment."""

    reason_code: str
    reference: str | None
    amount: Decimal


# --- events (one Avro schema each) ------------------------------------------


@dataclass(slots=True)
class Encounter:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.Encounter"
    encounter_id: str
    source_system: str
    occurred_at: datetime
    patient: Patient
    payer_id: str
    member_id: str
    billing_npi: str
    rendering_npi: str
    date_of_service: date
    place_of_service: str
    diagnoses: list[str]
    procedures: list[Procedure]
    clinical_note: str | None = None
    patient_address: Address | None = None
    #: The insured, when the patient is not (None: the patient is the subscriber).
    subscriber: Subscriber | None = None


@dataclass(slots=True)
class CodedEncounter:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.CodedEncounter"
    encounter_id: str
    encounter_occurred_at: datetime
    patient_id: str
    patient_birth_date: date
    patient_sex: str
    payer_id: str
    member_id: str
    billing_npi: str
    rendering_npi: str
    date_of_service: date
    place_of_service: str
    diagnoses: list[str]
    lines: list[CodedLine]
    findings: list[Finding]
    coded_at: datetime
    review_work_item_id: str | None = None  # set when a coder's correction resolved an item
    patient_first_name: str = ""
    patient_last_name: str = ""
    patient_address: Address | None = None
    subscriber: Subscriber | None = None


@dataclass(slots=True)
class CodingReviewItem:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.CodingReviewItem"
    work_item_id: str
    encounter_id: str
    findings: list[Finding]
    is_audit: bool
    encounter: bytes
    created_at: datetime
    revision: int = 1


class CodingActionType(StrEnum):
    FIX = "FIX"  # corrected codes: the coding stage re-checks them
    QUERY = "QUERY"  # a question to the provider; the item waits for the answer
    ANSWER = "ANSWER"  # the provider's reply; the item is back with the coder
    AUDIT_AGREE = "AUDIT_AGREE"
    AUDIT_DISAGREE = "AUDIT_DISAGREE"
    RESOLVED = "RESOLVED"  # by the engine: the fix passed and went on to claim generation
    FIX_REJECTED = "FIX_REJECTED"  # by the engine: a fix for a stale revision or a resolved item


@dataclass(slots=True)
class CodingAction:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.CodingAction"
    action_id: str
    work_item_id: str
    encounter_id: str
    revision: int
    action: CodingActionType
    actor: str
    note: str | None
    changes: list[str]
    corrected_encounter: bytes | None
    occurred_at: datetime


@dataclass(slots=True)
class ClaimSubmitted:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.ClaimSubmitted"
    claim_id: str
    encounter_id: str
    encounter_occurred_at: datetime
    patient_control_number: str
    frequency_code: str
    original_claim_id: str | None
    payer_id: str
    member_id: str
    patient_id: str
    billing_npi: str
    rendering_npi: str
    date_of_service: date
    place_of_service: str
    diagnoses: list[str]
    lines: list[ClaimLine]
    total_charge: Decimal
    submitted_at: datetime
    billing_provider: Provider | None = None
    rendering_provider: Provider | None = None
    payer_name: str = ""
    claim_filing_indicator: str = ""  # SBR09: MB Medicare Part B, MC Medicaid, CI commercial, HM HMO, 16 MA
    subscriber: Subscriber | None = None  # relationship 18: the patient is the subscriber
    patient_first_name: str = ""
    patient_last_name: str = ""
    patient_birth_date: date | None = None
    patient_sex: str = "U"
    patient_address: Address | None = None


@dataclass(slots=True)
class EligibilityRequest:
    """270 semantics: is this member covered on this date of service?"""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.EligibilityRequest"
    request_id: str
    encounter_id: str
    payer_id: str
    member_id: str
    subscriber_last_name: str
    subscriber_birth_date: date | None
    date_of_service: date
    requested_at: datetime


@dataclass(slots=True)
class EligibilityResponse:
    """271 semantics: the payer's answer."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.EligibilityResponse"
    request_id: str
    encounter_id: str
    payer_id: str
    member_id: str
    date_of_service: date
    status: EligibilityStatus
    plan_id: str | None
    coverage_start: date | None
    coverage_end: date | None
    copay: Decimal | None
    deductible_remaining: Decimal | None
    reason: str | None
    responded_at: datetime


@dataclass(slots=True)
class FrontDeskItem:
    """Registration work: no claim until coverage is sorted out."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.FrontDeskItem"
    work_item_id: str
    encounter_id: str
    payer_id: str
    status: EligibilityStatus
    reason: str
    date_of_service: date
    coded: bytes  # the coded encounter, as received
    created_at: datetime


@dataclass(slots=True)
class ScrubRejected:
    """A claim the scrubber stopped before it left: the findings and the claim."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.ScrubRejected"
    work_item_id: str
    claim_id: str
    encounter_id: str
    payer_id: str
    findings: list[Finding]
    claim: bytes  # the built ClaimSubmitted, framed Avro
    rejected_at: datetime


@dataclass(slots=True)
class Remittance:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.Remittance"
    remittance_id: str
    claim_id: str
    encounter_id: str
    encounter_occurred_at: datetime
    patient_control_number: str
    payer_id: str
    payer_claim_control_number: str
    date_of_service: date
    claim_status_code: str
    outcome: RemittanceOutcome
    billed_amount: Decimal
    allowed_amount: Decimal
    paid_amount: Decimal
    patient_responsibility: Decimal
    adjustments: list[Adjustment]
    rarcs: list[str]
    lines: list[RemittanceLine]
    payment_date: date
    trace_number: str
    adjudicated_at: datetime
    claim_frequency_code: str = "1"
    payer_name: str = ""
    payee_npi: str = ""
    payment_method: str = "ACH"
    source: str = "payer-simulator"

    def all_adjustments(self) -> list[Adjustment]:
        """Claim-level CAS followed by every line's CAS."""
        return [*self.adjustments, *(adj for line in self.lines for adj in line.adjustments)]


@dataclass(slots=True)
class DenialWorkItem:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.DenialWorkItem"
    work_item_id: str
    claim_id: str
    remittance_id: str
    encounter_id: str
    payer_id: str
    category: str
    queue: str
    carc: str
    group_code: str
    all_carcs: list[str]
    rarcs: list[str]
    reasons: list[str]
    amount_at_risk: Decimal
    billed_amount: Decimal
    suggested_action: str
    recoverable: bool
    date_of_service: date
    created_at: datetime


@dataclass(slots=True)
class ClaimStatus:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.ClaimStatus"
    claim_id: str
    encounter_id: str
    payer_id: str
    status: ClaimState
    billed_amount: Decimal
    paid_amount: Decimal | None
    denial_queue: str | None
    remittance_id: str | None
    updated_at: datetime
    allowed_amount: Decimal | None = None
    patient_responsibility: Decimal | None = None
    contractual_adjustment: Decimal | None = None
    denied_amount: Decimal | None = None
    balance: Decimal | None = None
    payer_claim_control_number: str | None = None
    remittances_posted: int = 0
    written_off_amount: Decimal | None = None
    appeal_paid_amount: Decimal | None = None


@dataclass(slots=True)
class PatientStatement:
    """What the patient owes after a remittance; negative: a credit after a reversal."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.PatientStatement"
    statement_id: str
    claim_id: str
    encounter_id: str
    patient_control_number: str
    payer_id: str
    remittance_id: str
    amount: Decimal
    deductible: Decimal
    coinsurance: Decimal
    copay: Decimal
    other: Decimal
    statement_date: date
    due_date: date
    created_at: datetime


@dataclass(slots=True)
class PaymentReceived:
    """One 835 transaction (a check or EFT) as ingested."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.PaymentReceived"
    payment_id: str
    payer_id: str
    payer_name: str
    trace_number: str
    payment_method: str
    payment_amount: Decimal
    payment_date: date
    claim_payments: int
    matched: int
    unapplied: int
    provider_adjustments: list[ProviderAdjustment]
    source: str
    received_at: datetime


@dataclass(slots=True)
class UnappliedPayment:
    """A claim payment that matched none of our claims: unapplied cash, never dropped."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.UnappliedPayment"
    item_id: str
    payer_id: str
    payer_name: str
    trace_number: str
    patient_control_number: str
    payer_claim_control_number: str
    claim_status_code: str
    billed_amount: Decimal
    paid_amount: Decimal
    reason: str
    x12_segments: str  # the CLP loop as received (PHI)
    source: str
    received_at: datetime


@dataclass(slots=True)
class DuplicateDropped:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.DuplicateDropped"
    claim_id: str
    encounter_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    dropped_at: datetime


@dataclass(slots=True)
class DeadLetter:
    SCHEMA: ClassVar[str] = f"{NAMESPACE}.DeadLetter"
    stage: str
    error_type: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: bytes | None
    original_value: bytes
    failed_at: datetime


# --- denial work queue (engine.denials.work_items) -------------------------------------


class DenialActionType(StrEnum):
    """What a biller did to a denial work item (engine.denials.work_items has the transitions)."""

    CLAIM = "CLAIM"  # a biller takes the item
    RESUBMIT = "RESUBMIT"  # a corrected claim (frequency 7) went out
    VOID = "VOID"  # a void (frequency 8) went out
    APPEAL = "APPEAL"  # an appeal was filed with the payer
    WRITE_OFF = "WRITE_OFF"  # the balance is adjusted off
    REOPEN = "REOPEN"  # a closed, unpaid item is worked again
    APPEAL_DECIDED = "APPEAL_DECIDED"  # the payer answered the appeal
    RESUBMIT_REJECTED = "RESUBMIT_REJECTED"  # engine: the replacement/void failed its checks, not sent


@dataclass(slots=True)
class DenialAction:
    """One biller action on a denial work item; the item's state is the fold of them.
    Ids only, no PHI: ``user`` is a user id, ``note`` is the biller's reason."""

    SCHEMA: ClassVar[str] = f"{NAMESPACE}.DenialAction"
    action_id: str
    work_item_id: str
    claim_id: str
    action: DenialActionType
    user: str
    at: datetime
    note: str | None = None
    adjustment_reason: str | None = None  # WRITE_OFF: the CARC-like reason the balance goes off with
    replacement_claim_id: str | None = None  # RESUBMIT / VOID: the frequency 7 / 8 claim
    appeal_overturned: bool | None = None  # APPEAL_DECIDED
    amount: Decimal | None = None  # WRITE_OFF: written off; APPEAL: appealed; APPEAL_DECIDED overturned: paid
    payer_id: str | None = None  # where an appeal goes
    replacement_claim: bytes | None = None  # RESUBMIT / VOID: the encoded ClaimSubmitted the engine checks and sends


EVENT_TYPES: tuple[type, ...] = (
    Encounter,
    CodedEncounter,
    CodingReviewItem,
    CodingAction,
    ClaimSubmitted,
    EligibilityRequest,
    EligibilityResponse,
    FrontDeskItem,
    ScrubRejected,
    Remittance,
    DenialWorkItem,
    ClaimStatus,
    PatientStatement,
    PaymentReceived,
    UnappliedPayment,
    DuplicateDropped,
    DeadLetter,
    DenialAction,
)
