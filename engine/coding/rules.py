"""Coding checks: the rules a certified coder applies before an encounter may become a claim.

Each rule is a small function ``(chart) -> findings`` registered with the rule ids it
can raise; ``RULES`` is the list the stage runs, in order. ERROR findings send the
encounter to the coding-review queue; WARNINGs travel with it to the claim. A
``Chart`` is the encounter with its codes normalised once and the patient's age at
the date of service, plus the reference data (modifiers, NCCI, MUE, sex/age edits).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import permutations

from engine.coding.findings import error, errors_first, for_work_item, has_errors, registrar, warning
from engine.model.events import (
    CodedEncounter,
    CodedLine,
    CodingReviewItem,
    Encounter,
    Finding,
    Sex,
)
from engine.reference.codesets import (
    DemographicEdit,
    Icd10Info,
    ModifierTable,
    icd10_info,
    icd10_shape_ok,
    is_evaluation_and_management,
    is_external_cause,
    load_demographic_edits,
    modifier_shape_ok,
    normalize_icd10,
    procedure_code_kind,
    with_placeholders,
    with_seventh_character,
)
from engine.reference.ncci import ModifierIndicator, MueAdjudication, MueTable, PtpTable
from engine.runtime.stages import Emit
from engine.settings import Settings
from engine.wire.topics import Topic

MAX_DIAGNOSES = 12  # 837P HI segment: principal + 11
MAX_LINES = 50  # 837P 2400 loop
MAX_MODIFIERS = 4
MAX_DX_POINTERS = 4
#: The pair rules (Excludes1, NCCI PTP) look at the first this many diagnoses and lines: an
#: encounter with more cannot be billed anyway (DX_TOO_MANY, LINES_TOO_MANY), and all the
#: pairs of 10,000 would take minutes, with the stage's partition waiting behind them.
PAIRS_OF_DIAGNOSES = 4 * MAX_DIAGNOSES
PAIRS_OF_LINES = 4 * MAX_LINES


@dataclass(frozen=True)
class CodingReference:
    """The reference data the rules read, loaded once per worker."""

    modifiers: ModifierTable
    ptp: PtpTable
    mue: MueTable
    demographic_edits: tuple[DemographicEdit, ...]
    _edits_by_code: dict[str, tuple[DemographicEdit, ...]] = field(default_factory=dict, init=False, compare=False,
                                                                   repr=False)

    def demographic_edits_for(self, code: str) -> tuple[DemographicEdit, ...]:
        """The sex and age edits that apply to a code, worked out once per code."""
        edits = self._edits_by_code.get(code)
        if edits is None:
            edits = self._edits_by_code[code] = tuple(e for e in self.demographic_edits if e.applies_to(code))
        return edits

    @classmethod
    def load(cls, settings: Settings, today: date | None = None) -> CodingReference:
        today = today or date.today()
        horizon = date(today.year - settings.ncci_history_years, today.month, 1)
        return cls(
            modifiers=ModifierTable.load(settings.modifiers_file),
            ptp=PtpTable.load(settings.ncci_ptp_path, deleted_before=horizon),
            mue=MueTable.load(settings.ncci_mue_path),
            demographic_edits=load_demographic_edits(settings.icd10_demographic_edits_file),
        )


@dataclass(frozen=True, slots=True)
class Line:
    """A procedure line as the rules read it (codes upper-cased and stripped)."""

    index: int
    code: str
    modifiers: tuple[str, ...]
    units: int
    dx_pointers: tuple[int, ...]

    @property
    def element(self) -> str:
        return f"procedures[{self.index}]"


@dataclass(frozen=True, slots=True)
class Chart:
    encounter: Encounter
    diagnoses: tuple[Icd10Info, ...]
    lines: tuple[Line, ...]
    age: int | None  # whole years at the date of service; None if born after it
    sex: Sex
    ref: CodingReference

    @classmethod
    def of(cls, enc: Encounter, ref: CodingReference) -> Chart:
        return cls(
            encounter=enc,
            diagnoses=tuple(icd10_info(normalize_icd10(code)) for code in enc.diagnoses),
            lines=tuple(
                Line(index, p.code.strip().upper(), tuple(m.strip().upper() for m in p.modifiers), p.units,
                     tuple(p.dx_pointers))
                for index, p in enumerate(enc.procedures)
            ),
            age=age_on(enc.patient.birth_date, enc.date_of_service),
            sex=enc.patient.sex,
            ref=ref,
        )


def age_on(birth_date: date, day: date) -> int | None:
    """Age in whole years on ``day`` (a 29 February birthday counts from 1 March)."""
    if birth_date > day:
        return None
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


Rule = Callable[[Chart], Iterable[Finding]]
RULES: list[Rule] = []
#: Every rule id, with the rule function that raises it (README and tests read this).
RULE_IDS: dict[str, str] = {}


rule = registrar(RULES, RULE_IDS)


def _dx_element(index: int, dx: Icd10Info) -> str:
    return f"diagnoses[{index}]={dx.code}"


# --- who, what, for whom -------------------------------------------------------


@rule("REQUIRED_FIELD")
def required_data(chart: Chart) -> Iterator[Finding]:
    """A claim cannot be built without who pays, who billed, and what was done — nor for an
    encounter without its id (one claim per encounter id: two without one would be one)."""
    enc = chart.encounter
    required = {
        "encounter_id": enc.encounter_id,
        "patient.patient_id": enc.patient.patient_id,
        "payer_id": enc.payer_id,
        "member_id": enc.member_id,
        "billing_npi": enc.billing_npi,
        "rendering_npi": enc.rendering_npi,
        "place_of_service": enc.place_of_service,
    }
    for element, value in required.items():
        if not value.strip():
            yield error("REQUIRED_FIELD", f"{element} is missing", element)
    if not enc.diagnoses:
        yield error("REQUIRED_FIELD", "no diagnosis codes", "diagnoses")
    if not enc.procedures:
        yield error("REQUIRED_FIELD", "no procedure lines", "procedures")


# --- ICD-10-CM -------------------------------------------------------------------


@rule("ICD10_FORMAT", "ICD10_UNKNOWN", "ICD10_PLACEHOLDER_MISSING", "ICD10_SEVENTH_CHAR_MISSING",
      "ICD10_NOT_BILLABLE")
def diagnosis_codes(chart: Chart) -> Iterator[Finding]:
    """Every diagnosis exists in ICD-10-CM FY2026 and is billable: a leaf, with its 7th
    character (and the placeholder X before it) where the category requires one."""
    for index, dx in enumerate(chart.diagnoses):
        element = _dx_element(index, dx)
        if dx.billable:
            continue
        if not icd10_shape_ok(dx.code):
            yield error("ICD10_FORMAT", f"{dx.code!r} is not shaped like an ICD-10-CM code", element)
        elif not dx.exists:
            if placeholder := with_placeholders(dx.code):
                yield error("ICD10_PLACEHOLDER_MISSING",
                             f"{dx.code} lacks the placeholder X before its 7th character: {placeholder}", element)
            else:
                yield error("ICD10_UNKNOWN", f"{dx.code} is not in ICD-10-CM FY2026", element)
        elif dx.needs_seventh_character:
            example = with_seventh_character(dx.code, dx.seventh_characters[0])
            yield error("ICD10_SEVENTH_CHAR_MISSING",
                         f"{dx.code} needs a 7th character ({', '.join(dx.seventh_characters)}), e.g. {example}",
                         element)
        else:
            yield error("ICD10_NOT_BILLABLE",
                         f"{dx.code} is a header code, not billable; code to the highest specificity", element)


@rule("ICD10_EXCLUDES1")
def excludes1(chart: Chart) -> Iterator[Finding]:
    """Two diagnoses an Excludes1 note says never go together ("NOT CODED HERE")."""
    known = [(index, dx) for index, dx in enumerate(chart.diagnoses[:PAIRS_OF_DIAGNOSES]) if dx.exists]
    for (i, first), (j, second) in permutations(known, 2):
        if first.code != second.code and any(ref.matches(second.bare) for ref in first.excludes1):
            if i < j or not any(ref.matches(first.bare) for ref in second.excludes1):  # report a mutual pair once
                yield error("ICD10_EXCLUDES1", f"{first.code} Excludes1 {second.code}: they are never coded together",
                             _dx_element(j, second))


@rule("ICD10_MANIFESTATION_PRINCIPAL", "ICD10_EXTERNAL_CAUSE_PRINCIPAL")
def principal_diagnosis(chart: Chart) -> Iterator[Finding]:
    """A manifestation ("code first" the underlying disease) or an external-cause code
    (V00–Y99) says how or where, never why: it cannot be the principal diagnosis."""
    if not chart.diagnoses:
        return
    principal = chart.diagnoses[0]
    element = _dx_element(0, principal)
    if principal.manifestation:
        yield error("ICD10_MANIFESTATION_PRINCIPAL",
                     f"{principal.code} is a manifestation code: code the underlying disease first", element)
    if principal.exists and is_external_cause(principal.code):
        yield error("ICD10_EXTERNAL_CAUSE_PRINCIPAL",
                     f"{principal.code} is an external-cause code: it is never the principal diagnosis", element)


@rule("PATIENT_BORN_AFTER_SERVICE", "ICD10_SEX_CONFLICT", "ICD10_AGE_CONFLICT")
def demographics(chart: Chart) -> Iterator[Finding]:
    """Sex and age edits (Medicare Code Editor kinds) against the patient on the date of
    service — which cannot be before the patient was born."""
    if chart.age is None:
        yield error("PATIENT_BORN_AFTER_SERVICE", "the date of service is before the patient's birth date",
                     "date_of_service")
    for index, dx in enumerate(chart.diagnoses):
        if not dx.exists:
            continue
        for edit in chart.ref.demographic_edits_for(dx.code):
            if edit.sex is not None and chart.sex != Sex.U and chart.sex != edit.sex:
                yield error("ICD10_SEX_CONFLICT", f"{dx.code}: {edit.label}; patient sex is {chart.sex}",
                             _dx_element(index, dx))
            if chart.age is not None and (
                (edit.min_age is not None and chart.age < edit.min_age)
                or (edit.max_age is not None and chart.age > edit.max_age)
            ):
                yield error("ICD10_AGE_CONFLICT",
                            f"{dx.code}: {edit.label}; patient is {chart.age} on the date of service",
                            _dx_element(index, dx))


@rule("DX_DUPLICATE", "DX_TOO_MANY")
def diagnosis_list(chart: Chart) -> Iterator[Finding]:
    """No duplicate diagnoses, and no more than the 837P can carry."""
    seen: dict[str, int] = {}
    for index, dx in enumerate(chart.diagnoses):
        if dx.code in seen:
            yield error("DX_DUPLICATE", f"{dx.code} repeats diagnosis {seen[dx.code] + 1}", _dx_element(index, dx))
        else:
            seen[dx.code] = index
    if len(chart.diagnoses) > MAX_DIAGNOSES:
        yield error("DX_TOO_MANY", f"{len(chart.diagnoses)} diagnoses; a claim carries {MAX_DIAGNOSES}", "diagnoses")


# --- CPT / HCPCS -------------------------------------------------------------------


@rule("PROC_FORMAT")
def procedure_codes(chart: Chart) -> Iterator[Finding]:
    """CPT (5 digits; 4 digits + A/M/U, F or T) or HCPCS Level II (A–V + 4 digits) form."""
    for line in chart.lines:
        if procedure_code_kind(line.code) is None:
            yield error("PROC_FORMAT", f"{line.code!r} is neither a CPT nor a HCPCS Level II code",
                         f"{line.element}.code")


@rule("MODIFIER_TOO_MANY", "MODIFIER_FORMAT", "MODIFIER_UNKNOWN")
def modifiers(chart: Chart) -> Iterator[Finding]:
    """At most four modifiers a line, each a known CPT or HCPCS Level II modifier."""
    for line in chart.lines:
        if len(line.modifiers) > MAX_MODIFIERS:
            yield error("MODIFIER_TOO_MANY", f"{len(line.modifiers)} modifiers; a line carries {MAX_MODIFIERS}",
                         f"{line.element}.modifiers")
        for m_index, modifier in enumerate(line.modifiers):
            element = f"{line.element}.modifiers[{m_index}]={modifier}"
            if not modifier_shape_ok(modifier):
                yield error("MODIFIER_FORMAT", f"{modifier!r} is not a two-character modifier", element)
            elif modifier not in chart.ref.modifiers:
                yield error("MODIFIER_UNKNOWN", f"{modifier} is not a known CPT or HCPCS modifier", element)


@rule("UNITS_INVALID")
def units(chart: Chart) -> Iterator[Finding]:
    for line in chart.lines:
        if line.units < 1:
            yield error("UNITS_INVALID", f"{line.units} units; at least 1", f"{line.element}.units")


@rule("NCCI_PTP", "NCCI_PTP_BYPASSED")
def ncci_ptp(chart: Chart) -> Iterator[Finding]:
    """A column-2 code billed with its column-1 code on the same date of service is
    bundled, unless the edit's modifier indicator is 1 and a bypass modifier is on one
    of the two lines (indicator 0 never bypasses; 9 means no edit)."""
    day = chart.encounter.date_of_service
    for column1, column2 in permutations(chart.lines[:PAIRS_OF_LINES], 2):
        if column1.code == column2.code:
            continue
        edit = chart.ref.ptp.edit_for(column1.code, column2.code, day)
        if edit is None:
            continue
        pair = f"{column2.code} (line {column2.index + 1}) with {column1.code} (line {column1.index + 1})"
        used = bypassing_modifiers(column1, column2, chart.ref.modifiers)
        if edit.modifier_indicator == ModifierIndicator.ALLOWED and used:
            yield warning("NCCI_PTP_BYPASSED", f"NCCI edit {pair} bypassed by modifier {', '.join(used)}; "
                           "documentation must support a distinct service", f"{column2.element}.code")
        else:
            how = ("no modifier may bypass it (indicator 0)" if edit.modifier_indicator == ModifierIndicator.NOT_ALLOWED
                   else "a bypass modifier (59, XE/XS/XP/XU, anatomic, 25…) is required if the service was distinct")
            yield error("NCCI_PTP", f"NCCI PTP edit: {pair} is bundled ({edit.rationale or 'CMS PTP edit'}); {how}",
                         f"{column2.element}.code")


def bypassing_modifiers(column1: Line, column2: Line, modifiers: ModifierTable) -> list[str]:
    """The modifiers NCCI accepts as bypassing a pair (Policy Manual ch. I, E), by their
    kind in the modifier file: 59, XE/XS/XP/XU, 91, 58/78/79 on either line; 24/25/57
    (kind ``em``) only on an E/M line; anatomic modifiers only when the two lines name
    different sites (RT with RT is one site)."""
    def kind(modifier: str) -> str:
        known = modifiers.modifiers.get(modifier)
        return known.kind if known is not None and known.ncci_bypass else ""

    used: set[str] = set()
    for line in (column1, column2):
        for modifier in line.modifiers:
            if kind(modifier) in ("ncci", "repeat", "global") or (
                kind(modifier) == "em" and is_evaluation_and_management(line.code)
            ):
                used.add(modifier)
    sites = [{m for m in line.modifiers if kind(m) == "anatomic"} for line in (column1, column2)]
    if sites[0] != sites[1]:
        used |= sites[0] ^ sites[1]
    return sorted(used)


@rule("MUE_EXCEEDED")
def mue(chart: Chart) -> Iterator[Finding]:
    """Units above the code's MUE: per line (indicator 1) or per date of service (2, 3)."""
    per_day = Counter[str]()
    for line in chart.lines:
        per_day[line.code] += line.units
    reported: set[str] = set()
    for line in chart.lines:
        limit = chart.ref.mue.get(line.code)
        if limit is None:
            continue
        if limit.adjudication == MueAdjudication.LINE:
            if line.units > limit.units:
                yield error("MUE_EXCEEDED", f"{line.code}: {line.units} units on one line; MUE is {limit.units} a line",
                             f"{line.element}.units")
        elif per_day[line.code] > limit.units and line.code not in reported:
            reported.add(line.code)
            yield error("MUE_EXCEEDED",
                         f"{line.code}: {per_day[line.code]} units on the date of service; MUE is {limit.units} a day"
                         f" (indicator {int(limit.adjudication)})", f"{line.element}.units")


# --- linkage -----------------------------------------------------------------------


@rule("DX_POINTER_COUNT", "DX_POINTER_RANGE", "DX_PRINCIPAL_UNLINKED", "DX_UNLINKED")
def dx_pointers(chart: Chart) -> Iterator[Finding]:
    """Each line points at 1–4 diagnoses that exist on the encounter; the principal
    diagnosis (the first) supports at least one line; an unlinked secondary is a warning
    (except external-cause codes, which say how an injury happened, not why a service was done)."""
    n_dx = len(chart.diagnoses)
    linked: set[int] = set()
    for line in chart.lines:
        element = f"{line.element}.dx_pointers"
        if not 1 <= len(line.dx_pointers) <= MAX_DX_POINTERS:
            yield error("DX_POINTER_COUNT", f"{len(line.dx_pointers)} dx pointers; 1 to 4 required", element)
        if len(set(line.dx_pointers)) != len(line.dx_pointers):
            yield error("DX_POINTER_COUNT", "a diagnosis is pointed at twice on one line", element)
        for pointer in line.dx_pointers:
            if 1 <= pointer <= n_dx:
                linked.add(pointer)
            else:
                yield error("DX_POINTER_RANGE", f"pointer {pointer} but {n_dx} diagnoses", element)
    if n_dx and chart.lines and 1 not in linked:
        yield error("DX_PRINCIPAL_UNLINKED",
                     f"the principal diagnosis {chart.diagnoses[0].code} supports no line; list first the "
                     "diagnosis that is the main reason for the visit", "diagnoses[0]")
    for pointer in range(2, n_dx + 1):
        dx = chart.diagnoses[pointer - 1]
        if pointer not in linked and chart.lines and not is_external_cause(dx.code):
            yield warning("DX_UNLINKED", f"{dx.code} supports no line", _dx_element(pointer - 1, dx))


@rule("LINES_TOO_MANY")
def line_count(chart: Chart) -> Iterator[Finding]:
    if len(chart.lines) > MAX_LINES:
        yield error("LINES_TOO_MANY", f"{len(chart.lines)} lines; a claim carries {MAX_LINES}", "procedures")


# --- the stage ---------------------------------------------------------------------


def check_encounter(enc: Encounter, ref: CodingReference, rules: Sequence[Rule] = RULES) -> list[Finding]:
    """All findings of all rules, errors first (stable within each severity)."""
    return check_chart(Chart.of(enc, ref), rules)


def check_chart(chart: Chart, rules: Sequence[Rule] = RULES) -> list[Finding]:
    findings = [finding for check in rules for finding in check(chart)]
    return errors_first(findings)


def review_item_id(encounter_id: str) -> str:
    """One coder work item per encounter (its revisions share the id)."""
    return "CR-" + hashlib.blake2b(encounter_id.encode(), digest_size=8).hexdigest().upper()


def drawn_for_audit(encounter_id: str, audit_rate: float) -> bool:
    """A deterministic sample: the same encounter is always in or out, on every worker."""
    digest = hashlib.blake2b(f"audit:{encounter_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < audit_rate * 2**64


def code_encounter(
    enc: Encounter,
    encounter_bytes: bytes,
    ref: CodingReference,
    now: datetime,
    audit_rate: float = 0.0,
    review_work_item_id: str | None = None,
    revision: int = 1,
) -> list[Emit]:
    """The coding stage for one encounter: a coded event, or a coder work item; a clean
    encounter drawn for audit goes on to the claim *and* to the coders, flagged as audit.

    ``review_work_item_id`` is set when a coder's correction is re-checked: the coded
    event names the item it resolves, and a correction that still fails opens
    ``revision`` of the same item."""
    chart = Chart.of(enc, ref)
    findings = check_chart(chart)
    if has_errors(findings):
        item = CodingReviewItem(
            work_item_id=review_work_item_id or review_item_id(enc.encounter_id),
            encounter_id=enc.encounter_id,
            findings=for_work_item(findings),
            is_audit=False,
            encounter=encounter_bytes,
            created_at=now,
            revision=revision,
        )
        return [Emit(Topic.CODING_REVIEW, enc.encounter_id, item)]
    emits = [Emit(Topic.CODED, enc.encounter_id, coded_event(chart, findings, now, review_work_item_id))]
    if review_work_item_id is None and drawn_for_audit(enc.encounter_id, audit_rate):
        audit = CodingReviewItem(
            work_item_id=review_item_id(enc.encounter_id),
            encounter_id=enc.encounter_id,
            findings=for_work_item(findings),
            is_audit=True,
            encounter=encounter_bytes,
            created_at=now,
            revision=1,
        )
        emits.append(Emit(Topic.CODING_REVIEW, enc.encounter_id, audit))
    return emits


def coded_event(chart: Chart, findings: list[Finding], now: datetime, review_work_item_id: str | None
                ) -> CodedEncounter:
    """The coded encounter, with the codes as the rules read them (normalised)."""
    enc = chart.encounter
    return CodedEncounter(
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
        diagnoses=[dx.code for dx in chart.diagnoses],
        lines=[
            CodedLine(line_number=line.index + 1, procedure_code=line.code, modifiers=list(line.modifiers),
                      units=line.units, dx_pointers=list(line.dx_pointers))
            for line in chart.lines
        ],
        findings=findings,
        coded_at=now,
        review_work_item_id=review_work_item_id,
        patient_first_name=enc.patient.first_name,
        patient_last_name=enc.patient.last_name,
        patient_address=enc.patient_address,
        subscriber=enc.subscriber,
    )
