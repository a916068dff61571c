"""The payer simulator: answers eligibility (270 → 271) from the members it knows, and
adjudicates submitted claims and answers with remittances.

``adjudicate`` is pure and deterministic: the outcome of a claim depends only on the
seed, the payer profile and the claim, never on arrival order, so the same seed gives
the same outcomes however the run is partitioned or redelivered.

Balancing (835 rule) holds on every line and claim: billed − Σ adjustments = paid, and
patient responsibility = Σ PR adjustments.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from engine.codec import Codec
from engine.events import (
    Adjustment,
    ClaimLine,
    ClaimSubmitted,
    EligibilityRequest,
    EligibilityResponse,
    EligibilityStatus,
    GroupCode,
    Remittance,
    RemittanceLine,
    RemittanceOutcome,
)
from engine.kafka import run_consumer_stage
from engine.pipeline import Emit, ProcessingError, SourceMessage, run_stage, utcnow
from engine.settings import Settings
from simulators.coverage import Coverage, load_coverage

log = logging.getLogger(__name__)

CENTS = Decimal("0.01")
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class DenialReason:
    carc: str
    group_code: GroupCode
    rarc: str | None
    weight: float


@dataclass(frozen=True)
class PayerProfile:
    payer_id: str
    name: str
    payer_type: str
    fee_factor: Decimal
    copay: Decimal
    deductible: Decimal  # annual, told in eligibility answers (adjudication applies it in a later issue)
    coinsurance: Decimal
    first_pass_denial_rate: float
    partial_denial_rate: float
    payment_lag_days: int
    share: float


@dataclass(frozen=True)
class PayerBook:
    """Every payer profile plus the denial mixes they draw from."""

    payers: dict[str, PayerProfile]
    denial_mix: tuple[DenialReason, ...]
    partial_denial_mix: tuple[DenialReason, ...]

    @classmethod
    def load(cls, path: Path) -> "PayerBook":
        doc: dict[str, Any] = yaml.safe_load(path.read_text())

        def reasons(rows: list[dict[str, Any]]) -> tuple[DenialReason, ...]:
            return tuple(
                DenialReason(str(r["carc"]), GroupCode(r["group"]), r.get("rarc"), float(r["weight"])) for r in rows
            )

        payers = {
            str(p["payer_id"]): PayerProfile(
                payer_id=str(p["payer_id"]),
                name=str(p["name"]),
                payer_type=str(p["payer_type"]),
                fee_factor=Decimal(str(p["fee_factor"])),
                copay=Decimal(str(p["copay"])),
                deductible=Decimal(str(p.get("deductible", "0.00"))),
                coinsurance=Decimal(str(p["coinsurance"])),
                first_pass_denial_rate=float(p["first_pass_denial_rate"]),
                partial_denial_rate=float(p["partial_denial_rate"]),
                payment_lag_days=int(p["payment_lag_days"]),
                share=float(p["share"]),
            )
            for p in doc["payers"]
        }
        return cls(payers, reasons(doc["denial_mix"]), reasons(doc["partial_denial_mix"]))


def _rng(seed: int, claim_id: str) -> random.Random:
    return random.Random(f"payer:{seed}:{claim_id}")


def _pick(rng: random.Random, mix: Sequence[DenialReason]) -> DenialReason:
    return rng.choices(mix, weights=[r.weight for r in mix], k=1)[0]


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENTS, rounding=ROUND_HALF_UP)


def _denied_line(line: ClaimLine, reason: DenialReason) -> RemittanceLine:
    return RemittanceLine(
        line_number=line.line_number,
        procedure_code=line.procedure_code,
        billed_amount=line.charge,
        allowed_amount=ZERO,
        paid_amount=ZERO,
        adjustments=[Adjustment(reason.group_code, reason.carc, line.charge, line.units)],
        rarcs=[reason.rarc] if reason.rarc else [],
    )


def _paid_line(line: ClaimLine, profile: PayerProfile, copay_due: Decimal) -> tuple[RemittanceLine, Decimal]:
    """One paid line and the copay still due after it (copay is taken once per claim)."""
    allowed = min(line.charge, _money(line.charge * profile.fee_factor))
    adjustments: list[Adjustment] = []
    if line.charge > allowed:
        adjustments.append(Adjustment(GroupCode.CO, "45", line.charge - allowed))
    copay = min(copay_due, allowed)
    if copay > ZERO:
        adjustments.append(Adjustment(GroupCode.PR, "3", copay))
    coinsurance = _money((allowed - copay) * profile.coinsurance)
    if coinsurance > ZERO:
        adjustments.append(Adjustment(GroupCode.PR, "2", coinsurance))
    paid = allowed - copay - coinsurance
    return (
        RemittanceLine(line.line_number, line.procedure_code, line.charge, allowed, paid, adjustments),
        copay_due - copay,
    )


def adjudicate(claim: ClaimSubmitted, book: PayerBook, seed: int, now: datetime) -> Remittance:
    profile = book.payers.get(claim.payer_id)
    if profile is None:
        raise ProcessingError(f"claim {claim.claim_id}: payer {claim.payer_id!r} unknown to the simulator")
    rng = _rng(seed, claim.claim_id)
    draw = rng.random()
    lines: list[RemittanceLine] = []
    claim_rarcs: list[str] = []
    if draw < profile.first_pass_denial_rate:
        reason = _pick(rng, book.denial_mix)
        lines = [_denied_line(line, reason) for line in claim.lines]
        claim_rarcs = [reason.rarc] if reason.rarc else []
    else:
        denied_index = -1
        if len(claim.lines) > 1 and rng.random() < profile.partial_denial_rate:
            denied_index = rng.randrange(1, len(claim.lines))  # never the first (E/M) line
        partial_reason = _pick(rng, book.partial_denial_mix)
        copay_due = profile.copay
        for index, line in enumerate(claim.lines):
            if index == denied_index:
                lines.append(_denied_line(line, partial_reason))
            else:
                paid_line, copay_due = _paid_line(line, profile, copay_due)
                lines.append(paid_line)
    paid = sum((line.paid_amount for line in lines), ZERO)
    allowed = sum((line.allowed_amount for line in lines), ZERO)
    patient_responsibility = sum(
        (a.amount for line in lines for a in line.adjustments if a.group_code == GroupCode.PR), ZERO
    )
    fully_denied = all(line.allowed_amount == ZERO and line.paid_amount == ZERO for line in lines)
    some_denied = any(line.allowed_amount == ZERO for line in lines)
    outcome = (
        RemittanceOutcome.DENIED
        if fully_denied
        else RemittanceOutcome.PARTIALLY_PAID if some_denied else RemittanceOutcome.PAID
    )
    payment_date = claim.submitted_at.date() + timedelta(days=profile.payment_lag_days)
    digest = hashlib.blake2b(f"{claim.payer_id}:{claim.claim_id}".encode(), digest_size=6).hexdigest().upper()
    return Remittance(
        remittance_id=f"R{digest}-1",
        claim_id=claim.claim_id,
        encounter_id=claim.encounter_id,
        encounter_occurred_at=claim.encounter_occurred_at,
        patient_control_number=claim.patient_control_number,
        payer_id=claim.payer_id,
        payer_claim_control_number=f"{claim.payer_id}{digest}",
        date_of_service=claim.date_of_service,
        claim_status_code="4" if outcome == RemittanceOutcome.DENIED else "1",
        outcome=outcome,
        billed_amount=claim.total_charge,
        allowed_amount=allowed,
        paid_amount=paid,
        patient_responsibility=patient_responsibility,
        adjustments=[],
        rarcs=claim_rarcs,
        lines=lines,
        payment_date=payment_date,
        trace_number=f"EFT{payment_date:%Y%m%d}{claim.payer_id}",
        adjudicated_at=now,
    )


def adjudicate_claim(
    claim: ClaimSubmitted, message: SourceMessage, book: PayerBook, seed: int, now: datetime
) -> Iterator[Emit]:
    remit = adjudicate(claim, book, seed, now)
    yield Emit("remittances", remit.claim_id, remit)


def answer_eligibility(request: EligibilityRequest, members: dict[str, Coverage], book: PayerBook,
                       now: datetime) -> EligibilityResponse:
    """271: ACTIVE with plan, copay and deductible left when the member's coverage is in
    force on the date of service; INACTIVE with the coverage period when it is not;
    NOT_FOUND when the payer has no such member."""
    coverage = members.get(request.member_id)
    profile = book.payers.get(request.payer_id)
    found = coverage is not None and coverage.payer_id == request.payer_id
    active = found and coverage is not None and coverage.covers(request.date_of_service)
    reason = None
    if not found:
        reason = "member not found"
    elif not active and coverage is not None:
        reason = (f"coverage ended {coverage.end.isoformat()}" if coverage.end and coverage.end < request.date_of_service
                  else f"coverage starts {coverage.start.isoformat()}")
    return EligibilityResponse(
        request_id=request.request_id,
        encounter_id=request.encounter_id,
        payer_id=request.payer_id,
        member_id=request.member_id,
        date_of_service=request.date_of_service,
        status=EligibilityStatus.ACTIVE if active else EligibilityStatus.INACTIVE if found else EligibilityStatus.NOT_FOUND,
        plan_id=coverage.plan_id if found and coverage else None,
        coverage_start=coverage.start if found and coverage else None,
        coverage_end=coverage.end if found and coverage else None,
        copay=profile.copay if active and profile else None,
        deductible_remaining=profile.deductible if active and profile else None,
        reason=reason,
        responded_at=now,
    )


class PayerSimulator:
    """Two consumer groups: eligibility requests → 271 answers, and claims submitted →
    remittances. Members come from the master-data files the EHR simulator wrote."""

    GROUP_ID = "claimflow-payer-simulator"
    ELIGIBILITY_GROUP_ID = "claimflow-payer-simulator-eligibility"

    def __init__(self, settings: Settings, bootstrap_servers: str, codec: Codec) -> None:
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.codec = codec
        self.book = PayerBook.load(settings.payer_profiles_file)
        self.members: dict[str, Coverage] | None = None
        self.stop = asyncio.Event()

    def process(self, messages: Sequence[SourceMessage]) -> list[Emit]:
        now = utcnow()
        return run_stage(
            "payer",
            messages,
            self.codec,
            ClaimSubmitted,
            lambda claim, msg: adjudicate_claim(claim, msg, self.book, self.settings.seed, now),
        ).emits

    def answer(self, messages: Sequence[SourceMessage]) -> list[Emit]:
        now = utcnow()
        if self.members is None:  # read when the first request comes: the EHR writes the files first
            self.members = load_coverage(self.settings.master_data_dir)
        members = self.members
        return run_stage(
            "payer-eligibility", messages, self.codec, EligibilityRequest,
            lambda request, msg: [Emit("eligibility-responses", request.encounter_id,
                                       answer_eligibility(request, members, self.book, now))],
        ).emits

    async def run(self) -> None:
        await asyncio.gather(
            run_consumer_stage(self.settings, self.bootstrap_servers, self.codec, self.GROUP_ID, "claims-submitted",
                               self.process, self.stop),
            run_consumer_stage(self.settings, self.bootstrap_servers, self.codec, self.ELIGIBILITY_GROUP_ID,
                               "eligibility-requests", self.answer, self.stop),
        )
