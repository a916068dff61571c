"""X12 835 (005010X221A1) written from our remittances: the payer simulator's answers leave
as the file a clearinghouse would deliver, so that is what ingest is tested against.
Envelope, grouping, BPR/PLB and loop decisions: docs/x12.md."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal

from engine.model.codes import SELF
from engine.model.events import Address, Adjustment, ClaimSubmitted, GroupCode, Remittance, RemittanceLine
from engine.settings import Settings
from engine.x12.claim_837_write import insured
from engine.x12.segments import (
    ZERO,
    address,
    check_control_number,
    check_envelope_settings,
    composite,
    d8,
    interchange,
    money,
    seg,
    utc,
    with_se,
)

IMPLEMENTATION = "005010X221A1"
MAX_CAS_TRIPLETS = 6  # CAS02..CAS19
MAX_CLAIM_RARCS = 5  # MOA03..MOA07
MAX_MODIFIERS = 4  # SVC01-3..6 / SVC06-3..6
MAX_LINES = 999  # loop 2110 repeat
CLAIM_STATUS_CODES = frozenset({"1", "2", "3", "4", "19", "20", "21", "22", "23", "25"})
#: CLP06 codes of 005010X221A1 (the 837's SBR09 list without 11, BL, CI and FI).
FILING_INDICATORS_835 = frozenset({"12", "13", "14", "15", "16", "17", "AM", "CH", "DS", "HM", "LM", "MA", "MB",
                                   "MC", "OF", "TV", "VA", "WC", "ZZ"})
#: 837 SBR09 codes the 835 does not have: commercial and Blue plans as indemnity insurance,
#: the Federal Employees Program as other federal, other non-federal programs as mutually defined.
_FILING_837_TO_835 = {"CI": "15", "BL": "15", "FI": "OF", "11": "ZZ"}

# Placeholders: Settings has no payer address or bank fields, and a simulated payer moves no money.
PLACEHOLDER_PAYER_ADDRESS = Address("PO BOX 0000", "DENVER", "CO", "80201")
PLACEHOLDER_PAYER_CONTACT = "EDI TECHNICAL SUPPORT"
PLACEHOLDER_PAYER_PHONE = "8005550199"
PLACEHOLDER_PAYER_ROUTING = "999999999"  # BPR07 sender DFI (ABA routing) number
PLACEHOLDER_PAYER_ACCOUNT = "0000000001"  # BPR09 sender account
PLACEHOLDER_PAYEE_ROUTING = "888888888"  # BPR13 receiver DFI number
PLACEHOLDER_PAYEE_ACCOUNT = "0000000002"  # BPR15 receiver account


def write_835(remittances: Sequence[Remittance], claims: Mapping[str, ClaimSubmitted], settings: Settings,
              control_number: int, created: datetime) -> str:
    """One ISA/GS interchange with the 835 transactions paying ``remittances`` (docs/x12.md
    for the layout). ``claims`` maps claim id → the claim each remittance
    answers: the 835 repeats its patient, insured, payee and claim codes. ``control_number``
    (1..999,999,999) is ISA13/IEA02 and GS06/GE02; ST02 runs 0001, 0002, …"""
    check_control_number(control_number)
    check_envelope_settings(settings)
    if not remittances:
        raise ValueError("an 835 needs at least one remittance")
    missing = [r.claim_id for r in remittances if r.claim_id not in claims]
    if missing:
        raise ValueError("no ClaimSubmitted for claim " + ", ".join(dict.fromkeys(missing)))
    problems = [p for r in remittances for p in remittance_problems(r, claims[r.claim_id])]
    if problems:
        raise ValueError("remittances not expressible in 835: " + "; ".join(problems))
    stamp = utc(created)
    groups = _payments(remittances, claims)
    sender = _interchange_sender(remittances, settings)
    receiver = settings.x12_sender_id
    transactions = [_transaction(group, n, stamp) for n, group in enumerate(groups.values(), 1)]
    return interchange("HP", IMPLEMENTATION, sender, receiver, settings.x12_usage, control_number, stamp,
                       transactions)


def remittance_problems(remittance: Remittance, claim: ClaimSubmitted) -> list[str]:
    """Why ``remittance`` (answering ``claim``) cannot be written as a valid, balanced 835
    (empty: it can)."""
    tag = f"remittance {remittance.remittance_id} (claim {remittance.claim_id})"
    problems = [f"{tag}: {p}" for p in _claim_problems(remittance, claim)]
    for line in remittance.lines:
        problems += [f"{tag} line {line.line_number}: {p}" for p in _line_problems(line)]
    return problems


def _claim_problems(r: Remittance, claim: ClaimSubmitted) -> Iterator[str]:
    if r.claim_status_code not in CLAIM_STATUS_CODES:
        yield f"claim status code {r.claim_status_code!r} is not a CLP02 code"
    if not 1 <= len(r.patient_control_number) <= 38:
        yield "patient control number must be 1..38 characters (CLP01)"
    if not 1 <= len(r.payer_claim_control_number) <= 50:
        yield "payer claim control number must be 1..50 characters (CLP07)"
    if not 1 <= len(r.trace_number) <= 50:
        yield "trace number must be 1..50 characters (TRN02)"
    if not r.payer_id:
        yield "payer id is required (REF*2U)"
    if not (r.payer_name or claim.payer_name):
        yield "payer name is required (N1*PR)"
    if filing_indicator_835(claim.claim_filing_indicator) not in FILING_INDICATORS_835:
        yield f"claim filing indicator {claim.claim_filing_indicator!r} has no CLP06 code"
    billing = claim.billing_provider
    if billing is None or not billing.name or not (r.payee_npi or billing.npi):
        yield "the claim's billing provider (the payee, N1*PE name and NPI) is required"
    if insured(claim).relationship != SELF and not claim.member_id:
        yield "a dependent's claim needs the member id (NM1*IL)"
    if len(r.rarcs) > MAX_CLAIM_RARCS:
        yield f"{len(r.rarcs)} claim remark codes (MOA holds {MAX_CLAIM_RARCS})"
    if len(r.lines) > MAX_LINES:
        yield f"{len(r.lines)} lines (max {MAX_LINES})"
    adjusted = r.billed_amount - _total(r.all_adjustments())
    if adjusted != r.paid_amount:
        yield f"billed {r.billed_amount} − adjustments = {adjusted}, not the paid {r.paid_amount}"
    patient = _total(a for a in r.all_adjustments() if a.group_code == GroupCode.PR)
    if patient != r.patient_responsibility:
        yield f"patient responsibility {r.patient_responsibility} is not the PR adjustments ({patient})"


def _line_problems(line: RemittanceLine) -> Iterator[str]:
    if len(line.modifiers) > MAX_MODIFIERS or len(line.submitted_modifiers) > MAX_MODIFIERS:
        yield f"more than {MAX_MODIFIERS} modifiers"
    if line.submitted_modifiers and not line.submitted_procedure_code:
        yield "submitted modifiers without the submitted procedure code (SVC06)"
    if line.units < 0:
        yield f"units {line.units} (must be ≥ 0)"
    adjusted = line.billed_amount - _total(line.adjustments)
    if adjusted != line.paid_amount:
        yield f"billed {line.billed_amount} − adjustments = {adjusted}, not the paid {line.paid_amount}"


def filing_indicator_835(code: str) -> str:
    """CLP06 for an 837 SBR09 code: the same where the 835 list has it, else its nearest."""
    return _FILING_837_TO_835.get(code, code)


def originating_company_id(payer_id: str) -> str:
    """TRN03/BPR10: ``1`` + 9 characters, as a payer's ``1`` + EIN; here the payer id,
    upper-cased, only letters and digits, zero-padded on the left (or cut) to 9."""
    core = "".join(ch for ch in payer_id.upper() if ch.isalnum())
    return "1" + core[:9].rjust(9, "0")


def _interchange_sender(remittances: Sequence[Remittance], settings: Settings) -> str:
    payers = {r.payer_id for r in remittances}
    if len(payers) == 1:
        payer = next(iter(payers))
        if 2 <= len(payer) <= 15 and payer.isalnum():
            return payer
    return settings.x12_receiver_id


def _payee_npi(r: Remittance, claim: ClaimSubmitted) -> str:
    return r.payee_npi or (claim.billing_provider.npi if claim.billing_provider else claim.billing_npi)


_Group = list[tuple[Remittance, ClaimSubmitted]]
_PaymentKey = tuple[str, str, date, str]  # payer id, trace number, payment date, payee NPI


def _payments(remittances: Sequence[Remittance], claims: Mapping[str, ClaimSubmitted]) -> dict[_PaymentKey, _Group]:
    groups: dict[_PaymentKey, _Group] = {}
    for r in remittances:
        claim = claims[r.claim_id]
        key = (r.payer_id, r.trace_number, r.payment_date, _payee_npi(r, claim))
        groups.setdefault(key, []).append((r, claim))
    return groups


def _total(adjustments: Iterable[Adjustment]) -> Decimal:
    return sum((a.amount for a in adjustments), ZERO)


def _transaction(group: _Group, number: int, created: datetime) -> list[str]:
    first, claim = group[0]
    st_control = f"{number:04d}"
    npi = _payee_npi(first, claim)
    claim_total = sum((r.paid_amount for r, _ in group), ZERO)
    forward = claim_total if claim_total < 0 else ZERO  # the PLB FB amount (negative) or nothing
    total = claim_total - forward
    company = originating_company_id(first.payer_id)
    segments = [
        seg("ST", "835", st_control),
        _bpr(total, first.payment_method, company, first.payment_date),
        seg("TRN", "1", first.trace_number, company),
        seg("DTM", "405", d8(created)),
        *_payer_loop(first, claim),
        *_payee_loop(npi, claim),
        seg("LX", "1"),
        *(s for r, c in group for s in _claim_loop(r, c)),
    ]
    if forward:
        fiscal = date(first.payment_date.year, 12, 31)
        segments.append(seg("PLB", npi, d8(fiscal), composite("FB", first.trace_number), money(forward)))
    return with_se(segments, st_control)


def _bpr(total: Decimal, method: str, company: str, paid_on: date) -> str:
    if total == 0:
        return seg("BPR", "H", money(total), "C", "NON", *[""] * 11, d8(paid_on))
    if method == "CHK":
        return seg("BPR", "I", money(total), "C", "CHK", *[""] * 11, d8(paid_on))
    return seg("BPR", "I", money(total), "C", "ACH", "CCP", "01", PLACEHOLDER_PAYER_ROUTING, "DA",
               PLACEHOLDER_PAYER_ACCOUNT, company, "", "01", PLACEHOLDER_PAYEE_ROUTING, "DA",
               PLACEHOLDER_PAYEE_ACCOUNT, d8(paid_on))


def _payer_loop(r: Remittance, claim: ClaimSubmitted) -> list[str]:
    """1000A: N1*PR, the placeholder address, REF*2U payer id, PER*BL (required)."""
    return [
        seg("N1", "PR", r.payer_name or claim.payer_name),
        *address(PLACEHOLDER_PAYER_ADDRESS),
        seg("REF", "2U", r.payer_id),
        seg("PER", "BL", PLACEHOLDER_PAYER_CONTACT, "TE", PLACEHOLDER_PAYER_PHONE),
    ]


def _payee_loop(npi: str, claim: ClaimSubmitted) -> list[str]:
    """1000B: N1*PE with the NPI, the billing address, REF*TJ tax id."""
    payee = claim.billing_provider
    assert payee is not None  # checked by remittance_problems
    name = f"{payee.first_name} {payee.name}" if payee.entity_type == "1" and payee.first_name else payee.name
    out = [seg("N1", "PE", name, "XX", npi), *address(payee.address)]
    if payee.tax_id:
        out.append(seg("REF", "TJ", payee.tax_id))
    return out


def _claim_loop(r: Remittance, claim: ClaimSubmitted) -> list[str]:
    """2100 and its 2110 lines."""
    patient = r.patient_responsibility
    out = [seg("CLP", r.patient_control_number, r.claim_status_code, money(r.billed_amount), money(r.paid_amount),
               money(patient) if patient else "", filing_indicator_835(claim.claim_filing_indicator),
               r.payer_claim_control_number, claim.place_of_service, r.claim_frequency_code)]
    out += _cas(r.adjustments)
    out += _people(claim)
    if r.rarcs:
        out.append(seg("MOA", "", "", *r.rarcs))
    out.append(seg("DTM", "232", d8(r.date_of_service)))
    out.append(seg("AMT", "AU", money(r.allowed_amount)))
    for line in r.lines:
        out += _line_loop(line, r.date_of_service)
    return out


def _people(claim: ClaimSubmitted) -> list[str]:
    """NM1*QC, and NM1*IL when the insured is someone else (the member id goes with the insured)."""
    person = insured(claim)
    if person.relationship == SELF:
        qualifier = "MI" if claim.member_id else ""
        return [seg("NM1", "QC", "1", person.last_name, person.first_name, "", "", "", qualifier, claim.member_id)]
    return [
        seg("NM1", "QC", "1", claim.patient_last_name, claim.patient_first_name),
        seg("NM1", "IL", "1", person.last_name, person.first_name, "", "", "", "MI", claim.member_id),
    ]


def _line_loop(line: RemittanceLine, claim_date: date) -> list[str]:
    adjudicated = composite("HC", line.procedure_code, *line.modifiers)
    submitted = (composite("HC", line.submitted_procedure_code, *line.submitted_modifiers)
                 if line.submitted_procedure_code else "")
    units = str(line.units) if line.units != 1 else ""
    out = [
        seg("SVC", adjudicated, money(line.billed_amount), money(line.paid_amount), "", units, submitted),
        seg("DTM", "472", d8(line.date_of_service or claim_date)),
        *_cas(line.adjustments),
        seg("REF", "6R", str(line.line_number)),
        seg("AMT", "B6", money(line.allowed_amount)),
    ]
    out += [seg("LQ", "HE", rarc) for rarc in line.rarcs]
    return out


def _cas(adjustments: list[Adjustment]) -> list[str]:
    """CAS by group code (first-seen order), at most 6 triplets a segment."""
    by_group: dict[str, list[Adjustment]] = {}
    for adj in adjustments:
        by_group.setdefault(str(adj.group_code), []).append(adj)
    out: list[str] = []
    for group, items in by_group.items():
        for start in range(0, len(items), MAX_CAS_TRIPLETS):
            triplets = [value for adj in items[start:start + MAX_CAS_TRIPLETS]
                        for value in (adj.carc, money(adj.amount), "" if adj.quantity is None else str(adj.quantity))]
            out.append(seg("CAS", group, *triplets))
    return out
