"""engine.coding.rules: the rule registry, the Chart, and the coding stage (coded / review / audit).

Each rule's own passing and failing cases are tables in ``test_coding_rules.py``; this
file checks the rules through ``check_encounter`` as the stage runs them, and the stage.
"""

from __future__ import annotations

import copy
from datetime import date

import pytest

from engine.coding import rules as coding
from engine.coding.findings import FINDINGS_LISTED
from engine.coding.rules import (
    MAX_DIAGNOSES,
    MAX_DX_POINTERS,
    MAX_LINES,
    MAX_MODIFIERS,
    RULE_IDS,
    RULES,
    Chart,
    age_on,
    check_chart,
    check_encounter,
    code_encounter,
    coded_event,
    drawn_for_audit,
    has_errors,
    review_item_id,
)
from engine.model.events import CodedEncounter, CodingReviewItem, Encounter, Finding, Procedure, Severity, Sex
from engine.reference.codesets import normalize_icd10
from engine.wire.topics import Table
from engine.worker.stages import STAGE

# Billable FY2026 ICD-10-CM codes, all distinct, none excluding another, none sex- or age-edited.
BILLABLE = ["E11.9", "I10", "E78.5", "J06.9", "J02.9", "Z00.00", "Z23", "M54.50", "M17.11", "R07.9", "N39.0",
            "S93.401A", "M62.81", "E11.65", "F41.1"]


def proc(code: str = "99213", modifiers: list[str] | None = None, units: int = 1,
         dx_pointers: list[int] | None = None) -> Procedure:
    return Procedure(code, modifiers or [], units, dx_pointers if dx_pointers is not None else [1])


def test_the_valid_encounter_has_no_findings(make_encounter, coding_ref):
    assert check_encounter(make_encounter(), coding_ref) == []


def test_rules_list_runs_every_rule_in_order():
    assert RULES == [coding.required_data, coding.diagnosis_codes, coding.excludes1, coding.principal_diagnosis,
                     coding.demographics, coding.diagnosis_list, coding.procedure_codes, coding.modifiers,
                     coding.units, coding.ncci_ptp, coding.mue, coding.dx_pointers, coding.line_count]


#: The rule ids as documented (README, coder guide): a rule added or renamed shows up here.
DOCUMENTED_RULE_IDS = {
    "REQUIRED_FIELD", "ICD10_FORMAT", "ICD10_UNKNOWN", "ICD10_PLACEHOLDER_MISSING", "ICD10_SEVENTH_CHAR_MISSING",
    "ICD10_NOT_BILLABLE", "ICD10_EXCLUDES1", "ICD10_MANIFESTATION_PRINCIPAL", "ICD10_EXTERNAL_CAUSE_PRINCIPAL",
    "PATIENT_BORN_AFTER_SERVICE", "ICD10_SEX_CONFLICT", "ICD10_AGE_CONFLICT", "DX_DUPLICATE", "DX_TOO_MANY",
    "PROC_FORMAT", "MODIFIER_TOO_MANY",
    "MODIFIER_FORMAT", "MODIFIER_UNKNOWN", "UNITS_INVALID", "NCCI_PTP", "NCCI_PTP_BYPASSED", "MUE_EXCEEDED",
    "DX_POINTER_COUNT", "DX_POINTER_RANGE", "DX_PRINCIPAL_UNLINKED", "DX_UNLINKED", "LINES_TOO_MANY",
}


def test_rule_ids_name_registered_rule_functions():
    assert set(RULE_IDS) == DOCUMENTED_RULE_IDS
    assert set(RULE_IDS.values()) == {rule.__name__ for rule in RULES}
    assert RULE_IDS["NCCI_PTP_BYPASSED"] == RULE_IDS["NCCI_PTP"] == "ncci_ptp"
    assert RULE_IDS["ICD10_SEX_CONFLICT"] == RULE_IDS["ICD10_AGE_CONFLICT"] == "demographics"
    assert RULE_IDS["PATIENT_BORN_AFTER_SERVICE"] == "demographics"


# --- the chart -------------------------------------------------------------------------


def test_chart_normalises_codes_once_and_computes_age(make_encounter, coding_ref):
    enc = make_encounter(diagnoses=["e119", " M5450 "], procedures=[proc(" j3301 ", [" rt", "xs "], 2, [1, 2])],
                         patient={"birth_date": date(1958, 7, 14)}, date_of_service=date(2026, 7, 13))
    chart = Chart.of(enc, coding_ref)
    assert [dx.code for dx in chart.diagnoses] == ["E11.9", "M54.50"]
    assert all(dx.billable for dx in chart.diagnoses)
    (line,) = chart.lines
    assert (line.index, line.code, line.modifiers, line.units, line.dx_pointers) == (0, "J3301", ("RT", "XS"), 2,
                                                                                      (1, 2))
    assert line.element == "procedures[0]"
    assert chart.age == 67  # the day before the 68th birthday
    assert chart.sex == Sex.F and chart.ref is coding_ref and chart.encounter is enc


@pytest.mark.parametrize(
    "birth, day, age",
    [
        pytest.param(date(2000, 5, 10), date(2026, 5, 9), 25, id="day-before-birthday"),
        pytest.param(date(2000, 5, 10), date(2026, 5, 10), 26, id="on-birthday"),
        pytest.param(date(2008, 2, 29), date(2026, 2, 28), 17, id="leapling-28-feb"),
        pytest.param(date(2008, 2, 29), date(2026, 3, 1), 18, id="leapling-counts-from-1-march"),
        pytest.param(date(2008, 2, 29), date(2028, 2, 29), 20, id="leapling-on-29-feb"),
        pytest.param(date(2026, 2, 27), date(2026, 2, 27), 0, id="born-that-day"),
        pytest.param(date(2026, 2, 28), date(2026, 2, 27), None, id="born-after-the-date-of-service"),
    ],
)
def test_age_on(birth, day, age):
    assert age_on(birth, day) == age


# --- each rule id through check_encounter, on the valid encounter with one fault -------


@pytest.mark.parametrize(
    "field, element",
    [("payer_id", "payer_id"), ("member_id", "member_id"), ("billing_npi", "billing_npi"),
     ("rendering_npi", "rendering_npi"), ("place_of_service", "place_of_service")],
)
@pytest.mark.parametrize("blank", ["", "   "])
def test_required_field(make_encounter, errors, field, element, blank):
    assert errors(make_encounter(**{field: blank})) == [("REQUIRED_FIELD", element)]


def test_required_patient_id(make_encounter, errors):
    assert errors(make_encounter(patient={"patient_id": ""})) == [("REQUIRED_FIELD", "patient.patient_id")]


def test_required_diagnoses(make_encounter, errors):
    found = errors(make_encounter(diagnoses=[]))
    assert found[0] == ("REQUIRED_FIELD", "diagnoses")
    # Every pointer now points at nothing, which the pointer rule also reports.
    assert {rule for rule, _ in found[1:]} == {"DX_POINTER_RANGE"}


def test_patient_born_after_the_date_of_service(make_encounter, errors):
    enc = make_encounter(patient={"birth_date": date(2026, 2, 28)})  # the day after the date of service
    assert errors(enc) == [("PATIENT_BORN_AFTER_SERVICE", "date_of_service")]
    assert errors(make_encounter(patient={"birth_date": date(2026, 2, 27)})) == []  # born that day: age 0


def test_required_procedures(make_encounter, errors):
    assert errors(make_encounter(procedures=[])) == [("REQUIRED_FIELD", "procedures")]


@pytest.mark.parametrize("bad", ["XYZ", "XX9.9", "1234", "E"])
def test_icd10_format(make_encounter, errors, bad):
    expected = [("ICD10_FORMAT", f"diagnoses[1]={normalize_icd10(bad)}")]
    assert errors(make_encounter(diagnoses=["E11.9", bad])) == expected


def test_icd10_unknown(make_encounter, errors):
    assert errors(make_encounter(diagnoses=["Z99.999", "I10"])) == [("ICD10_UNKNOWN", "diagnoses[0]=Z99.999")]


@pytest.mark.parametrize(
    "header, rule_id, element",
    [("M54.5", "ICD10_NOT_BILLABLE", "M54.5"), ("e11", "ICD10_NOT_BILLABLE", "E11"),
     # A non-billable code that only lacks its 7th character now has its own rule.
     ("S52.501", "ICD10_SEVENTH_CHAR_MISSING", "S52.501")],
)
def test_icd10_not_billable(make_encounter, errors, header, rule_id, element):
    assert errors(make_encounter(diagnoses=[header, "I10"])) == [(rule_id, f"diagnoses[0]={element}")]


def test_undotted_and_lower_case_billable_codes_pass(make_encounter, errors):
    assert errors(make_encounter(diagnoses=["e119", "M5450"])) == []


def test_dx_duplicate_after_normalisation(make_encounter, errors):
    assert errors(make_encounter(diagnoses=["E11.9", "I10", "e119"])) == [("DX_DUPLICATE", "diagnoses[2]=E11.9")]


def test_dx_too_many(make_encounter, errors):
    assert errors(make_encounter(diagnoses=BILLABLE[: MAX_DIAGNOSES + 1])) == [("DX_TOO_MANY", "diagnoses")]
    assert errors(make_encounter(diagnoses=BILLABLE[:MAX_DIAGNOSES])) == []


@pytest.mark.parametrize("bad", ["9921", "W1234", "99213X", "ABCDE"])
def test_proc_format(make_encounter, errors, bad):
    enc = make_encounter(procedures=[proc("99213"), proc(bad)])
    assert errors(enc) == [("PROC_FORMAT", "procedures[1].code")]


def test_procedure_code_case_and_space_are_forgiven(make_encounter, errors):
    assert errors(make_encounter(procedures=[proc(" j3301 ", ["rt"])])) == []


@pytest.mark.parametrize("bad", ["2", "255", "R-", ""])
def test_modifier_format(make_encounter, errors, bad):
    enc = make_encounter(procedures=[proc("20610", ["RT", bad])])
    assert errors(enc) == [("MODIFIER_FORMAT", f"procedures[0].modifiers[1]={bad}")]


def test_modifier_too_many(make_encounter, errors):
    enc = make_encounter(procedures=[proc("99213"), proc("20610", ["RT", "59", "XU", "76", "GA"])])
    assert errors(enc) == [("MODIFIER_TOO_MANY", "procedures[1].modifiers")]
    enc = make_encounter(procedures=[proc("20610", ["RT", "59", "XU", "76"][:MAX_MODIFIERS])])
    assert errors(enc) == []


@pytest.mark.parametrize("units", [0, -1])
def test_units_invalid(make_encounter, errors, units):
    assert errors(make_encounter(procedures=[proc(units=units)])) == [("UNITS_INVALID", "procedures[0].units")]


@pytest.mark.parametrize("pointers", [[], [1, 2, 3, 4, 5]], ids=["none", "five"])
def test_dx_pointer_count(make_encounter, errors, pointers):
    enc = make_encounter(diagnoses=BILLABLE[:5],
                         procedures=[proc(dx_pointers=[1, 2, 3, 4]), proc(dx_pointers=pointers)])
    assert errors(enc) == [("DX_POINTER_COUNT", "procedures[1].dx_pointers")]


def test_dx_pointer_count_boundary(make_encounter, errors):
    enc = make_encounter(diagnoses=BILLABLE[:4], procedures=[proc(dx_pointers=[1, 2, 3, 4][:MAX_DX_POINTERS])])
    assert errors(enc) == []


@pytest.mark.parametrize("pointer", [0, 3, -1])
def test_dx_pointer_range(make_encounter, errors, pointer):
    enc = make_encounter(diagnoses=["E11.9", "I10"], procedures=[proc(dx_pointers=[1, pointer])])
    assert errors(enc) == [("DX_POINTER_RANGE", "procedures[0].dx_pointers")]


def test_lines_too_many(make_encounter, errors):
    # 83036 has no MUE in the shipped table, so only the line count can fail.
    assert errors(make_encounter(procedures=[proc("83036")] * (MAX_LINES + 1))) == [("LINES_TOO_MANY", "procedures")]
    assert errors(make_encounter(procedures=[proc("83036")] * MAX_LINES)) == []


def test_every_finding_names_its_rule_and_is_an_error(make_encounter, coding_ref):
    enc = make_encounter(member_id="", diagnoses=["M54.5", "XYZ"],
                         procedures=[proc("9921", units=0, dx_pointers=[1, 2])])
    findings = check_encounter(enc, coding_ref)
    assert {f.rule_id for f in findings} == {"REQUIRED_FIELD", "ICD10_NOT_BILLABLE", "ICD10_FORMAT", "PROC_FORMAT",
                                             "UNITS_INVALID"}
    assert all(f.severity == Severity.ERROR and f.message for f in findings)
    assert all(f.rule_id in RULE_IDS for f in findings)


# --- ordering ---------------------------------------------------------------------


def _rule(rule_id: str, severity: Severity):
    def rule(chart: Chart):
        yield Finding(rule_id, severity, f"{rule_id} says so", "encounter")

    return rule


def test_findings_sorted_errors_first_stable_within_severity(make_encounter, coding_ref):
    rules = [_rule("W1", Severity.WARNING), _rule("E1", Severity.ERROR), _rule("W2", Severity.WARNING),
             _rule("E2", Severity.ERROR)]
    assert [f.rule_id for f in check_encounter(make_encounter(), coding_ref, rules)] == ["E1", "E2", "W1", "W2"]


def test_real_errors_come_before_real_warnings(make_encounter, coding_ref):
    # UNITS_INVALID (an error) and DX_UNLINKED for I10 (a warning): errors first whatever the rule order.
    enc = make_encounter(procedures=[proc("99213", units=0, dx_pointers=[1])])
    assert [(f.rule_id, f.severity) for f in check_encounter(enc, coding_ref)] == [
        ("UNITS_INVALID", Severity.ERROR), ("DX_UNLINKED", Severity.WARNING)]
    assert has_errors(check_encounter(enc, coding_ref))
    assert not has_errors([f for f in check_encounter(enc, coding_ref) if f.severity == Severity.WARNING])


# --- the stage --------------------------------------------------------------------


def test_valid_encounter_becomes_coded(make_encounter, codec, coding_ref, now):
    enc = make_encounter(
        diagnoses=["e119", "M5450"],
        procedures=[proc(" 99214 ", ["25"], 1, [1, 2]), proc("20610", ["rt"], 1, [2]), proc("j3301", [], 4, [2])],
    )
    emits = code_encounter(enc, codec.encode(enc), coding_ref, now)
    assert [e.topic for e in emits] == ["coded"]
    (emit,) = emits
    assert emit.key == enc.encounter_id
    coded = emit.event
    assert isinstance(coded, CodedEncounter)
    assert coded.diagnoses == ["E11.9", "M54.50"] == [normalize_icd10(d) for d in enc.diagnoses]
    assert [line.line_number for line in coded.lines] == [1, 2, 3]
    assert [line.procedure_code for line in coded.lines] == ["99214", "20610", "J3301"]
    assert [line.modifiers for line in coded.lines] == [["25"], ["RT"], []]
    assert [(line.units, line.dx_pointers) for line in coded.lines] == [(1, [1, 2]), (1, [2]), (4, [2])]
    assert coded.findings == []
    assert coded.coded_at == now
    assert coded.review_work_item_id is None
    assert (coded.encounter_occurred_at, coded.patient_id, coded.patient_birth_date, coded.patient_sex) == (
        enc.occurred_at, enc.patient.patient_id, enc.patient.birth_date, "F")
    assert (coded.payer_id, coded.member_id, coded.billing_npi, coded.rendering_npi, coded.date_of_service,
            coded.place_of_service) == (enc.payer_id, enc.member_id, enc.billing_npi, enc.rendering_npi,
                                        enc.date_of_service, enc.place_of_service)
    assert codec.decode(codec.encode(coded), CodedEncounter) == coded


def test_coded_lines_do_not_alias_the_encounter(make_encounter, coding_ref, now):
    enc = make_encounter()
    (emit,) = code_encounter(enc, b"x", coding_ref, now)
    emit.event.lines[0].dx_pointers.append(9)
    assert enc.procedures[0].dx_pointers == [1, 2]


@pytest.fixture
def warning_rule():
    """The documented extension point: append a rule to RULES (removed afterwards)."""
    rule = _rule("STYLE_NOTE", Severity.WARNING)
    RULES.append(rule)
    try:
        yield rule
    finally:
        RULES.remove(rule)


def test_warnings_travel_with_the_coded_encounter(make_encounter, coding_ref, now, warning_rule):
    (emit,) = code_encounter(make_encounter(), b"x", coding_ref, now)
    assert emit.topic == "coded"
    assert [(f.rule_id, f.severity) for f in emit.event.findings] == [("STYLE_NOTE", Severity.WARNING)]


def test_real_warning_travels_with_the_coded_encounter(make_encounter, coding_ref, now):
    enc = make_encounter(procedures=[proc("99213", dx_pointers=[1])])  # I10 supports no line
    (emit,) = code_encounter(enc, b"x", coding_ref, now)
    assert emit.topic == "coded"
    assert [(f.rule_id, f.severity, f.element) for f in emit.event.findings] == [
        ("DX_UNLINKED", Severity.WARNING, "diagnoses[1]=I10")]


def test_errors_go_to_coding_review_with_the_original_bytes(make_encounter, codec, coding_ref, now, warning_rule):
    enc = make_encounter(diagnoses=["M54.5", "I10"])
    original = codec.encode(enc)
    emits = code_encounter(enc, original, coding_ref, now)
    assert [e.topic for e in emits] == ["coding-review"]
    (emit,) = emits
    assert emit.key == enc.encounter_id
    item = emit.event
    assert isinstance(item, CodingReviewItem)
    assert item.encounter == original
    assert codec.decode(item.encounter, Encounter) == enc
    assert item.encounter_id == enc.encounter_id
    assert item.is_audit is False
    assert item.revision == 1
    assert item.created_at == now
    assert [(f.rule_id, f.severity) for f in item.findings] == [("ICD10_NOT_BILLABLE", Severity.ERROR),
                                                                ("STYLE_NOTE", Severity.WARNING)]
    assert item.work_item_id == review_item_id(enc.encounter_id)
    assert codec.decode(codec.encode(item), CodingReviewItem) == item


def test_review_item_id_is_deterministic_per_encounter():
    assert review_item_id("ENC-1") == review_item_id("ENC-1")
    assert review_item_id("ENC-1") != review_item_id("ENC-2")
    assert review_item_id("ENC-1").startswith("CR-")


def test_check_encounter_does_not_mutate_the_encounter(make_encounter, coding_ref):
    enc = make_encounter(diagnoses=["e119", "m5450"], procedures=[proc(" j3301 ", ["rt"], 1, [1, 2])])
    before = copy.deepcopy(enc)
    check_encounter(enc, coding_ref)
    assert enc == before


# --- audit sampling ------------------------------------------------------------------


def test_drawn_for_audit_is_deterministic_and_follows_the_rate():
    ids = [f"ENC-7-{i:07d}" for i in range(20_000)]
    assert not any(drawn_for_audit(i, 0.0) for i in ids)
    assert all(drawn_for_audit(i, 1.0) for i in ids)
    at_5 = {i for i in ids if drawn_for_audit(i, 0.05)}
    assert at_5 == {i for i in ids if drawn_for_audit(i, 0.05)}  # same answer every time
    assert abs(len(at_5) / len(ids) - 0.05) < 0.006
    # A higher rate keeps every encounter a lower rate drew: raising the rate only adds.
    assert at_5 <= {i for i in ids if drawn_for_audit(i, 0.2)}


def _audited_id(rate: float, drawn: bool) -> str:
    return next(f"ENC-A-{i}" for i in range(10_000) if drawn_for_audit(f"ENC-A-{i}", rate) is drawn)


def test_a_clean_audited_encounter_is_coded_and_sent_to_the_coders(make_encounter, codec, coding_ref, now):
    enc = make_encounter(encounter_id=_audited_id(0.1, drawn=True), procedures=[proc("99213", dx_pointers=[1])])
    original = codec.encode(enc)
    emits = code_encounter(enc, original, coding_ref, now, audit_rate=0.1)
    assert [(e.topic, e.key) for e in emits] == [("coded", enc.encounter_id), ("coding-review", enc.encounter_id)]
    coded, audit = emits[0].event, emits[1].event
    assert isinstance(coded, CodedEncounter) and coded.review_work_item_id is None
    assert isinstance(audit, CodingReviewItem)
    assert audit.is_audit is True and audit.revision == 1
    assert audit.work_item_id == review_item_id(enc.encounter_id)
    assert audit.encounter == original and audit.created_at == now
    assert audit.findings == coded.findings and [f.rule_id for f in audit.findings] == ["DX_UNLINKED"]
    assert codec.decode(codec.encode(audit), CodingReviewItem) == audit


def test_an_encounter_not_drawn_is_only_coded(make_encounter, coding_ref, now):
    enc = make_encounter(encounter_id=_audited_id(0.1, drawn=False))
    assert [e.topic for e in code_encounter(enc, b"x", coding_ref, now, audit_rate=0.1)] == ["coded"]


def test_an_encounter_with_errors_is_never_an_audit_item(make_encounter, coding_ref, now):
    enc = make_encounter(member_id="")
    (emit,) = code_encounter(enc, b"x", coding_ref, now, audit_rate=1.0)
    assert emit.topic == "coding-review" and emit.event.is_audit is False


def test_a_clean_recheck_names_its_work_item_and_is_never_audited(make_encounter, coding_ref, now):
    enc = make_encounter()
    emits = code_encounter(enc, b"x", coding_ref, now, audit_rate=1.0, review_work_item_id="CR-FIXED", revision=3)
    assert [e.topic for e in emits] == ["coded"]
    assert emits[0].event.review_work_item_id == "CR-FIXED"


def test_a_failing_recheck_opens_the_given_revision_of_the_same_item(make_encounter, coding_ref, now):
    enc = make_encounter(diagnoses=["M54.5", "I10"])
    (emit,) = code_encounter(enc, b"fixed", coding_ref, now, audit_rate=1.0, review_work_item_id="CR-FIXED",
                             revision=3)
    item = emit.event
    assert emit.topic == "coding-review"
    assert (item.work_item_id, item.revision, item.is_audit, item.encounter) == ("CR-FIXED", 3, False, b"fixed")
    assert [f.rule_id for f in item.findings] == ["ICD10_NOT_BILLABLE"]


# --- the stage as the worker runs it ------------------------------------------------


def test_coding_stage_codes_reviews_and_dead_letters(make_encounter, make_message, codec, worker_context):
    clean = make_encounter(encounter_id=_audited_id(0.5, drawn=False))
    audited = make_encounter(encounter_id=_audited_id(0.5, drawn=True))
    faulty = make_encounter(encounter_id="ENC-UNIT-FAULTY", diagnoses=["M54.5", "I10"])
    values = [codec.encode(clean), codec.encode(audited), codec.encode(faulty), b"HL7|not-avro|"]
    messages = [make_message(value, offset=i) for i, value in enumerate(values)]
    items: dict[str, str] = {}
    ctx = worker_context(audit_rate=0.5, tables={Table.CODING_ITEMS_BY_ENCOUNTER: items})
    result = STAGE["coding"].run(ctx, codec, messages)
    assert [(e.topic, e.key) for e in result.emits] == [
        ("coded", clean.encounter_id), ("coded", audited.encounter_id), ("coding-review", audited.encounter_id),
        ("coding-review", faulty.encounter_id), ("dead-letter", "claims.encounters:3:3")]
    # The review items carry the bytes exactly as received.
    assert result.emits[2].event.encounter == values[1] and result.emits[2].event.is_audit
    assert result.emits[3].event.encounter == values[2] and not result.emits[3].event.is_audit
    assert result.dead_letters[0].error_type == "UndecodableEvent"
    # The table remembers the items opened (for the re-check), not the clean encounter.
    assert items == {audited.encounter_id: "1|audit|", faulty.encounter_id: "1|open|"}


def test_coding_stage_on_an_ehr_resend_audits_once_and_keeps_the_item_s_state(make_encounter, make_message, codec,
                                                                               worker_context):
    audited = make_encounter(encounter_id=_audited_id(0.5, drawn=True))
    faulty = make_encounter(encounter_id="ENC-UNIT-FAULTY", diagnoses=["M54.5", "I10"])
    messages = [make_message(codec.encode(audited), offset=0), make_message(codec.encode(faulty), offset=1)]
    items = {faulty.encounter_id: "2|open|CA-1"}  # a coder already moved the item on
    ctx = worker_context(audit_rate=0.5, tables={Table.CODING_ITEMS_BY_ENCOUNTER: items})
    STAGE["coding"].run(ctx, codec, messages)
    result = STAGE["coding"].run(ctx, codec, messages)  # the EHR sends them again
    assert [(e.topic, e.key) for e in result.emits] == [
        ("coded", audited.encounter_id), ("coding-review", faulty.encounter_id)]  # no second audit sample
    assert items == {audited.encounter_id: "1|audit|", faulty.encounter_id: "2|open|CA-1"}


# --- check_chart, coded_event, the reference's per-code cache ----------------------------------


def test_check_chart_is_check_encounter_on_a_chart(make_encounter, coding_ref):
    enc = make_encounter(diagnoses=["M54.5", "I10"], procedures=[proc("99213", units=0, dx_pointers=[1])])
    chart = Chart.of(enc, coding_ref)
    assert check_chart(chart) == check_encounter(enc, coding_ref)
    assert [f.rule_id for f in check_chart(chart)] == ["ICD10_NOT_BILLABLE", "UNITS_INVALID", "DX_UNLINKED"]
    assert check_chart(chart, [_rule("ONLY", Severity.WARNING)])[0].rule_id == "ONLY"


def test_coded_event_carries_the_codes_as_the_rules_read_them(make_encounter, coding_ref, now):
    enc = make_encounter(diagnoses=[" e119 ", "M5450"], procedures=[proc(" j3301 ", [" rt "], 2, [2, 1])])
    coded = coded_event(Chart.of(enc, coding_ref), [], now, "CR-X")
    assert coded.diagnoses == ["E11.9", "M54.50"]
    assert [(c.line_number, c.procedure_code, c.modifiers, c.units, c.dx_pointers) for c in coded.lines] == [
        (1, "J3301", ["RT"], 2, [2, 1])]
    assert (coded.review_work_item_id, coded.coded_at, coded.encounter_id) == ("CR-X", now, enc.encounter_id)


def test_demographic_edits_for_a_code_are_worked_out_once(coding_ref):
    male_only = coding_ref.demographic_edits_for("N40.0")
    assert [e.edit_id for e in male_only] == ["male_only"]
    assert coding_ref.demographic_edits_for("N40.0") is male_only  # cached
    assert coding_ref.demographic_edits_for("E11.9") == ()
    assert [e.edit_id for e in coding_ref.demographic_edits_for("O80")] == [
        e.edit_id for e in coding_ref.demographic_edits if e.applies_to("O80")]


def test_a_reference_with_other_demographic_edits_does_not_reuse_the_cache(coding_ref):
    import dataclasses

    assert coding_ref.demographic_edits_for("N40.0") != ()
    without_edits = dataclasses.replace(coding_ref, demographic_edits=())
    assert without_edits.demographic_edits_for("N40.0") == ()


def test_a_review_item_names_an_absurd_code_by_its_first_characters(make_encounter, coding_ref, codec, now):
    enc = make_encounter(diagnoses=["E11.9" + "9" * 400_000, "I10"])
    original = codec.encode(enc)
    (emit,) = code_encounter(enc, original, coding_ref, now)
    item = emit.event
    assert isinstance(item, CodingReviewItem) and item.encounter == original
    assert item.findings and all(len(f.element) <= 250 and len(f.message) <= 250 for f in item.findings)
    assert any(f.element.endswith(" characters)") for f in item.findings)  # cut, and says so
    assert len(codec.encode(item)) < len(original) + 16_000  # the encounter once, the findings small


def test_a_review_item_lists_a_bounded_number_of_findings_and_counts_the_rest(make_encounter, coding_ref, codec,
                                                                              now):
    enc = make_encounter(diagnoses=["ZZZ.99"] * 20_000)
    (emit,) = code_encounter(enc, codec.encode(enc), coding_ref, now)
    findings = emit.event.findings
    assert len(findings) == FINDINGS_LISTED + 1
    assert findings[-1].severity == Severity.ERROR
    listed = FINDINGS_LISTED
    assert f"{len(coding.check_chart(coding.Chart.of(enc, coding_ref))) - listed} more" in findings[-1].message
