"""Each coding rule function on its own: a table of passing and failing cases per rule.

Every case starts from the valid office visit of ``tests.factories.make_encounter`` (a woman
born 1958-07-14, date of service 2026-02-27, E11.9 + I10, 99214-25 / 83036 / J3301)
and changes only what the case names. The expected value is the exact list of
(rule id, severity, element) the rule function yields, in order; ``[]`` is a pass.
Real FY2026 ICD-10-CM codes and the shipped NCCI/MUE/modifier data, except where a
case says "synthetic" (an in-memory table: the shipped MUE sample has only
indicator-3 rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from engine.coding import rules as coding
from engine.coding.rules import RULE_IDS, RULES, Chart, CodingReference, Line, check_encounter
from engine.model.events import Procedure, Severity, Sex
from engine.reference.ncci import ModifierIndicator, Mue, MueAdjudication, MueTable, PtpEdit, PtpTable

DOS = date(2026, 2, 27)  # the base encounter's date of service


def P(code: str = "99213", modifiers: tuple[str, ...] = (), units: int = 1, pointers: tuple[int, ...] = (1,)
      ) -> Procedure:
    return Procedure(code, list(modifiers), units, list(pointers))


def E(rule_id: str, element: str) -> tuple[str, Severity, str]:
    return (rule_id, Severity.ERROR, element)


def W(rule_id: str, element: str) -> tuple[str, Severity, str]:
    return (rule_id, Severity.WARNING, element)


def born(age: int, *, last_day: bool = False) -> date:
    """A birth date giving exactly ``age`` on the date of service: on that birthday, or
    (``last_day``) on the last day before the next one."""
    if last_day:
        return date(DOS.year - age - 1, DOS.month, DOS.day + 1)
    return date(DOS.year - age, DOS.month, DOS.day)


def patient(sex: Sex, age: int, *, last_day: bool = False) -> dict[str, Any]:
    return {"sex": sex, "birth_date": born(age, last_day=last_day)}


def case(id: str, expected: list, **overrides: Any):
    return pytest.param(overrides, expected, id=id)


# --- reference data variants (synthetic, in memory) -------------------------------------

SYNTHETIC_MUE = MueTable([
    Mue("J3301", 1, MueAdjudication.LINE, "synthetic: indicator 1, per line"),
    Mue("96372", 1, MueAdjudication.DATE_OF_SERVICE_POLICY, "synthetic: indicator 2, per day by policy"),
    Mue("99213", 2, MueAdjudication.DATE_OF_SERVICE_CLINICAL, "as shipped"),
])
#: An edit pairing a code with itself: only the rule's "same code twice is no pair" stops it.
SELF_PAIR_PTP = PtpTable([
    PtpEdit("99213", "99213", False, date(2020, 1, 1), None, ModifierIndicator.NOT_ALLOWED, "synthetic self pair"),
    PtpEdit("99213", "36415", False, date(2020, 1, 1), None, ModifierIndicator.NOT_ALLOWED, "synthetic control"),
])
REF_VARIANTS: dict[str, Callable[[CodingReference], CodingReference]] = {
    "synthetic-mue": lambda ref: dataclasses.replace(ref, mue=SYNTHETIC_MUE),
    "self-pair-ptp": lambda ref: dataclasses.replace(ref, ptp=SELF_PAIR_PTP),
}


@pytest.fixture
def run(make_encounter, coding_ref):
    """``run(rule, overrides)``: the (rule id, severity, element) the rule yields for the case."""

    def run(rule: coding.Rule, overrides: dict[str, Any]) -> list[tuple[str, Severity, str]]:
        overrides = dict(overrides)
        ref = REF_VARIANTS[overrides.pop("ref")](coding_ref) if "ref" in overrides else coding_ref
        chart = Chart.of(make_encounter(**overrides), ref)
        findings = list(rule(chart))
        assert all(f.message for f in findings)
        return [(f.rule_id, f.severity, f.element) for f in findings]

    return run


# --- who, what, for whom -------------------------------------------------------------------

REQUIRED_DATA = [
    case("complete", []),
    case("payer-blank", [E("REQUIRED_FIELD", "payer_id")], payer_id=""),
    case("member-spaces", [E("REQUIRED_FIELD", "member_id")], member_id="   "),
    case("billing-npi", [E("REQUIRED_FIELD", "billing_npi")], billing_npi=""),
    case("rendering-npi", [E("REQUIRED_FIELD", "rendering_npi")], rendering_npi=""),
    case("place-of-service", [E("REQUIRED_FIELD", "place_of_service")], place_of_service=" "),
    case("patient-id", [E("REQUIRED_FIELD", "patient.patient_id")], patient={"patient_id": ""}),
    case("no-diagnoses", [E("REQUIRED_FIELD", "diagnoses")], diagnoses=[]),
    case("no-lines", [E("REQUIRED_FIELD", "procedures")], procedures=[]),
    case("two-missing-in-field-order", [E("REQUIRED_FIELD", "payer_id"), E("REQUIRED_FIELD", "rendering_npi")],
         rendering_npi="", payer_id=""),
]


@pytest.mark.parametrize("overrides, expected", REQUIRED_DATA)
def test_required_data(run, overrides, expected):
    assert run(coding.required_data, overrides) == expected


# --- ICD-10-CM -------------------------------------------------------------------------------

DIAGNOSIS_CODES = [
    case("billable", [], diagnoses=["M54.50", "I10"]),
    case("dotless-normalised", [], diagnoses=["M5450", "i10"]),
    case("seventh-char-present", [], diagnoses=["S52.501A", "s93401a"]),
    case("placeholder-present", [], diagnoses=["T14.90XA", "W19.XXXA"]),
    case("format-letters", [E("ICD10_FORMAT", "diagnoses[1]=XX9.9")], diagnoses=["E11.9", "XX9.9"]),
    case("format-digit-first", [E("ICD10_FORMAT", "diagnoses[0]=1M5.45")], diagnoses=["1M54.5", "I10"]),
    case("format-too-short", [E("ICD10_FORMAT", "diagnoses[0]=E1")], diagnoses=["E1", "I10"]),
    case("unknown", [E("ICD10_UNKNOWN", "diagnoses[0]=Z99.999")], diagnoses=["Z99.999", "I10"]),
    case("unknown-extra-digit", [E("ICD10_UNKNOWN", "diagnoses[1]=I10.0")], diagnoses=["E11.9", "I10.0"]),
    case("placeholder-missing", [E("ICD10_PLACEHOLDER_MISSING", "diagnoses[0]=T14.90A")], diagnoses=["T14.90A"]),
    case("placeholder-missing-external", [E("ICD10_PLACEHOLDER_MISSING", "diagnoses[1]=W19.A")],
         diagnoses=["S93.401A", "W19A"]),
    case("seventh-char-missing", [E("ICD10_SEVENTH_CHAR_MISSING", "diagnoses[0]=S52.501")],
         diagnoses=["S52.501", "I10"]),
    case("seventh-char-missing-needs-x", [E("ICD10_SEVENTH_CHAR_MISSING", "diagnoses[0]=T14.90")],
         diagnoses=["T14.90"]),
    case("header-m54-5", [E("ICD10_NOT_BILLABLE", "diagnoses[0]=M54.5")], diagnoses=["M54.5", "I10"]),
    case("header-category", [E("ICD10_NOT_BILLABLE", "diagnoses[1]=E11")], diagnoses=["I10", "e11"]),
    case("one-finding-per-bad-code", [E("ICD10_NOT_BILLABLE", "diagnoses[0]=J45"),
                                      E("ICD10_UNKNOWN", "diagnoses[1]=J06.99")], diagnoses=["J45", "J06.99"]),
]


@pytest.mark.parametrize("overrides, expected", DIAGNOSIS_CODES)
def test_diagnosis_codes(run, overrides, expected):
    assert run(coding.diagnosis_codes, overrides) == expected


def test_seventh_character_finding_suggests_a_real_code(make_encounter, coding_ref):
    (finding,) = coding.diagnosis_codes(Chart.of(make_encounter(diagnoses=["T14.90"]), coding_ref))
    assert "T14.90XA" in finding.message
    (finding,) = coding.diagnosis_codes(Chart.of(make_encounter(diagnoses=["T14.90A"]), coding_ref))
    assert finding.message.endswith("T14.90XA")


@pytest.mark.parametrize("header", ["S52.50", "S93.40", "S52"])
def test_a_header_that_needs_more_than_a_7th_character_is_not_billable(make_encounter, coding_ref, header):
    (finding,) = coding.diagnosis_codes(Chart.of(make_encounter(diagnoses=[header]), coding_ref))
    assert finding.rule_id == "ICD10_NOT_BILLABLE", finding.message


EXCLUDES1 = [
    case("type-2-with-hypertension", [], diagnoses=["E11.9", "I10"]),
    case("same-category", [], diagnoses=["E11.9", "E11.65"]),
    case("same-code-is-dx-duplicate-not-excludes1", [], diagnoses=["E11.9", "E11.9"]),
    case("unknown-code-ignored", [], diagnoses=["E11.9", "E10.99"]),
    case("type-2-with-type-1", [E("ICD10_EXCLUDES1", "diagnoses[1]=E10.9")], diagnoses=["E11.9", "E10.9"]),
    case("mutual-pair-reported-once", [E("ICD10_EXCLUDES1", "diagnoses[1]=E11.9")], diagnoses=["E10.9", "E11.9"]),
    case("dotless", [E("ICD10_EXCLUDES1", "diagnoses[2]=E10.9")], diagnoses=["E119", "I10", "E109"]),
    case("one-way-note-on-the-second-code", [E("ICD10_EXCLUDES1", "diagnoses[0]=O10.02")],
         diagnoses=["O10.02", "I10"]),
    case("chapter-range-note", [E("ICD10_EXCLUDES1", "diagnoses[1]=P70.2")], diagnoses=["E11.9", "P70.2"]),
    # Notes the tabular writes with stray spaces around the dash: I00 "(I01.0 -I01.9)",
    # P28.2 "(P28.3- - P28.4-)". Read as ranges, not skipped.
    case("spaced-range-i00-i01", [E("ICD10_EXCLUDES1", "diagnoses[1]=I01.0")], diagnoses=["I00", "I01.0"]),
    case("spaced-range-last-code-of-the-range", [E("ICD10_EXCLUDES1", "diagnoses[1]=I01.9")],
         diagnoses=["I00", "I01.9"]),
    case("spaced-range-excluded-code-first", [E("ICD10_EXCLUDES1", "diagnoses[0]=I01.0")],
         diagnoses=["I01.0", "I00"]),
    case("spaced-dashes-p28", [E("ICD10_EXCLUDES1", "diagnoses[1]=P28.41")], diagnoses=["P28.2", "P28.41"]),
    case("spaced-range-ends-where-it-says", [], diagnoses=["P28.2", "P28.5"]),
]


@pytest.mark.parametrize("overrides, expected", EXCLUDES1)
def test_excludes1(run, overrides, expected):
    assert run(coding.excludes1, overrides) == expected


PRINCIPAL = [
    case("underlying-disease-first", [], diagnoses=["G30.9", "F02.80"]),
    case("manifestation-second", [], diagnoses=["E11.42", "G63"]),
    case("injury-then-external-cause", [], diagnoses=["S93.401A", "W19.XXXA"]),
    case("no-diagnoses", [], diagnoses=[]),
    case("invalid-external-cause-shape-left-to-format-rules", [], diagnoses=["W19A", "S93.401A"]),
    case("manifestation-first-g63", [E("ICD10_MANIFESTATION_PRINCIPAL", "diagnoses[0]=G63")],
         diagnoses=["G63", "E11.42"]),
    case("manifestation-first-f02-80", [E("ICD10_MANIFESTATION_PRINCIPAL", "diagnoses[0]=F02.80")],
         diagnoses=["F02.80", "G30.9"]),
    case("fall-first", [E("ICD10_EXTERNAL_CAUSE_PRINCIPAL", "diagnoses[0]=W19.XXXA")],
         diagnoses=["W19.XXXA", "S93.401A"]),
    case("transport-accident-first", [E("ICD10_EXTERNAL_CAUSE_PRINCIPAL", "diagnoses[0]=V43.52XA")],
         diagnoses=["V43.52XA", "S52.501A"]),
]


@pytest.mark.parametrize("overrides, expected", PRINCIPAL)
def test_principal_diagnosis(run, overrides, expected):
    assert run(coding.principal_diagnosis, overrides) == expected


DEMOGRAPHICS = [
    case("prostate-male", [], diagnoses=["N40.0"], patient=patient(Sex.M, 60)),
    case("born-on-the-date-of-service", [], diagnoses=["P59.9"], patient={"birth_date": DOS}),
    case("prostate-sex-unknown", [], diagnoses=["C61"], patient=patient(Sex.U, 60)),
    case("pregnancy-female-30", [], diagnoses=["Z34.00"], patient=patient(Sex.F, 30)),
    case("newborn-age-0", [], diagnoses=["P59.9"], patient={"birth_date": date(2026, 1, 15)}),
    case("newborn-last-day-of-age-0", [], diagnoses=["P59.9"], patient={"birth_date": born(0, last_day=True)}),
    case("maternity-12-on-birthday", [], diagnoses=["O80"], patient=patient(Sex.F, 12)),
    case("maternity-55-last-day", [], diagnoses=["O80"], patient=patient(Sex.F, 55, last_day=True)),
    case("code-that-does-not-exist-is-not-edited", [], diagnoses=["N40.9"], patient=patient(Sex.F, 60)),
    case("prostate-female", [E("ICD10_SEX_CONFLICT", "diagnoses[0]=N40.0")], diagnoses=["N40.0"],
         patient=patient(Sex.F, 60)),
    case("prostate-cancer-female-dotless", [E("ICD10_SEX_CONFLICT", "diagnoses[1]=C61")], diagnoses=["I10", "c61"],
         patient=patient(Sex.F, 60)),
    case("delivery-male", [E("ICD10_SEX_CONFLICT", "diagnoses[0]=O80")], diagnoses=["O80"],
         patient=patient(Sex.M, 30)),
    case("supervision-of-pregnancy-male", [E("ICD10_SEX_CONFLICT", "diagnoses[0]=Z34.00")], diagnoses=["Z34.00"],
         patient=patient(Sex.M, 30)),
    case("newborn-code-at-30", [E("ICD10_AGE_CONFLICT", "diagnoses[0]=P59.9")], diagnoses=["P59.9"],
         patient=patient(Sex.F, 30)),
    case("newborn-code-on-first-birthday", [E("ICD10_AGE_CONFLICT", "diagnoses[0]=P59.9")], diagnoses=["P59.9"],
         patient=patient(Sex.F, 1)),
    case("maternity-11-last-day", [E("ICD10_AGE_CONFLICT", "diagnoses[0]=O80")], diagnoses=["O80"],
         patient=patient(Sex.F, 11, last_day=True)),
    case("maternity-56-on-birthday", [E("ICD10_AGE_CONFLICT", "diagnoses[0]=O80")], diagnoses=["O80"],
         patient=patient(Sex.F, 56)),
    case("born-the-day-after-the-date-of-service", [E("PATIENT_BORN_AFTER_SERVICE", "date_of_service")],
         patient={"birth_date": date(2026, 2, 28)}),
    # No age to check a newborn code against: only the impossible date is reported.
    case("born-after-service-newborn-code", [E("PATIENT_BORN_AFTER_SERVICE", "date_of_service")],
         diagnoses=["P59.9"], patient={"birth_date": date(2027, 1, 1)}),
    case("born-after-service-sex-edit-still-checked", [E("PATIENT_BORN_AFTER_SERVICE", "date_of_service"),
                                                       E("ICD10_SEX_CONFLICT", "diagnoses[0]=N40.0")],
         diagnoses=["N40.0"], patient={"birth_date": date(2026, 3, 1), "sex": Sex.F}),
    case("delivery-male-of-60-age-edit-then-sex-edit", [E("ICD10_AGE_CONFLICT", "diagnoses[0]=O80"),
                                                        E("ICD10_SEX_CONFLICT", "diagnoses[0]=O80")],
         diagnoses=["O80"], patient=patient(Sex.M, 60)),
]


@pytest.mark.parametrize("overrides, expected", DEMOGRAPHICS)
def test_demographics(run, overrides, expected):
    assert run(coding.demographics, overrides) == expected


def test_demographic_boundaries_are_what_the_edits_file_says(coding_ref):
    """The age cases above use 0, 12 and 55: the file's values, not numbers copied from the code."""
    by_id = {edit.edit_id: edit for edit in coding_ref.demographic_edits}
    assert (by_id["newborn_age"].min_age, by_id["newborn_age"].max_age) == (0, 0)
    assert (by_id["maternity_age"].min_age, by_id["maternity_age"].max_age) == (12, 55)
    assert (by_id["female_only"].sex, by_id["male_only"].sex) == ("F", "M")


DIAGNOSIS_LIST = [
    case("distinct", [], diagnoses=["E11.9", "I10"]),
    case("twelve", [], diagnoses=["E11.9", "I10", "E78.5", "J06.9", "J02.9", "Z00.00", "Z23", "M54.50", "M17.11",
                                  "R07.9", "N39.0", "F41.1"]),
    case("duplicate", [E("DX_DUPLICATE", "diagnoses[2]=E11.9")], diagnoses=["E11.9", "I10", "E11.9"]),
    case("duplicate-after-normalising", [E("DX_DUPLICATE", "diagnoses[1]=M54.50")], diagnoses=["M54.50", "m5450"]),
    case("thirteen", [E("DX_TOO_MANY", "diagnoses")],
         diagnoses=["E11.9", "I10", "E78.5", "J06.9", "J02.9", "Z00.00", "Z23", "M54.50", "M17.11", "R07.9", "N39.0",
                    "F41.1", "M62.81"]),
]


@pytest.mark.parametrize("overrides, expected", DIAGNOSIS_LIST)
def test_diagnosis_list(run, overrides, expected):
    assert run(coding.diagnosis_list, overrides) == expected


# --- CPT / HCPCS -----------------------------------------------------------------------------

PROCEDURE_CODES = [
    case("cpt-category-i", [], procedures=[P("99213")]),
    case("cpt-pla", [], procedures=[P("0001U")]),
    case("cpt-vaccine-admin", [], procedures=[P("0001A")]),
    case("cpt-maaa", [], procedures=[P("0001M")]),
    case("cpt-category-ii", [], procedures=[P("1234F")]),
    case("cpt-category-iii", [], procedures=[P("0042T")]),
    case("hcpcs-level-ii", [], procedures=[P("J3301")]),
    case("case-and-space-forgiven", [], procedures=[P(" j3301 ")]),
    case("four-digits", [E("PROC_FORMAT", "procedures[1].code")], procedures=[P("99213"), P("9921")]),
    case("hcpcs-w-is-not-a-level-ii-letter", [E("PROC_FORMAT", "procedures[0].code")], procedures=[P("W1234")]),
    case("trailing-letter", [E("PROC_FORMAT", "procedures[0].code")], procedures=[P("99213X")]),
    case("letters", [E("PROC_FORMAT", "procedures[0].code")], procedures=[P("ABCDE")]),
    case("empty", [E("PROC_FORMAT", "procedures[0].code")], procedures=[P("")]),
]


@pytest.mark.parametrize("overrides, expected", PROCEDURE_CODES)
def test_procedure_codes(run, overrides, expected):
    assert run(coding.procedure_codes, overrides) == expected


MODIFIERS = [
    case("none", [], procedures=[P("99213")]),
    case("known-25-rt-xs", [], procedures=[P("99213", ("25",)), P("20610", ("RT", "XS"))]),
    case("lower-case-known", [], procedures=[P("20610", ("rt",))]),
    case("four", [], procedures=[P("20610", ("RT", "59", "XU", "76"))]),
    case("unknown", [E("MODIFIER_UNKNOWN", "procedures[0].modifiers[0]=ZZ")], procedures=[P("99213", ("ZZ",))]),
    case("unknown-second", [E("MODIFIER_UNKNOWN", "procedures[1].modifiers[1]=9Z")],
         procedures=[P("99213"), P("20610", ("RT", "9Z"))]),
    case("one-character", [E("MODIFIER_FORMAT", "procedures[0].modifiers[0]=5")], procedures=[P("99213", ("5",))]),
    case("three-characters", [E("MODIFIER_FORMAT", "procedures[0].modifiers[1]=255")],
         procedures=[P("99213", ("25", "255"))]),
    case("five", [E("MODIFIER_TOO_MANY", "procedures[0].modifiers")],
         procedures=[P("20610", ("RT", "59", "XU", "76", "GA"))]),
]


@pytest.mark.parametrize("overrides, expected", MODIFIERS)
def test_modifiers(run, overrides, expected):
    assert run(coding.modifiers, overrides) == expected


UNITS = [
    case("one", [], procedures=[P(units=1)]),
    case("many", [], procedures=[P("J3301", units=40)]),
    case("zero", [E("UNITS_INVALID", "procedures[0].units")], procedures=[P(units=0)]),
    case("negative-second-line", [E("UNITS_INVALID", "procedures[1].units")], procedures=[P(), P("83036", units=-1)]),
]


@pytest.mark.parametrize("overrides, expected", UNITS)
def test_units(run, overrides, expected):
    assert run(coding.units, overrides) == expected


NCCI_PTP = [
    case("no-edit", [], procedures=[P("99213"), P("36415")]),
    case("deleted-edit-day-after-deletion", [], procedures=[P("0001A"), P("99213")], date_of_service=date(2024, 1, 1)),
    case("before-effective-date", [], procedures=[P("0001A"), P("99213")], date_of_service=date(2021, 12, 31)),
    case("same-code-twice-is-not-a-pair", [], procedures=[P("99213"), P("99213")], ref="self-pair-ptp"),
    case("synthetic-control-pair", [E("NCCI_PTP", "procedures[1].code")], procedures=[P("99213"), P("36415")],
         ref="self-pair-ptp"),
    case("indicator-0", [E("NCCI_PTP", "procedures[1].code")], procedures=[P("13121"), P("13120")]),
    case("indicator-0-column-2-first", [E("NCCI_PTP", "procedures[0].code")], procedures=[P("13120"), P("13121")]),
    case("indicator-0-not-bypassed-by-59", [E("NCCI_PTP", "procedures[1].code")],
         procedures=[P("13121"), P("13120", ("59",))]),
    case("indicator-1-without-modifier", [E("NCCI_PTP", "procedures[1].code")], procedures=[P("0001U"), P("0030U")]),
    case("indicator-1-non-bypass-modifier", [E("NCCI_PTP", "procedures[1].code")],
         procedures=[P("0001U"), P("0030U", ("GA",))]),
    case("indicator-1-bypassed-59-on-column-2", [W("NCCI_PTP_BYPASSED", "procedures[1].code")],
         procedures=[P("0001U"), P("0030U", ("59",))]),
    case("indicator-1-bypassed-xs-on-column-1", [W("NCCI_PTP_BYPASSED", "procedures[1].code")],
         procedures=[P("0001U", ("XS",)), P("0030U")]),
    case("deleted-edit-on-its-deletion-date", [E("NCCI_PTP", "procedures[1].code")],
         procedures=[P("0001A"), P("99213")], date_of_service=date(2023, 12, 31)),
    case("deleted-edit-on-its-effective-date", [E("NCCI_PTP", "procedures[1].code")],
         procedures=[P("0001A"), P("99213")], date_of_service=date(2022, 1, 1)),
    case("two-column-2-codes", [E("NCCI_PTP", "procedures[1].code"), E("NCCI_PTP", "procedures[2].code")],
         procedures=[P("0001U"), P("0030U"), P("81161")]),
    case("indicator-1-bypassed-59-on-column-1", [W("NCCI_PTP_BYPASSED", "procedures[1].code")],
         procedures=[P("0001U", ("59",)), P("0030U")]),
    # 25 bypasses only on the E/M line (0001A/99213 was in force in 2023).
    case("em-25-on-the-em-line", [W("NCCI_PTP_BYPASSED", "procedures[1].code")],
         procedures=[P("0001A"), P("99213", ("25",))], date_of_service=date(2023, 6, 1)),
    case("em-25-on-the-non-em-line", [E("NCCI_PTP", "procedures[1].code")],
         procedures=[P("0001A", ("25",)), P("99213")], date_of_service=date(2023, 6, 1)),
    case("em-25-on-a-non-em-pair", [E("NCCI_PTP", "procedures[1].code")],
         procedures=[P("0001U", ("25",)), P("0030U", ("25",))]),
    # Anatomic modifiers bypass only when they name different sites.
    case("anatomic-rt-and-rt-is-one-site", [E("NCCI_PTP", "procedures[1].code")],
         procedures=[P("0001U", ("RT",)), P("0030U", ("RT",))]),
    case("anatomic-rt-and-lt", [W("NCCI_PTP_BYPASSED", "procedures[1].code")],
         procedures=[P("0001U", ("RT",)), P("0030U", ("LT",))]),
    case("anatomic-rt-and-none", [W("NCCI_PTP_BYPASSED", "procedures[1].code")],
         procedures=[P("0001U"), P("0030U", ("RT",))]),
]


@pytest.mark.parametrize("overrides, expected", NCCI_PTP)
def test_ncci_ptp(run, overrides, expected):
    assert run(coding.ncci_ptp, overrides) == expected


def test_ncci_messages_say_whether_a_modifier_can_help(make_encounter, coding_ref):
    def message(*lines: Procedure) -> str:
        (finding,) = coding.ncci_ptp(Chart.of(make_encounter(procedures=list(lines)), coding_ref))
        return finding.message

    assert "indicator 0" in message(P("13121"), P("13120", ("59",)))
    assert "bypass modifier" in message(P("0001U"), P("0030U"))
    assert "bypassed by modifier 59" in message(P("0001U"), P("0030U", ("59",)))
    assert "bypassed by modifier LT, RT" in message(P("0001U", ("RT",)), P("0030U", ("LT",)))


def line(code: str, *modifiers: str) -> Line:
    return Line(0, code, modifiers, 1, (1,))


@pytest.mark.parametrize(
    "column1, column2, used",
    [
        pytest.param(line("0001U", "59"), line("0030U"), ["59"], id="59-column-1"),
        pytest.param(line("0001U"), line("0030U", "59"), ["59"], id="59-column-2"),
        pytest.param(line("0001U", "XE"), line("0030U", "XP"), ["XE", "XP"], id="x-modifiers-both-lines"),
        pytest.param(line("0001U", "XU"), line("0030U"), ["XU"], id="xu"),
        pytest.param(line("80053"), line("80053", "91"), ["91"], id="91-repeat-lab"),
        pytest.param(line("27447", "58"), line("20610"), ["58"], id="58-global"),
        pytest.param(line("27447"), line("20610", "78"), ["78"], id="78-global"),
        pytest.param(line("27447", "79"), line("20610"), ["79"], id="79-global"),
        pytest.param(line("99213", "25"), line("20610"), ["25"], id="25-on-the-em-line"),
        pytest.param(line("20610"), line("99214", "25"), ["25"], id="25-on-the-em-line-column-2"),
        pytest.param(line("20610", "25"), line("99213"), [], id="25-on-the-procedure-line"),
        pytest.param(line("99202", "57"), line("20610"), ["57"], id="57-first-em-code"),
        pytest.param(line("99499", "24"), line("20610"), ["24"], id="24-last-em-code"),
        pytest.param(line("99500", "25"), line("20610"), [], id="99500-is-not-em"),
        pytest.param(line("20610", "RT"), line("20611", "RT"), [], id="rt-rt-one-site"),
        pytest.param(line("20610", "RT"), line("20611", "LT"), ["LT", "RT"], id="rt-lt"),
        pytest.param(line("20610", "RT"), line("20611"), ["RT"], id="rt-none"),
        pytest.param(line("20610"), line("20611", "LT"), ["LT"], id="none-lt"),
        pytest.param(line("26010", "F1"), line("26011", "F2"), ["F1", "F2"], id="digits"),
        pytest.param(line("20610", "RT", "LT"), line("20611", "RT", "LT"), [], id="same-two-sites"),
        pytest.param(line("20610", "RT", "59"), line("20611", "RT"), ["59"], id="59-with-one-site"),
        pytest.param(line("0001U", "GA", "76"), line("0030U", "50", "95"), [], id="no-bypass-kind"),
        pytest.param(line("0001U", "ZZ"), line("0030U"), [], id="unknown-modifier"),
        pytest.param(line("0001U"), line("0030U"), [], id="none"),
    ],
)
def test_bypassing_modifiers(coding_ref, column1, column2, used):
    assert coding.bypassing_modifiers(column1, column2, coding_ref.modifiers) == used
    assert coding.bypassing_modifiers(column2, column1, coding_ref.modifiers) == used  # either line


MUE = [
    case("at-the-limit", [], procedures=[P("99213", units=2)]),
    case("no-mue-for-the-code", [], procedures=[P("J3301", units=99)]),
    case("indicator-3-summed-over-lines", [E("MUE_EXCEEDED", "procedures[0].units")],
         procedures=[P("99213", units=2), P("83036"), P("99213", units=1)]),
    case("indicator-3-one-line", [E("MUE_EXCEEDED", "procedures[0].units")], procedures=[P("99213", units=3)]),
    case("indicator-3-code-normalised", [E("MUE_EXCEEDED", "procedures[0].units")], procedures=[P(" 99215", units=2)]),
    case("indicator-3-reported-once-a-day", [E("MUE_EXCEEDED", "procedures[0].units")],
         procedures=[P("99213", units=2), P("99213", units=2), P("99213", units=2)]),
    case("synthetic-indicator-1-two-lines-of-one", [], procedures=[P("J3301"), P("J3301")], ref="synthetic-mue"),
    case("synthetic-indicator-1-one-line-of-two", [E("MUE_EXCEEDED", "procedures[0].units")],
         procedures=[P("J3301", units=2)], ref="synthetic-mue"),
    case("synthetic-indicator-1-each-line-on-its-own", [E("MUE_EXCEEDED", "procedures[1].units"),
                                                        E("MUE_EXCEEDED", "procedures[2].units")],
         procedures=[P("J3301"), P("J3301", units=2), P("J3301", units=3)], ref="synthetic-mue"),
    case("synthetic-indicator-2-one-line", [], procedures=[P("96372")], ref="synthetic-mue"),
    case("synthetic-indicator-2-per-day", [E("MUE_EXCEEDED", "procedures[0].units")],
         procedures=[P("96372"), P("96372")], ref="synthetic-mue"),
]


@pytest.mark.parametrize("overrides, expected", MUE)
def test_mue(run, overrides, expected):
    assert run(coding.mue, overrides) == expected


def test_mue_message_names_the_indicator(make_encounter, coding_ref):
    ref = REF_VARIANTS["synthetic-mue"](coding_ref)
    (per_day,) = coding.mue(Chart.of(make_encounter(procedures=[P("96372"), P("96372")]), ref))
    assert "2 units on the date of service" in per_day.message and "indicator 2" in per_day.message
    (per_line,) = coding.mue(Chart.of(make_encounter(procedures=[P("J3301", units=2)]), ref))
    assert "a line" in per_line.message


# --- linkage ---------------------------------------------------------------------------------

FIVE_DX = ["E11.9", "I10", "E78.5", "J06.9", "F41.1"]

DX_POINTERS = [
    case("every-diagnosis-linked", [], procedures=[P(pointers=(1, 2))]),
    case("four-pointers", [], diagnoses=FIVE_DX[:4], procedures=[P(pointers=(1, 2, 3, 4))]),
    case("no-lines-nothing-to-link", [], procedures=[]),
    case("unlinked-external-cause-w", [], diagnoses=["S93.401A", "W19.XXXA"], procedures=[P(pointers=(1,))]),
    case("unlinked-external-cause-v-and-y", [], diagnoses=["S52.501A", "V43.52XA", "Y92.009"],
         procedures=[P(pointers=(1,))]),
    case("no-pointers", [E("DX_POINTER_COUNT", "procedures[1].dx_pointers")],
         procedures=[P(pointers=(1, 2)), P(pointers=())]),
    case("five-pointers", [E("DX_POINTER_COUNT", "procedures[0].dx_pointers")], diagnoses=FIVE_DX,
         procedures=[P(pointers=(1, 2, 3, 4, 5))]),
    case("pointer-twice", [E("DX_POINTER_COUNT", "procedures[0].dx_pointers")],
         procedures=[P(pointers=(1, 1)), P(pointers=(2,))]),
    case("pointer-past-the-last-diagnosis", [E("DX_POINTER_RANGE", "procedures[0].dx_pointers")],
         procedures=[P(pointers=(1, 2, 3))]),
    case("pointer-zero", [E("DX_POINTER_RANGE", "procedures[0].dx_pointers")], procedures=[P(pointers=(0, 1, 2))]),
    case("principal-unlinked", [E("DX_PRINCIPAL_UNLINKED", "diagnoses[0]")],
         procedures=[P(pointers=(2,)), P("83036", pointers=(2,))]),
    case("secondary-unlinked-is-a-warning", [W("DX_UNLINKED", "diagnoses[1]=I10")], procedures=[P(pointers=(1,))]),
    case("unlinked-secondaries-but-not-the-external-cause",
         [W("DX_UNLINKED", "diagnoses[1]=I10"), W("DX_UNLINKED", "diagnoses[3]=E78.5")],
         diagnoses=["S93.401A", "I10", "W19.XXXA", "E78.5"], procedures=[P(pointers=(1,))]),
]


@pytest.mark.parametrize("overrides, expected", DX_POINTERS)
def test_dx_pointers(run, overrides, expected):
    assert run(coding.dx_pointers, overrides) == expected


LINE_COUNT = [
    case("one", [], procedures=[P()]),
    case("fifty", [], procedures=[P("83036")] * 50),
    case("fifty-one", [E("LINES_TOO_MANY", "procedures")], procedures=[P("83036")] * 51),
]


@pytest.mark.parametrize("overrides, expected", LINE_COUNT)
def test_line_count(run, overrides, expected):
    assert run(coding.line_count, overrides) == expected


# --- the tables cover the registry ---------------------------------------------------------

TABLES = {
    coding.required_data: REQUIRED_DATA,
    coding.diagnosis_codes: DIAGNOSIS_CODES,
    coding.excludes1: EXCLUDES1,
    coding.principal_diagnosis: PRINCIPAL,
    coding.demographics: DEMOGRAPHICS,
    coding.diagnosis_list: DIAGNOSIS_LIST,
    coding.procedure_codes: PROCEDURE_CODES,
    coding.modifiers: MODIFIERS,
    coding.units: UNITS,
    coding.ncci_ptp: NCCI_PTP,
    coding.mue: MUE,
    coding.dx_pointers: DX_POINTERS,
    coding.line_count: LINE_COUNT,
}


def test_every_rule_function_has_a_table_with_passing_and_failing_cases():
    assert set(TABLES) == set(RULES), "a rule without a table of cases here"
    for rule, cases in TABLES.items():
        expectations = [param.values[1] for param in cases]
        assert [] in expectations, f"{rule.__name__}: no passing case"
        assert any(expectations), f"{rule.__name__}: no failing case"


def test_every_rule_id_is_raised_by_a_failing_case(run):
    """Runs every case again and collects what the rules actually raised: a new rule id
    without a failing case in these tables fails here."""
    raised: set[str] = set()
    for rule, cases in TABLES.items():
        for param in cases:
            overrides, expected = param.values
            found = run(rule, overrides)
            assert found == expected, param.id
            raised.update(rule_id for rule_id, _, _ in found)
            # Each rule raises only the ids it registered.
            assert all(RULE_IDS[rule_id] == rule.__name__ for rule_id, _, _ in found), param.id
    assert raised == set(RULE_IDS), f"no failing case for {sorted(set(RULE_IDS) - raised)}"


def test_a_passing_case_passes_every_rule(make_encounter, coding_ref):
    """The tables change one thing from the base encounter; these passing cases are clean end to end too."""
    for overrides in ({"diagnoses": ["M5450", "i10"]}, {"diagnoses": ["G30.9", "F02.80"]},
                      {"diagnoses": ["S93.401A", "W19.XXXA"], "procedures": [P("99203"), P("73610", ("RT",))]},
                      {"diagnoses": ["O80"], "patient": patient(Sex.F, 12), "procedures": [P("99213")]},
                      {"diagnoses": ["P59.9"], "patient": {"birth_date": date(2026, 1, 15)},
                       "procedures": [P("99213"), P("82247")]}):
        assert check_encounter(make_encounter(**overrides), coding_ref) == [], overrides
