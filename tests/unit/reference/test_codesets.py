"""engine.reference.codesets: ICD-10-CM (simple_icd_10_cm), CPT/HCPCS forms, NPI Luhn."""

from __future__ import annotations

import pytest

from engine.reference.codesets import (
    CodeRange,
    DemographicEdit,
    ModifierTable,
    icd10_billable,
    icd10_description,
    icd10_exists,
    icd10_info,
    icd10_shape_ok,
    is_evaluation_and_management,
    is_external_cause,
    load_demographic_edits,
    modifier_shape_ok,
    normalize_icd10,
    npi_check_digit,
    npi_is_valid,
    parse_note_references,
    procedure_code_kind,
    with_placeholders,
    with_seventh_character,
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
     ("G0008", "HCPCS-II"), ("A0021", "HCPCS-II"), ("V2020", "HCPCS-II"), ("0001A", "CPT-I"), ("0001M", "CPT-MAAA"),
     ("0001U", "CPT-PLA"), ("1234F", "CPT-II")],
)
def test_valid_procedure_code_forms(code, kind):
    assert procedure_code_kind(code) == kind


@pytest.mark.parametrize(
    "code", ["9921", "W1234", "99213X", "992134", "j1100", "3074f", "ABCDE", "", "9921 ", "J110", "Z1234", "W12345",
             "0001B", "0001u", "001U", "00001U", "A001U"]
)
def test_invalid_procedure_code_forms(code):
    assert procedure_code_kind(code) is None


@pytest.mark.parametrize("modifier", ["25", "59", "RT", "LT", "GP", "95", "XU"])
def test_valid_modifiers(modifier):
    assert modifier_shape_ok(modifier)


@pytest.mark.parametrize("modifier", ["", "2", "255", "rt", "R-", " 25"])
def test_invalid_modifiers(modifier):
    assert not modifier_shape_ok(modifier)


# --- icd10_info ---------------------------------------------------------------------------


def test_icd10_info_of_a_billable_code():
    info = icd10_info("E11.9")
    assert (info.code, info.exists, info.billable, info.bare) == ("E11.9", True, True, "E119")
    assert "diabetes" in info.description.lower()
    assert info.seventh_characters == () and not info.manifestation
    # Excludes1 notes of E11.9 and its ancestors, as ranges: type 1 diabetes (E10.-) among them.
    assert CodeRange("E10", "E10") in info.excludes1
    assert any(r.matches("E109") for r in info.excludes1) and not any(r.matches("I10") for r in info.excludes1)


def test_icd10_info_is_cached():
    assert icd10_info("I10") is icd10_info("I10")


def test_icd10_info_seventh_characters_come_from_the_category():
    assert icd10_info("S52.501").seventh_characters[:3] == ("A", "B", "C")
    assert not icd10_info("S52.501").billable and icd10_info("S52.501A").billable
    assert icd10_info("T14.90XA").seventh_characters == ("A", "D", "S")
    # A code that does not exist has none (ICD10_PLACEHOLDER_MISSING asks with_placeholders instead).
    missing = icd10_info("T14.90A")
    assert (missing.exists, missing.billable, missing.seventh_characters) == (False, False, ())
    assert icd10_info("Z99.999").seventh_characters == () and icd10_info("XX9.9").seventh_characters == ()


@pytest.mark.parametrize(
    "code, needs",
    [("S52.501", True), ("T14.90", True), ("W19", True), ("S52.501A", False), ("T14.90XA", False),
     ("S52.50", False), ("S52", False), ("M54.5", False), ("E11.9", False), ("T14.90A", False), ("Z99.999", False)],
)
def test_icd10_info_needs_seventh_character_only_when_that_is_all_it_lacks(code, needs):
    assert icd10_info(code).needs_seventh_character is needs


@pytest.mark.parametrize(
    "code, seventh, full",
    [("S52.501", "A", "S52.501A"), ("T14.90", "A", "T14.90XA"), ("W19", "A", "W19.XXXA"), ("S93.40", "D", "S93.40XD"),
     ("s52.501", "a", "S52.501A"), ("S52501", "S", "S52.501S")],
)
def test_with_seventh_character_pads_with_placeholder_x(code, seventh, full):
    assert with_seventh_character(code, seventh) == full


@pytest.mark.parametrize("code, manifestation", [("G63", True), ("F02.80", True), ("G30.9", False),
                                                  ("E11.42", False), ("I10", False), ("XX9.9", False)])
def test_icd10_info_manifestation(code, manifestation):
    assert icd10_info(code).manifestation is manifestation


def test_icd10_info_of_a_malformed_code():
    info = icd10_info("XX9.9")
    assert (info.exists, info.billable, info.description, info.excludes1) == (False, False, "", ())


# --- code references in tabular notes --------------------------------------------------------


@pytest.mark.parametrize(
    "text, first, last",
    [("E10.-", "E10", "E10"), ("O24.4-", "O244", "O244"), ("P70.2", "P702", "P702"), ("E08", "E08", "E08"),
     ("O10-O11", "O10", "O11"), ("A04.0-A04.4", "A040", "A044"), ("N70-N98", "N70", "N98"),
     (" o00-o9a ", "O00", "O9A"), ("Z3A", "Z3A", "Z3A")],
)
def test_code_range_parse(text, first, last):
    assert CodeRange.parse(text) == CodeRange(first, last)


@pytest.mark.parametrize("text", ["", "diabetes", "E1", "E10.-.-", "10-11", "E10 E11"])
def test_code_range_parse_rejects_what_is_not_a_reference(text):
    with pytest.raises(ValueError, match="not an ICD-10-CM code reference"):
        CodeRange.parse(text)


@pytest.mark.parametrize(
    "text, bare, matches",
    [("E10.-", "E109", True), ("E10.-", "E11", False), ("O10-O11", "O10019", True), ("O10-O11", "O119", True),
     ("O10-O11", "O12", False), ("O10-O11", "O09", False), ("A04.0-A04.4", "A043", True),
     ("A04.0-A04.4", "A045", False), ("A04.0-A04.4", "A0471", False), ("O00-O9A", "O9A211", True),
     ("O00-O9A", "O99", True), ("O00-O9A", "P00", False), ("P70.2", "P702", True), ("P70.2", "P701", False)],
)
def test_code_range_matches_by_prefix(text, bare, matches):
    assert CodeRange.parse(text).matches(bare) is matches


def test_parse_note_references_keeps_only_all_code_groups():
    assert parse_note_references("type 1 diabetes mellitus (E10.-)") == (CodeRange("E10", "E10"),)
    assert parse_note_references("hypertension complicating pregnancy (O10-O11, O13-O16)") == (
        CodeRange("O10", "O11"), CodeRange("O13", "O16"))
    assert parse_note_references("neonatal (P70.2) and gestational (O24.4-) diabetes") == (
        CodeRange("P702", "P702"), CodeRange("O244", "O244"))
    # A group with words in it is skipped whole: it cannot be matched exactly.
    assert parse_note_references("diabetes (E08 with 5th character 9, E11)") == ()
    assert parse_note_references("no references here") == ()
    # Skipped whole even when the failing part comes after good ones.
    assert parse_note_references("diabetes (E10.-, E11.-, due to drugs)") == ()
    assert parse_note_references("(E10.-, with coma) but (E11.-)") == (CodeRange("E11", "E11"),)


@pytest.mark.parametrize(
    "note, ranges",
    [
        pytest.param("rheumatic fever with heart involvement (I01.0 -I01.9)", [("I010", "I019")], id="I00"),
        pytest.param("apnea of newborn (P28.3- - P28.4-)", [("P283", "P284")], id="P28.2"),
        pytest.param("specified syndactyly of hand and feet - code to specified conditions (Q70.0- -Q70.3-)",
                     [("Q700", "Q703")], id="Q70.4"),
        pytest.param("cognitive deficits following (sequelae of) cerebral hemorrhage or infarction "
                     "(I69.01-I69.11-, I69.21-I69.31-, I69.81- I69.91-)",
                     [("I6901", "I6911"), ("I6921", "I6931"), ("I6981", "I6991")], id="F06.7"),
        pytest.param("(A00 - A09)", [("A00", "A09")], id="spaces-both-sides"),
    ],
)
def test_parse_note_references_reads_ranges_written_with_stray_spaces(note, ranges):
    """Every Excludes1 note of FY2026 ICD-10-CM with a space by a range's dash (I00, P28.2,
    Q70.4, F06.7, as a scan of the code set finds them), and a synthetic both-sides case."""
    assert parse_note_references(note) == tuple(CodeRange(first, last) for first, last in ranges)


@pytest.mark.parametrize(
    "code, excluded",
    [("I00", "I01.0"), ("P28.2", "P28.41"), ("Q70.4", "Q70.31"), ("F06.70", "I69.910")],
)
def test_a_spaced_excludes1_range_reaches_icd10_info(code, excluded):
    assert any(ref.matches(icd10_info(excluded).bare) for ref in icd10_info(code).excludes1)


# --- placeholders, external causes ---------------------------------------------------------


@pytest.mark.parametrize(
    "code, fixed",
    [("T14.90A", "T14.90XA"), ("W19A", "W19.XXXA"), ("W19.A", "W19.XXXA"), ("T14.90XA", None), ("S52.501", None),
     ("Z99.999", None), ("W1", None), ("E11.9", None)],
)
def test_with_placeholders(code, fixed):
    assert with_placeholders(code) == fixed


@pytest.mark.parametrize(
    "code, em",
    [("99202", True), ("99213", True), ("99215", True), ("99499", True), ("99201", False), ("99500", False),
     ("20610", False), ("G0402", False), ("9921", False), ("992130", False), ("", False), ("0001A", False)],
)
def test_is_evaluation_and_management(code, em):
    assert is_evaluation_and_management(code) is em


@pytest.mark.parametrize("code, external", [("V43.52XA", True), ("W19.XXXA", True), ("X58.XXXA", True),
                                             ("Y92.009", True), ("S93.401A", False), ("E11.9", False), ("", False)])
def test_is_external_cause(code, external):
    assert is_external_cause(code) is external


# --- demographic edits, modifiers --------------------------------------------------------------


def test_load_demographic_edits_reads_the_shipped_file(settings):
    edits = {e.edit_id: e for e in load_demographic_edits(settings.icd10_demographic_edits_file)}
    assert set(edits) == {"newborn_age", "maternity_age", "female_only", "male_only"}
    assert (edits["newborn_age"].min_age, edits["newborn_age"].max_age, edits["newborn_age"].sex) == (0, 0, None)
    assert edits["maternity_age"].applies_to("O80") and edits["maternity_age"].applies_to("Z3A.10")
    assert edits["female_only"].applies_to("N83.20") and not edits["female_only"].applies_to("N40.0")
    assert edits["male_only"].applies_to("N40.0") and edits["male_only"].applies_to("C61")
    assert not edits["male_only"].applies_to("Z12.4") and edits["female_only"].applies_to("Z12.4")
    assert all(e.label for e in edits.values())


def test_demographic_edit_applies_to_dotted_and_bare_codes():
    edit = DemographicEdit("x", "synthetic", (CodeRange.parse("P00-P96"), CodeRange.parse("Z38")), min_age=0,
                           max_age=0)
    assert edit.applies_to("P59.9") and edit.applies_to("P599") and edit.applies_to("Z38.00")
    assert not edit.applies_to("Q00.0") and not edit.applies_to("Z37.0")


def test_modifier_table_loads_the_shipped_file(settings):
    table = ModifierTable.load(settings.modifiers_file)
    assert {"25", "59", "XS", "XE", "XP", "XU", "RT", "LT", "GP", "95"} <= set(table.modifiers)
    assert "ZZ" not in table and "25" in table
    assert {"59", "XS", "XE", "XP", "XU", "25", "RT", "LT", "91"} <= table.bypass
    assert not {"GP", "95", "26", "GA"} & table.bypass
    assert table.modifiers["59"].kind == "ncci" and table.modifiers["59"].description
    # The kinds bypassing_modifiers reads: E/M-only, anatomic (by site), the rest on either line.
    assert {code for code, m in table.modifiers.items() if m.kind == "em"} == {"24", "25", "57"}
    assert {"RT", "LT", "F1", "T1", "E1", "LC"} <= {code for code, m in table.modifiers.items() if m.kind == "anatomic"}
    assert {(code, table.modifiers[code].kind) for code in ("58", "78", "79", "91", "XS")} == {
        ("58", "global"), ("78", "global"), ("79", "global"), ("91", "repeat"), ("XS", "ncci")}


def test_modifier_table_skips_comments_and_normalises(tmp_path):
    path = tmp_path / "modifiers.csv"
    path.write_text("# a comment\nmodifier,kind,ncci_bypass,description\n xs ,ncci,Yes,Separate structure\n"
                    "gp,therapy,no,Physical therapy plan\n# trailing\n")
    table = ModifierTable.load(path)
    assert set(table.modifiers) == {"XS", "GP"} and table.bypass == frozenset({"XS"})
