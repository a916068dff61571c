"""X12 837P (005010X222A1) written from our submitted claims, and the rules for what an 837P
can express (the scrubber is at least as strict): the claims leave as a clearinghouse
would receive them. Layout and library choice: docs/x12.md."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import astuple, replace
from datetime import datetime
from decimal import Decimal

from engine.model.codes import SELF
from engine.model.events import ClaimLine, ClaimSubmitted, Provider, Subscriber
from engine.settings import Settings
from engine.x12.segments import (
    address,
    check_control_number,
    check_envelope_settings,
    composite,
    d8,
    hhmm,
    interchange,
    money,
    seg,
    utc,
    with_se,
)

IMPLEMENTATION = "005010X222A1"
MAX_CLAIMS_PER_TRANSACTION = 5000
MAX_CLAIMS_PER_PATIENT_LOOP = 100  # loop 2300 repeats at most 100 times per 2000B/2000C
MAX_DIAGNOSES = 12  # one HI segment (max use 1) with HI01..HI12
MAX_MODIFIERS = 4
MAX_POINTERS = 4
MAX_LINES = 50
FREQUENCIES = frozenset({"1", "7", "8"})


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
    check_control_number(control_number)
    if max_claims_per_transaction < 1:
        raise ValueError("max_claims_per_transaction must be ≥ 1")
    check_envelope_settings(settings)
    if not claims:
        raise ValueError("an 837P needs at least one claim")
    problems = [problem for claim in claims for problem in claim_problems(claim)]
    if problems:
        raise ValueError("claims not expressible in 837P: " + "; ".join(problems))
    stamp = utc(created)
    chunks = _chunks(_grouped(claims), max_claims_per_transaction)
    transactions = [_transaction(chunk, settings, n, control_number, stamp) for n, chunk in enumerate(chunks, 1)]
    return interchange("HC", IMPLEMENTATION, settings.x12_sender_id, settings.x12_receiver_id, settings.x12_usage,
                       control_number, stamp, transactions)


# --- what an 837P can express ----------------------------------------------------


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


def _is_self(claim: ClaimSubmitted) -> bool:
    return claim.subscriber is None or claim.subscriber.relationship == SELF


def _renders_separately(claim: ClaimSubmitted) -> bool:
    """2310B is written only when the rendering provider is not the billing provider."""
    billing_npi = claim.billing_provider.npi if claim.billing_provider else claim.billing_npi
    rendering_npi = claim.rendering_provider.npi if claim.rendering_provider else claim.rendering_npi
    return bool(rendering_npi) and rendering_npi != billing_npi


def insured(claim: ClaimSubmitted) -> Subscriber:
    """The 2010BA person (the 835 names the same one). A dependent's subscriber as recorded;
    for a self-subscribed claim the patient (relationship 18), any blank patient field taken
    from the subscriber record, the group number from it."""
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

_Key = tuple[object, ...]
_Patients = dict[_Key | None, list[ClaimSubmitted]]  # patient (None: the subscriber) → claims
#: billing provider → subscriber → patient → claims, in first-seen order.
_Tree = dict[_Key, dict[_Key, _Patients]]


def _subscriber_key(claim: ClaimSubmitted) -> _Key:
    """Dependents of one subscriber share a 2000B whatever their relationship (PAT01)."""
    person = astuple(replace(insured(claim), relationship=""))
    return (claim.payer_id, claim.payer_name, claim.claim_filing_indicator, claim.member_id, _is_self(claim), person)


def _patient_key(claim: ClaimSubmitted) -> _Key | None:
    if _is_self(claim):
        return None
    place = astuple(claim.patient_address) if claim.patient_address else None
    return (claim.patient_first_name, claim.patient_last_name, claim.patient_birth_date, claim.patient_sex, place)


def _tree(claims: Sequence[ClaimSubmitted]) -> _Tree:
    tree: _Tree = {}
    for claim in claims:
        assert claim.billing_provider is not None  # checked by claim_problems
        billing = astuple(claim.billing_provider)
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
    return with_se([
        seg("ST", "837", st_control, IMPLEMENTATION),
        seg("BHT", "0019", "00", f"{control_number}-{number}", d8(created), hhmm(created), "CH"),
        seg("NM1", "41", "2", settings.x12_submitter_name, "", "", "", "", "46", settings.x12_sender_id),
        seg("PER", "IC", settings.x12_submitter_name, "TE", settings.x12_submitter_phone),
        seg("NM1", "40", "2", settings.x12_receiver_name, "", "", "", "", "46", settings.x12_receiver_id),
        *_hierarchy(claims),
    ], st_control)


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
        provider = _first_claim(next(iter(subscribers.values()))).billing_provider
        assert provider is not None  # checked by claim_problems
        out += [seg("HL", billing_hl, "", "20", "1"), *_billing_loop(provider)]
        for patients in subscribers.values():
            out += _subscriber_hls(patients, billing_hl, hl)
    return out


def _first_claim(patients: _Patients) -> ClaimSubmitted:
    return next(iter(patients.values()))[0]


def _subscriber_hls(patients: _Patients, billing_hl: str, hl: _HlCounter) -> list[str]:
    """A self-subscriber's 2000B with its claims (repeated past 100 claims, the 2300 limit),
    or one 2000B with a 2000C per dependent (likewise repeated)."""
    sample = _first_claim(patients)
    out: list[str] = []
    if _is_self(sample):
        for part in _chunks(patients[None], MAX_CLAIMS_PER_PATIENT_LOOP):
            out += [seg("HL", hl.next(), billing_hl, "22", "0"), *_subscriber_loop(sample)]
            out += [s for claim in part for s in _claim_loop(claim)]
        return out
    subscriber_hl = hl.next()
    out += [seg("HL", subscriber_hl, billing_hl, "22", "1"), *_subscriber_loop(sample)]
    for group in patients.values():
        for part in _chunks(group, MAX_CLAIMS_PER_PATIENT_LOOP):
            out += [seg("HL", hl.next(), subscriber_hl, "23", "0"), *_patient_loop(part[0])]
            out += [s for claim in part for s in _claim_loop(claim)]
    return out


# --- loops -----------------------------------------------------------------------


def _billing_loop(provider: Provider) -> list[str]:
    """2000A PRV (when a taxonomy is known) and 2010AA."""
    out = [seg("PRV", "BI", "PXC", provider.taxonomy)] if provider.taxonomy else []
    out += [_nm1("85", provider.entity_type, provider.name, provider.first_name, "XX", provider.npi),
            *address(provider.address)]
    out.append(seg("REF", "EI", provider.tax_id))
    return out


def _subscriber_loop(claim: ClaimSubmitted) -> list[str]:
    """SBR, 2010BA subscriber, 2010BB payer."""
    person = insured(claim)
    self_ = _is_self(claim)
    out = [seg("SBR", "P", SELF if self_ else "", person.group_number or "", "", "", "", "", "",
               claim.claim_filing_indicator),
           _nm1("IL", "1", person.last_name, person.first_name, "MI", claim.member_id),
           *address(person.address)]
    if person.birth_date is not None:
        out.append(seg("DMG", "D8", d8(person.birth_date), person.sex or "U"))
    out.append(_nm1("PR", "2", claim.payer_name, "", "PI", claim.payer_id))
    return out


def _patient_loop(claim: ClaimSubmitted) -> list[str]:
    """2000C PAT and 2010CA for a dependent (birth date and address checked beforehand)."""
    assert claim.subscriber is not None and claim.patient_birth_date is not None  # a dependent, checked
    return [
        seg("PAT", claim.subscriber.relationship),
        _nm1("QC", "1", claim.patient_last_name, claim.patient_first_name, "", ""),
        *address(claim.patient_address),
        seg("DMG", "D8", d8(claim.patient_birth_date), claim.patient_sex or "U"),
    ]


def _claim_loop(claim: ClaimSubmitted) -> list[str]:
    """2300 CLM, REF, HI, 2310B, and the 2400 lines."""
    location = composite(claim.place_of_service, "B", claim.frequency_code)
    total = sum((line.charge for line in claim.lines), Decimal(0))
    out = [seg("CLM", claim.patient_control_number, money(total), "", "", location, "Y", "A", "Y", "Y")]
    if claim.frequency_code in {"7", "8"}:
        out.append(seg("REF", "F8", claim.original_claim_id or ""))
    if claim.patient_id:
        out.append(seg("REF", "EA", claim.patient_id))
    out.append(_hi(claim.diagnoses))
    if _renders_separately(claim):
        assert claim.rendering_provider is not None  # checked by claim_problems
        out += _rendering_loop(claim.rendering_provider)
    for number, line in enumerate(claim.lines, 1):
        out += _line_loop(line, number)
    return out


def _hi(diagnoses: Sequence[str]) -> str:
    """One HI: ABK principal, ABF for the rest (the guide allows a single HI with 12)."""
    codes = [code.replace(".", "").strip().upper() for code in diagnoses]
    return seg("HI", *(composite("ABK" if i == 0 else "ABF", code) for i, code in enumerate(codes)))


def _rendering_loop(provider: Provider) -> list[str]:
    out = [_nm1("82", provider.entity_type, provider.name, provider.first_name, "XX", provider.npi)]
    if provider.taxonomy:
        out.append(seg("PRV", "PE", "PXC", provider.taxonomy))
    return out


def _line_loop(line: ClaimLine, number: int) -> list[str]:
    procedure = composite("HC", line.procedure_code, *line.modifiers)
    pointers = composite(*(str(p) for p in line.dx_pointers))
    return [
        seg("LX", str(number)),
        seg("SV1", procedure, money(line.charge), "UN", str(line.units), "", "", pointers),
        seg("DTP", "472", "D8", d8(line.date_of_service)),
    ]


def _nm1(entity: str, entity_type: str, name: str, first: str, qualifier: str, identifier: str) -> str:
    first_name = first if entity_type == "1" else ""
    return seg("NM1", entity, entity_type, name, first_name, "", "", "", qualifier, identifier)
