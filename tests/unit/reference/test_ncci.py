"""engine.reference.ncci: the CMS PTP and MUE files as CMS publishes them, and the edit look-ups.

Files written under tmp_path are built from the shipped sample (same layout) or are
clearly synthetic rows; nothing here claims to be a real CMS value unless it is read
from the shipped files.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from engine.reference.ncci import ModifierIndicator, Mue, MueAdjudication, MueTable, PtpEdit, PtpTable

PTP_HEADER_LINES = 6  # copyright, title, and the column header wrapped over four lines


@pytest.fixture(scope="module")
def ptp_file(settings) -> Path:
    return settings.ncci_ptp_path


@pytest.fixture(scope="module")
def mue_file(settings) -> Path:
    return settings.ncci_mue_path


def ptp_data_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("latin-1").splitlines()[PTP_HEADER_LINES:]


def ptp_row(col1: str, col2: str, effective: str = "20200101", deleted: str = "*", indicator: str = "1",
            rationale: str = "synthetic row", before_1996: str = "") -> str:
    return "\t".join([col1, col2, before_1996, effective, deleted, indicator, rationale])


def ptp_text(*rows: str, header: list[str] | None = None) -> bytes:
    """A PTP file in the CMS layout: CRLF lines, the shipped file's six header lines."""
    lines = header if header is not None else SHIPPED_HEADER
    return ("\r\n".join([*lines, *rows]) + "\r\n").encode("latin-1")


def _shipped_header() -> list[str]:
    from engine.settings import Settings

    return Settings().ncci_ptp_path.read_bytes().decode("latin-1").splitlines()[:PTP_HEADER_LINES]


SHIPPED_HEADER = _shipped_header()


# --- PTP: the shipped file -------------------------------------------------------------------


def test_shipped_ptp_file_loads_every_data_row(ptp_file):
    table = PtpTable.load(ptp_file)
    assert len(table) == len([line for line in ptp_data_lines(ptp_file) if line.strip()]) == 11


def test_shipped_ptp_row_fields(ptp_file):
    table = PtpTable.load(ptp_file)
    edit = table.edit_for("13121", "13120", date(2026, 3, 2))
    assert edit == PtpEdit(
        column1="13121", column2="13120", existed_before_1996=True, effective=date(1996, 1, 1), deleted=None,
        modifier_indicator=ModifierIndicator.NOT_ALLOWED, rationale="CPT Manual or CMS manual coding instruction")
    deleted = table.edit_for("0001A", "99213", date(2023, 6, 1))
    assert deleted is not None
    assert (deleted.existed_before_1996, deleted.effective, deleted.deleted, deleted.modifier_indicator) == (
        False, date(2022, 1, 1), date(2023, 12, 31), ModifierIndicator.ALLOWED)


def test_the_shipped_file_is_crlf_latin1_with_six_header_lines(ptp_file):
    """What the loader copes with, as the shipped sample has it (the CMS layout)."""
    raw = ptp_file.read_bytes()
    assert b"\r\n" in raw
    assert SHIPPED_HEADER[2].startswith("Column 1\tColumn 2")
    assert ptp_data_lines(ptp_file)[0].split("\t")[:2] == ["0001A", "99211"]


# --- PTP: edit_for -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "day, applies",
    [
        pytest.param(date(2021, 12, 31), False, id="day-before-effective"),
        pytest.param(date(2022, 1, 1), True, id="effective-date-inclusive"),
        pytest.param(date(2023, 12, 31), True, id="deletion-date-inclusive"),
        pytest.param(date(2024, 1, 1), False, id="day-after-deletion"),
    ],
)
def test_edit_for_effective_and_deletion_dates_are_inclusive(ptp_file, day, applies):
    assert (PtpTable.load(ptp_file).edit_for("0001A", "99213", day) is not None) is applies


def test_edit_for_is_directional_and_needs_an_edit(ptp_file):
    table = PtpTable.load(ptp_file)
    assert table.edit_for("13120", "13121", date(2026, 3, 2)) is None  # column order matters
    assert table.edit_for("99213", "36415", date(2026, 3, 2)) is None


def test_indicator_9_row_is_no_edit_but_another_period_of_the_pair_is(ptp_file):
    """17000/17281: indicator 1 from 1999-07-01 to 2004-12-31, and an indicator-9 row for 1999-07-01."""
    table = PtpTable.load(ptp_file)
    on_both = table.edit_for("17000", "17281", date(1999, 7, 1))
    assert on_both is not None and on_both.modifier_indicator == ModifierIndicator.ALLOWED
    only_9 = PtpTable([PtpEdit("17000", "17281", False, date(1999, 7, 1), date(1999, 7, 1),
                               ModifierIndicator.NOT_APPLICABLE, "synthetic")])
    assert only_9.edit_for("17000", "17281", date(1999, 7, 1)) is None
    assert len(only_9) == 1  # kept, but never an edit


def test_deleted_before_drops_edits_deleted_before_the_horizon(ptp_file):
    everything = PtpTable.load(ptp_file)
    recent = PtpTable.load(ptp_file, deleted_before=date(2024, 1, 1))
    on_the_day = PtpTable.load(ptp_file, deleted_before=date(2023, 12, 31))
    # Dropped: 0001A × 5 (deleted 2023-12-31), 0001M (2018-12-31), 17000 × 2 (2004, 1999).
    assert (len(everything), len(recent), len(on_the_day)) == (11, 3, 8)
    assert recent.edit_for("0001A", "99213", date(2023, 12, 31)) is None
    assert on_the_day.edit_for("0001A", "99213", date(2023, 12, 31)) is not None  # deleted that day: kept
    # Edits in force (no deletion date) are always kept.
    assert recent.edit_for("13121", "13120", date(2026, 3, 2)) is not None
    assert recent.edit_for("0001U", "0030U", date(2026, 3, 2)) is not None


# --- PTP: the layouts the loader must accept -------------------------------------------------


def test_extra_cms_header_lines_still_load(tmp_path, ptp_file):
    extra = ["CPT codes, descriptions and other data only are copyright 2025 American Medical Association.",
             "Applicable FARS\\DFARS Restrictions Apply to Government Use.", "\t\t\t\t\t\t", ""]
    path = tmp_path / "ccipra-v322r0-f1.TXT"
    path.write_bytes(ptp_text(*ptp_data_lines(ptp_file), header=[*extra, *SHIPPED_HEADER]))
    assert len(PtpTable.load(path)) == len(PtpTable.load(ptp_file)) == 11


def test_a_folder_of_files_loads_them_all(tmp_path, ptp_file):
    lines = ptp_data_lines(ptp_file)
    folder = tmp_path / "ptp"
    folder.mkdir()
    (folder / "ccipra-v322r0-f1.TXT").write_bytes(ptp_text(*lines[:6]))
    (folder / "ccipra-v322r0-f2.TXT").write_bytes(ptp_text(*lines[6:]))
    (folder / "README.md").write_text("not an NCCI file: ignored\n")
    table = PtpTable.load(folder)
    assert len(table) == 11
    assert table.edit_for("0001A", "99211", date(2023, 1, 1)) is not None  # from f1
    assert table.edit_for("13121", "13120", date(2026, 1, 1)) is not None  # from f2


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .txt or .csv NCCI files"):
        PtpTable.load(tmp_path)


def test_latin1_bytes_in_the_rationale_load(tmp_path):
    path = tmp_path / "ptp.txt"
    path.write_bytes(ptp_text(ptp_row("99901", "99902", rationale="CPT\xae Manual or CMS manual coding instruction")))
    assert b"\xae" in path.read_bytes()  # one Latin-1 byte, not UTF-8
    (edit,) = [PtpTable.load(path).edit_for("99901", "99902", date(2026, 1, 1))]
    assert edit is not None and edit.rationale == "CPT\u00ae Manual or CMS manual coding instruction"


def test_a_row_without_rationale_loads(tmp_path):
    path = tmp_path / "ptp.txt"
    path.write_bytes(ptp_text("\t".join(["99901", "99902", "", "20200101", "*", "0"])))
    edit = PtpTable.load(path).edit_for("99901", "99902", date(2026, 1, 1))
    assert edit is not None and edit.rationale == "" and edit.modifier_indicator == ModifierIndicator.NOT_ALLOWED


@pytest.mark.parametrize("indicator", ["7", "x", ""], ids=["7", "letter", "blank"])
def test_a_bad_modifier_indicator_is_an_error(tmp_path, indicator):
    path = tmp_path / "ptp.txt"
    path.write_bytes(ptp_text(ptp_row("99901", "99902"), ptp_row("13121", "13120", indicator=indicator)))
    with pytest.raises(ValueError, match=repr(indicator) if indicator != "7" else "7 is not a valid"):
        PtpTable.load(path)


def test_a_bad_modifier_indicator_error_names_the_row(tmp_path):
    path = tmp_path / "ptp.txt"
    path.write_bytes(ptp_text(ptp_row("13121", "13120", indicator="x")))
    with pytest.raises(ValueError, match="13121"):
        PtpTable.load(path)


def test_a_row_without_effective_date_is_an_error_naming_the_pair(tmp_path):
    path = tmp_path / "ptp.txt"
    path.write_bytes(ptp_text(ptp_row("13121", "13120", effective="*")))
    with pytest.raises(ValueError, match="13121/13120 has no effective date"):
        PtpTable.load(path)


# --- MUE --------------------------------------------------------------------------------------


def test_shipped_mue_file_loads_every_row(mue_file):
    table = MueTable.load(mue_file)
    text = mue_file.read_bytes().decode("latin-1")
    data_lines = [line for line in text.splitlines() if line[:5].isdigit()]
    assert len(table) == len(data_lines) == 16
    assert table.get("99213") == Mue("99213", 2, MueAdjudication.DATE_OF_SERVICE_CLINICAL, "")
    assert table.get("80053") == Mue("80053", 1, MueAdjudication.DATE_OF_SERVICE_CLINICAL, "")
    assert table.get("J3301") is None


def test_shipped_mue_file_starts_with_a_multiline_copyright_cell_and_a_two_line_header(mue_file):
    text = mue_file.read_text(encoding="latin-1")
    assert text.startswith('"') and '"HCPCS/\nCPT Code"' in text


def mue_csv(*rows: str) -> bytes:
    """The CMS MUE CSV layout: a multi-line quoted copyright cell, then the header whose
    first cell is "HCPCS/\\nCPT Code", then rows."""
    head = ('"CPT codes, descriptions and other data only are copyright 2025 American Medical Association.\n'
            'All Rights Reserved.",,,\n'
            '"HCPCS/\nCPT Code",Practitioner Services MUE Values,MUE Adjudication Indicator,MUE Rationale\n')
    return (head + "".join(row + "\n" for row in rows)).encode("latin-1")


def test_mue_all_three_indicators_and_a_latin1_rationale(tmp_path):
    path = tmp_path / "mue.csv"
    path.write_bytes(mue_csv(
        "99901,1,1 Line Edit,synthetic",
        '99902,2,"2 Date of Service Edit: Policy",Nature of Service\xae',
        "99903,3,3 Date of Service Edit: Clinical,",
    ))
    table = MueTable.load(path)
    assert len(table) == 3
    assert table.get("99901") == Mue("99901", 1, MueAdjudication.LINE, "synthetic")
    assert table.get("99902") == Mue("99902", 2, MueAdjudication.DATE_OF_SERVICE_POLICY, "Nature of Service\u00ae")
    assert table.get("99903").adjudication == MueAdjudication.DATE_OF_SERVICE_CLINICAL


def test_mue_folder_of_files(tmp_path):
    (tmp_path / "mue-a.csv").write_bytes(mue_csv("99901,1,1 Line Edit,"))
    (tmp_path / "mue-b.csv").write_bytes(mue_csv("99902,4,3 Date of Service Edit: Clinical,"))
    table = MueTable.load(tmp_path)
    assert (len(table), table.get("99901").units, table.get("99902").units) == (2, 1, 4)


@pytest.mark.parametrize("row", ["99901,1,7 Unknown Edit,", "99901,one,3 Date of Service Edit: Clinical,",
                                 "99901,1,,"], ids=["indicator-7", "units-not-a-number", "indicator-blank"])
def test_mue_malformed_row_is_an_error(tmp_path, row):
    path = tmp_path / "mue.csv"
    path.write_bytes(mue_csv(row))
    with pytest.raises(ValueError):
        MueTable.load(path)


def test_mue_table_in_memory():
    table = MueTable([Mue("99901", 1, MueAdjudication.LINE, "synthetic")])
    assert len(table) == 1 and table.get("99901").units == 1 and table.get("99902") is None
