"""Coding checks: the rules a coder applies before an encounter may become a claim.

Each rule is a small function ``(encounter) -> findings``; ``RULES`` is the list the
stage runs, in order. Add a rule by writing a function and appending it. ERROR
findings send the encounter to the coding-review queue; WARNINGs travel with it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Callable, Iterable, Iterator, Sequence

from engine.codesets import (
    icd10_billable,
    icd10_exists,
    icd10_shape_ok,
    modifier_shape_ok,
    normalize_icd10,
    procedure_code_kind,
)
from engine.events import (
    CodedEncounter,
    CodedLine,
    CodingReviewItem,
    Encounter,
    Finding,
    Severity,
)
from engine.pipeline import Emit, SourceMessage

Rule = Callable[[Encounter], Iterable[Finding]]

MAX_DIAGNOSES = 12  # 837P HI segment: principal + 11
MAX_LINES = 50  # 837P 2400 loop
MAX_MODIFIERS = 4
MAX_DX_POINTERS = 4


def _error(rule_id: str, message: str, element: str) -> Finding:
    return Finding(rule_id=rule_id, severity=Severity.ERROR, message=message, element=element)


def required_data(enc: Encounter) -> Iterator[Finding]:
    """A claim cannot be built without who pays, who billed, and what was done."""
    required = {
        "patient.patient_id": enc.patient.patient_id,
        "payer_id": enc.payer_id,
        "member_id": enc.member_id,
        "billing_npi": enc.billing_npi,
        "rendering_npi": enc.rendering_npi,
        "place_of_service": enc.place_of_service,
    }
    for element, value in required.items():
        if not value.strip():
            yield _error("REQUIRED_FIELD", f"{element} is missing", element)
    if not enc.diagnoses:
        yield _error("REQUIRED_FIELD", "no diagnosis codes", "diagnoses")
    if not enc.procedures:
        yield _error("REQUIRED_FIELD", "no procedure lines", "procedures")


def diagnosis_codes(enc: Encounter) -> Iterator[Finding]:
    """Every diagnosis exists in ICD-10-CM FY2026 and is billable (a leaf code)."""
    for index, raw in enumerate(enc.diagnoses):
        code = normalize_icd10(raw)
        element = f"diagnoses[{index}]={code}"
        if not icd10_shape_ok(code):
            yield _error("ICD10_FORMAT", f"{code!r} is not shaped like an ICD-10-CM code", element)
        elif not icd10_exists(code):
            yield _error("ICD10_UNKNOWN", f"{code} is not in ICD-10-CM FY2026", element)
        elif not icd10_billable(code):
            yield _error(
                "ICD10_NOT_BILLABLE", f"{code} is a header code; code to the highest specificity", element
            )


def diagnosis_list(enc: Encounter) -> Iterator[Finding]:
    """No duplicate diagnoses, and no more than the 837P can carry."""
    seen: dict[str, int] = {}
    for index, raw in enumerate(enc.diagnoses):
        code = normalize_icd10(raw)
        if code in seen:
            yield _error("DX_DUPLICATE", f"{code} repeats diagnosis {seen[code] + 1}", f"diagnoses[{index}]={code}")
        else:
            seen[code] = index
    if len(enc.diagnoses) > MAX_DIAGNOSES:
        yield _error("DX_TOO_MANY", f"{len(enc.diagnoses)} diagnoses; a claim carries {MAX_DIAGNOSES}", "diagnoses")


def procedure_codes(enc: Encounter) -> Iterator[Finding]:
    """CPT (5 digits; 4 digits + F or T) or HCPCS Level II (A–V + 4 digits) form."""
    for index, proc in enumerate(enc.procedures):
        code = proc.code.strip().upper()
        if procedure_code_kind(code) is None:
            yield _error(
                "PROC_FORMAT", f"{code!r} is neither a CPT nor a HCPCS Level II code", f"procedures[{index}].code"
            )


def modifiers(enc: Encounter) -> Iterator[Finding]:
    for index, proc in enumerate(enc.procedures):
        if len(proc.modifiers) > MAX_MODIFIERS:
            yield _error(
                "MODIFIER_TOO_MANY", f"{len(proc.modifiers)} modifiers; a line carries {MAX_MODIFIERS}",
                f"procedures[{index}].modifiers",
            )
        for m_index, modifier in enumerate(proc.modifiers):
            if not modifier_shape_ok(modifier.strip().upper()):
                yield _error(
                    "MODIFIER_FORMAT", f"{modifier!r} is not a two-character modifier",
                    f"procedures[{index}].modifiers[{m_index}]",
                )


def units(enc: Encounter) -> Iterator[Finding]:
    for index, proc in enumerate(enc.procedures):
        if proc.units < 1:
            yield _error("UNITS_INVALID", f"{proc.units} units; at least 1", f"procedures[{index}].units")


def dx_pointers(enc: Encounter) -> Iterator[Finding]:
    """Each line points at 1–4 diagnoses that exist on the encounter."""
    for index, proc in enumerate(enc.procedures):
        element = f"procedures[{index}].dx_pointers"
        if not 1 <= len(proc.dx_pointers) <= MAX_DX_POINTERS:
            yield _error("DX_POINTER_COUNT", f"{len(proc.dx_pointers)} dx pointers; 1 to 4 required", element)
        for pointer in proc.dx_pointers:
            if not 1 <= pointer <= len(enc.diagnoses):
                yield _error(
                    "DX_POINTER_RANGE", f"pointer {pointer} but {len(enc.diagnoses)} diagnoses", element
                )


def line_count(enc: Encounter) -> Iterator[Finding]:
    if len(enc.procedures) > MAX_LINES:
        yield _error("LINES_TOO_MANY", f"{len(enc.procedures)} lines; a claim carries {MAX_LINES}", "procedures")


RULES: list[Rule] = [
    required_data,
    diagnosis_codes,
    diagnosis_list,
    procedure_codes,
    modifiers,
    units,
    dx_pointers,
    line_count,
]


def check_encounter(enc: Encounter, rules: Sequence[Rule] = RULES) -> list[Finding]:
    """All findings of all rules, errors first (stable within each severity)."""
    findings = [finding for rule in rules for finding in rule(enc)]
    return sorted(findings, key=lambda f: f.severity != Severity.ERROR)


def review_item_id(encounter_id: str) -> str:
    return "CR-" + hashlib.blake2b(encounter_id.encode(), digest_size=8).hexdigest().upper()


def code_encounter(enc: Encounter, message: SourceMessage, now: datetime) -> Emit:
    """The coding stage for one encounter: a coded event, or a coder work item."""
    findings = check_encounter(enc)
    if any(f.severity == Severity.ERROR for f in findings):
        item = CodingReviewItem(
            work_item_id=review_item_id(enc.encounter_id),
            encounter_id=enc.encounter_id,
            findings=findings,
            is_audit=False,
            encounter=message.value or b"",
            created_at=now,
        )
        return Emit("coding-review", enc.encounter_id, item)
    coded = CodedEncounter(
        encounter_id=enc.encounter_id,
        encounter_occurred_at=enc.occurred_at,
        patient_id=enc.patient.patient_id,
        patient_birth_date=enc.patient.birth_date,
        patient_sex=str(enc.patient.sex),
        payer_id=enc.payer_id,
        member_id=enc.member_id,
        billing_npi=enc.billing_npi,
        rendering_npi=enc.rendering_npi,
        date_of_service=enc.date_of_service,
        place_of_service=enc.place_of_service,
        diagnoses=[normalize_icd10(code) for code in enc.diagnoses],
        lines=[
            CodedLine(
                line_number=index,
                procedure_code=proc.code.strip().upper(),
                modifiers=[m.strip().upper() for m in proc.modifiers],
                units=proc.units,
                dx_pointers=list(proc.dx_pointers),
            )
            for index, proc in enumerate(enc.procedures, start=1)
        ],
        findings=findings,
        coded_at=now,
    )
    return Emit("coded", enc.encounter_id, coded)
