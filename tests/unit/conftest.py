"""Shared fixtures for the unit suite: the real data files, loaded once per session, and
``sample_events``, one realistic instance of every event type.

The event builders (``make_encounter`` and the rest) are ``tests.factories``, as fixtures
from ``tests/fixtures/factories.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pytest

from engine.claims.build import ClaimContext, FeeSchedule
from engine.coding.rules import CodingReference
from engine.model.events import Address, Encounter, Subscriber
from engine.posting.routing import DenialRouting
from engine.settings import Settings
from engine.wire.codec import Codec
from simulators.payer.app import PayerBook
from tests.factories import (
    NOW,
    make_adjustment,
    make_claim,
    make_claim_line,
    make_coded_encounter,
    make_encounter,
    make_provider,
    make_remittance,
    make_remittance_line,
)

#: The day the coding reference is loaded "as of". ``CodingReference.load`` drops PTP
#: edits deleted more than ``ncci_history_years`` before this day; pinning it keeps the
#: 0001A/99213 edit (deleted 2023-12-31) loaded whatever the calendar says.
REFERENCE_DAY = date(2026, 3, 2)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def codec(settings: Settings) -> Codec:
    return Codec.from_dir(settings.schemas_dir)


@pytest.fixture(scope="session")
def fees(settings: Settings) -> FeeSchedule:
    return FeeSchedule.load(settings.fee_schedule_file)


@pytest.fixture(scope="session")
def claim_ctx(settings: Settings, codec: Codec) -> ClaimContext:
    """The claim stage's reference data: fees, providers.csv, payers.csv, places of service."""
    return ClaimContext.load(settings, codec)


@pytest.fixture(scope="session")
def routing(settings: Settings) -> DenialRouting:
    return DenialRouting.load(settings.denial_routing_file)


@pytest.fixture(scope="session")
def book(settings: Settings) -> PayerBook:
    return PayerBook.load(settings.payer_profiles_file)


@pytest.fixture(scope="session")
def coding_ref(settings: Settings) -> CodingReference:
    """The shipped modifiers, NCCI PTP/MUE samples and sex/age edits, loaded once."""
    return CodingReference.load(settings, today=REFERENCE_DAY)


@pytest.fixture
def errors(coding_ref: CodingReference) -> Callable[[Encounter], list[tuple[str, str]]]:
    """``errors(enc)``: (rule id, element) of each ERROR finding of every rule, in order."""
    from engine.coding.rules import check_encounter
    from engine.model.events import Severity

    def errors(enc: Encounter) -> list[tuple[str, str]]:
        return [(f.rule_id, f.element) for f in check_encounter(enc, coding_ref) if f.severity == Severity.ERROR]

    return errors


@pytest.fixture
def now() -> datetime:
    return NOW


def sample_events() -> dict[type, Any]:
    """One realistic instance of every event type (whole-millisecond timestamps)."""
    from decimal import Decimal

    from engine.model.events import (
        ClaimState,
        ClaimStatus,
        ClaimSubmitted,
        CodedEncounter,
        CodedLine,
        CodingAction,
        CodingActionType,
        CodingReviewItem,
        DeadLetter,
        DenialAction,
        DenialActionType,
        DenialWorkItem,
        DuplicateDropped,
        EligibilityRequest,
        EligibilityResponse,
        EligibilityStatus,
        Finding,
        FrontDeskItem,
        GroupCode,
        Remittance,
        RemittanceOutcome,
        ScrubRejected,
        Severity,
    )

    # The new optional fields set (nested records and unions on the wire), not their defaults.
    home = Address("12 OAK ST", "AURORA", "CO", "80012")
    spouse = Subscriber("01", "Wei", "Chen", date(1956, 1, 30), "M", home, "GRP-7781")
    enc = make_encounter(patient_address=home, subscriber=spouse)
    findings = [
        Finding("ICD10_NOT_BILLABLE", Severity.ERROR, "M54.5 is a header code", "diagnoses[0]=M54.5"),
        Finding("CUSTOM_NOTE", Severity.WARNING, "unusual modifier pairing", "procedures[0].modifiers"),
    ]
    occurred = enc.occurred_at
    claim = make_claim(
        "C0123456789ABCDEF",
        [
            make_claim_line(1, "99214", modifiers=["25"], charge="210.00", dx_pointers=[1, 2]),
            make_claim_line(2, "J3301", units=4, charge="88.00"),
        ],
        encounter_id=enc.encounter_id,
        encounter_occurred_at=occurred,
        payer_id="PPO01",
        member_id="PPO123456789",
        patient_id="MRN000042",
        diagnoses=["E11.9", "I10"],
        submitted_at=NOW,
        billing_provider=make_provider(npi="2176073635", entity_type="2", name="CLAIMFLOW FAMILY MEDICINE GROUP",
                                       first_name="", tax_id="841234567",
                                       address=Address("100 MAIN ST", "DENVER", "CO", "802021234")),
        rendering_provider=make_provider(npi="1701536165"),
        payer_name="COMMERCIAL PPO",
        claim_filing_indicator="CI",
        subscriber=dataclasses.replace(spouse, birth_date=None),  # registration did not record it
        patient_first_name="Ana",
        patient_last_name="Chen",
        patient_birth_date=date(1958, 7, 14),
        patient_sex="F",
        patient_address=home,
    )
    CO, PR = GroupCode.CO, GroupCode.PR
    remit = make_remittance(
        [
            make_remittance_line(1, "210.00", [make_adjustment(CO, "45", "73.50"), make_adjustment(PR, "3", "30.00"),
                                               make_adjustment(PR, "2", "21.30")], procedure_code="99214"),
            make_remittance_line(2, "88.00", [make_adjustment(CO, "97", "88.00", 4)], procedure_code="J3301",
                                 rarcs=["M15"], units=4, submitted_procedure_code="J3302", submitted_modifiers=["JW"],
                                 date_of_service=date(2026, 2, 27)),  # v2 line fields, set
        ],
        RemittanceOutcome.PARTIALLY_PAID,
        remittance_id="RABCDEF012345-1",
        claim_id=claim.claim_id,
        encounter_id=enc.encounter_id,
        encounter_occurred_at=occurred,
        payer_claim_control_number="PPO01ABCDEF012345",
        adjustments=[make_adjustment(CO, "253", "1.70")],  # sequestration
        rarcs=["N130"],
        payment_date=date(2026, 3, 20),
        trace_number="EFT20260320PPO01",
        adjudicated_at=NOW,
        claim_frequency_code="7",  # v2 fields, set
        payer_name="COMMERCIAL PPO",
        payee_npi="1912301953",
        payment_method="ACH",
        source="835:era-20260320.txt",
    )
    from engine.model.events import PatientStatement, PaymentReceived, ProviderAdjustment, UnappliedPayment

    return {
        PatientStatement: PatientStatement(
            statement_id="ST-0011223344556677", claim_id=claim.claim_id, encounter_id=enc.encounter_id,
            patient_control_number=claim.claim_id, payer_id="PPO01", remittance_id=remit.remittance_id,
            amount=Decimal("51.30"), deductible=Decimal("0.00"), coinsurance=Decimal("21.30"),
            copay=Decimal("30.00"), other=Decimal("0.00"), statement_date=date(2026, 3, 20),
            due_date=date(2026, 4, 19), created_at=NOW,
        ),
        PaymentReceived: PaymentReceived(
            payment_id="PAY-0011223344556677", payer_id="PPO01", payer_name="COMMERCIAL PPO",
            trace_number="EFT20260320PPO01", payment_method="ACH", payment_amount=Decimal("71.50"),
            payment_date=date(2026, 3, 20), claim_payments=2, matched=1, unapplied=1,
            provider_adjustments=[ProviderAdjustment("L6", "INTEREST", Decimal("-3.00")),
                                  ProviderAdjustment("WO", None, Decimal("15.00"))],
            source="835:era-20260320.txt", received_at=NOW,
        ),
        UnappliedPayment: UnappliedPayment(
            item_id="UA-0011223344556677", payer_id="PPO01", payer_name="COMMERCIAL PPO",
            trace_number="EFT20260320PPO01", patient_control_number="C-UNKNOWN-1",
            payer_claim_control_number="PPO01FFFF", claim_status_code="1", billed_amount=Decimal("100.00"),
            paid_amount=Decimal("0.00"), reason="no claim with patient control number C-UNKNOWN-1",
            x12_segments="CLP*C-UNKNOWN-1*1*100*0*0*12*PPO01FFFF~", source="835:era-20260320.txt", received_at=NOW,
        ),
        type(enc): enc,
        CodedEncounter: make_coded_encounter(
            lines=[CodedLine(1, "99214", ["25"], 1, [1, 2]), CodedLine(2, "J3301", [], 4, [1])],
            findings=findings[1:],
            review_work_item_id="CR-0011223344556677",  # v2 field, set: a correction that resolved an item
            patient_address=home,  # v3 fields, set
            subscriber=spouse,
        ),
        CodingReviewItem: CodingReviewItem(
            work_item_id="CR-0011223344556677",
            encounter_id=enc.encounter_id,
            findings=findings,
            is_audit=False,
            encounter=b"\x00\x00\x00\x00\x01\x02\xff\x00raw",
            created_at=NOW,
            revision=2,  # v2 field, not its default
        ),
        CodingAction: CodingAction(
            action_id="CA-00000000000000000001",
            work_item_id="CR-0011223344556677",
            encounter_id=enc.encounter_id,
            revision=1,
            action=CodingActionType.FIX,
            actor="coder-17",
            note="low back pain coded to full specificity",
            changes=["diagnoses[1]: M54.5 -> M54.50"],
            corrected_encounter=b"\x00\x00\x00\x00\x01\x03\xfe\x00fixed",
            occurred_at=NOW,
        ),
        ClaimSubmitted: claim,
        Remittance: remit,
        DenialWorkItem: DenialWorkItem(
            work_item_id="DN-8899AABBCCDDEEFF",
            claim_id=claim.claim_id,
            remittance_id=remit.remittance_id,
            encounter_id=enc.encounter_id,
            payer_id="MCA01",
            category="missing-information",
            queue="denials.missing-information",
            carc="16",
            group_code="CO",
            all_carcs=["16"],
            rarcs=["MA130"],
            reasons=["CO-16: claim lacks information or has a billing error"],
            amount_at_risk=Decimal("298.00"),
            billed_amount=Decimal("298.00"),
            suggested_action="Supply the missing data named by the remark codes and resubmit.",
            recoverable=True,
            date_of_service=date(2026, 2, 27),
            created_at=NOW,
        ),
        DenialAction: DenialAction("ACT-1", "DN-8899AABBCCDDEEFF", claim.claim_id, DenialActionType.WRITE_OFF,
                                   "biller-7", NOW, "no proof of timely filing", "29", None, None, Decimal("12.50")),
        ClaimStatus: ClaimStatus(
            claim_id=claim.claim_id,
            encounter_id=enc.encounter_id,
            payer_id="MCA01",
            status=ClaimState.DENIED,
            billed_amount=Decimal("298.00"),
            paid_amount=Decimal("0.00"),
            denial_queue="denials.missing-information",
            remittance_id=remit.remittance_id,
            updated_at=NOW,
            allowed_amount=Decimal("0.00"),  # v2 fields, set
            patient_responsibility=Decimal("0.00"),
            contractual_adjustment=Decimal("0.00"),
            denied_amount=Decimal("298.00"),
            balance=Decimal("298.00"),
            payer_claim_control_number="MCA01ABCDEF",
            remittances_posted=1,
        ),
        EligibilityRequest: EligibilityRequest(
            request_id="ER-0011223344556677",
            encounter_id=enc.encounter_id,
            payer_id="PPO01",
            member_id="PPO123456789",
            subscriber_last_name="Chen",
            subscriber_birth_date=None,
            date_of_service=date(2026, 2, 27),
            requested_at=NOW,
        ),
        EligibilityResponse: EligibilityResponse(
            request_id="ER-0011223344556677",
            encounter_id=enc.encounter_id,
            payer_id="PPO01",
            member_id="PPO123456789",
            date_of_service=date(2026, 2, 27),
            status=EligibilityStatus.ACTIVE,
            plan_id="PPO01-GOLD",
            coverage_start=date(2021, 1, 1),
            coverage_end=None,  # open-ended
            copay=Decimal("30.00"),
            deductible_remaining=Decimal("1500.00"),
            reason=None,
            responded_at=NOW,
        ),
        FrontDeskItem: FrontDeskItem(
            work_item_id="FD-0011223344556677",
            encounter_id=enc.encounter_id,
            payer_id="MCD01",
            status=EligibilityStatus.INACTIVE,
            reason="coverage ended 2025-12-31",
            date_of_service=date(2026, 2, 27),
            coded=b"\x00\x00\x00\x00\x0e\x02\xff\x00coded",
            created_at=NOW,
        ),
        ScrubRejected: ScrubRejected(
            work_item_id="SR-0011223344556677",
            claim_id=claim.claim_id,
            encounter_id=enc.encounter_id,
            payer_id="PPO01",
            findings=[
                Finding("SCRUB_NPI_INVALID", Severity.ERROR, "NPI 1701536166 fails its check digit",
                        "rendering_provider.npi"),
                Finding("SCRUB_TIMELY_FILING_NEAR", Severity.WARNING, "85 of 90 days used: submit now",
                        "date_of_service"),
            ],
            claim=b"\x00\x00\x00\x00\x0f\x01\xfe\x00claim",
            rejected_at=NOW,
        ),
        DuplicateDropped: DuplicateDropped(
            claim_id=claim.claim_id,
            encounter_id=enc.encounter_id,
            source_topic="claims.coded",
            source_partition=5,
            source_offset=2**40 + 7,  # a long, beyond int32
            dropped_at=NOW,
        ),
        DeadLetter: DeadLetter(
            stage="coding",
            error_type="UndecodableEvent",
            reason="magic byte 72, expected 0: not Confluent-framed Avro",
            source_topic="claims.encounters",
            source_partition=1,
            source_offset=12345,
            source_key=b"ENC-1-0000007",
            original_value=b"HL7|not-avro|\x00\x01\xfe",
            failed_at=NOW,
        ),
    }


@pytest.fixture(scope="session")
def samples() -> dict[type, Any]:
    return sample_events()
