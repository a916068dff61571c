"""X12 837P (005010X222A1) read back into claims: the round trip that shows our 837 carries
every field X12 has (what it lacks reads as placeholders, listed in docs/x12.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from engine.model.codes import SELF
from engine.model.events import Address, ClaimLine, ClaimSubmitted, Provider, Subscriber
from engine.reference.codesets import normalize_icd10
from engine.x12.segments import get, parse_amount, parse_date, split


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
    file using the same segments), in file order. The fields X12 does not carry read as
    placeholders (docs/x12.md, "837P in")."""
    segments, component = split(text)
    reader = _Reader(component=component)
    for elements in segments:
        handler = _HANDLERS.get(elements[0])
        if handler is not None:
            handler(reader, elements)
    _flush(reader)
    return reader.claims


def _on_bht(reader: _Reader, e: list[str]) -> None:
    moment = datetime.strptime(get(e, 4) + (get(e, 5) or "0000")[:4], "%Y%m%d%H%M")
    reader.created = moment.replace(tzinfo=UTC)


def _on_hl(reader: _Reader, e: list[str]) -> None:
    _flush(reader)
    level = get(e, 3)
    if level == "20":
        reader.billing = _Person()
        reader.target = reader.billing
    elif level == "22":
        reader.subscriber, reader.payer, reader.sbr = _Person(), _Person(), []
        reader.patient, reader.relationship = None, SELF
    elif level == "23":
        reader.patient = _Person()


def _on_nm1(reader: _Reader, e: list[str]) -> None:
    entity = get(e, 1)
    person = {"85": reader.billing, "IL": reader.subscriber, "PR": reader.payer}.get(entity)
    if entity == "QC" and reader.patient is not None:
        person = reader.patient
    if entity == "82" and reader.draft is not None:
        person = reader.draft.rendering = _Person()
    reader.target = person
    if person is not None:
        person.entity_type, person.last_name, person.first_name = get(e, 2), get(e, 3), get(e, 4)
        person.identifier = get(e, 9)


def _on_n3(reader: _Reader, e: list[str]) -> None:
    if reader.target is not None:
        reader.target.address = Address(line1=get(e, 1), city="", state="", postal_code="")


def _on_n4(reader: _Reader, e: list[str]) -> None:
    if reader.target is not None and reader.target.address is not None:
        address = reader.target.address
        address.city, address.state, address.postal_code = get(e, 1), get(e, 2), get(e, 3)


def _on_dmg(reader: _Reader, e: list[str]) -> None:
    if reader.target is not None and get(e, 1) == "D8":
        reader.target.birth_date = parse_date(get(e, 2))
        reader.target.sex = get(e, 3) or "U"


def _on_prv(reader: _Reader, e: list[str]) -> None:
    if get(e, 1) == "BI":
        reader.billing.taxonomy = get(e, 3)
    elif get(e, 1) == "PE" and reader.draft is not None and reader.draft.rendering is not None:
        reader.draft.rendering.taxonomy = get(e, 3)


def _on_ref(reader: _Reader, e: list[str]) -> None:
    if reader.draft is not None:
        reader.draft.refs.setdefault(get(e, 1), get(e, 2))
    elif reader.target is reader.billing and get(e, 1) in {"EI", "SY"}:
        reader.billing.tax_id = get(e, 2)


def _on_sbr(reader: _Reader, e: list[str]) -> None:
    reader.sbr = e


def _on_pat(reader: _Reader, e: list[str]) -> None:
    reader.relationship = get(e, 1)


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
        reader.draft.lines.append(_Line(int(get(e, 1)), "", [], Decimal(0), 0, []))


def _on_sv1(reader: _Reader, e: list[str]) -> None:
    if reader.draft is None or not reader.draft.lines:
        return
    line = reader.draft.lines[-1]
    procedure = get(e, 1).split(reader.component)
    line.procedure, line.modifiers = get(procedure, 1), [m for m in procedure[2:6] if m]
    line.charge = parse_amount(get(e, 2))
    line.units = int(parse_amount(get(e, 4) or "1"))
    line.pointers = [int(p) for p in get(e, 7).split(reader.component) if p]


def _on_dtp(reader: _Reader, e: list[str]) -> None:
    if reader.draft is not None and reader.draft.lines and get(e, 1) == "472":
        reader.draft.lines[-1].service_date = parse_date(get(e, 3)[:8])


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
    location = get(d.clm, 5).split(component)
    billing = d.billing.provider(with_address=True)
    rendering = d.rendering.provider(with_address=False) if d.rendering else billing
    lines = [_claim_line(line) for line in d.lines]
    return ClaimSubmitted(
        claim_id=get(d.clm, 1), encounter_id="", encounter_occurred_at=d.created,
        patient_control_number=get(d.clm, 1), frequency_code=get(location, 2),
        original_claim_id=d.refs.get("F8"), payer_id=d.payer.identifier, member_id=d.subscriber.identifier,
        patient_id=d.refs.get("EA", ""), billing_npi=billing.npi, rendering_npi=rendering.npi,
        date_of_service=min(line.date_of_service for line in lines), place_of_service=get(location, 0),
        diagnoses=d.diagnoses, lines=lines, total_charge=parse_amount(get(d.clm, 2)), submitted_at=d.created,
        billing_provider=billing, rendering_provider=rendering, payer_name=d.payer.last_name,
        claim_filing_indicator=get(d.sbr, 9), subscriber=_subscriber_from(d),
        patient_first_name=d.patient.first_name, patient_last_name=d.patient.last_name,
        patient_birth_date=d.patient.birth_date, patient_sex=d.patient.sex, patient_address=d.patient.address,
    )


def _subscriber_from(d: _Draft) -> Subscriber:
    person = d.subscriber
    return Subscriber(relationship=d.relationship, first_name=person.first_name, last_name=person.last_name,
                      birth_date=person.birth_date, sex=person.sex, address=person.address,
                      group_number=get(d.sbr, 3) or None)


def _claim_line(line: _Line) -> ClaimLine:
    if line.service_date is None:
        raise ValueError(f"service line {line.number} has no DTP*472 date of service")
    return ClaimLine(line_number=line.number, procedure_code=line.procedure, modifiers=line.modifiers,
                     units=line.units, charge=line.charge, dx_pointers=line.pointers,
                     date_of_service=line.service_date)
