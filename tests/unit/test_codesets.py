"""engine.codesets: ICD-10-CM (simple_icd_10_cm), CPT/HCPCS forms, NPI Luhn."""

from __future__ import annotations

import pytest

from engine.codesets import (
    icd10_billable,
    icd10_description,
    icd10_exists,
    icd10_shape_ok,
    modifier_shape_ok,
    normalize_icd10,
    npi_check_digit,
    npi_is_valid,
    procedure_code_kind,
)

# --- NPI ------------------------------------------------------------------------


@pytest.mark.parametrize("npi", ["1234567893", "1912301953"])
def test_known_valid_npis(npi):
    assert npi_is_valid(npi)


def luhn_valid(number: str) -> bool:
    """Textbook Luhn over the full number (an independent oracle)."""
    total = 0
    for position, ch in enumerate(reversed(number)):
        digit = int(ch)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


@pytest.mark.parametrize("npi", ["1234567893", "1912301953", "2000000008", "1999999999"])
def test_check_digit_agrees_with_luhn_over_the_80840_prefix(npi):
    assert npi_check_digit(npi[:9]) == next(d for d in range(10) if luhn_valid("80840" + npi[:9] + str(d)))


def test_exactly_one_check_digit_is_valid():
    for stem in ("123456789", "191230195", "200000000", "155555555"):
        valid = [d for d in range(10) if npi_is_valid(stem + str(d))]
        assert valid == [npi_check_digit(stem)]
        assert luhn_valid("80840" + stem + str(valid[0]))


@pytest.mark.parametrize(
    "npi",
    [
        "1234567890",  # wrong check digit
        "1234567894",
        "123456789",  # 9 digits
        "12345678933",  # 11 digits
        "",
        "0234567893",  # first digit must be 1 or 2
        "3234567893",
        "9234567893",
        "123456789A",
        "12345-7893",
        " 1234567893",
    ],
)
def test_invalid_npis(npi):
    assert not npi_is_valid(npi)


@pytest.mark.parametrize("npi", ["1\u00b234567893", "123456789\u0663"], ids=["superscript-two", "arabic-indic-three"])
def test_non_ascii_digits_are_not_a_valid_npi(npi):
    assert npi_is_valid(npi) is False


# --- ICD-10-CM --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, normal",
    [("M5450", "M54.50"), ("m545.0", "M54.50"), (" M54.50 ", "M54.50"), ("i10", "I10"), ("S52501A", "S52.501A"),
     ("Z23", "Z23")],
)
def test_normalize_icd10(raw, normal):
    assert normalize_icd10(raw) == normal


def test_m54_5_exists_but_is_a_header():
    assert icd10_exists("M54.5")
    assert not icd10_billable("M54.5")


def test_m54_50_is_billable_and_undotted_form_normalises_to_it():
    assert icd10_billable("M54.50")
    assert icd10_billable(normalize_icd10("M5450"))
    assert icd10_description("M54.50") != ""


def test_seventh_character_makes_s52_501_billable():
    assert icd10_exists("S52.501")
    assert not icd10_billable("S52.501")
    assert icd10_billable("S52.501A")


@pytest.mark.parametrize("code", ["XYZ", "XX9.9", "1AB", "M5", "M54.50000", ""])
def test_badly_shaped_codes(code):
    assert not icd10_shape_ok(code)
    assert not icd10_exists(code)
    assert not icd10_billable(code)
    assert icd10_description(code) == ""


def test_well_shaped_but_unknown_code():
    assert icd10_shape_ok("Z99.999")
    assert not icd10_exists("Z99.999")
    assert not icd10_billable("Z99.999")


@pytest.mark.parametrize("code", ["E11.9", "I10", "Z23", "J06.9", "M17.11", "S93.401A", "F41.1", "Z00.00"])
def test_common_billable_codes(code):
    assert icd10_exists(code) and icd10_billable(code)


@pytest.mark.parametrize("code", ["E11", "M54", "S52", "Z00.0"])
def test_category_headers_are_not_billable(code):
    assert icd10_exists(code)
    assert not icd10_billable(code)


# --- CPT / HCPCS / modifiers ----------------------------------------------------------


@pytest.mark.parametrize(
    "code, kind",
    [("99213", "CPT-I"), ("00100", "CPT-I"), ("3074F", "CPT-II"), ("0042T", "CPT-III"), ("J1100", "HCPCS-II"),
     ("G0008", "HCPCS-II"), ("A0021", "HCPCS-II"), ("V2020", "HCPCS-II")],
)
def test_valid_procedure_code_forms(code, kind):
    assert procedure_code_kind(code) == kind


@pytest.mark.parametrize(
    "code", ["9921", "W1234", "99213X", "992134", "j1100", "3074f", "ABCDE", "", "9921 ", "J110", "Z1234", "W12345"]
)
def test_invalid_procedure_code_forms(code):
    assert procedure_code_kind(code) is None


@pytest.mark.parametrize("modifier", ["25", "59", "RT", "LT", "GP", "95", "XU"])
def test_valid_modifiers(modifier):
    assert modifier_shape_ok(modifier)


@pytest.mark.parametrize("modifier", ["", "2", "255", "rt", "R-", " 25"])
def test_invalid_modifiers(modifier):
    assert not modifier_shape_ok(modifier)
