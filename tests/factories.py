"""Builders of the events the tests feed the engine, in one place.

Every builder returns a complete, valid event and takes keyword overrides for any field
(``make_claim(payer_id="PPO01")``); lists are fresh on every call, so a test may change
what it was given. Fields a builder derives (a claim's total, a balanced remittance's
sums, a claim's encounter id) are worked out from the overrides it was given; to pin
one, pass it too.

The same builders are fixtures (``tests/fixtures/factories.py``) for the tests that take
them as arguments. ``tests/unit/conftest.py``'s ``sample_events`` is built from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from engine.model.events import (
    Adjustment,
    ClaimLine,
    ClaimSubmitted,
    CodedEncounter,
    CodedLine,
    DenialAction,
    DenialActionType,
    Encounter,
    GroupCode,
    Patient,
    Procedure,
    Provider,
    Remittance,
    RemittanceLine,
    RemittanceOutcome,
    Sex,
)
from engine.runtime.stages import SourceMessage

ZERO = Decimal("0.00")
#: A fixed instant with whole milliseconds: timestamp-millis keeps exactly this.
NOW = datetime(2026, 3, 2, 14, 30, 15, 250_000, tzinfo=UTC)
#: When the default encounter happened (whole milliseconds, as on the wire).
OCCURRED = datetime(2026, 3, 1, 9, 15, 0, 123_000, tzinfo=UTC)
#: The default date of service of every builder.
DATE_OF_SERVICE = date(2026, 2, 27)
#: The default claim id (a claim's patient control number is its id).
CLAIM_ID = "C0000000000000001"


# --- people -------------------------------------------------------------------------------


def make_patient(**overrides: Any) -> Patient:
    """Ana Chen, born 1958-07-14: the patient of the default encounter."""
    fields: dict[str, Any] = {
        "patient_id": "MRN000042",
        "first_name": "Ana",
        "last_name": "Chen",
        "birth_date": date(1958, 7, 14),
        "sex": Sex.F,
    }
    return Patient(**{**fields, **overrides})


def make_provider(**overrides: Any) -> Provider:
    """A rendering physician (entity type 1, a person): Ava Carter, family medicine, no address."""
    fields: dict[str, Any] = {
        "npi": "1912301953",
        "entity_type": "1",
        "name": "CARTER",
        "first_name": "AVA",
        "taxonomy": "207Q00000X",
        "tax_id": "",
        "address": None,
    }
    return Provider(**{**fields, **overrides})


# --- encounters ---------------------------------------------------------------------------


def make_encounter(**overrides: Any) -> Encounter:
    """A valid office visit: billable diagnoses, fee-schedule procedures, valid NPIs.

    ``patient`` may be given as a dict of Patient field overrides.
    """
    patient = overrides.pop("patient", None)
    fields: dict[str, Any] = {
        "encounter_id": "ENC-UNIT-0000001",
        "source_system": "ehr-test",
        "occurred_at": OCCURRED,
        "patient": make_patient(**patient) if isinstance(patient, dict) else patient or make_patient(),
        "payer_id": "MCR01",
        "member_id": "MCR123456789",
        "billing_npi": "1912301953",
        "rendering_npi": "1234567893",
        "date_of_service": DATE_OF_SERVICE,
        "place_of_service": "11",
        "diagnoses": ["E11.9", "I10"],
        "procedures": [
            Procedure(code="99214", modifiers=["25"], units=1, dx_pointers=[1, 2]),
            Procedure(code="83036", modifiers=[], units=1, dx_pointers=[1]),
            Procedure(code="J3301", modifiers=[], units=4, dx_pointers=[1]),
        ],
        "clinical_note": "Follow-up for type 2 diabetes and hypertension.",
    }
    return Encounter(**{**fields, **overrides})


def make_coded_encounter(**overrides: Any) -> CodedEncounter:
    """The default encounter as the coding stage passes it at ``NOW``: clean, no findings."""
    fields: dict[str, Any] = {
        "encounter_id": "ENC-UNIT-0000001",
        "encounter_occurred_at": OCCURRED,
        "patient_id": "MRN000042",
        "patient_birth_date": date(1958, 7, 14),
        "patient_sex": "F",
        "payer_id": "MCR01",
        "member_id": "MCR123456789",
        "billing_npi": "1912301953",
        "rendering_npi": "1234567893",
        "date_of_service": DATE_OF_SERVICE,
        "place_of_service": "11",
        "diagnoses": ["E11.9", "I10"],
        "lines": [
            CodedLine(1, "99214", ["25"], 1, [1, 2]),
            CodedLine(2, "83036", [], 1, [1]),
            CodedLine(3, "J3301", [], 4, [1]),
        ],
        "findings": [],
        "coded_at": NOW,
        "patient_first_name": "Ana",
        "patient_last_name": "Chen",
    }
    return CodedEncounter(**{**fields, **overrides})


# --- claims -------------------------------------------------------------------------------

#: A claim line given short: (code, charge) or (code, charge, units).
LineSpec = tuple[Any, ...]


def make_claim_line(line_number: int = 1, procedure_code: str = "99213", **overrides: Any) -> ClaimLine:
    """One unit of ``procedure_code`` at 140.00, pointing at the first diagnosis.
    ``charge`` may be given as a string."""
    fields: dict[str, Any] = {
        "modifiers": [],
        "units": 1,
        "charge": Decimal("140.00"),
        "dx_pointers": [1],
        "date_of_service": DATE_OF_SERVICE,
        **overrides,
    }
    fields["charge"] = Decimal(fields["charge"])
    return ClaimLine(line_number=line_number, procedure_code=procedure_code, **fields)


def make_claim(claim_id: str = CLAIM_ID, lines: Sequence[ClaimLine | LineSpec] | None = None,
               **overrides: Any) -> ClaimSubmitted:
    """An original (frequency 1) Medicare claim: one 99213 at 140.00 seen on 2026-02-27,
    submitted two days after the visit at 09:00 UTC, no v2 (provider, subscriber) fields.

    ``lines`` are ClaimLines, or (code, charge[, units]) tuples made into lines numbered
    from 1 on the claim's date of service. Derived unless overridden: the encounter id
    (``ENC-<claim_id>``), the patient control number (the claim id), the total charge (the
    lines' charges) and ``submitted_at`` (from the date of service).
    """
    dos: date = overrides.get("date_of_service", DATE_OF_SERVICE)
    built = [
        spec if isinstance(spec, ClaimLine) else make_claim_line(
            number, spec[0], charge=spec[1], units=spec[2] if len(spec) > 2 else 1, date_of_service=dos)
        for number, spec in enumerate([("99213", "140.00")] if lines is None else lines, start=1)
    ]
    fields: dict[str, Any] = {
        "encounter_id": f"ENC-{claim_id}",
        "encounter_occurred_at": OCCURRED,
        "patient_control_number": claim_id,
        "frequency_code": "1",
        "original_claim_id": None,
        "payer_id": "MCR01",
        "member_id": "M1",
        "patient_id": "MRN1",
        "billing_npi": "1912301953",
        "rendering_npi": "1234567893",
        "date_of_service": dos,
        "place_of_service": "11",
        "diagnoses": ["I10"],
        "total_charge": sum((ln.charge for ln in built), ZERO),
        "submitted_at": datetime.combine(dos + timedelta(days=2), time(9), tzinfo=UTC),
        **overrides,
    }
    fields["diagnoses"] = list(fields["diagnoses"])
    return ClaimSubmitted(claim_id=claim_id, lines=built, **fields)


# --- remittances --------------------------------------------------------------------------


def make_adjustment(group: GroupCode, carc: str, amount: str | Decimal, quantity: int | None = None) -> Adjustment:
    """A CAS adjustment; ``amount`` may be a string."""
    return Adjustment(group, carc, Decimal(amount), quantity)


def make_remittance_line(line_number: int = 1, billed: str | Decimal = "140.00",
                         adjustments: Iterable[Adjustment] = (), **overrides: Any) -> RemittanceLine:
    """A balanced 99213 line: paid = billed − Σ adjustments; allowed = billed − Σ non-PR
    adjustments (both derived unless overridden)."""
    adjustments = list(adjustments)
    billed_d = Decimal(billed)
    fields: dict[str, Any] = {
        "procedure_code": "99213",
        "allowed_amount": billed_d - sum((a.amount for a in adjustments if a.group_code != GroupCode.PR), ZERO),
        "paid_amount": billed_d - sum((a.amount for a in adjustments), ZERO),
        **overrides,
    }
    fields["rarcs"] = list(fields.get("rarcs") or [])
    return RemittanceLine(line_number=line_number, billed_amount=billed_d, adjustments=adjustments, **fields)


def make_remittance(lines: Iterable[RemittanceLine] | None = None,
                    outcome: RemittanceOutcome = RemittanceOutcome.PAID, **overrides: Any) -> Remittance:
    """PPO01's balanced answer to claim ``CLAIM_ID`` (default: one 99213 paid in full).

    Derived unless overridden: billed, allowed and paid from the lines (paid less the
    claim-level ``adjustments``), the patient's share from every PR adjustment, the
    claim status code from the outcome (4 denied, else 1), the patient control number
    from the claim id.
    """
    lines = [make_remittance_line()] if lines is None else list(lines)
    claim_adjustments = list(overrides.pop("adjustments", ()))
    claim_id: str = overrides.pop("claim_id", CLAIM_ID)
    everything = [*claim_adjustments, *(a for ln in lines for a in ln.adjustments)]
    fields: dict[str, Any] = {
        "remittance_id": "RAAAAAAAAAAAAAAAA",
        "encounter_id": "ENC-1",
        "encounter_occurred_at": datetime(2026, 3, 1, tzinfo=UTC),
        "patient_control_number": claim_id,
        "payer_id": "PPO01",
        "payer_claim_control_number": "PABCDEF0123456",
        "date_of_service": DATE_OF_SERVICE,
        "claim_status_code": "4" if outcome == RemittanceOutcome.DENIED else "1",
        "billed_amount": sum((ln.billed_amount for ln in lines), ZERO),
        "allowed_amount": sum((ln.allowed_amount for ln in lines), ZERO),
        "paid_amount": sum((ln.paid_amount for ln in lines), ZERO) - sum((a.amount for a in claim_adjustments), ZERO),
        "patient_responsibility": sum((a.amount for a in everything if a.group_code == GroupCode.PR), ZERO),
        "rarcs": [],
        "payment_date": date(2026, 3, 22),
        "trace_number": "EFT20260322PPO01",
        "adjudicated_at": datetime(2026, 3, 1, 12, tzinfo=UTC),
        **overrides,
    }
    fields["rarcs"] = list(fields["rarcs"])
    return Remittance(claim_id=claim_id, outcome=outcome, adjustments=claim_adjustments, lines=lines, **fields)


# --- a biller's actions --------------------------------------------------------------------


def make_denial_action(action: DenialActionType, **overrides: Any) -> DenialAction:
    """Biller 7's ``action`` on work item DN-1 of claim ``CLAIM_ID``, at ``NOW``."""
    fields: dict[str, Any] = {
        "action_id": "DA-1",
        "work_item_id": "DN-1",
        "claim_id": CLAIM_ID,
        "user": "biller-7",
        "at": NOW,
        **overrides,
    }
    return DenialAction(action=action, **fields)


# --- messages -----------------------------------------------------------------------------


def make_message(value: bytes | None, *, topic: str = "claims.encounters", partition: int = 3, offset: int = 100,
                 key: bytes | None = b"ENC-UNIT-0000001") -> SourceMessage:
    """A record as a stage reads it from ``topic``."""
    return SourceMessage(topic=topic, partition=partition, offset=offset, key=key, value=value)
