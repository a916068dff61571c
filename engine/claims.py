"""Claim generation: a coded encounter becomes one professional claim (837P semantics).

The claim id is derived from the encounter id, so a redelivered or resent encounter
yields the same id; the stage remembers which encounters it billed (a faust table in
the worker, any mapping here) and drops the second one as a duplicate.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Iterator, MutableMapping

from engine.events import ClaimLine, ClaimState, ClaimStatus, ClaimSubmitted, CodedEncounter, DuplicateDropped
from engine.pipeline import Emit, ProcessingError, SourceMessage

CENTS = Decimal("0.01")


@dataclass(frozen=True)
class FeeSchedule:
    """Billed charge per unit by procedure code (the practice's chargemaster)."""

    charges: dict[str, Decimal]

    @classmethod
    def load(cls, path: Path) -> "FeeSchedule":
        with path.open(newline="") as handle:
            rows = csv.DictReader(line for line in handle if not line.startswith("#"))
            return cls({row["code"].strip().upper(): Decimal(row["charge"]) for row in rows})

    def charge(self, code: str, units: int) -> Decimal:
        try:
            per_unit = self.charges[code]
        except KeyError:
            raise ProcessingError(f"procedure {code} has no charge in the fee schedule") from None
        return (per_unit * units).quantize(CENTS)


def claim_id_for(encounter_id: str) -> str:
    """Deterministic original-claim id; short enough for CLM01 (max 38 characters)."""
    return "C" + hashlib.blake2b(encounter_id.encode(), digest_size=8).hexdigest().upper()


def build_claim(coded: CodedEncounter, fees: FeeSchedule, now: datetime) -> ClaimSubmitted:
    claim_id = claim_id_for(coded.encounter_id)
    lines = [
        ClaimLine(
            line_number=line.line_number,
            procedure_code=line.procedure_code,
            modifiers=list(line.modifiers),
            units=line.units,
            charge=fees.charge(line.procedure_code, line.units),
            dx_pointers=list(line.dx_pointers),
            date_of_service=coded.date_of_service,
        )
        for line in coded.lines
    ]
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
    )


def bill_coded(
    coded: CodedEncounter,
    message: SourceMessage,
    billed: MutableMapping[str, str],
    fees: FeeSchedule,
    now: datetime,
) -> Iterator[Emit]:
    """The claim stage for one coded encounter: submit its claim once, ever."""
    already = billed.get(coded.encounter_id)
    if already is not None:
        yield Emit(
            "duplicates",
            coded.encounter_id,
            DuplicateDropped(
                claim_id=already,
                encounter_id=coded.encounter_id,
                source_topic=message.topic,
                source_partition=message.partition,
                source_offset=message.offset,
                dropped_at=now,
            ),
        )
        return
    claim = build_claim(coded, fees, now)
    billed[coded.encounter_id] = claim.claim_id
    yield Emit("claims-submitted", claim.claim_id, claim)
    yield Emit(
        "claim-status",
        claim.claim_id,
        ClaimStatus(
            claim_id=claim.claim_id,
            encounter_id=claim.encounter_id,
            payer_id=claim.payer_id,
            status=ClaimState.SUBMITTED,
            billed_amount=claim.total_charge,
            paid_amount=None,
            denial_queue=None,
            remittance_id=None,
            updated_at=now,
        ),
    )
