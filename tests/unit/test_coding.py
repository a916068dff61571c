"""engine.coding: the coding rules and the coding stage."""

from __future__ import annotations

import dataclasses

import pytest

from engine import coding
from engine.codesets import normalize_icd10
from engine.coding import (
    MAX_DIAGNOSES,
    MAX_DX_POINTERS,
    MAX_LINES,
    MAX_MODIFIERS,
    RULES,
    check_encounter,
    code_encounter,
    review_item_id,
)
from engine.events import CodedEncounter, CodingReviewItem, Encounter, Finding, Procedure, Severity

# Billable FY2026 ICD-10-CM codes, all distinct.
BILLABLE = ["E11.9", "I10", "E78.5", "J06.9", "J02.9", "Z00.00", "Z23", "M54.50", "M17.11", "R07.9", "N39.0",
            "S93.401A", "M62.81", "E11.65", "F41.1"]


def proc(code: str = "99213", modifiers: list[str] | None = None, units: int = 1,
         dx_pointers: list[int] | None = None) -> Procedure:
    return Procedure(code, modifiers or [], units, dx_pointers if dx_pointers is not None else [1])


def errors(enc: Encounter) -> list[tuple[str, str]]:
    return [(f.rule_id, f.element) for f in check_encounter(enc) if f.severity == Severity.ERROR]


def test_the_valid_encounter_has_no_findings(make_encounter):
    assert check_encounter(make_encounter()) == []


def test_rules_list_runs_every_rule_in_order():
    assert RULES == [coding.required_data, coding.diagnosis_codes, coding.diagnosis_list, coding.procedure_codes,
                     coding.modifiers, coding.units, coding.dx_pointers, coding.line_count]


# --- each rule on its own bad input ----------------------------------------------


@pytest.mark.parametrize(
    "field, element",
    [("payer_id", "payer_id"), ("member_id", "member_id"), ("billing_npi", "billing_npi"),
     ("rendering_npi", "rendering_npi"), ("place_of_service", "place_of_service")],
)
@pytest.mark.parametrize("blank", ["", "   "])
def test_required_field(make_encounter, field, element, blank):
    assert errors(make_encounter(**{field: blank})) == [("REQUIRED_FIELD", element)]


def test_required_patient_id(make_encounter):
    assert errors(make_encounter(patient={"patient_id": ""})) == [("REQUIRED_FIELD", "patient.patient_id")]


def test_required_diagnoses(make_encounter):
    found = errors(make_encounter(diagnoses=[]))
    assert found[0] == ("REQUIRED_FIELD", "diagnoses")
    # Every pointer now points at nothing, which the pointer rule also reports.
    assert {rule for rule, _ in found[1:]} == {"DX_POINTER_RANGE"}


def test_required_procedures(make_encounter):
    assert errors(make_encounter(procedures=[])) == [("REQUIRED_FIELD", "procedures")]


@pytest.mark.parametrize("bad", ["XYZ", "XX9.9", "1234", "E"])
def test_icd10_format(make_encounter, bad):
    assert errors(make_encounter(diagnoses=["E11.9", bad])) == [("ICD10_FORMAT", f"diagnoses[1]={normalize_icd10(bad)}")]


def test_icd10_unknown(make_encounter):
    assert errors(make_encounter(diagnoses=["Z99.999", "I10"])) == [("ICD10_UNKNOWN", "diagnoses[0]=Z99.999")]


@pytest.mark.parametrize("header, element", [("M54.5", "M54.5"), ("S52.501", "S52.501"), ("e11", "E11")])
def test_icd10_not_billable(make_encounter, header, element):
    assert errors(make_encounter(diagnoses=[header, "I10"])) == [("ICD10_NOT_BILLABLE", f"diagnoses[0]={element}")]


def test_undotted_and_lower_case_billable_codes_pass(make_encounter):
    assert errors(make_encounter(diagnoses=["e119", "M5450"])) == []


def test_dx_duplicate_after_normalisation(make_encounter):
    assert errors(make_encounter(diagnoses=["E11.9", "I10", "e119"])) == [("DX_DUPLICATE", "diagnoses[2]=E11.9")]


def test_dx_too_many(make_encounter):
    assert errors(make_encounter(diagnoses=BILLABLE[: MAX_DIAGNOSES + 1])) == [("DX_TOO_MANY", "diagnoses")]
    assert errors(make_encounter(diagnoses=BILLABLE[:MAX_DIAGNOSES])) == []


@pytest.mark.parametrize("bad", ["9921", "W1234", "99213X", "ABCDE"])
def test_proc_format(make_encounter, bad):
    enc = make_encounter(procedures=[proc("99213"), proc(bad)])
    assert errors(enc) == [("PROC_FORMAT", "procedures[1].code")]


def test_procedure_code_case_and_space_are_forgiven(make_encounter):
    assert errors(make_encounter(procedures=[proc(" j3301 ", ["rt"])])) == []


@pytest.mark.parametrize("bad", ["2", "255", "R-", ""])
def test_modifier_format(make_encounter, bad):
    enc = make_encounter(procedures=[proc("20610", ["RT", bad])])
    assert errors(enc) == [("MODIFIER_FORMAT", "procedures[0].modifiers[1]")]


def test_modifier_too_many(make_encounter):
    enc = make_encounter(procedures=[proc("99213"), proc("20610", ["RT", "59", "XU", "76", "GA"])])
    assert errors(enc) == [("MODIFIER_TOO_MANY", "procedures[1].modifiers")]
    enc = make_encounter(procedures=[proc("20610", ["RT", "59", "XU", "76"][:MAX_MODIFIERS])])
    assert errors(enc) == []


@pytest.mark.parametrize("units", [0, -1])
def test_units_invalid(make_encounter, units):
    assert errors(make_encounter(procedures=[proc(units=units)])) == [("UNITS_INVALID", "procedures[0].units")]


@pytest.mark.parametrize("pointers", [[], [1, 2, 1, 2, 1]])
def test_dx_pointer_count(make_encounter, pointers):
    enc = make_encounter(procedures=[proc(dx_pointers=pointers)])
    assert errors(enc) == [("DX_POINTER_COUNT", "procedures[0].dx_pointers")]


def test_dx_pointer_count_boundary(make_encounter):
    enc = make_encounter(diagnoses=BILLABLE[:4], procedures=[proc(dx_pointers=[1, 2, 3, 4][:MAX_DX_POINTERS])])
    assert errors(enc) == []


@pytest.mark.parametrize("pointer", [0, 3, -1])
def test_dx_pointer_range(make_encounter, pointer):
    enc = make_encounter(diagnoses=["E11.9", "I10"], procedures=[proc(dx_pointers=[1, pointer])])
    assert errors(enc) == [("DX_POINTER_RANGE", "procedures[0].dx_pointers")]


def test_lines_too_many(make_encounter):
    assert errors(make_encounter(procedures=[proc()] * (MAX_LINES + 1))) == [("LINES_TOO_MANY", "procedures")]
    assert errors(make_encounter(procedures=[proc()] * MAX_LINES)) == []


def test_every_finding_names_its_rule_and_is_an_error(make_encounter):
    enc = make_encounter(member_id="", diagnoses=["M54.5", "XYZ"], procedures=[proc("9921", units=0)])
    findings = check_encounter(enc)
    assert {f.rule_id for f in findings} == {"REQUIRED_FIELD", "ICD10_NOT_BILLABLE", "ICD10_FORMAT", "PROC_FORMAT",
                                             "UNITS_INVALID"}
    assert all(f.severity == Severity.ERROR and f.message for f in findings)


# --- ordering ---------------------------------------------------------------------


def _rule(rule_id: str, severity: Severity):
    def rule(enc: Encounter):
        yield Finding(rule_id, severity, f"{rule_id} says so", "encounter")

    return rule


def test_findings_sorted_errors_first_stable_within_severity(make_encounter):
    rules = [_rule("W1", Severity.WARNING), _rule("E1", Severity.ERROR), _rule("W2", Severity.WARNING),
             _rule("E2", Severity.ERROR)]
    assert [f.rule_id for f in check_encounter(make_encounter(), rules)] == ["E1", "E2", "W1", "W2"]


# --- the stage --------------------------------------------------------------------


def test_valid_encounter_becomes_coded(make_encounter, make_message, codec, now):
    enc = make_encounter(
        diagnoses=["e119", "M5450"],
        procedures=[proc(" 99214 ", ["25"], 1, [1, 2]), proc("20610", ["rt"], 1, [2]), proc("j3301", [], 4, [2])],
    )
    message = make_message(codec.encode(enc))
    emit = code_encounter(enc, message, now)
    assert emit.topic == "coded"
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
    assert (coded.encounter_occurred_at, coded.patient_id, coded.patient_birth_date, coded.patient_sex) == (
        enc.occurred_at, enc.patient.patient_id, enc.patient.birth_date, "F")
    assert (coded.payer_id, coded.member_id, coded.billing_npi, coded.rendering_npi, coded.date_of_service,
            coded.place_of_service) == (enc.payer_id, enc.member_id, enc.billing_npi, enc.rendering_npi,
                                        enc.date_of_service, enc.place_of_service)
    assert codec.decode(codec.encode(coded), CodedEncounter) == coded


def test_coded_lines_do_not_alias_the_encounter(make_encounter, make_message, now):
    enc = make_encounter()
    coded = code_encounter(enc, make_message(b"x"), now).event
    coded.lines[0].dx_pointers.append(9)
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


def test_warnings_travel_with_the_coded_encounter(make_encounter, make_message, now, warning_rule):
    emit = code_encounter(make_encounter(), make_message(b"x"), now)
    assert emit.topic == "coded"
    assert [(f.rule_id, f.severity) for f in emit.event.findings] == [("STYLE_NOTE", Severity.WARNING)]


def test_errors_go_to_coding_review_with_the_original_bytes(make_encounter, make_message, codec, now,
                                                            warning_rule):
    enc = make_encounter(diagnoses=["M54.5", "I10"])
    original = codec.encode(enc)
    emit = code_encounter(enc, make_message(original), now)
    assert emit.topic == "coding-review"
    assert emit.key == enc.encounter_id
    item = emit.event
    assert isinstance(item, CodingReviewItem)
    assert item.encounter == original
    assert codec.decode(item.encounter, Encounter) == enc
    assert item.encounter_id == enc.encounter_id
    assert item.is_audit is False
    assert item.created_at == now
    assert [(f.rule_id, f.severity) for f in item.findings] == [("ICD10_NOT_BILLABLE", Severity.ERROR),
                                                                ("STYLE_NOTE", Severity.WARNING)]
    assert item.work_item_id == review_item_id(enc.encounter_id)
    assert codec.decode(codec.encode(item), CodingReviewItem) == item


def test_review_item_id_is_deterministic_per_encounter():
    assert review_item_id("ENC-1") == review_item_id("ENC-1")
    assert review_item_id("ENC-1") != review_item_id("ENC-2")
    assert review_item_id("ENC-1").startswith("CR-")


def test_review_item_with_no_value_carries_empty_bytes(make_encounter, make_message, now):
    emit = code_encounter(make_encounter(member_id=""), make_message(None), now)
    assert emit.topic == "coding-review" and emit.event.encounter == b""


def test_check_encounter_does_not_mutate_the_encounter(make_encounter):
    enc = make_encounter(diagnoses=["e119", "m5450"])
    before = dataclasses.replace(enc)
    check_encounter(enc)
    assert enc == before
