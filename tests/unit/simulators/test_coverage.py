"""simulators.coverage: the master data the EHR writes and the payer reads back."""

from __future__ import annotations

import csv
from datetime import date

import pytest

from engine.model.events import Address, Sex, Subscriber
from simulators.coverage import (
    COVERAGE_FILE,
    PATIENTS_FILE,
    SELF,
    Coverage,
    PatientRecord,
    load_coverage,
    write_master_data,
)
from simulators.ehr import practice_for
from tests.factories import make_patient

TODAY = date(2026, 3, 2)
HOME = Address("12 OAK ST", "AURORA", "CO", "80012")


def record(index: int, coverage: Coverage, sex: Sex = Sex.F) -> PatientRecord:
    patient = make_patient(patient_id=f"MRN{index:06d}", last_name=f"Chen{index}", birth_date=date(1958 + index, 7, 14),
                           sex=sex)
    return PatientRecord(patient, HOME, coverage)


@pytest.fixture
def records() -> list[PatientRecord]:
    return [
        record(0, Coverage("PPO000000001", "PPO01", "PPO01-GOLD", SELF, None, date(2021, 1, 1), None)),
        record(1, Coverage("HMO000000002", "HMO01", "HMO01-SILVER", "01",
                           Subscriber("01", "Wei", "Chen1", date(1956, 1, 30), "M"), date(2019, 5, 1), None)),
        record(2, Coverage("MCD000000003", "MCD01", "MCD01-BRONZE", "19",
                           Subscriber("19", "Lee", "Chen2", None, "F"), date(2020, 2, 29), date(2025, 12, 31)),
               Sex.M),
        record(3, Coverage("MCR000000004", "MCR01", "MCR01-GOLD", SELF, None, date(2011, 7, 1), date(2026, 1, 15))),
    ]


def test_write_then_load_gives_the_same_coverage(records, tmp_path):
    folder = tmp_path / "state" / "master"  # created, parents too
    write_master_data(records, folder)
    assert load_coverage(folder) == {r.coverage.member_id: r.coverage for r in records}


def test_the_patients_file_has_one_row_per_patient_with_address_and_member_id(records, tmp_path):
    write_master_data(iter(records), tmp_path)  # any iterable
    with (tmp_path / PATIENTS_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["patient_id"] for row in rows] == [r.patient.patient_id for r in records]
    first = rows[0]
    assert first == {"patient_id": "MRN000000", "first_name": "Ana", "last_name": "Chen0", "birth_date": "1958-07-14",
                     "sex": "F", "address_line1": "12 OAK ST", "city": "AURORA", "state": "CO", "postal_code": "80012",
                     "member_id": "PPO000000001"}
    assert [row["member_id"] for row in rows] == [r.coverage.member_id for r in records]


def test_the_coverage_file_leaves_blanks_for_self_and_unrecorded_values(records, tmp_path):
    write_master_data(records, tmp_path)
    with (tmp_path / COVERAGE_FILE).open(newline="") as handle:
        rows = {row["member_id"]: row for row in csv.DictReader(handle)}
    self_row, child_row = rows["PPO000000001"], rows["MCD000000003"]
    assert (self_row["relationship"], self_row["subscriber_last_name"], self_row["coverage_end"]) == ("18", "", "")
    assert (child_row["relationship"], child_row["subscriber_first_name"], child_row["subscriber_birth_date"],
            child_row["coverage_start"], child_row["coverage_end"]) == ("19", "Lee", "", "2020-02-29", "2025-12-31")


def test_rewriting_replaces_the_files(records, tmp_path):
    write_master_data(records, tmp_path)
    write_master_data(records[:1], tmp_path)
    assert list(load_coverage(tmp_path)) == ["PPO000000001"]


def test_no_master_data_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="claims simulate master-data"):
        load_coverage(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "start, end, day, covered",
    [
        (date(2021, 1, 1), None, date(2021, 1, 1), True),
        (date(2021, 1, 1), None, date(2099, 12, 31), True),
        (date(2021, 1, 1), None, date(2020, 12, 31), False),
        (date(2021, 1, 1), date(2025, 12, 31), date(2025, 12, 31), True),
        (date(2021, 1, 1), date(2025, 12, 31), date(2026, 1, 1), False),
        (date(2021, 1, 1), date(2021, 1, 1), date(2021, 1, 1), True),
    ],
)
def test_coverage_covers_its_period_both_ends_included(start, end, day, covered):
    assert Coverage("M1", "PPO01", "PPO01-GOLD", SELF, None, start, end).covers(day) is covered


def test_a_generated_panel_round_trips(book, tmp_path):
    practice = practice_for(7, book, TODAY)
    write_master_data(practice.records(), tmp_path)
    loaded = load_coverage(tmp_path)
    assert loaded == {m.member_id: m.coverage for m in practice.members}
    assert len(loaded) == len(practice.members) == 600
    relationships = {c.relationship for c in loaded.values()}
    assert relationships == {"18", "01", "19"}
    assert any(c.end is not None for c in loaded.values()) and any(c.end is None for c in loaded.values())
