"""The EHR simulator: documented visits from a small synthetic practice.

Everything is drawn from one seeded RNG, so the same seed gives the same encounters
(ids included). A configurable share is bad on purpose — undecodable bytes, truncated
Avro, invalid codes, missing data — so the error paths run in every demo; another share
is sent twice, as interface engines do on retry, so deduplication runs too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Callable, Iterator, Sequence

from engine.codec import Codec
from engine.codesets import npi_check_digit
from engine.events import Encounter, Patient, Procedure, Sex
from engine.kafka import make_producer
from engine.settings import Settings
from simulators.payer import PayerBook

log = logging.getLogger(__name__)

SOURCE_SYSTEM = "ehr-sim"


class Kind(StrEnum):
    GOOD = "good"
    UNDECODABLE = "undecodable"  # not Avro at all → dead letter
    TRUNCATED = "truncated"  # framed Avro cut short → dead letter
    INVALID_CODES = "invalid_codes"  # schema-valid, codes wrong → coding review
    MISSING_DATA = "missing_data"  # schema-valid, required data empty → coding review
    RESEND = "resend"  # an exact resend of an earlier encounter → duplicate dropped


BAD_KINDS = (Kind.UNDECODABLE, Kind.TRUNCATED, Kind.INVALID_CODES, Kind.MISSING_DATA)


@dataclass(frozen=True)
class VisitTemplate:
    """A kind of visit: its diagnoses (principal first) and procedures with dx pointers."""

    place_of_service: str
    diagnoses: tuple[str, ...]
    procedures: tuple[tuple[str, tuple[str, ...], int, tuple[int, ...]], ...]  # code, modifiers, units, pointers


# Real, billable FY2026 ICD-10-CM codes; CPT/HCPCS codes from engine/data/fee_schedule.csv.
VISITS: tuple[VisitTemplate, ...] = (
    VisitTemplate("11", ("E11.9", "I10"), (("99214", (), 1, (1, 2)), ("83036", (), 1, (1,)), ("36415", (), 1, (1,)))),
    VisitTemplate("11", ("I10", "E78.5"), (("99213", (), 1, (1, 2)), ("80061", (), 1, (2,)), ("36415", (), 1, (2,)))),
    VisitTemplate("11", ("J06.9",), (("99213", (), 1, (1,)),)),
    VisitTemplate("11", ("J02.9",), (("99212", (), 1, (1,)), ("87880", (), 1, (1,)))),
    VisitTemplate("11", ("Z00.00",), (("99396", (), 1, (1,)), ("80053", (), 1, (1,)), ("85025", (), 1, (1,)))),
    VisitTemplate("11", ("Z23",), (("90686", (), 1, (1,)), ("90471", (), 1, (1,)))),
    VisitTemplate("11", ("M54.50",), (("99203", (), 1, (1,)),)),
    VisitTemplate("11", ("M17.11",), (("99214", ("25",), 1, (1,)), ("20610", ("RT",), 1, (1,)), ("J3301", (), 4, (1,)))),
    VisitTemplate("11", ("R07.9", "I10"), (("99204", (), 1, (1, 2)), ("93000", (), 1, (1,)), ("71046", (), 1, (1,)))),
    VisitTemplate("11", ("N39.0",), (("99213", (), 1, (1,)), ("81002", (), 1, (1,)))),
    VisitTemplate("11", ("S93.401A",), (("99203", (), 1, (1,)), ("73030", ("LT",), 1, (1,)))),
    VisitTemplate("11", ("M54.50", "M62.81"), (("97110", ("GP",), 2, (1, 2)), ("97140", ("GP",), 1, (1,)))),
    VisitTemplate("22", ("E11.65", "E78.5"), (("99215", (), 1, (1, 2)), ("80053", (), 1, (1,)), ("83036", (), 1, (1,)))),
    VisitTemplate("02", ("F41.1",), (("99213", ("95",), 1, (1,)),)),
)

# Typical coding mistakes: header codes, invented codes, malformed procedure codes and modifiers.
INVALID_DIAGNOSES = ("M54.5", "S52.501", "E11", "XX9.9", "Z99.999")
INVALID_PROCEDURES = ("9921", "ABCDE", "99213X", "W1234")

FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Liam")
LAST_NAMES = ("Alvarez", "Brooks", "Chen", "Diallo", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jones")


def make_npi(rng: random.Random, entity_digit: str = "1") -> str:
    first_nine = entity_digit + "".join(str(rng.randrange(10)) for _ in range(8))
    return first_nine + str(npi_check_digit(first_nine))


@dataclass(frozen=True)
class Practice:
    """The synthetic practice: providers and patients with coverage."""

    billing_npi: str
    rendering_npis: tuple[str, ...]
    patients: tuple[tuple[Patient, str, str], ...]  # patient, payer id, member id

    @classmethod
    def generate(cls, rng: random.Random, book: PayerBook, today: date, n_patients: int = 500) -> "Practice":
        payer_ids = list(book.payers)
        weights = [book.payers[p].share for p in payer_ids]
        patients = []
        for index in range(n_patients):
            payer_id = rng.choices(payer_ids, weights=weights, k=1)[0]
            age_days = rng.randrange(2 * 365, 90 * 365)
            patient = Patient(
                patient_id=f"MRN{index:06d}",
                first_name=rng.choice(FIRST_NAMES),
                last_name=rng.choice(LAST_NAMES),
                birth_date=today - timedelta(days=age_days),
                sex=rng.choice((Sex.F, Sex.M)),
            )
            member_id = f"{payer_id[:3]}{rng.randrange(10**8, 10**9)}"
            patients.append((patient, payer_id, member_id))
        return cls(make_npi(rng, "2"), tuple(make_npi(rng) for _ in range(6)), tuple(patients))


@dataclass(frozen=True)
class PlannedRecord:
    kind: Kind
    encounter_id: str
    value: bytes


def _good_encounter(rng: random.Random, practice: Practice, encounter_id: str, today: date) -> Encounter:
    patient, payer_id, member_id = rng.choice(practice.patients)
    visit = rng.choice(VISITS)
    return Encounter(
        encounter_id=encounter_id,
        source_system=SOURCE_SYSTEM,
        occurred_at=datetime.now(timezone.utc),
        patient=patient,
        payer_id=payer_id,
        member_id=member_id,
        billing_npi=practice.billing_npi,
        rendering_npi=rng.choice(practice.rendering_npis),
        date_of_service=today - timedelta(days=rng.randrange(0, 30)),
        place_of_service=visit.place_of_service,
        diagnoses=list(visit.diagnoses),
        procedures=[Procedure(code, list(mods), units, list(ptrs)) for code, mods, units, ptrs in visit.procedures],
        clinical_note="Synthetic note: patient seen, plan discussed.",
    )


def _spoil(rng: random.Random, enc: Encounter, kind: Kind) -> Encounter:
    if kind == Kind.INVALID_CODES:
        if rng.random() < 0.6:
            diagnoses = [rng.choice(INVALID_DIAGNOSES), *enc.diagnoses[1:]]
            return replace(enc, diagnoses=diagnoses)
        first = replace(enc.procedures[0], code=rng.choice(INVALID_PROCEDURES))
        return replace(enc, procedures=[first, *enc.procedures[1:]])
    if kind == Kind.MISSING_DATA:
        if rng.random() < 0.5:
            return replace(enc, member_id="")
        first = replace(enc.procedures[0], dx_pointers=[])
        return replace(enc, procedures=[first, *enc.procedures[1:]])
    raise ValueError(kind)


def plan_encounters(
    n: int, seed: int, bad_rate: float, resend_rate: float, codec: Codec, book: PayerBook,
    today: date | None = None,
) -> list[PlannedRecord]:
    """The records the EHR will send, in order: ``n`` encounters plus resends."""
    rng = random.Random(f"ehr:{seed}")
    today = today or date.today()
    practice = Practice.generate(rng, book, today)
    # Exactly round(n × bad_rate) bad encounters, the bad kinds in equal turns.
    bad_indexes = rng.sample(range(n), round(n * bad_rate))
    bad_kind = {index: BAD_KINDS[turn % len(BAD_KINDS)] for turn, index in enumerate(bad_indexes)}
    records: list[PlannedRecord] = []
    for index in range(n):
        encounter_id = f"ENC-{seed}-{index:07d}"
        enc = _good_encounter(rng, practice, encounter_id, today)
        kind = bad_kind.get(index, Kind.GOOD)
        if kind in (Kind.INVALID_CODES, Kind.MISSING_DATA):
            enc = _spoil(rng, enc, kind)
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
    topic = settings.topic("encounters")
    producer = make_producer(settings, bootstrap_servers)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        chunk_size = max(1, min(500, int(rate / 10))) if rate else 500
        for chunk in _chunks(records, chunk_size):
            if stop is not None and stop.is_set():
                break
            futures = [await producer.send(topic, value=r.value, key=r.encounter_id.encode()) for r in chunk]
            await asyncio.gather(*futures)
            sent += len(chunk)
            on_sent(sent)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing the simulated EHR, not waiting on a race
    finally:
        await producer.stop()
    return sent


def _chunks(records: Sequence[PlannedRecord], size: int) -> Iterator[Sequence[PlannedRecord]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def endless_plan(seed: int, bad_rate: float, resend_rate: float, codec: Codec, book: PayerBook, block: int = 1000
                 ) -> Iterator[list[PlannedRecord]]:
    """For open-ended runs: blocks of encounters, each block seeded from the run seed."""
    block_index = 0
    while True:
        block_records = plan_encounters(block, seed * 1_000_003 + block_index, bad_rate, resend_rate, codec, book)
        yield block_records
        block_index += 1
