"""X12 837P (005010X222A1) export of submitted claims, the reader back, and validation.

Library choice: segments are written directly here rather than with x12sdk 2.2.0, whose
generator writes ``005010X222A2`` into GS08/ST03 (pyx12 4.0.0 has no map for it and stops
with "Map not found"), fills what a spec leaves out with random values and fixes POS 11,
frequency 1 and one diagnosis pointer; pyx12 4.0.0 (``validate_837p``) is the judge.

Segment primitives, the ISA, splitting and silent pyx12 runs are shared with the 835 in
``engine.x12.segments``.

Layout: one interchange, one functional group, one transaction per at most 5,000 claims
(the guide's recommended limit), in each: billing provider HL 20 → subscriber HL 22 →
(dependent) patient HL 23. A subscriber who is the patient (relationship 18, or no
subscriber record) carries the claims on the 2000B; a dependent gets a 2000C with PAT.
A 2000B/2000C holds at most 100 claims (the 2300 repeat limit): past that it is repeated.
Times in the envelope are UTC. Every segment ends with ``~`` and a newline.

What the file does not carry, so ``read_837p`` fills placeholders:

- ``claim_id`` = CLM01 (the patient control number; equal for claims from ``build_claim``),
- ``encounter_id`` = ``""``; ``encounter_occurred_at`` and ``submitted_at`` = the BHT
  creation time (UTC, minute precision),
- ``patient_id`` = REF*EA (medical record number) when written, else ``""``,
- ``date_of_service`` = the earliest line date (DTP*472),
- ``line_number`` = LX01 (1..n in the order written),
- the rendering provider's ``tax_id`` (``""``) and ``address`` (None): 2310B has neither;
  an organisation's ``first_name`` is ``""``; with no 2310B (rendering NPI = billing NPI)
  the rendering provider is the billing provider,
- a self-subscribed claim (relationship 18 or no subscriber record) is written from the
  patient fields (blanks filled from the subscriber record, see ``insured``) and reads back
  with a relationship-18 ``Subscriber`` and patient fields both holding that 2010BA person;
  with no birth date there is no DMG, so the sex reads back ``U``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal

from engine.model.events import SELF, Address, ClaimLine, ClaimSubmitted, Provider, Subscriber
from engine.reference.codesets import normalize_icd10
from engine.settings import Settings
from engine.x12.segments import (
    SEGMENT_TERMINATOR,
    isa,
)
from engine.x12.segments import (
    composite as _composite,
)
from engine.x12.segments import (
    d8 as _d8,
)
from engine.x12.segments import (
    get as _get,
)
from engine.x12.segments import (
    hhmm as _hhmm,
)
from engine.x12.segments import (
    money as _money,
)
from engine.x12.segments import (
    parse_amount as _decimal,
)
from engine.x12.segments import (
    parse_date as _date,
)
from engine.x12.segments import (
    pyx12_errors as _pyx12_errors,
)
from engine.x12.segments import (
    safe_decimal as _safe_decimal,
)
from engine.x12.segments import (
    seg as _seg,
)
from engine.x12.segments import (
    split as _split,
)

IMPLEMENTATION = "005010X222A1"
MAX_CLAIMS_PER_TRANSACTION = 5000
MAX_CLAIMS_PER_PATIENT_LOOP = 100  # loop 2300 repeats at most 100 times per 2000B/2000C
MAX_DIAGNOSES = 12  # one HI segment (max use 1) with HI01..HI12
MAX_MODIFIERS = 4
MAX_POINTERS = 4
MAX_LINES = 50
FREQUENCIES = frozenset({"1", "7", "8"})


# --- writing -----------------------------------------------------------------


def write_837p(
    claims: Sequence[ClaimSubmitted],
    settings: Settings,
    control_number: int,
    created: datetime,
    *,
    max_claims_per_transaction: int = MAX_CLAIMS_PER_TRANSACTION,
) -> str:
    """One ISA/GS interchange holding ``claims`` as 837P transactions.

    ``control_number`` (1..999,999,999) is ISA13/IEA02 (9 digits) and GS06/GE02; ST02 is
    0001, 0002, … within the group. Raises ``ValueError`` listing every claim the guide
    cannot express (no billing provider or address, a dependent without birth date or
    address, more than 12 diagnoses, a bad pointer, frequency 7/8 without REF*F8, …)."""
    _check_envelope(settings, control_number, max_claims_per_transaction)
    if not claims:
        raise ValueError("an 837P needs at least one claim")
    problems = [problem for claim in claims for problem in claim_problems(claim)]
    if problems:
        raise ValueError("claims not expressible in 837P: " + "; ".join(problems))
    stamp = created.astimezone(UTC) if created.tzinfo else created
    chunks = _chunks(_grouped(claims), max_claims_per_transaction)
    body = [seg for n, chunk in enumerate(chunks, 1) for seg in _transaction(chunk, settings, n, control_number, stamp)]
    segments = [
        isa(settings.x12_sender_id, settings.x12_receiver_id, settings.x12_usage, control_number, stamp),
        _seg("GS", "HC", settings.x12_sender_id, settings.x12_receiver_id, _d8(stamp), _hhmm(stamp),
             str(control_number), "X", IMPLEMENTATION),
        *body,
        _seg("GE", str(len(chunks)), str(control_number)),
        _seg("IEA", "1", f"{control_number:09d}"),
    ]
    return "".join(f"{segment}{SEGMENT_TERMINATOR}\n" for segment in segments)


def claim_problems(claim: ClaimSubmitted) -> list[str]:
    """Why ``claim`` cannot be written as a valid 837P (empty: it can)."""
    tag = f"claim {claim.claim_id}"
    problems = [f"{tag}: {p}" for p in (*_header_problems(claim), *_people_problems(claim))]
    for line in claim.lines:
        problems += [f"{tag} line {line.line_number}: {p}" for p in _line_problems(line, len(claim.diagnoses))]
    return problems


def _header_problems(claim: ClaimSubmitted) -> Iterator[str]:
    if claim.frequency_code not in FREQUENCIES:
        yield f"frequency code {claim.frequency_code!r} is not 1, 7 or 8"
    if claim.frequency_code in {"7", "8"} and not claim.original_claim_id:
        yield f"frequency {claim.frequency_code} needs original_claim_id (REF*F8)"
    if not 1 <= len(claim.diagnoses) <= MAX_DIAGNOSES:
        yield f"{len(claim.diagnoses)} diagnoses (1..{MAX_DIAGNOSES})"
    if not 1 <= len(claim.lines) <= MAX_LINES:
        yield f"{len(claim.lines)} lines (1..{MAX_LINES})"
    if not (len(claim.place_of_service) == 2 and claim.place_of_service.isdigit()):
        yield f"place of service {claim.place_of_service!r} is not 2 digits"
    if not 1 <= len(claim.patient_control_number) <= 38:
        yield "patient control number must be 1..38 characters (CLM01)"
    if claim.lines and claim.total_charge != sum((line.charge for line in claim.lines), Decimal(0)):
        yield f"total charge {claim.total_charge} is not the sum of the line charges"


def _people_problems(claim: ClaimSubmitted) -> Iterator[str]:
    billing = claim.billing_provider
    if billing is None or billing.address is None or not (billing.name and billing.tax_id):
        yield "billing provider with name, address and tax id is required (2010AA NM1, N3/N4, REF*EI)"
    rendering = claim.rendering_provider
    if _renders_separately(claim) and (rendering is None or not rendering.name):
        yield "rendering NPI differs from billing NPI but there is no named rendering provider (2310B)"
    required = {"payer name (2010BB NM103)": claim.payer_name, "payer id (2010BB NM109)": claim.payer_id,
                "member id (2010BA NM109)": claim.member_id, "subscriber last name (2010BA NM103)":
                insured(claim).last_name, "claim filing indicator (SBR09)": claim.claim_filing_indicator}
    yield from (f"{name} is required" for name, value in required.items() if not value)
    if not _is_self(claim) and (claim.patient_birth_date is None or claim.patient_address is None):
        yield "a dependent patient needs birth date and address (2010CA DMG, N3/N4)"


def _line_problems(line: ClaimLine, diagnoses: int) -> Iterator[str]:
    if len(line.modifiers) > MAX_MODIFIERS:
        yield f"{len(line.modifiers)} modifiers (max {MAX_MODIFIERS})"
    if not 1 <= len(line.dx_pointers) <= MAX_POINTERS:
        yield f"{len(line.dx_pointers)} diagnosis pointers (1..{MAX_POINTERS})"
    if any(not 1 <= pointer <= diagnoses for pointer in line.dx_pointers):
        yield f"pointer outside 1..{diagnoses}: {line.dx_pointers}"
    if line.units < 1:
        yield f"units {line.units} (must be ≥ 1)"


def _check_envelope(settings: Settings, control_number: int, max_claims: int) -> None:
    if not 1 <= control_number <= 999_999_999:
        raise ValueError(f"control number {control_number} is not 1..999999999")
    if max_claims < 1:
        raise ValueError("max_claims_per_transaction must be ≥ 1")
    if settings.x12_usage not in {"T", "P"}:
        raise ValueError(f"x12_usage {settings.x12_usage!r} is not T or P")
    for name in ("x12_sender_id", "x12_receiver_id"):
        if not 2 <= len(getattr(settings, name)) <= 15:
            raise ValueError(f"{name} must be 2..15 characters (ISA06/ISA08, GS02/GS03)")


def _is_self(claim: ClaimSubmitted) -> bool:
    return claim.subscriber is None or claim.subscriber.relationship == SELF


def _renders_separately(claim: ClaimSubmitted) -> bool:
    """2310B is written only when the rendering provider is not the billing provider."""
    billing_npi = claim.billing_provider.npi if claim.billing_provider else claim.billing_npi
    rendering_npi = claim.rendering_provider.npi if claim.rendering_provider else claim.rendering_npi
    return bool(rendering_npi) and rendering_npi != billing_npi


def insured(claim: ClaimSubmitted) -> Subscriber:
    """The 2010BA person. A dependent's subscriber as recorded; for a self-subscribed claim
    the patient (relationship 18), any blank patient field taken from the subscriber record,
    the group number from it."""
    sub = claim.subscriber
    if sub is not None and sub.relationship != SELF:
        return sub
    return Subscriber(
        relationship=SELF,
        first_name=claim.patient_first_name or (sub.first_name if sub else ""),
        last_name=claim.patient_last_name or (sub.last_name if sub else ""),
        birth_date=claim.patient_birth_date or (sub.birth_date if sub else None),
        sex=claim.patient_sex or (sub.sex if sub else "U"),
        address=claim.patient_address or (sub.address if sub else None),
        group_number=sub.group_number if sub else None,
    )


# --- hierarchy ------------------------------------------------------------------


#: billing provider → subscriber → patient (None: the subscriber) → claims, in first-seen order.
_Tree = dict[tuple, dict[tuple, dict[tuple | None, list[ClaimSubmitted]]]]


def _subscriber_key(claim: ClaimSubmitted) -> tuple:
    """Dependents of one subscriber share a 2000B whatever their relationship (PAT01)."""
    person = astuple(replace(insured(claim), relationship=""))
    return (claim.payer_id, claim.payer_name, claim.claim_filing_indicator, claim.member_id, _is_self(claim), person)


def _patient_key(claim: ClaimSubmitted) -> tuple | None:
    if _is_self(claim):
        return None
    address = astuple(claim.patient_address) if claim.patient_address else None
    return (claim.patient_first_name, claim.patient_last_name, claim.patient_birth_date, claim.patient_sex, address)


def _tree(claims: Sequence[ClaimSubmitted]) -> _Tree:
    tree: _Tree = {}
    for claim in claims:
        billing = astuple(claim.billing_provider)  # type: ignore[call-overload]  # checked: not None
        by_patient = tree.setdefault(billing, {}).setdefault(_subscriber_key(claim), {})
        by_patient.setdefault(_patient_key(claim), []).append(claim)
    return tree


def _grouped(claims: Sequence[ClaimSubmitted]) -> list[ClaimSubmitted]:
    """Claims reordered so each billing provider, subscriber and patient is contiguous."""
    tree = _tree(claims)
    return [c for subs in tree.values() for pats in subs.values() for group in pats.values() for c in group]


def _chunks(claims: list[ClaimSubmitted], size: int) -> list[list[ClaimSubmitted]]:
    return [claims[start:start + size] for start in range(0, len(claims), size)]


def _transaction(claims: list[ClaimSubmitted], settings: Settings, number: int, control_number: int,
                 created: datetime) -> list[str]:
    st_control = f"{number:04d}"
    segments = [
        _seg("ST", "837", st_control, IMPLEMENTATION),
        _seg("BHT", "0019", "00", f"{control_number}-{number}", _d8(created), _hhmm(created), "CH"),
        _seg("NM1", "41", "2", settings.x12_submitter_name, "", "", "", "", "46", settings.x12_sender_id),
        _seg("PER", "IC", settings.x12_submitter_name, "TE", settings.x12_submitter_phone),
        _seg("NM1", "40", "2", settings.x12_receiver_name, "", "", "", "", "46", settings.x12_receiver_id),
        *_hierarchy(claims),
    ]
    segments.append(_seg("SE", str(len(segments) + 1), st_control))
    return segments


class _HlCounter:
    """HL01 numbers, 1.. within a transaction."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> str:
        self.last += 1
        return str(self.last)


def _hierarchy(claims: list[ClaimSubmitted]) -> list[str]:
    out: list[str] = []
    hl = _HlCounter()
    for subscribers in _tree(claims).values():
        billing_hl = hl.next()
        provider = _first_claim(subscribers).billing_provider
        out += [_seg("HL", billing_hl, "", "20", "1"), *_billing_loop(provider)]  # type: ignore[arg-type]
        for patients in subscribers.values():
            out += _subscriber_hls(patients, billing_hl, hl)
    return out


def _first_claim(groups: dict) -> ClaimSubmitted:
    while isinstance(groups, dict):
        groups = next(iter(groups.values()))
    return groups[0]


def _subscriber_hls(patients: dict[tuple | None, list[ClaimSubmitted]], billing_hl: str, hl: _HlCounter) -> list[str]:
    """A self-subscriber's 2000B with its claims (repeated past 100 claims, the 2300 limit),
    or one 2000B with a 2000C per dependent (likewise repeated)."""
    sample = _first_claim(patients)
    out: list[str] = []
    if _is_self(sample):
        for part in _chunks(patients[None], MAX_CLAIMS_PER_PATIENT_LOOP):
            out += [_seg("HL", hl.next(), billing_hl, "22", "0"), *_subscriber_loop(sample)]
            out += [seg for claim in part for seg in _claim_loop(claim)]
        return out
    subscriber_hl = hl.next()
    out += [_seg("HL", subscriber_hl, billing_hl, "22", "1"), *_subscriber_loop(sample)]
    for group in patients.values():
        for part in _chunks(group, MAX_CLAIMS_PER_PATIENT_LOOP):
            out += [_seg("HL", hl.next(), subscriber_hl, "23", "0"), *_patient_loop(part[0])]
            out += [seg for claim in part for seg in _claim_loop(claim)]
    return out


# --- loops -----------------------------------------------------------------------


def _billing_loop(provider: Provider) -> list[str]:
    """2000A PRV (when a taxonomy is known) and 2010AA."""
    out = [_seg("PRV", "BI", "PXC", provider.taxonomy)] if provider.taxonomy else []
    out += [_nm1("85", provider.entity_type, provider.name, provider.first_name, "XX", provider.npi),
            *_address(provider.address)]
    out.append(_seg("REF", "EI", provider.tax_id))
    return out


def _subscriber_loop(claim: ClaimSubmitted) -> list[str]:
    """SBR, 2010BA subscriber, 2010BB payer."""
    person = insured(claim)
    self_ = _is_self(claim)
    out = [_seg("SBR", "P", SELF if self_ else "", person.group_number or "", "", "", "", "", "",
                claim.claim_filing_indicator),
           _nm1("IL", "1", person.last_name, person.first_name, "MI", claim.member_id),
           *_address(person.address)]
    if person.birth_date is not None:
        out.append(_seg("DMG", "D8", _d8(person.birth_date), person.sex or "U"))
    out.append(_nm1("PR", "2", claim.payer_name, "", "PI", claim.payer_id))
    return out


def _patient_loop(claim: ClaimSubmitted) -> list[str]:
    """2000C PAT and 2010CA for a dependent (birth date and address checked beforehand)."""
    return [
        _seg("PAT", claim.subscriber.relationship),  # type: ignore[union-attr]  # dependent
        _nm1("QC", "1", claim.patient_last_name, claim.patient_first_name, "", ""),
        *_address(claim.patient_address),
        _seg("DMG", "D8", _d8(claim.patient_birth_date), claim.patient_sex or "U"),  # type: ignore[arg-type]
    ]


def _claim_loop(claim: ClaimSubmitted) -> list[str]:
    """2300 CLM, REF, HI, 2310B, and the 2400 lines."""
    location = _composite(claim.place_of_service, "B", claim.frequency_code)
    total = sum((line.charge for line in claim.lines), Decimal(0))
    out = [_seg("CLM", claim.patient_control_number, _money(total), "", "", location, "Y", "A", "Y", "Y")]
    if claim.frequency_code in {"7", "8"}:
        out.append(_seg("REF", "F8", claim.original_claim_id or ""))
    if claim.patient_id:
        out.append(_seg("REF", "EA", claim.patient_id))
    out.append(_hi(claim.diagnoses))
    if _renders_separately(claim):
        out += _rendering_loop(claim.rendering_provider)  # type: ignore[arg-type]  # checked
    for number, line in enumerate(claim.lines, 1):
        out += _line_loop(line, number)
    return out


def _hi(diagnoses: Sequence[str]) -> str:
    """One HI: ABK principal, ABF for the rest (the guide allows a single HI with 12)."""
    codes = [code.replace(".", "").strip().upper() for code in diagnoses]
    return _seg("HI", *(_composite("ABK" if i == 0 else "ABF", code) for i, code in enumerate(codes)))


def _rendering_loop(provider: Provider) -> list[str]:
    out = [_nm1("82", provider.entity_type, provider.name, provider.first_name, "XX", provider.npi)]
    if provider.taxonomy:
        out.append(_seg("PRV", "PE", "PXC", provider.taxonomy))
    return out


def _line_loop(line: ClaimLine, number: int) -> list[str]:
    procedure = _composite("HC", line.procedure_code, *line.modifiers)
    pointers = _composite(*(str(p) for p in line.dx_pointers))
    return [
        _seg("LX", str(number)),
        _seg("SV1", procedure, _money(line.charge), "UN", str(line.units), "", "", pointers),
        _seg("DTP", "472", "D8", _d8(line.date_of_service)),
    ]


# --- segment primitives -------------------------------------------------------------


def _nm1(entity: str, entity_type: str, name: str, first: str, qualifier: str, identifier: str) -> str:
    first_name = first if entity_type == "1" else ""
    return _seg("NM1", entity, entity_type, name, first_name, "", "", "", qualifier, identifier)


def _address(address: Address | None) -> list[str]:
    if address is None:
        return []
    return [_seg("N3", address.line1), _seg("N4", address.city, address.state, address.postal_code)]


# --- reading -------------------------------------------------------------------------


@dataclass(slots=True)
class _Person:
    last_name: str = ""
    first_name: str = ""
    entity_type: str = "1"
    identifier: str = ""
    address: Address | None = None
    birth_date: date | None = None
    sex: str = "U"
    taxonomy: str = ""
    tax_id: str = ""

    def provider(self, *, with_address: bool) -> Provider:
        return Provider(npi=self.identifier, entity_type=self.entity_type, name=self.last_name,
                        first_name=self.first_name, taxonomy=self.taxonomy, tax_id=self.tax_id,
                        address=self.address if with_address else None)


@dataclass(slots=True)
class _Line:
    number: int
    procedure: str
    modifiers: list[str]
    charge: Decimal
    units: int
    pointers: list[int]
    service_date: date | None = None


@dataclass(slots=True)
class _Draft:
    """One 2300 loop as read, with the hierarchy it hangs from."""

    clm: list[str]
    billing: _Person
    subscriber: _Person
    sbr: list[str]
    payer: _Person
    relationship: str
    patient: _Person
    created: datetime
    refs: dict[str, str] = field(default_factory=dict)
    diagnoses: list[str] = field(default_factory=list)
    rendering: _Person | None = None
    lines: list[_Line] = field(default_factory=list)


@dataclass(slots=True)
class _Reader:
    component: str
    created: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    billing: _Person = field(default_factory=_Person)
    subscriber: _Person = field(default_factory=_Person)
    sbr: list[str] = field(default_factory=list)
    payer: _Person = field(default_factory=_Person)
    relationship: str = SELF
    patient: _Person | None = None
    target: _Person | None = None  # where N3/N4/DMG/PRV go
    draft: _Draft | None = None
    claims: list[ClaimSubmitted] = field(default_factory=list)


def read_837p(text: str) -> list[ClaimSubmitted]:
    """The claims of an 837P interchange written by ``write_837p`` (or any 005010X222A1
    file using the same segments), in file order. See the module docstring for the
    fields X12 does not carry."""
    segments, component = _split(text)
    reader = _Reader(component=component)
    for elements in segments:
        handler = _HANDLERS.get(elements[0])
        if handler is not None:
            handler(reader, elements)
    _flush(reader)
    return reader.claims


def _on_bht(reader: _Reader, e: list[str]) -> None:
    moment = datetime.strptime(_get(e, 4) + (_get(e, 5) or "0000")[:4], "%Y%m%d%H%M")
    reader.created = moment.replace(tzinfo=UTC)


def _on_hl(reader: _Reader, e: list[str]) -> None:
    _flush(reader)
    level = _get(e, 3)
    if level == "20":
        reader.billing = _Person()
        reader.target = reader.billing
    elif level == "22":
        reader.subscriber, reader.payer, reader.sbr = _Person(), _Person(), []
        reader.patient, reader.relationship = None, SELF
    elif level == "23":
        reader.patient = _Person()


def _on_nm1(reader: _Reader, e: list[str]) -> None:
    entity = _get(e, 1)
    person = {"85": reader.billing, "IL": reader.subscriber, "PR": reader.payer}.get(entity)
    if entity == "QC" and reader.patient is not None:
        person = reader.patient
    if entity == "82" and reader.draft is not None:
        person = reader.draft.rendering = _Person()
    reader.target = person
    if person is not None:
        person.entity_type, person.last_name, person.first_name = _get(e, 2), _get(e, 3), _get(e, 4)
        person.identifier = _get(e, 9)


def _on_n3(reader: _Reader, e: list[str]) -> None:
    if reader.target is not None:
        reader.target.address = Address(line1=_get(e, 1), city="", state="", postal_code="")


def _on_n4(reader: _Reader, e: list[str]) -> None:
    if reader.target is not None and reader.target.address is not None:
        address = reader.target.address
        address.city, address.state, address.postal_code = _get(e, 1), _get(e, 2), _get(e, 3)


def _on_dmg(reader: _Reader, e: list[str]) -> None:
    if reader.target is not None and _get(e, 1) == "D8":
        reader.target.birth_date = _date(_get(e, 2))
        reader.target.sex = _get(e, 3) or "U"


def _on_prv(reader: _Reader, e: list[str]) -> None:
    if _get(e, 1) == "BI":
        reader.billing.taxonomy = _get(e, 3)
    elif _get(e, 1) == "PE" and reader.draft is not None and reader.draft.rendering is not None:
        reader.draft.rendering.taxonomy = _get(e, 3)


def _on_ref(reader: _Reader, e: list[str]) -> None:
    if reader.draft is not None:
        reader.draft.refs.setdefault(_get(e, 1), _get(e, 2))
    elif reader.target is reader.billing and _get(e, 1) in {"EI", "SY"}:
        reader.billing.tax_id = _get(e, 2)


def _on_sbr(reader: _Reader, e: list[str]) -> None:
    reader.sbr = e


def _on_pat(reader: _Reader, e: list[str]) -> None:
    reader.relationship = _get(e, 1)


def _on_clm(reader: _Reader, e: list[str]) -> None:
    _flush(reader)
    reader.target = None
    reader.draft = _Draft(
        clm=e, billing=reader.billing, subscriber=reader.subscriber, sbr=reader.sbr, payer=reader.payer,
        relationship=reader.relationship, patient=reader.patient or reader.subscriber, created=reader.created,
    )


def _on_hi(reader: _Reader, e: list[str]) -> None:
    if reader.draft is None:
        return
    for composite in e[1:]:
        qualifier, _, code = composite.partition(reader.component)
        if qualifier in {"ABK", "ABF", "BK", "BF"}:
            reader.draft.diagnoses.append(normalize_icd10(code.split(reader.component)[0]))


def _on_lx(reader: _Reader, e: list[str]) -> None:
    reader.target = None
    if reader.draft is not None:
        reader.draft.lines.append(_Line(int(_get(e, 1)), "", [], Decimal(0), 0, []))


def _on_sv1(reader: _Reader, e: list[str]) -> None:
    if reader.draft is None or not reader.draft.lines:
        return
    line = reader.draft.lines[-1]
    procedure = _get(e, 1).split(reader.component)
    line.procedure, line.modifiers = _get(procedure, 1), [m for m in procedure[2:6] if m]
    line.charge = _decimal(_get(e, 2))
    line.units = int(_decimal(_get(e, 4) or "1"))
    line.pointers = [int(p) for p in _get(e, 7).split(reader.component) if p]


def _on_dtp(reader: _Reader, e: list[str]) -> None:
    if reader.draft is not None and reader.draft.lines and _get(e, 1) == "472":
        reader.draft.lines[-1].service_date = _date(_get(e, 3)[:8])


def _on_se(reader: _Reader, _e: list[str]) -> None:
    _flush(reader)


_HANDLERS = {
    "BHT": _on_bht, "HL": _on_hl, "NM1": _on_nm1, "N3": _on_n3, "N4": _on_n4, "DMG": _on_dmg,
    "PRV": _on_prv, "REF": _on_ref, "SBR": _on_sbr, "PAT": _on_pat, "CLM": _on_clm, "HI": _on_hi,
    "LX": _on_lx, "SV1": _on_sv1, "DTP": _on_dtp, "SE": _on_se,
}


def _flush(reader: _Reader) -> None:
    if reader.draft is not None:
        reader.claims.append(_claim_from(reader.draft, reader.component))
        reader.draft = None


def _claim_from(d: _Draft, component: str) -> ClaimSubmitted:
    location = _get(d.clm, 5).split(component)
    billing = d.billing.provider(with_address=True)
    rendering = d.rendering.provider(with_address=False) if d.rendering else billing
    lines = [_claim_line(line) for line in d.lines]
    return ClaimSubmitted(
        claim_id=_get(d.clm, 1), encounter_id="", encounter_occurred_at=d.created,
        patient_control_number=_get(d.clm, 1), frequency_code=_get(location, 2),
        original_claim_id=d.refs.get("F8"), payer_id=d.payer.identifier, member_id=d.subscriber.identifier,
        patient_id=d.refs.get("EA", ""), billing_npi=billing.npi, rendering_npi=rendering.npi,
        date_of_service=min(line.date_of_service for line in lines), place_of_service=_get(location, 0),
        diagnoses=d.diagnoses, lines=lines, total_charge=_decimal(_get(d.clm, 2)), submitted_at=d.created,
        billing_provider=billing, rendering_provider=rendering, payer_name=d.payer.last_name,
        claim_filing_indicator=_get(d.sbr, 9), subscriber=_subscriber_from(d),
        patient_first_name=d.patient.first_name, patient_last_name=d.patient.last_name,
        patient_birth_date=d.patient.birth_date, patient_sex=d.patient.sex, patient_address=d.patient.address,
    )


def _subscriber_from(d: _Draft) -> Subscriber:
    person = d.subscriber
    return Subscriber(relationship=d.relationship, first_name=person.first_name, last_name=person.last_name,
                      birth_date=person.birth_date, sex=person.sex, address=person.address,
                      group_number=_get(d.sbr, 3) or None)


def _claim_line(line: _Line) -> ClaimLine:
    if line.service_date is None:
        raise ValueError(f"service line {line.number} has no DTP*472 date of service")
    return ClaimLine(line_number=line.number, procedure_code=line.procedure, modifiers=line.modifiers,
                     units=line.units, charge=line.charge, dx_pointers=line.pointers,
                     date_of_service=line.service_date)


# --- validation ------------------------------------------------------------------------

def validate_837p(text: str) -> list[str]:
    """Every finding for ``text`` (empty: clean): pyx12's 005010X222A1 validation, then the
    rules pyx12 does not check (prefixed ``claimflow:``): CLM02 = Σ SV102, HL04 says
    whether children follow, no dot in an HI code. In-process, offline and silent."""
    try:
        segments, component = _split(text)
    except ValueError as exc:
        return [str(exc)]
    return _pyx12_errors(text) + _balance_errors(segments) + _hl_child_errors(segments) + _hi_errors(segments, component)


def _balance_errors(segments: list[list[str]]) -> list[str]:
    """CLM02 must equal the sum of its SV102s."""
    errors: list[str] = []
    claim: list[str] | None = None
    lines = Decimal(0)
    for elements in [*segments, ["SE"]]:
        if elements[0] in {"CLM", "HL", "SE"} and claim is not None:
            if _safe_decimal(_get(claim, 2)) != lines:
                errors.append(f"claimflow: CLM {_get(claim, 1)}: CLM02 {_get(claim, 2)} is not the sum of SV102 ({lines})")
            claim = None
        if elements[0] == "CLM":
            claim, lines = elements, Decimal(0)
        elif elements[0] == "SV1" and claim is not None:
            lines += _safe_decimal(_get(elements, 2)) or Decimal(0)
    return errors


def _hl_child_errors(segments: list[list[str]]) -> list[str]:
    """HL04 is 1 exactly when a later HL (in the same transaction) names this one as parent."""
    errors: list[str] = []
    hls: list[list[str]] = []
    for elements in [*segments, ["SE"]]:
        if elements[0] == "HL":
            hls.append(elements)
        elif elements[0] == "SE":
            parents = {_get(hl, 2) for hl in hls}
            errors += [f"claimflow: HL {_get(hl, 1)}: HL04 {_get(hl, 4)!r} but it has "
                       f"{'children' if _get(hl, 1) in parents else 'no children'}"
                       for hl in hls if (_get(hl, 4) == "1") != (_get(hl, 1) in parents)]
            hls = []
    return errors


def _hi_errors(segments: list[list[str]], component: str) -> list[str]:
    return [f"claimflow: HI code {code!r} has a dot (X12 carries ICD-10-CM codes without it)"
            for elements in segments if elements[0] == "HI"
            for composite in elements[1:] for code in composite.split(component)[1:2] if "." in code]
