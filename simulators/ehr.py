"""The EHR simulator: documented visits from a small synthetic practice.

Everything is drawn from one seeded RNG, so the same seed gives the same encounters
(ids included). Visits follow a specialty mix with plausible diagnosis/procedure
combinations, each for patients of the right sex and age. A configurable share is bad
on purpose — undecodable bytes, truncated Avro, and every kind of coding error the
coding rules catch, in equal turns — so the error paths run in every demo; another
share is sent twice, as interface engines do on retry, so deduplication runs too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from engine.coding.rules import age_on
from engine.model.codes import SELF
from engine.model.events import Address, Encounter, Patient, Procedure, Sex, Subscriber
from engine.reference.codesets import npi_check_digit
from engine.reference.master_data import Providers
from engine.runtime.kafka import make_producer, started
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic
from simulators.coverage import Authorization, Coverage, PatientRecord
from simulators.payer.adjudication import PayerBook

log = logging.getLogger(__name__)

SOURCE_SYSTEM = "ehr-sim"


class Kind(StrEnum):
    """What the simulator makes of one encounter. Each coding error kind is caught by
    one rule (``EXPECTED_RULE``), so a run exercises every rule in known proportions."""

    GOOD = "good"
    UNDECODABLE = "undecodable"  # not Avro at all → dead letter
    TRUNCATED = "truncated"  # framed Avro cut short → dead letter
    MISSING_DATA = "missing_data"  # registration data missing
    DX_FORMAT = "dx_format"  # not shaped like an ICD-10-CM code
    DX_UNKNOWN = "dx_unknown"  # shaped right, not in the code set
    DX_HEADER = "dx_header"  # a category header, not billable
    DX_SEVENTH_CHAR = "dx_seventh_char"  # injury code without its 7th character
    DX_PLACEHOLDER = "dx_placeholder"  # 7th character without the placeholder X
    DX_EXCLUDES1 = "dx_excludes1"  # type 1 and type 2 diabetes together
    DX_MANIFESTATION_FIRST = "dx_manifestation_first"  # dementia listed before Alzheimer's
    DX_EXTERNAL_CAUSE_FIRST = "dx_external_cause_first"  # the fall listed before the injury
    DX_SEX = "dx_sex"  # a sex-specific visit for a patient of the other sex
    DX_AGE = "dx_age"  # a newborn or pregnancy code at the wrong age
    DX_DUPLICATE = "dx_duplicate"
    PROC_FORMAT = "proc_format"
    MODIFIER_UNKNOWN = "modifier_unknown"
    NCCI_PTP = "ncci_ptp"  # a bundled column-2 code billed with its column-1 code
    MUE = "mue"  # more units than the medically unlikely edit allows
    POINTER_COUNT = "pointer_count"  # a line without dx pointers
    POINTER_RANGE = "pointer_range"  # a pointer past the last diagnosis
    PRINCIPAL_UNLINKED = "principal_unlinked"  # no line points at the first diagnosis
    RESEND = "resend"  # an exact resend of an earlier encounter → duplicate dropped
    # Registration problems: clean for the coder, caught before the claim leaves.
    LAPSED_COVERAGE = "lapsed_coverage"  # coverage ended before the visit → payer says INACTIVE
    UNKNOWN_MEMBER = "unknown_member"  # member id mistyped at registration → payer says NOT_FOUND
    BAD_NPI = "bad_npi"  # rendering NPI mistyped (wrong check digit) → scrubber
    MISSING_SUBSCRIBER = "missing_subscriber"  # a dependent's subscriber birth date not recorded → scrubber
    LATE_FILING = "late_filing"  # a visit from 400 days ago, past every payer's limit → scrubber


#: The rule that must catch each injected coding error (tests hold the simulator to it).
EXPECTED_RULE: dict[Kind, str] = {
    Kind.MISSING_DATA: "REQUIRED_FIELD",
    Kind.DX_FORMAT: "ICD10_FORMAT",
    Kind.DX_UNKNOWN: "ICD10_UNKNOWN",
    Kind.DX_HEADER: "ICD10_NOT_BILLABLE",
    Kind.DX_SEVENTH_CHAR: "ICD10_SEVENTH_CHAR_MISSING",
    Kind.DX_PLACEHOLDER: "ICD10_PLACEHOLDER_MISSING",
    Kind.DX_EXCLUDES1: "ICD10_EXCLUDES1",
    Kind.DX_MANIFESTATION_FIRST: "ICD10_MANIFESTATION_PRINCIPAL",
    Kind.DX_EXTERNAL_CAUSE_FIRST: "ICD10_EXTERNAL_CAUSE_PRINCIPAL",
    Kind.DX_SEX: "ICD10_SEX_CONFLICT",
    Kind.DX_AGE: "ICD10_AGE_CONFLICT",
    Kind.DX_DUPLICATE: "DX_DUPLICATE",
    Kind.PROC_FORMAT: "PROC_FORMAT",
    Kind.MODIFIER_UNKNOWN: "MODIFIER_UNKNOWN",
    Kind.NCCI_PTP: "NCCI_PTP",
    Kind.MUE: "MUE_EXCEEDED",
    Kind.POINTER_COUNT: "DX_POINTER_COUNT",
    Kind.POINTER_RANGE: "DX_POINTER_RANGE",
    Kind.PRINCIPAL_UNLINKED: "DX_PRINCIPAL_UNLINKED",
}
#: What each registration problem ends as: a front-desk (eligibility) item, or the scrubber rule.
ELIGIBILITY_KINDS = (Kind.LAPSED_COVERAGE, Kind.UNKNOWN_MEMBER)
EXPECTED_SCRUB_RULE: dict[Kind, str] = {
    Kind.BAD_NPI: "SCRUB_NPI_INVALID",
    Kind.MISSING_SUBSCRIBER: "SCRUB_REQUIRED",
    Kind.LATE_FILING: "SCRUB_TIMELY_FILING",
}
SCRUB_KINDS = tuple(EXPECTED_SCRUB_RULE)
UNREADABLE_KINDS = (Kind.UNDECODABLE, Kind.TRUNCATED)
CODING_ERROR_KINDS = tuple(EXPECTED_RULE)
#: Every bad kind, in the equal turns ``--bad-rate`` deals them out.
BAD_KINDS = (*UNREADABLE_KINDS, *CODING_ERROR_KINDS)

Line = tuple[str, tuple[str, ...], int, tuple[int, ...]]  # code, modifiers, units, dx pointers


@dataclass(frozen=True)
class VisitTemplate:
    """A kind of visit: specialty, who it is for, its diagnoses (principal first) and
    procedure lines. Real, billable FY2026 ICD-10-CM codes; CPT/HCPCS codes from
    ``engine/reference/data/fee_schedule.csv``; a test checks every template passes every rule."""

    name: str
    specialty: str
    weight: int
    place_of_service: str
    diagnoses: tuple[str, ...]
    lines: tuple[Line, ...]
    sex: Sex | None = None
    min_age: int = 18
    max_age: int = 90


VISITS: tuple[VisitTemplate, ...] = (
    # primary care
    VisitTemplate("diabetes follow-up", "primary care", 8, "11", ("E11.9", "I10"),
                  (("99214", (), 1, (1, 2)), ("83036", (), 1, (1,)), ("36415", (), 1, (1,))), min_age=30),
    VisitTemplate("hypertension and lipids", "primary care", 8, "11", ("I10", "E78.5"),
                  (("99213", (), 1, (1, 2)), ("80061", (), 1, (2,)), ("36415", (), 1, (2,))), min_age=30),
    VisitTemplate("upper respiratory infection", "primary care", 6, "11", ("J06.9",), (("99213", (), 1, (1,)),),
                  min_age=1),
    VisitTemplate("sore throat", "primary care", 5, "11", ("J02.9",), (("99212", (), 1, (1,)), ("87880", (), 1, (1,))),
                  min_age=3),
    VisitTemplate("adult preventive visit", "primary care", 5, "11", ("Z00.00",),
                  (("99396", (), 1, (1,)), ("80053", (), 1, (1,)), ("85025", (), 1, (1,))), min_age=40, max_age=64),
    VisitTemplate("flu shot", "primary care", 5, "11", ("Z23",), (("90686", (), 1, (1,)), ("90471", (), 1, (1,))),
                  min_age=3),
    VisitTemplate("low back pain", "primary care", 5, "11", ("M54.50",), (("99203", (), 1, (1,)),)),
    VisitTemplate("chest pain", "primary care", 4, "11", ("R07.9", "I10"),
                  (("99204", (), 1, (1, 2)), ("93000", (), 1, (1,)), ("71046", (), 1, (1,))), min_age=30),
    VisitTemplate("urinary tract infection", "primary care", 4, "11", ("N39.0",),
                  (("99213", (), 1, (1,)), ("81002", (), 1, (1,)))),
    VisitTemplate("anxiety (telehealth)", "behavioral health", 4, "02", ("F41.1",), (("99213", ("95",), 1, (1,)),)),
    # orthopedics and urgent care
    VisitTemplate("knee osteoarthritis injection", "orthopedics", 4, "11", ("M17.11",),
                  (("99214", ("25",), 1, (1,)), ("20610", ("RT",), 1, (1,)), ("J3301", (), 4, (1,))), min_age=45),
    VisitTemplate("ankle sprain after a fall", "urgent care", 3, "11", ("S93.401A", "W19.XXXA"),
                  (("99203", (), 1, (1,)), ("73610", ("RT",), 1, (1,))), min_age=5),
    VisitTemplate("forearm laceration repair", "urgent care", 3, "11", ("S51.811A", "W25.XXXA"),
                  (("13121", (), 1, (1,)),), min_age=5),
    VisitTemplate("physical therapy", "physical therapy", 4, "11", ("M54.50", "M62.81"),
                  (("97110", ("GP",), 2, (1, 2)), ("97140", ("GP",), 1, (1,)))),
    # women's health
    VisitTemplate("prenatal visit", "obstetrics", 3, "11", ("Z34.01", "Z3A.10"),
                  (("99213", (), 1, (1, 2)), ("81002", (), 1, (1,))), sex=Sex.F, min_age=18, max_age=40),
    VisitTemplate("well-woman exam", "gynecology", 3, "11", ("Z01.419",),
                  (("99395", (), 1, (1,)), ("Q0091", (), 1, (1,))), sex=Sex.F, min_age=21, max_age=39),
    # men's health
    VisitTemplate("benign prostatic hyperplasia", "urology", 3, "11", ("N40.0",),
                  (("99214", (), 1, (1,)), ("51798", (), 1, (1,))), sex=Sex.M, min_age=55),
    VisitTemplate("prostate cancer screening", "urology", 2, "11", ("Z12.5",), (("G0103", (), 1, (1,)),),
                  sex=Sex.M, min_age=50, max_age=75),
    # pediatrics
    VisitTemplate("newborn jaundice", "pediatrics", 2, "11", ("P59.9",),
                  (("99213", (), 1, (1,)), ("82247", (), 1, (1,))), min_age=0, max_age=0),
    VisitTemplate("well-child visit", "pediatrics", 3, "11", ("Z00.129",), (("99392", (), 1, (1,)),),
                  min_age=1, max_age=4),
    # neurology, endocrinology
    VisitTemplate("Alzheimer's dementia", "neurology", 2, "11", ("G30.9", "F02.80"), (("99214", (), 1, (1, 2)),),
                  min_age=65),
    VisitTemplate("uncontrolled diabetes (hospital outpatient)", "endocrinology", 3, "22", ("E11.65", "E78.5"),
                  (("99215", (), 1, (1, 2)), ("80053", (), 1, (1,)), ("83036", (), 1, (1,))), min_age=30),
)

# Typical coding mistakes, by kind.
MALFORMED_DIAGNOSES = ("XX9.9", "1M54.5", "E1")
UNKNOWN_DIAGNOSES = ("Z99.999", "I10.0", "J06.99")
HEADER_DIAGNOSES = ("M54.5", "E11", "J45")
MALFORMED_PROCEDURES = ("9921", "ABCDE", "99213X", "W1234")
UNKNOWN_MODIFIERS = ("ZZ", "9Z")
#: A pair from the CMS PTP file: 13120 is bundled into 13121, modifier indicator 0.
NCCI_BUNDLED_LINE: dict[str, str] = {"13121": "13120"}

FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Liam")
LAST_NAMES = ("Alvarez", "Brooks", "Chen", "Diallo", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jones")


def make_npi(rng: random.Random, entity_digit: str = "1") -> str:
    first_nine = entity_digit + "".join(str(rng.randrange(10)) for _ in range(8))
    return first_nine + str(npi_check_digit(first_nine))


STREETS = ("OAK ST", "PINE AVE", "MAPLE DR", "CEDAR LN", "ELM ST", "BIRCH RD")
CITIES = (("DENVER", "CO", "80202"), ("AURORA", "CO", "80012"), ("LAKEWOOD", "CO", "80226"), ("BOULDER", "CO", "80302"))
#: Share of the panel whose coverage ended 45–400 days ago (the pool lapsed-coverage visits draw from).
LAPSED_SHARE = 0.08


@dataclass(frozen=True)
class Member:
    patient: Patient
    payer_id: str
    member_id: str
    age: int  # whole years today
    address: Address
    coverage: Coverage

    @property
    def lapsed(self) -> bool:
        return self.coverage.end is not None


@dataclass(frozen=True)
class Practice:
    """The synthetic practice: its providers (``engine/reference/data/providers.csv``, the same
    file the claim stage reads) and a patient panel with coverage — about 3% newborns,
    12% children (dependents of a parent), a quarter of adults on a spouse's plan, 8%
    whose coverage lapsed — and for each visit template the patients it fits."""

    billing_npi: str
    rendering_npis: tuple[str, ...]
    members: tuple[Member, ...]
    fitting: dict[str, tuple[Member, ...]]  # template name → covered patients of the right sex and age
    #: Prior authorizations the payers issued to these patients (payer_profiles.yaml:
    #: which codes need one, and how many are valid, expired or never obtained).
    authorizations: tuple[Authorization, ...] = ()

    @classmethod
    def generate(cls, rng: random.Random, book: PayerBook, today: date, n_patients: int = 600,
                 providers: Providers | None = None) -> Practice:
        providers = providers or Providers.load(Settings().providers_file)
        payer_ids = list(book.payers)
        weights = [book.payers[p].share for p in payer_ids]
        members = []
        for index in range(n_patients):
            payer_id = rng.choices(payer_ids, weights=weights, k=1)[0]
            band = rng.random()
            # Newborns are 40–330 days old, so on any date of service (≤ 30 days ago) they are born and under 1.
            age_days = (rng.randrange(40, 330) if band < 0.03 else
                        rng.randrange(365 + 30, 18 * 365) if band < 0.15 else rng.randrange(18 * 365 + 30, 90 * 365))
            patient = Patient(
                patient_id=f"MRN{index:06d}",
                first_name=rng.choice(FIRST_NAMES),
                last_name=rng.choice(LAST_NAMES),
                birth_date=today - timedelta(days=age_days),
                sex=rng.choice((Sex.F, Sex.M)),
            )
            city, state, zip_code = rng.choice(CITIES)
            address = Address(f"{rng.randrange(10, 9999)} {rng.choice(STREETS)}", city, state, zip_code)
            member_id = f"{payer_id[:3]}{rng.randrange(10**8, 10**9)}"
            age = age_on(patient.birth_date, today) or 0
            coverage = _coverage(rng, patient, age, payer_id, member_id, today)
            members.append(Member(patient, payer_id, member_id, age, address, coverage))
        covered = [m for m in members if not m.lapsed]
        fitting = {visit.name: tuple(m for m in covered if _fits(visit, m)) for visit in VISITS}
        authorizations = tuple(_authorizations(rng, book, covered, today))
        return cls(providers.billing.npi, tuple(providers.rendering), tuple(members), fitting, authorizations)

    def patients_for(self, visit: VisitTemplate) -> tuple[Member, ...]:
        return self.fitting[visit.name]

    def records(self) -> list[PatientRecord]:
        return [PatientRecord(m.patient, m.address, m.coverage) for m in self.members]


def _authorizations(rng: random.Random, book: PayerBook, members: Sequence[Member], today: date
                    ) -> Iterator[Authorization]:
    """For every listed service of each member's payer: a valid authorization (covering
    every date of service the simulator draws), an expired one, or none."""
    codes = sorted({code for line in (ln for v in VISITS for ln in v.lines) for code in [line[0]]})
    for member in members:
        profile = book.payers[member.payer_id]
        for code in (c for c in codes if c in profile.prior_auth_codes):
            draw = rng.random()
            number = f"PA{rng.randrange(10**9, 10**10)}"
            if draw < book.authorization_valid:
                yield Authorization(number, member.payer_id, member.member_id, code, today - timedelta(days=90),
                                    today + timedelta(days=90))
            elif draw < book.authorization_valid + book.authorization_expired:
                yield Authorization(number, member.payer_id, member.member_id, code, today - timedelta(days=200),
                                    today - timedelta(days=40))


def _coverage(rng: random.Random, patient: Patient, age: int, payer_id: str, member_id: str, today: date) -> Coverage:
    """Children are on a parent's plan; a quarter of adults on a spouse's; some lapsed."""
    relationship = "19" if age < 18 else ("01" if rng.random() < 0.25 else SELF)
    subscriber = None
    if relationship != SELF:
        parent_age_days = (age + rng.randrange(22, 45)) * 365 + rng.randrange(365)
        subscriber = Subscriber(
            relationship=relationship,
            first_name=rng.choice(FIRST_NAMES),
            last_name=patient.last_name,
            birth_date=today - timedelta(days=parent_age_days if relationship == "19"
                                         else max(18 * 365 + 30, age * 365 + rng.randrange(-1500, 1500))),
            sex=str(rng.choice((Sex.F, Sex.M))),
        )
    start = max(patient.birth_date, today - timedelta(days=rng.randrange(2 * 365, 8 * 365)))
    end = today - timedelta(days=rng.randrange(45, 400)) if rng.random() < LAPSED_SHARE else None
    if end is not None and end < start:
        start = end - timedelta(days=30)
    return Coverage(member_id, payer_id, f"{payer_id}-{rng.choice(('GOLD', 'SILVER', 'BRONZE'))}", relationship,
                    subscriber, start, end)


def _fits(visit: VisitTemplate, member: Member) -> bool:
    # One year of margin below the limit: the date of service may be up to 30 days ago.
    low_ok = member.age >= visit.min_age + (1 if visit.min_age > 0 else 0)
    return low_ok and member.age <= visit.max_age and visit.sex in (None, member.patient.sex)


@dataclass(frozen=True)
class PlannedRecord:
    kind: Kind
    encounter_id: str
    value: bytes


def _visit_named(name: str) -> VisitTemplate:
    return next(v for v in VISITS if v.name == name)


def _encounter(rng: random.Random, practice: Practice, encounter_id: str, today: date, visit: VisitTemplate,
               member: Member) -> Encounter:
    subscriber = member.coverage.subscriber
    return Encounter(
        encounter_id=encounter_id,
        source_system=SOURCE_SYSTEM,
        occurred_at=datetime.now(UTC),
        patient=member.patient,
        payer_id=member.payer_id,
        member_id=member.member_id,
        billing_npi=practice.billing_npi,
        rendering_npi=rng.choice(practice.rendering_npis),
        date_of_service=today - timedelta(days=rng.randrange(0, 30)),
        place_of_service=visit.place_of_service,
        diagnoses=list(visit.diagnoses),
        procedures=[Procedure(code, list(mods), units, list(ptrs)) for code, mods, units, ptrs in visit.lines],
        clinical_note="Synthetic note: patient seen, plan discussed.",
        patient_address=member.address,
        subscriber=replace(subscriber, address=member.address) if subscriber is not None else None,
    )


def _good_encounter(rng: random.Random, practice: Practice, encounter_id: str, today: date) -> Encounter:
    visit = rng.choices(VISITS, weights=[v.weight for v in VISITS], k=1)[0]
    return _encounter(rng, practice, encounter_id, today, visit, rng.choice(practice.patients_for(visit)))


def _with_line(enc: Encounter, index: int, **changes: object) -> Encounter:
    procedures = list(enc.procedures)
    procedures[index] = replace(procedures[index], **changes)  # type: ignore[arg-type]
    return replace(enc, procedures=procedures)


def _swap_first_two_diagnoses(enc: Encounter) -> Encounter:
    """List the second diagnosis first; pointers follow their diagnosis."""
    swap = {1: 2, 2: 1}
    return replace(
        enc,
        diagnoses=[enc.diagnoses[1], enc.diagnoses[0], *enc.diagnoses[2:]],
        procedures=[replace(p, dx_pointers=[swap.get(x, x) for x in p.dx_pointers]) for p in enc.procedures],
    )


def _spoiled_encounter(rng: random.Random, practice: Practice, encounter_id: str, today: date, kind: Kind
                       ) -> Encounter:
    """An encounter with exactly the mistake ``kind`` names, on a visit it fits."""
    def on(name: str, member: Member | None = None) -> Encounter:
        visit = _visit_named(name)
        return _encounter(rng, practice, encounter_id, today, visit,
                          member or rng.choice(practice.patients_for(visit)))

    enc = _good_encounter(rng, practice, encounter_id, today)
    if kind == Kind.MISSING_DATA:
        return replace(enc, member_id="")
    if kind == Kind.DX_FORMAT:
        return replace(enc, diagnoses=[rng.choice(MALFORMED_DIAGNOSES), *enc.diagnoses[1:]])
    if kind == Kind.DX_UNKNOWN:
        return replace(enc, diagnoses=[rng.choice(UNKNOWN_DIAGNOSES), *enc.diagnoses[1:]])
    if kind == Kind.DX_HEADER:
        return replace(enc, diagnoses=[rng.choice(HEADER_DIAGNOSES), *enc.diagnoses[1:]])
    if kind == Kind.DX_SEVENTH_CHAR:  # S93.401A → S93.401
        enc = on(rng.choice(("ankle sprain after a fall", "forearm laceration repair")))
        return replace(enc, diagnoses=[enc.diagnoses[0][:-1], *enc.diagnoses[1:]])
    if kind == Kind.DX_PLACEHOLDER:  # W19.XXXA → W19A
        enc = on(rng.choice(("ankle sprain after a fall", "forearm laceration repair")))
        external = enc.diagnoses[1]
        return replace(enc, diagnoses=[enc.diagnoses[0], external[:3] + external[-1]])
    if kind == Kind.DX_EXCLUDES1:  # type 1 with type 2 diabetes
        enc = on("diabetes follow-up")
        return replace(enc, diagnoses=[*enc.diagnoses, "E10.9"])
    if kind == Kind.DX_MANIFESTATION_FIRST:
        return _swap_first_two_diagnoses(on("Alzheimer's dementia"))
    if kind == Kind.DX_EXTERNAL_CAUSE_FIRST:
        return _swap_first_two_diagnoses(on(rng.choice(("ankle sprain after a fall", "forearm laceration repair"))))
    if kind == Kind.DX_SEX:
        visit = _visit_named(rng.choice(("prenatal visit", "well-woman exam", "benign prostatic hyperplasia",
                                         "prostate cancer screening")))
        other = [m for m in practice.members if not m.lapsed and m.patient.sex not in (visit.sex, Sex.U)
                 and visit.min_age + 1 <= m.age <= visit.max_age]
        return on(visit.name, rng.choice(other))
    if kind == Kind.DX_AGE:
        if rng.random() < 0.5:  # a newborn code for an adult
            return on("newborn jaundice", rng.choice([m for m in practice.members if m.age >= 18 and not m.lapsed]))
        return on("prenatal visit", rng.choice([m for m in practice.members
                                                if not m.lapsed and m.patient.sex == Sex.F and m.age >= 57]))
    if kind == Kind.DX_DUPLICATE:
        return replace(enc, diagnoses=[*enc.diagnoses, enc.diagnoses[0]])
    if kind == Kind.PROC_FORMAT:
        return _with_line(enc, 0, code=rng.choice(MALFORMED_PROCEDURES))
    if kind == Kind.MODIFIER_UNKNOWN:
        return _with_line(enc, 0, modifiers=[*enc.procedures[0].modifiers, rng.choice(UNKNOWN_MODIFIERS)])
    if kind == Kind.NCCI_PTP:  # 13121 with 13120, same day
        enc = on("forearm laceration repair")
        column2 = NCCI_BUNDLED_LINE[enc.procedures[0].code]
        return replace(enc, procedures=[*enc.procedures, Procedure(column2, [], 1, [1])])
    if kind == Kind.MUE:  # an E/M visit billed 3 times on one day (practitioner MUE 2 or less)
        enc = on(rng.choice(("upper respiratory infection", "low back pain", "benign prostatic hyperplasia")))
        return _with_line(enc, 0, code=rng.choice(("99213", "99214")), units=3)
    if kind == Kind.POINTER_COUNT:
        return _with_line(enc, len(enc.procedures) - 1, dx_pointers=[])
    if kind == Kind.POINTER_RANGE:
        return _with_line(enc, 0, dx_pointers=[*enc.procedures[0].dx_pointers, len(enc.diagnoses) + 1])
    if kind == Kind.PRINCIPAL_UNLINKED:  # every line points at the secondary diagnosis only
        enc = on(rng.choice(("hypertension and lipids", "chest pain", "physical therapy")))
        return replace(enc, procedures=[replace(p, dx_pointers=[2]) for p in enc.procedures])
    raise ValueError(kind)


def practice_for(seed: int, book: PayerBook, today: date | None = None) -> Practice:
    """The run's practice and patient panel: the same seed and day give the same panel,
    in every process (the payer simulator reads it back from the master-data files)."""
    return Practice.generate(random.Random(f"practice:{seed}"), book, today or date.today())


def _registration_problem(rng: random.Random, practice: Practice, encounter_id: str, today: date, kind: Kind
                          ) -> Encounter:
    """A visit clean for the coder, with the registration problem ``kind`` names."""
    def on(name: str, members: Sequence[Member]) -> Encounter:
        return _encounter(rng, practice, encounter_id, today, _visit_named(name), rng.choice(members))

    adults = [m for m in practice.members if 30 <= m.age <= 64 and not m.lapsed]
    if kind == Kind.LAPSED_COVERAGE:
        return on("low back pain", [m for m in practice.members if m.lapsed and m.age >= 19])
    if kind == Kind.UNKNOWN_MEMBER:  # two digits transposed at registration
        enc = on("upper respiratory infection", adults)
        member = enc.member_id
        return replace(enc, member_id=member[:-2] + member[-1] + member[-2] if member[-1] != member[-2]
                       else member[:-1] + str((int(member[-1]) + 1) % 10))
    if kind == Kind.BAD_NPI:  # the check digit mistyped
        enc = on("hypertension and lipids", adults)
        npi = enc.rendering_npi
        return replace(enc, rendering_npi=npi[:-1] + str((int(npi[-1]) + 1) % 10))
    if kind == Kind.MISSING_SUBSCRIBER:
        enc = on("upper respiratory infection", [m for m in practice.members if m.coverage.subscriber and not m.lapsed
                                                 and m.age >= 3])
        assert enc.subscriber is not None
        return replace(enc, subscriber=replace(enc.subscriber, birth_date=None))
    if kind == Kind.LATE_FILING:
        enc = on("low back pain", adults)
        return replace(enc, date_of_service=today - timedelta(days=400))
    raise ValueError(kind)


def plan_encounters(
    n: int, seed: int, bad_rate: float, resend_rate: float, codec: Codec, book: PayerBook,
    today: date | None = None, lapsed_rate: float = 0.0, incomplete_rate: float = 0.0,
    practice: Practice | None = None,
) -> list[PlannedRecord]:
    """The records the EHR will send, in order: ``n`` encounters plus resends.

    Exactly round(n × bad_rate) encounters have coding or transport errors (the bad
    kinds in equal turns); of the others, round(n × lapsed_rate) have a coverage
    problem (lapsed, or an unknown member id) and round(n × incomplete_rate) bad
    registration or provider data (a mistyped NPI, a dependent's subscriber birth date
    missing, a visit past timely filing), each in equal turns."""
    rng = random.Random(f"ehr:{seed}")
    today = today or date.today()
    practice = practice or practice_for(seed, book, today)
    bad_indexes = rng.sample(range(n), round(n * bad_rate))
    kind_at = {index: BAD_KINDS[turn % len(BAD_KINDS)] for turn, index in enumerate(bad_indexes)}
    rest = [index for index in range(n) if index not in kind_at]
    problems = rng.sample(rest, min(len(rest), round(n * lapsed_rate) + round(n * incomplete_rate)))
    for turn, index in enumerate(problems[: round(n * lapsed_rate)]):
        kind_at[index] = ELIGIBILITY_KINDS[turn % len(ELIGIBILITY_KINDS)]
    for turn, index in enumerate(problems[round(n * lapsed_rate):]):
        kind_at[index] = SCRUB_KINDS[turn % len(SCRUB_KINDS)]
    records: list[PlannedRecord] = []
    for index in range(n):
        encounter_id = f"ENC-{seed}-{index:07d}"
        kind = kind_at.get(index, Kind.GOOD)
        if kind in EXPECTED_RULE:
            enc = _spoiled_encounter(rng, practice, encounter_id, today, kind)
        elif kind in ELIGIBILITY_KINDS or kind in EXPECTED_SCRUB_RULE:
            enc = _registration_problem(rng, practice, encounter_id, today, kind)
        else:
            enc = _good_encounter(rng, practice, encounter_id, today)
        value = codec.encode(enc)
        if kind == Kind.UNDECODABLE:
            value = b"HL7|not-avro|" + rng.randbytes(24)
        elif kind == Kind.TRUNCATED:
            value = value[: len(value) // 2]
        records.append(PlannedRecord(kind, encounter_id, value))
        if kind == Kind.GOOD and rng.random() < resend_rate:
            records.append(PlannedRecord(Kind.RESEND, encounter_id, value))
    return records


async def send_planned(
    settings: Settings,
    bootstrap_servers: str,
    records: Sequence[PlannedRecord],
    rate: float | None,
    on_sent: Callable[[int], None] = lambda n: None,
    stop: asyncio.Event | None = None,
) -> int:
    """Produce ``records`` to the encounters topic at ``rate`` per second (None: flat out)."""
    topic = settings.topic(Topic.ENCOUNTERS)
    sent = 0
    began = time.monotonic()
    async with started(make_producer(settings, bootstrap_servers)) as producer:
        chunk_size = max(1, min(500, int(rate / 10))) if rate else 500
        for chunk in _chunks(records, chunk_size):
            if stop is not None and stop.is_set():
                break
            futures = [await producer.send(topic, value=r.value, key=r.encounter_id.encode()) for r in chunk]
            await asyncio.gather(*futures)
            sent += len(chunk)
            on_sent(sent)
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing the simulated EHR, not waiting on a race
    return sent


def _chunks(records: Sequence[PlannedRecord], size: int) -> Iterator[Sequence[PlannedRecord]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def endless_plan(seed: int, bad_rate: float, resend_rate: float, codec: Codec, book: PayerBook, block: int = 1000,
                 lapsed_rate: float = 0.0, incomplete_rate: float = 0.0, practice: Practice | None = None,
                 ) -> Iterator[list[PlannedRecord]]:
    """For open-ended runs: blocks of encounters, each block seeded from the run seed,
    all from the run's one practice (its master data is what the payer knows)."""
    block_index = 0
    practice = practice or practice_for(seed, book)
    while True:
        block_records = plan_encounters(block, seed * 1_000_003 + block_index, bad_rate, resend_rate, codec, book,
                                        lapsed_rate=lapsed_rate, incomplete_rate=incomplete_rate, practice=practice)
        yield block_records
        block_index += 1
