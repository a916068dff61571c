"""Claim building: a coded encounter becomes one professional claim (837P semantics), its
id derived from the encounter's so a resent encounter yields the same claim id; the fee
schedule and the reference data it is built from (docs/claims.md)."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from engine.claims.scrubber import load_places_of_service
from engine.model.codes import SELF
from engine.model.events import (
    ClaimLine,
    ClaimSubmitted,
    CodedEncounter,
    Provider,
    Subscriber,
)
from engine.model.money import CENTS, MAX_AMOUNT, on_the_wire
from engine.reference.master_data import PayerInfo, Providers, load_payers
from engine.runtime.stages import ProcessingError
from engine.settings import Settings
from engine.wire.codec import Codec


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
        charge = (per_unit * units).quantize(CENTS)
        if not on_the_wire(charge):  # 2**31 units of a code with no MUE: data, not a claim
            raise ProcessingError(f"procedure {code}: {units} units at {per_unit} make a charge beyond the "
                                  f"{MAX_AMOUNT} a claim can carry")
        return charge


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
        total_charge=_total_charge(lines),
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


def _total_charge(lines: list[ClaimLine]) -> Decimal:
    total = sum((line.charge for line in lines), Decimal("0.00"))
    if not on_the_wire(total):
        raise ProcessingError(f"the {len(lines)} lines' charges add up beyond the {MAX_AMOUNT} a claim can carry")
    return total


def _provider(known: Provider | None, npi: str, entity_type: str) -> Provider:
    if known is not None and known.npi == npi:
        return known
    return Provider(npi=npi, entity_type=entity_type, name="", first_name="", taxonomy="", tax_id="", address=None)
