"""Simulated master data the two simulators share: each patient's coverage (payer,
member id, plan, relationship to the subscriber, coverage start and end).

The EHR simulator generates it from the run's seed and writes it to files
(``patients.csv``, ``coverage.csv`` in the master-data folder, by default
``~/.claimflow/master``); the payer simulator loads those files to answer
eligibility (270/271) — as a payer knows its members, not the practice's EHR.
Synthetic people only; still PHI-shaped, so the files stay in the state folder.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from engine.model.codes import SELF
from engine.model.events import Address, Patient, Sex, Subscriber

COVERAGE_FILE = "coverage.csv"
PATIENTS_FILE = "patients.csv"


@dataclass(frozen=True)
class Coverage:
    member_id: str
    payer_id: str
    plan_id: str
    relationship: str  # of the patient to the subscriber: 18 self, 01 spouse, 19 child
    subscriber: Subscriber | None  # None when the patient is the subscriber
    start: date
    end: date | None  # None: in force

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class PatientRecord:
    patient: Patient
    address: Address
    coverage: Coverage


def write_master_data(records: Iterable[PatientRecord], folder: Path,
                      authorizations: Iterable[Authorization] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_authorizations(authorizations, folder)
    records = list(records)
    with (folder / PATIENTS_FILE).open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["patient_id", "first_name", "last_name", "birth_date", "sex", "address_line1", "city", "state",
                      "postal_code", "member_id"])
        for r in records:
            p, a = r.patient, r.address
            out.writerow([p.patient_id, p.first_name, p.last_name, p.birth_date.isoformat(), p.sex, a.line1, a.city,
                          a.state, a.postal_code, r.coverage.member_id])
    with (folder / COVERAGE_FILE).open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["member_id", "payer_id", "plan_id", "relationship", "subscriber_first_name",
                      "subscriber_last_name", "subscriber_birth_date", "subscriber_sex", "coverage_start",
                      "coverage_end"])
        for r in records:
            c, s = r.coverage, r.coverage.subscriber
            out.writerow([c.member_id, c.payer_id, c.plan_id, c.relationship, s.first_name if s else "",
                          s.last_name if s else "", s.birth_date.isoformat() if s and s.birth_date else "",
                          s.sex if s else "", c.start.isoformat(), c.end.isoformat() if c.end else ""])


def load_coverage(folder: Path) -> dict[str, Coverage]:
    """Coverage by member id, as the payer simulator knows it."""
    path = folder / COVERAGE_FILE
    if not path.exists():
        raise FileNotFoundError(f"no master data at {path}: run `claims simulate master-data` (or `claims run`) first")
    coverage: dict[str, Coverage] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            subscriber = None
            if row["relationship"] != SELF:
                subscriber = Subscriber(
                    relationship=row["relationship"], first_name=row["subscriber_first_name"],
                    last_name=row["subscriber_last_name"],
                    birth_date=(date.fromisoformat(row["subscriber_birth_date"]) if row["subscriber_birth_date"]
                                else None),
                    sex=row["subscriber_sex"] or str(Sex.U),
                )
            coverage[row["member_id"]] = Coverage(
                member_id=row["member_id"], payer_id=row["payer_id"], plan_id=row["plan_id"],
                relationship=row["relationship"], subscriber=subscriber,
                start=date.fromisoformat(row["coverage_start"]),
                end=date.fromisoformat(row["coverage_end"]) if row["coverage_end"] else None,
            )
    return coverage


AUTHORIZATIONS_FILE = "authorizations.csv"


@dataclass(frozen=True)
class Authorization:
    """A prior authorization a payer issued for one member and one service."""

    auth_number: str
    payer_id: str
    member_id: str
    procedure_code: str
    start: date
    end: date

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


def write_authorizations(authorizations: Iterable[Authorization], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / AUTHORIZATIONS_FILE).open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["auth_number", "payer_id", "member_id", "procedure_code", "start", "end"])
        for a in authorizations:
            out.writerow([a.auth_number, a.payer_id, a.member_id, a.procedure_code, a.start.isoformat(),
                          a.end.isoformat()])


def load_authorizations(folder: Path) -> dict[tuple[str, str], list[Authorization]]:
    """Authorizations by (member id, procedure code); none when the file is absent."""
    path = folder / AUTHORIZATIONS_FILE
    found: dict[tuple[str, str], list[Authorization]] = {}
    if not path.exists():
        return found
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            auth = Authorization(row["auth_number"], row["payer_id"], row["member_id"], row["procedure_code"],
                                 date.fromisoformat(row["start"]), date.fromisoformat(row["end"]))
            found.setdefault((auth.member_id, auth.procedure_code), []).append(auth)
    return found
