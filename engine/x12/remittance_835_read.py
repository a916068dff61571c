"""X12 835 (005010X221A1) read from any payer's file, whatever delimiters it declares, into
``Payment835`` records (one per ST/SE) for matching to our claims. What absent fields read
as: docs/x12.md, "835 in"."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from engine.model.events import Adjustment, GroupCode, ProviderAdjustment
from engine.x12.segments import (
    COMPONENT_SEPARATOR,
    ELEMENT_SEPARATOR,
    SEGMENT_TERMINATOR,
    ZERO,
    get,
    parse_amount,
    parse_date,
    safe_decimal,
    split,
)

MAX_PLB_PAIRS = 6  # PLB03/04 .. PLB13/14
#: The version this reader reads: GS08 and ST03 name it (005010X221A1 and its errata).
VERSION_5010 = "005010"


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
    """The payments of an 835 interchange, one per ST/SE, in file order (docs/x12.md for
    what absent fields read as). ``ValueError`` for a file that is not an X12
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


def _check_version(seg_id: str, position: int, e: list[str]) -> None:
    """A 4010 file read as 5010 gets its fields wrong without an error: name the version."""
    version = get(e, position)
    if version and not version.startswith(VERSION_5010):
        raise ValueError(f"{seg_id}{position:02d} is version {version!r}; this reader reads 5010 "
                         f"({VERSION_5010}X221A1) only")


def _on_gs(reader: _Reader, e: list[str]) -> None:
    if get(e, 1) == "HP":  # an 835 group; other groups (999s, 277s) are skipped with their transactions
        _check_version("GS", 8, e)


def _on_st(reader: _Reader, e: list[str]) -> None:
    if reader.txn is not None:
        raise ValueError(f"ST {get(e, 2)} before the SE of transaction {reader.txn.control}")
    if get(e, 1) == "835":
        _check_version("ST", 3, e)
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
    "GS": _on_gs, "ST": _on_st, "BPR": _on_bpr, "TRN": _on_trn, "N1": _on_n1, "REF": _on_ref, "LX": _on_lx,
    "CLP": _on_clp,
    "CAS": _on_cas, "MOA": _on_moa, "MIA": _on_mia, "DTM": _on_dtm, "AMT": _on_amt, "SVC": _on_svc, "LQ": _on_lq,
    "PLB": _on_plb, "SE": _on_se,
}
