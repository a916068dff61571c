"""X12 835 (005010X221A1) health care claim payment/advice: written from our remittances,
read from any payer's file, and validated (pyx12 4.0.0 plus the balancing pyx12 does not do).

Why both directions: the payer simulator's answers leave as real 835s (so what a
clearinghouse would deliver is what we test against), and real payers' 835s come in
through ``read_835``, whatever delimiters they use.

Writing (``write_835``), the decisions:

- Envelope: one ISA/GS (GS01 ``HP``, GS08 ``005010X221A1``; no ST03, the guide does not use
  it). The payer sends an 835, so ISA06/GS02 is the payer id when every remittance comes
  from one payer; with several payers the interchange comes from the clearinghouse that
  gathers them (``settings.x12_receiver_id``, the 837's receiver), also when a payer id
  does not fit 2..15 characters. ISA08/GS03 is us (``settings.x12_sender_id``). Times UTC.
- One ST/SE per (payer id, trace number, payment date, payee NPI), in first-seen order;
  the claims inside in the order given, all under one ``LX*1``. The payee NPI is
  ``remittance.payee_npi``, else the billing provider's; the payee's name, address and
  tax id (1000B N1*PE, N3/N4, REF*TJ) are the claim's ``billing_provider``.
- BPR02 = Σ CLP04 − Σ PLB04. A positive total goes out as ``BPR*I*…*C*ACH*CCP`` with the
  bank elements pyx12 wants (BPR06..BPR15); the routing and account numbers are the
  ``PLACEHOLDER_*`` constants below (Settings has no bank fields: nobody routes money from
  a simulator). ``payment_method`` ``CHK`` on the first remittance writes ``BPR04 CHK``
  without bank elements. A zero total is ``BPR*H*0*C*NON``.
- PLB: the only one written is a forward balance. When Σ CLP04 of a transaction is
  negative (a reversal with nothing, or too little, paid against it), ``PLB*<payee
  NPI>*<Dec 31 of the payment year>*FB:<trace>*<that negative sum>`` brings BPR02 to 0 (a
  negative PLB amount raises the payment): no negative BPR02, the payer recovers later.
- 1000A: N1*PR (``remittance.payer_name``, else the claim's), a placeholder payer address
  and technical contact (``PLACEHOLDER_*``), REF*2U = payer id; TRN03 and BPR10 are a
  10-character originating company id made from the payer id (``originating_company_id``).
- 2100: CLP01..CLP09 (CLP05 only when not zero, CLP06 mapped to the 835 code list by
  ``filing_indicator_835``, CLP08 = place of service), claim CAS, NM1*QC patient (with the
  member id when the patient is the subscriber), NM1*IL insured with the member id when
  the patient is a dependent, MOA with up to 5 claim RARCs, DTM*232 date of service,
  AMT*AU = allowed amount.
- 2110: SVC (SVC05 only when the units are not 1, the guide's rule; SVC06 only when the
  payer changed the code or modifiers), DTM*472 (the line's date, else the claim's), CAS,
  REF*6R = our line number, AMT*B6 = allowed, LQ*HE per line RARC.
- CAS: grouped by group code in first-seen order, at most 6 reason/amount/quantity
  triplets per segment, the segment repeated past that.
- ``write_835`` refuses (``ValueError`` listing all) a remittance whose claim is not in
  ``claims`` or which the guide cannot express or which does not balance (see
  ``remittance_problems``).

Reading (``read_835``): delimiters from the ISA (element = ISA char 4, component = ISA16,
terminator = the next character, newline included), newlines after terminators ignored,
unknown segments skipped. What is absent reads as: CLP05 → 0.00, CLP08/CLP09 → ``""``,
SVC05 → 1 unit, SVC06 → ``None``/``[]``, REF*6R → ``None``, AMT*B6 / AMT*AU → ``None``, a
claim's ``date_of_service`` → DTM*232 else its earliest line date else ``None``, payer id →
REF*2U else N1*PR N104 else ``""``, payee NPI → N1*PE N104 when N103 is XX else ``""``.
``ClaimPayment835.segments`` is the CLP loop re-joined with the standard delimiters
(``*`` ``:``), each segment ending ``~`` and lines joined by a newline, whatever the file
used: it is kept for people (unapplied cash) and must read the same for every payer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from engine.model.events import (
    SELF,
    Address,
    Adjustment,
    ClaimSubmitted,
    GroupCode,
    ProviderAdjustment,
    Remittance,
    RemittanceLine,
)
from engine.settings import Settings
from engine.x12.professional import insured
from engine.x12.segments import (
    COMPONENT_SEPARATOR,
    ELEMENT_SEPARATOR,
    SEGMENT_TERMINATOR,
    composite,
    d8,
    get,
    hhmm,
    isa,
    money,
    parse_amount,
    parse_date,
    pyx12_errors,
    safe_decimal,
    seg,
    split,
)

IMPLEMENTATION = "005010X221A1"
ZERO = Decimal("0.00")
MAX_CAS_TRIPLETS = 6  # CAS02..CAS19
MAX_CLAIM_RARCS = 5  # MOA03..MOA07
MAX_MODIFIERS = 4  # SVC01-3..6 / SVC06-3..6
MAX_LINES = 999  # loop 2110 repeat
MAX_PLB_PAIRS = 6  # PLB03/04 .. PLB13/14
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


# --- what read_835 gives ----------------------------------------------------------


@dataclass(slots=True)
class Line835:
    """One SVC loop (2110)."""

    line_control_number: str | None  # REF*6R: our line number when we billed it; None when absent
    procedure_code: str  # SVC01-2: as adjudicated
    modifiers: list[str]
    billed_amount: Decimal
    paid_amount: Decimal
    units: int  # SVC05, 1 when absent
    submitted_procedure_code: str | None  # SVC06-2: as billed, when the payer changed it
    submitted_modifiers: list[str]
    allowed_amount: Decimal | None  # AMT*B6
    adjustments: list[Adjustment]
    rarcs: list[str]  # LQ*HE
    date_of_service: date | None  # DTM*472 (or 150, the period start)


@dataclass(slots=True)
class ClaimPayment835:
    """One CLP loop (2100)."""

    patient_control_number: str
    claim_status_code: str
    billed_amount: Decimal
    paid_amount: Decimal
    patient_responsibility: Decimal
    claim_filing_indicator: str
    payer_claim_control_number: str
    facility_code: str
    claim_frequency_code: str
    adjustments: list[Adjustment]  # claim-level CAS only
    rarcs: list[str]  # MOA (and MIA) remark codes
    lines: list[Line835]
    date_of_service: date | None
    segments: str  # the loop as received, re-joined with * and :, each segment ending "~", "\n" between
    allowed_amount: Decimal | None = None  # AMT*AU coverage amount

    def all_adjustments(self) -> list[Adjustment]:
        """Claim-level CAS followed by every line's CAS (as ``Remittance.all_adjustments``)."""
        return [*self.adjustments, *(adj for line in self.lines for adj in line.adjustments)]


@dataclass(slots=True)
class Payment835:
    """One ST/SE transaction: one check or EFT to one payee."""

    payer_id: str  # REF*2U, else N1*PR N104, else ""
    payer_name: str
    payee_npi: str
    trace_number: str  # TRN02
    payment_method: str  # BPR04: ACH, CHK, NON, …
    payment_amount: Decimal  # BPR02
    payment_date: date  # BPR16
    provider_adjustments: list[ProviderAdjustment]
    claims: list[ClaimPayment835]


# --- writing ----------------------------------------------------------------------


def write_835(remittances: Sequence[Remittance], claims: Mapping[str, ClaimSubmitted], settings: Settings,
              control_number: int, created: datetime) -> str:
    """One ISA/GS interchange with the 835 transactions paying ``remittances`` (module
    docstring for the layout). ``claims`` maps claim id → the claim each remittance
    answers: the 835 repeats its patient, insured, payee and claim codes. ``control_number``
    (1..999,999,999) is ISA13/IEA02 and GS06/GE02; ST02 runs 0001, 0002, …"""
    _check_envelope(settings, control_number)
    if not remittances:
        raise ValueError("an 835 needs at least one remittance")
    missing = [r.claim_id for r in remittances if r.claim_id not in claims]
    if missing:
        raise ValueError("no ClaimSubmitted for claim " + ", ".join(dict.fromkeys(missing)))
    problems = [p for r in remittances for p in remittance_problems(r, claims[r.claim_id])]
    if problems:
        raise ValueError("remittances not expressible in 835: " + "; ".join(problems))
    stamp = created.astimezone(UTC) if created.tzinfo else created
    groups = _payments(remittances, claims)
    sender = _interchange_sender(remittances, settings)
    receiver = settings.x12_sender_id
    body = [s for n, group in enumerate(groups.values(), 1) for s in _transaction(group, n, stamp)]
    segments = [
        isa(sender, receiver, settings.x12_usage, control_number, stamp),
        seg("GS", "HP", sender, receiver, d8(stamp), hhmm(stamp), str(control_number), "X", IMPLEMENTATION),
        *body,
        seg("GE", str(len(groups)), str(control_number)),
        seg("IEA", "1", f"{control_number:09d}"),
    ]
    return "".join(f"{segment}{SEGMENT_TERMINATOR}\n" for segment in segments)


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


def _check_envelope(settings: Settings, control_number: int) -> None:
    if not 1 <= control_number <= 999_999_999:
        raise ValueError(f"control number {control_number} is not 1..999999999")
    if settings.x12_usage not in {"T", "P"}:
        raise ValueError(f"x12_usage {settings.x12_usage!r} is not T or P")
    for name in ("x12_sender_id", "x12_receiver_id"):
        if not 2 <= len(getattr(settings, name)) <= 15:
            raise ValueError(f"{name} must be 2..15 characters (ISA06/ISA08, GS02/GS03)")


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


def _payments(remittances: Sequence[Remittance], claims: Mapping[str, ClaimSubmitted]) -> dict[tuple, _Group]:
    groups: dict[tuple, _Group] = {}
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
    segments.append(seg("SE", str(len(segments) + 1), st_control))
    return segments


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
        *_address(PLACEHOLDER_PAYER_ADDRESS),
        seg("REF", "2U", r.payer_id),
        seg("PER", "BL", PLACEHOLDER_PAYER_CONTACT, "TE", PLACEHOLDER_PAYER_PHONE),
    ]


def _payee_loop(npi: str, claim: ClaimSubmitted) -> list[str]:
    """1000B: N1*PE with the NPI, the billing address, REF*TJ tax id."""
    payee = claim.billing_provider
    assert payee is not None  # checked by remittance_problems
    name = f"{payee.first_name} {payee.name}" if payee.entity_type == "1" and payee.first_name else payee.name
    out = [seg("N1", "PE", name, "XX", npi), *_address(payee.address)]
    if payee.tax_id:
        out.append(seg("REF", "TJ", payee.tax_id))
    return out


def _address(address: Address | None) -> list[str]:
    if address is None:
        return []
    return [seg("N3", address.line1), seg("N4", address.city, address.state, address.postal_code)]


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


# --- reading ------------------------------------------------------------------------


@dataclass(slots=True)
class _Transaction:
    control: str
    bpr: list[str] | None = None
    trace: str = ""
    payer_name: str = ""
    payer_n104: str = ""
    payer_ref: str = ""
    payee_npi: str = ""
    loop: str = "header"  # header, 1000A, 1000B, detail
    adjustments: list[ProviderAdjustment] = field(default_factory=list)
    claims: list[ClaimPayment835] = field(default_factory=list)


@dataclass(slots=True)
class _Reader:
    component: str
    skipping: bool = False  # inside a transaction that is not an 835
    payments: list[Payment835] = field(default_factory=list)
    txn: _Transaction | None = None
    claim: ClaimPayment835 | None = None
    raw: list[str] = field(default_factory=list)  # the current claim's segments, standard delimiters
    line: Line835 | None = None


def read_835(text: str) -> list[Payment835]:
    """The payments of an 835 interchange, one per ST/SE, in file order (module docstring
    for what absent fields read as). ``ValueError`` for a file that is not an X12
    interchange, holds no 835, or has an amount, count or date that is not one."""
    segments, component = split(text, newline_terminator=True)
    reader = _Reader(component=component)
    for number, elements in enumerate(segments, 1):
        if reader.skipping:
            reader.skipping = elements[0] != "SE"
            continue
        handler = _HANDLERS.get(elements[0])
        if handler is None:
            if reader.claim is not None:
                reader.raw.append(_standard(reader, elements))
            continue
        try:
            handler(reader, elements)
        except ValueError as exc:
            raise ValueError(f"segment {number} ({elements[0]}): {exc}") from None
    if reader.txn is not None:
        raise ValueError(f"transaction {reader.txn.control} has no SE")
    if not reader.payments:
        raise ValueError("no 835 transaction in the interchange")
    return reader.payments


def _standard(reader: _Reader, elements: list[str]) -> str:
    """A segment with the standard separators, whatever the file used."""
    return ELEMENT_SEPARATOR.join(e.replace(reader.component, COMPONENT_SEPARATOR) for e in elements)


def _amount(elements: list[str], position: int, name: str) -> Decimal:
    try:
        return parse_amount(get(elements, position))
    except ValueError:
        raise ValueError(f"{name} {get(elements, position)!r} is not an amount") from None


def _count(text: str, name: str) -> int:
    value = safe_decimal(text)
    if value is None or value != value.to_integral_value():
        raise ValueError(f"{name} {text!r} is not a whole number")
    return int(value)


def _day(text: str, name: str) -> date:
    try:
        return parse_date(text[:8])
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a CCYYMMDD date") from None


def _txn(reader: _Reader, seg_id: str) -> _Transaction:
    if reader.txn is None:
        raise ValueError(f"{seg_id} outside an 835 transaction (no ST*835 before it)")
    return reader.txn


def _on_st(reader: _Reader, e: list[str]) -> None:
    if reader.txn is not None:
        raise ValueError(f"ST {get(e, 2)} before the SE of transaction {reader.txn.control}")
    if get(e, 1) == "835":
        reader.txn = _Transaction(control=get(e, 2))
    else:
        reader.skipping = True


def _on_bpr(reader: _Reader, e: list[str]) -> None:
    _txn(reader, "BPR").bpr = e


def _on_trn(reader: _Reader, e: list[str]) -> None:
    txn = _txn(reader, "TRN")
    if txn.loop == "header" and get(e, 1) == "1":
        txn.trace = get(e, 2)


def _on_n1(reader: _Reader, e: list[str]) -> None:
    txn = _txn(reader, "N1")
    entity = get(e, 1)
    if entity == "PR":
        txn.loop, txn.payer_name, txn.payer_n104 = "1000A", get(e, 2), get(e, 4)
    elif entity == "PE":
        txn.loop = "1000B"
        txn.payee_npi = get(e, 4) if get(e, 3) == "XX" else ""


def _on_ref(reader: _Reader, e: list[str]) -> None:
    txn = _txn(reader, "REF")
    if reader.claim is not None:
        reader.raw.append(_standard(reader, e))
        if reader.line is not None and get(e, 1) == "6R":
            reader.line.line_control_number = get(e, 2)
    elif txn.loop == "1000A" and get(e, 1) == "2U":
        txn.payer_ref = get(e, 2)


def _on_lx(reader: _Reader, e: list[str]) -> None:
    _flush_claim(reader)
    _txn(reader, "LX").loop = "detail"


def _on_clp(reader: _Reader, e: list[str]) -> None:
    _flush_claim(reader)
    _txn(reader, "CLP").loop = "detail"
    reader.raw = [_standard(reader, e)]
    reader.claim = ClaimPayment835(
        patient_control_number=get(e, 1), claim_status_code=get(e, 2),
        billed_amount=_amount(e, 3, "CLP03"), paid_amount=_amount(e, 4, "CLP04"),
        patient_responsibility=_amount(e, 5, "CLP05") if get(e, 5) else ZERO,
        claim_filing_indicator=get(e, 6), payer_claim_control_number=get(e, 7), facility_code=get(e, 8),
        claim_frequency_code=get(e, 9), adjustments=[], rarcs=[], lines=[], date_of_service=None, segments="",
    )


def _in_claim(reader: _Reader, e: list[str]) -> ClaimPayment835:
    if reader.claim is None:
        raise ValueError(f"{e[0]} outside a CLP loop")
    reader.raw.append(_standard(reader, e))
    return reader.claim


def _on_cas(reader: _Reader, e: list[str]) -> None:
    claim = _in_claim(reader, e)
    group = get(e, 1)
    try:
        group_code = GroupCode(group)
    except ValueError:
        raise ValueError(f"CAS01 {group!r} is not a 5010 group code (CO, PR, OA, PI)") from None
    adjustments = [
        Adjustment(group_code, get(e, i), _amount(e, i + 1, f"CAS{i + 1:02d}"),
                   _count(get(e, i + 2), f"CAS{i + 2:02d}") if get(e, i + 2) else None)
        for i in range(2, 20, 3) if get(e, i)
    ]
    (reader.line.adjustments if reader.line is not None else claim.adjustments).extend(adjustments)


def _on_moa(reader: _Reader, e: list[str]) -> None:
    claim = _in_claim(reader, e)
    claim.rarcs += [code for code in e[3:8] if code]


def _on_mia(reader: _Reader, e: list[str]) -> None:
    claim = _in_claim(reader, e)
    claim.rarcs += [code for i in (5, 20, 21, 22, 23) if (code := get(e, i))]


def _on_dtm(reader: _Reader, e: list[str]) -> None:
    if reader.claim is None:
        _txn(reader, "DTM")
        return
    claim = _in_claim(reader, e)
    qualifier = get(e, 1)
    if reader.line is not None and qualifier in {"472", "150"}:
        if reader.line.date_of_service is None or qualifier == "472":
            reader.line.date_of_service = _day(get(e, 2), f"DTM*{qualifier}")
    elif reader.line is None and qualifier == "232":
        claim.date_of_service = _day(get(e, 2), "DTM*232")


def _on_amt(reader: _Reader, e: list[str]) -> None:
    if reader.claim is None:
        return
    claim = _in_claim(reader, e)
    if reader.line is not None and get(e, 1) == "B6":
        reader.line.allowed_amount = _amount(e, 2, "AMT*B6")
    elif reader.line is None and get(e, 1) == "AU":
        claim.allowed_amount = _amount(e, 2, "AMT*AU")


def _on_svc(reader: _Reader, e: list[str]) -> None:
    claim = _in_claim(reader, e)
    adjudicated = get(e, 1).split(reader.component)
    submitted = get(e, 6).split(reader.component) if get(e, 6) else []
    reader.line = Line835(
        line_control_number=None, procedure_code=get(adjudicated, 1),
        modifiers=[m for m in adjudicated[2:6] if m],
        billed_amount=_amount(e, 2, "SVC02"), paid_amount=_amount(e, 3, "SVC03"),
        units=_count(get(e, 5), "SVC05") if get(e, 5) else 1,
        submitted_procedure_code=get(submitted, 1) or None, submitted_modifiers=[m for m in submitted[2:6] if m],
        allowed_amount=None, adjustments=[], rarcs=[], date_of_service=None,
    )
    claim.lines.append(reader.line)


def _on_lq(reader: _Reader, e: list[str]) -> None:
    _in_claim(reader, e)
    if reader.line is not None and get(e, 1) == "HE" and get(e, 2):
        reader.line.rarcs.append(get(e, 2))


def _on_plb(reader: _Reader, e: list[str]) -> None:
    _flush_claim(reader)
    txn = _txn(reader, "PLB")
    txn.loop = "footer"
    for i in range(3, 3 + 2 * MAX_PLB_PAIRS, 2):
        if not get(e, i):
            continue
        reason, _, reference = get(e, i).partition(reader.component)
        reference = reference.split(reader.component)[0]
        txn.adjustments.append(ProviderAdjustment(reason, reference or None, _amount(e, i + 1, f"PLB{i + 1:02d}")))


def _on_se(reader: _Reader, e: list[str]) -> None:
    _flush_claim(reader)
    txn, reader.txn = _txn(reader, "SE"), None
    if txn.bpr is None:
        raise ValueError(f"transaction {txn.control} has no BPR")
    reader.payments.append(Payment835(
        payer_id=txn.payer_ref or txn.payer_n104, payer_name=txn.payer_name, payee_npi=txn.payee_npi,
        trace_number=txn.trace, payment_method=get(txn.bpr, 4), payment_amount=_amount(txn.bpr, 2, "BPR02"),
        payment_date=_day(get(txn.bpr, 16), "BPR16"), provider_adjustments=txn.adjustments, claims=txn.claims,
    ))


def _flush_claim(reader: _Reader) -> None:
    claim = reader.claim
    if claim is None:
        return
    if claim.date_of_service is None:
        dates = [line.date_of_service for line in claim.lines if line.date_of_service is not None]
        claim.date_of_service = min(dates) if dates else None
    claim.segments = "\n".join(f"{s}{SEGMENT_TERMINATOR}" for s in reader.raw)
    _txn(reader, "CLP").claims.append(claim)
    reader.claim, reader.line, reader.raw = None, None, []


_HANDLERS: dict[str, Callable[[_Reader, list[str]], None]] = {
    "ST": _on_st, "BPR": _on_bpr, "TRN": _on_trn, "N1": _on_n1, "REF": _on_ref, "LX": _on_lx, "CLP": _on_clp,
    "CAS": _on_cas, "MOA": _on_moa, "MIA": _on_mia, "DTM": _on_dtm, "AMT": _on_amt, "SVC": _on_svc, "LQ": _on_lq,
    "PLB": _on_plb, "SE": _on_se,
}


# --- validation --------------------------------------------------------------------


def validate_835(text: str) -> list[str]:
    """Every finding for ``text`` (empty: clean): pyx12's 005010X221A1 validation, then the
    balancing pyx12 does not check (prefixed ``claimflow:``): BPR02 = Σ CLP04 − Σ PLB, per
    claim CLP03 − Σ CAS (claim and lines) = CLP04, per line SVC02 − Σ CAS = SVC03, CLP05 =
    Σ PR CAS, SE01 = the segments from ST to SE. In-process, offline and silent."""
    try:
        segments, _ = split(text, newline_terminator=True)
    except ValueError as exc:
        return [str(exc)]
    return pyx12_errors(text) + _balance_errors(segments)


@dataclass(slots=True)
class _Tally:
    """Running sums for the balancing checks of one transaction."""

    bpr: list[str] | None = None
    paid: Decimal = ZERO
    plb: Decimal = ZERO
    count: int = 0
    clp: list[str] | None = None
    claim_cas: Decimal = ZERO
    claim_pr: Decimal = ZERO
    svc: list[str] | None = None
    line_cas: Decimal = ZERO


def _balance_errors(segments: list[list[str]]) -> list[str]:
    errors: list[str] = []
    tally: _Tally | None = None
    for elements in segments:
        seg_id = elements[0]
        if seg_id == "ST":
            tally = _Tally()
        if tally is None:
            continue
        tally.count += 1
        if seg_id in {"SVC", "CLP", "PLB", "SE", "LX"}:
            errors += _close_line(tally)
        if seg_id in {"CLP", "PLB", "SE", "LX"}:
            errors += _close_claim(tally)
        if seg_id == "BPR":
            tally.bpr = elements
        elif seg_id == "CLP":
            tally.clp, tally.claim_cas, tally.claim_pr = elements, ZERO, ZERO
            tally.paid += _number(get(elements, 4))
        elif seg_id == "SVC" and tally.clp is not None:
            tally.svc, tally.line_cas = elements, ZERO
        elif seg_id == "CAS" and tally.clp is not None:
            amount = sum((_number(get(elements, i)) for i in range(3, 21, 3)), ZERO)
            tally.claim_cas += amount
            tally.claim_pr += amount if get(elements, 1) == "PR" else ZERO
            if tally.svc is not None:
                tally.line_cas += amount
        elif seg_id == "PLB":
            tally.plb += sum((_number(get(elements, i)) for i in range(4, 16, 2)), ZERO)
        elif seg_id == "SE":
            errors += _close_transaction(tally, elements)
            tally = None
    return errors


def _number(text: str) -> Decimal:
    return (safe_decimal(text) if text else None) or ZERO


def _close_line(tally: _Tally) -> list[str]:
    svc, tally.svc = tally.svc, None
    if svc is None:
        return []
    paid = _number(get(svc, 2)) - tally.line_cas
    if paid != _number(get(svc, 3)):
        return [f"claimflow: CLP {get(tally.clp or [], 1)} SVC {get(svc, 1)}: SVC02 {get(svc, 2)} − CAS "
                f"{tally.line_cas} = {paid}, not SVC03 {get(svc, 3)}"]
    return []


def _close_claim(tally: _Tally) -> list[str]:
    clp, tally.clp = tally.clp, None
    if clp is None:
        return []
    errors = []
    paid = _number(get(clp, 3)) - tally.claim_cas
    if paid != _number(get(clp, 4)):
        errors.append(f"claimflow: CLP {get(clp, 1)}: CLP03 {get(clp, 3)} − CAS {tally.claim_cas} = {paid}, "
                      f"not CLP04 {get(clp, 4)}")
    if _number(get(clp, 5)) != tally.claim_pr:
        errors.append(f"claimflow: CLP {get(clp, 1)}: CLP05 {get(clp, 5) or 0} is not the PR adjustments "
                      f"({tally.claim_pr})")
    return errors


def _close_transaction(tally: _Tally, se: list[str]) -> list[str]:
    errors = []
    control = get(se, 2)
    if tally.bpr is None:
        errors.append(f"claimflow: transaction {control} has no BPR")
    elif _number(get(tally.bpr, 2)) != tally.paid - tally.plb:
        errors.append(f"claimflow: transaction {control}: BPR02 {get(tally.bpr, 2)} is not Σ CLP04 {tally.paid} "
                      f"− Σ PLB {tally.plb} = {tally.paid - tally.plb}")
    if get(se, 1) != str(tally.count):
        errors.append(f"claimflow: transaction {control}: SE01 {get(se, 1)!r} but {tally.count} segments "
                      "from ST to SE")
    return errors
