"""One 835 transaction matched to our claims by patient control number: remittances for the
claims it pays, unapplied cash for what matches none of ours (never dropped), and the
payment. Pure and deterministic, so ingest can be replayed. Rules: docs/x12.md, "Matching"."""

from __future__ import annotations

import hashlib
from collections import ChainMap
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import cast

from engine.model.codes import ClaimStatusCode
from engine.model.events import (
    Adjustment,
    ClaimLine,
    ClaimSubmitted,
    GroupCode,
    PaymentReceived,
    Remittance,
    RemittanceLine,
    RemittanceOutcome,
    UnappliedPayment,
)
from engine.posting.ledger import remittance_id
from engine.posting.routing import NOT_DENIALS
from engine.runtime.stages import Emit
from engine.wire.topics import Topic
from engine.x12.remittance_835_read import ClaimPayment835, Line835, Payment835
from engine.x12.segments import ZERO

REVERSAL = str(ClaimStatusCode.REVERSAL)
DENIED = str(ClaimStatusCode.DENIED)
#: (payer id, payer claim control number) → our claim id, as earlier remittances posted it.
KnownClaims = Mapping[tuple[str, str], str]


def _digest(basis: str) -> str:
    return hashlib.blake2b(basis.encode(), digest_size=8).hexdigest().upper()


@dataclass(slots=True)
class IngestResult:
    """What one 835 transaction becomes."""

    remittances: list[Remittance]
    unapplied: list[UnappliedPayment]
    payment: PaymentReceived
    #: (payer id, payer claim control number) → claim id of every remittance made here.
    matched_claims: dict[tuple[str, str], str] = field(default_factory=dict)

    def emits(self) -> list[Emit]:
        """Remittances (key claim id), unapplied cash and the payment (key payer id)."""
        return [
            *(Emit(Topic.REMITTANCES, r.claim_id, r) for r in self.remittances),
            *(Emit(Topic.UNAPPLIED_CASH, u.payer_id, u) for u in self.unapplied),
            Emit(Topic.PAYMENTS, self.payment.payer_id, self.payment),
        ]


def pcn_index(claims: Iterable[ClaimSubmitted]) -> dict[str, list[ClaimSubmitted]]:
    """Patient control number → its claims (each claim id once), oldest submitted first."""
    by_id = {c.claim_id: c for c in claims}
    index: dict[str, list[ClaimSubmitted]] = {}
    for claim in sorted(by_id.values(), key=lambda c: (c.submitted_at, c.claim_id)):
        index.setdefault(claim.patient_control_number, []).append(claim)
    return index


def known_claims(remittances: Iterable[Remittance]) -> dict[tuple[str, str], str]:
    """(payer id, payer claim control number) → claim id, from remittances already posted."""
    return {(r.payer_id, r.payer_claim_control_number): r.claim_id for r in remittances}


def match_payment(payment: Payment835, claims_by_pcn: Mapping[str, list[ClaimSubmitted]], source: str,
                  now: datetime, known: KnownClaims | None = None) -> IngestResult:
    """One 835 transaction → remittances for the claims it pays, unapplied cash for the
    claim payments that match none of ours, and the payment itself (docs/x12.md for the
    rules). Pure and deterministic: the same input gives the same ids."""
    matched: dict[tuple[str, str], str] = {}
    # ChainMap writes only to its first map, so ``known`` is read and never copied (typeshed wants it mutable).
    seen: KnownClaims = ChainMap(matched, cast(MutableMapping[tuple[str, str], str], known)) if known else matched
    remittances: list[Remittance] = []
    unapplied: list[UnappliedPayment] = []
    item_bases: set[str] = set()
    for cp in payment.claims:
        claim, reason = _claim_for(payment, cp, claims_by_pcn, seen)
        if claim is None:
            unapplied.append(_unapplied(payment, cp, reason, source, now, item_bases))
            continue
        remit = remittance_from(payment, cp, claim, source, now)
        remittances.append(remit)
        key = (remit.payer_id, remit.payer_claim_control_number)
        matched[key] = remit.claim_id
    payer_ids = {r.payer_id for r in remittances}
    payer_id = payment.payer_id or (next(iter(payer_ids)) if len(payer_ids) == 1 else "")
    received = PaymentReceived(
        # Amount and date too: two payments of one payer may share a trace number (a reissued check).
        payment_id="PAY-" + _digest(
            f"{payer_id}|{payment.trace_number}|{payment.payment_amount}|{payment.payment_date}"),
        payer_id=payer_id,
        payer_name=payment.payer_name,
        trace_number=payment.trace_number,
        payment_method=payment.payment_method,
        payment_amount=payment.payment_amount,
        payment_date=payment.payment_date,
        claim_payments=len(payment.claims),
        matched=len(remittances),
        unapplied=len(unapplied),
        provider_adjustments=list(payment.provider_adjustments),
        source=source,
        received_at=now,
    )
    return IngestResult(remittances, unapplied, received, matched)


def match_file(payments: Sequence[Payment835], claims_by_pcn: Mapping[str, list[ClaimSubmitted]], source: str,
               now: datetime, known: KnownClaims | None = None) -> list[IngestResult]:
    """``match_payment`` for every transaction of a file, in order; a payer claim control
    number matched in one transaction is known to the later ones."""
    seen = dict(known or {})
    results = []
    for payment in payments:
        result = match_payment(payment, claims_by_pcn, source, now, seen)
        seen.update(result.matched_claims)
        results.append(result)
    return results


def _claim_for(payment: Payment835, cp: ClaimPayment835, claims_by_pcn: Mapping[str, list[ClaimSubmitted]],
               known: KnownClaims) -> tuple[ClaimSubmitted | None, str]:
    pcn = cp.patient_control_number
    candidates = list(claims_by_pcn.get(pcn, []))
    if not candidates:
        return None, f"no claim with patient control number {pcn}"
    if payment.payer_id:
        same_payer = [c for c in candidates if c.payer_id == payment.payer_id]
        if not same_payer:
            billed_to = ", ".join(sorted({c.payer_id for c in candidates}))
            ids = ", ".join(c.claim_id for c in candidates)
            return None, (f"payer mismatch: the 835 is from payer {payment.payer_id}, claim {ids} with patient "
                          f"control number {pcn} was billed to {billed_to}")
        candidates = same_payer
    return choose_claim(cp, candidates, known), ""


def _narrow(claims: list[ClaimSubmitted], keep: list[bool]) -> list[ClaimSubmitted]:
    """The claims ``keep`` marks, unless that leaves none."""
    kept = [c for c, k in zip(claims, keep, strict=True) if k]
    return kept or claims


def choose_claim(cp: ClaimPayment835, candidates: Sequence[ClaimSubmitted],
                 known: KnownClaims | None = None) -> ClaimSubmitted:
    """The claim a CLP pays among claims sharing its patient control number (docs/x12.md,
    "Which claim a CLP pays"). ``candidates`` is not empty."""
    claims = sorted(candidates, key=_submitted)
    if len(claims) == 1:
        return claims[0]
    pccn = cp.payer_claim_control_number
    for claim in claims:
        if pccn and (known or {}).get((claim.payer_id, pccn)) == claim.claim_id:
            return claim
    # A replacement or void naming this payer claim control number as its original
    # (our 837's REF*F8) replaced the claim this CLP pays: the latest one before it.
    referrers = [c for c in claims if pccn and c.frequency_code != "1" and c.original_claim_id == pccn]
    if referrers:
        before = [c for c in claims if _submitted(c) < _submitted(referrers[0])]
        if before:
            return before[-1]
    reversal = cp.claim_status_code == REVERSAL
    billed = -cp.billed_amount if reversal else cp.billed_amount
    claims = _narrow(claims, [c.total_charge == billed for c in claims])
    frequency = cp.claim_frequency_code or "1"
    if reversal:
        # claim id → whether a claim of frequency CLP09 replaced or voided it
        replaced: dict[str, bool] = {}
        for r in candidates:
            if r.frequency_code != "1" and r.original_claim_id and r.original_claim_id != r.claim_id:
                by_frequency = replaced.get(r.original_claim_id, False) or r.frequency_code == frequency
                replaced[r.original_claim_id] = by_frequency
        claims = _narrow(claims, [c.claim_id in replaced for c in claims])
        claims = _narrow(claims, [replaced.get(c.claim_id, False) for c in claims])
        return claims[0]
    claims = _narrow(claims, [c.frequency_code == frequency for c in claims])
    return claims[-1]


def _submitted(claim: ClaimSubmitted) -> tuple[datetime, str]:
    return claim.submitted_at, claim.claim_id


def _is_denial(adjustment: Adjustment) -> bool:
    return adjustment.group_code != GroupCode.PR and adjustment.carc not in NOT_DENIALS


def outcome_of(status: str, paid: Decimal, claim_adjustments: Sequence[Adjustment],
               lines: Sequence[RemittanceLine]) -> RemittanceOutcome:
    """CLP02 22 → reversed, 4 → denied; otherwise paid, partially paid when any claim or
    line adjustment is a denial (a group other than PR, a CARC other than 1, 2, 3, 45),
    and denied when nothing is paid and every line (or, without lines, the claim) is denied."""
    if status == REVERSAL:
        return RemittanceOutcome.REVERSED
    if status == DENIED:
        return RemittanceOutcome.DENIED
    claim_denied = any(_is_denial(a) for a in claim_adjustments)
    lines_denied = [ln.paid_amount == ZERO and any(_is_denial(a) for a in ln.adjustments) for ln in lines]
    if paid == ZERO and (all(lines_denied) if lines else claim_denied):
        return RemittanceOutcome.DENIED
    if claim_denied or any(_is_denial(a) for ln in lines for a in ln.adjustments):
        return RemittanceOutcome.PARTIALLY_PAID
    return RemittanceOutcome.PAID


def payment_method_of(payment: Payment835, cp: ClaimPayment835) -> str:
    """How this claim's money moved: nothing paid on a claim that is not a reversal is
    ``NON``; otherwise BPR04, except that a transaction netting to nothing (BPR04 ``NON``,
    e.g. a reversal balanced by a forward-balance PLB) still moved this claim's money: the
    Remittance default, ``ACH``. (The payer simulator's rule: paid > 0 or a reversal → ACH.)"""
    if cp.paid_amount == ZERO and cp.claim_status_code != REVERSAL:
        return "NON"
    return payment.payment_method if payment.payment_method not in ("", "NON") else "ACH"


def remittance_from(payment: Payment835, cp: ClaimPayment835, claim: ClaimSubmitted, source: str,
                    now: datetime) -> Remittance:
    """The remittance a CLP loop makes for ``claim`` (already chosen)."""
    ours = match_lines(cp.lines, claim.lines)
    lines = [remittance_line(svc, line) for svc, line in zip(cp.lines, ours, strict=True)]
    allowed = getattr(cp, "allowed_amount", None)
    if allowed is None:
        allowed = (sum((ln.allowed_amount for ln in lines), ZERO) if lines
                   else cp.paid_amount + cp.patient_responsibility)
    return Remittance(
        remittance_id=remittance_id(claim.payer_id, cp.payer_claim_control_number, cp.claim_status_code,
                                    payment.trace_number),
        claim_id=claim.claim_id,
        encounter_id=claim.encounter_id,
        encounter_occurred_at=claim.encounter_occurred_at,
        patient_control_number=cp.patient_control_number,
        payer_id=claim.payer_id,
        payer_claim_control_number=cp.payer_claim_control_number,
        date_of_service=cp.date_of_service or claim.date_of_service,
        claim_status_code=cp.claim_status_code,
        outcome=outcome_of(cp.claim_status_code, cp.paid_amount, cp.adjustments, lines),
        billed_amount=cp.billed_amount,
        allowed_amount=allowed,
        paid_amount=cp.paid_amount,
        patient_responsibility=cp.patient_responsibility,
        adjustments=list(cp.adjustments),
        rarcs=list(cp.rarcs),
        lines=lines,
        payment_date=payment.payment_date,
        trace_number=payment.trace_number,
        adjudicated_at=now,
        claim_frequency_code=cp.claim_frequency_code or "1",
        payer_name=payment.payer_name or claim.payer_name,
        payee_npi=payment.payee_npi,
        payment_method=payment_method_of(payment, cp),
        source=source,
    )


def remittance_line(svc: Line835, ours: ClaimLine | None) -> RemittanceLine:
    """An SVC loop as a remittance line: our line number, the payer's codes. Allowed is
    AMT*B6, else paid + the patient's share (Σ PR)."""
    allowed = svc.allowed_amount
    if allowed is None:
        allowed = svc.paid_amount + sum((a.amount for a in svc.adjustments if a.group_code == GroupCode.PR), ZERO)
    return RemittanceLine(
        line_number=ours.line_number if ours is not None else 0,
        procedure_code=svc.procedure_code,
        billed_amount=svc.billed_amount,
        allowed_amount=allowed,
        paid_amount=svc.paid_amount,
        adjustments=list(svc.adjustments),
        rarcs=list(svc.rarcs),
        modifiers=list(svc.modifiers),
        units=svc.units,
        submitted_procedure_code=svc.submitted_procedure_code,
        submitted_modifiers=list(svc.submitted_modifiers) if svc.submitted_procedure_code else [],
        date_of_service=svc.date_of_service or (ours.date_of_service if ours is not None else None),
    )


def match_lines(svcs: Sequence[Line835], ours: Sequence[ClaimLine]) -> list[ClaimLine | None]:
    """For each SVC, the claim line it pays (None: none of ours); docs/x12.md for the passes."""
    assigned: list[ClaimLine | None] = [None] * len(svcs)
    free = list(ours)

    def fits(svc: Line835, line: ClaimLine) -> tuple[bool, bool]:
        return (line.charge != abs(svc.billed_amount), line.units != svc.units)

    def best(svc: Line835, pool: list[ClaimLine]) -> ClaimLine:
        return min(pool, key=lambda line: (*fits(svc, line), ours.index(line)))

    def by_ref(svc: Line835, pool: Sequence[ClaimLine]) -> list[ClaimLine]:
        ref = (svc.line_control_number or "").strip()
        return [line for line in pool if ref and str(line.line_number) == ref]

    def by_submitted(svc: Line835, pool: Sequence[ClaimLine], exact: bool) -> list[ClaimLine]:
        code = svc.submitted_procedure_code
        return [line for line in pool if code and line.procedure_code == code
                and (not exact or list(line.modifiers) == list(svc.submitted_modifiers))]

    def by_code(svc: Line835, pool: Sequence[ClaimLine]) -> list[ClaimLine]:
        return [line for line in pool if line.procedure_code == svc.procedure_code]

    passes = [
        by_ref,
        lambda svc, pool: by_submitted(svc, pool, True),
        lambda svc, pool: by_submitted(svc, pool, False),
        by_code,
    ]
    for candidates in passes:
        for i, svc in enumerate(svcs):
            if assigned[i] is None:
                pool = candidates(svc, free)
                if pool:
                    chosen = best(svc, pool)
                    assigned[i] = chosen
                    free.remove(chosen)
    for i in range(len(svcs)):  # by position
        if assigned[i] is None and free:
            assigned[i] = free.pop(0)
    for i, svc in enumerate(svcs):  # more SVCs than lines: a split line reuses the line it names
        if assigned[i] is None:
            for candidates in passes:
                pool = candidates(svc, list(ours))
                if pool:
                    assigned[i] = best(svc, pool)
                    break
    return assigned


def _unapplied(payment: Payment835, cp: ClaimPayment835, reason: str, source: str, now: datetime,
               used: set[str]) -> UnappliedPayment:
    basis = f"{payment.payer_id}|{payment.trace_number}|{cp.payer_claim_control_number}|{cp.claim_status_code}"
    unique, n = basis, 1
    while unique in used:  # the same claim payment twice in one transaction: keep both
        n += 1
        unique = f"{basis}|{cp.patient_control_number}|{n}"
    used.add(unique)
    return UnappliedPayment(
        item_id="UA-" + _digest(unique),
        payer_id=payment.payer_id,
        payer_name=payment.payer_name,
        trace_number=payment.trace_number,
        patient_control_number=cp.patient_control_number,
        payer_claim_control_number=cp.payer_claim_control_number,
        claim_status_code=cp.claim_status_code,
        billed_amount=cp.billed_amount,
        paid_amount=cp.paid_amount,
        reason=reason,
        x12_segments=cp.segments,
        source=source,
        received_at=now,
    )
