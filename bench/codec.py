"""Codec micro-benchmark: µs per encode + decode of our real events.

Three implementations, same run, same events:

* avro-python3 — ``engine.wire.avro_reference.ReferenceCodec``, body only (no framing), on
  the plain dicts (logical types converted by the reference module, as in the tests);
* fastavro Codec — ``engine.wire.codec.Codec.encode`` / ``Codec.decode``: Confluent framing
  plus dataclass → dict → Avro → dict → dataclass, i.e. what every stage pays;
* fastavro raw — ``fastavro.schemaless_writer`` / ``schemaless_reader`` with the parsed
  schema on dicts (no framing, no dataclasses): the floor of the fastavro path.

The events come from the real code path: EHR simulator plan → coding stage → claim
builder → payer adjudication. Each figure is the median of 5 repetitions; each
repetition runs the round trip enough times to take >= 0.2 s.

    python bench/codec.py
"""

from __future__ import annotations

import io
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import fastavro

from engine.claims.build import ClaimContext, FeeSchedule, build_claim
from engine.coding.rules import CodingReference, code_encounter
from engine.model.events import CodedEncounter, Encounter
from engine.settings import Settings
from engine.wire.avro_reference import ReferenceCodec
from engine.wire.codec import Codec, to_record
from simulators.coverage import Coverage
from simulators.ehr import Kind, plan_encounters
from simulators.payer.adjudication import Calibration, MemberState, PayerBook, PayerReference, adjudicate

REPEATS = 5
MIN_REPEAT_S = 0.2
SEED = 1
TODAY = date(2026, 11, 25)  # fixed, so the events (and their sizes) do not depend on the day


def real_events(settings: Settings, codec: Codec) -> list[Any]:
    """An Encounter, its ClaimSubmitted and its Remittance, built by the real code path.

    Picks the first good encounter with at least 3 procedure lines, so the claim and
    the remittance carry a typical 3-line body (not the smallest one-line visit).
    """
    book = PayerBook.load(settings.payer_profiles_file)
    claim_ctx = ClaimContext.load(settings, codec)
    coding_ref = CodingReference.load(settings)
    planned = plan_encounters(200, SEED, 0.0, 0.0, codec, book, today=TODAY)
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Avro timestamp-millis
    for _offset, record in enumerate(planned):
        if record.kind != Kind.GOOD:
            continue
        encounter = codec.decode(record.value, Encounter)
        if len(encounter.procedures) < 3:
            continue
        emit = code_encounter(encounter, record.value, coding_ref, now)[0]
        if not isinstance(emit.event, CodedEncounter):
            continue
        claim = build_claim(emit.event, claim_ctx, now)
        members = {claim.member_id: Coverage(claim.member_id, claim.payer_id, f"{claim.payer_id}-GOLD", "18", None,
                                             claim.date_of_service.replace(year=2000), None)}
        ref = PayerReference(book, members, {}, FeeSchedule.load(settings.fee_schedule_file).charges, SEED)
        remittance = adjudicate(claim, MemberState(), ref, Calibration(), codec, now).remittances[0]
        return [encounter, claim, remittance]
    raise SystemExit("no 3-line good encounter in the first 200 planned ones")


def per_call_us(fn: Callable[[], object]) -> float:
    """Median over REPEATS of the µs per call, each repeat lasting >= MIN_REPEAT_S."""
    timer = timeit.Timer(fn)
    number = 1
    while True:  # like Timer.autorange, with our own minimum duration
        if timer.timeit(number) >= MIN_REPEAT_S:
            break
        number *= 2
    return statistics.median(t / number * 1e6 for t in timer.repeat(REPEATS, number))


def main() -> int:
    started = time.monotonic()
    settings = Settings()
    codec = Codec.from_dir(settings.schemas_dir)
    events = real_events(settings, codec)

    rows = []
    for event in events:
        schema = codec.registry.latest[type(event).SCHEMA]
        reference = ReferenceCodec(schema.raw)
        record = to_record(event)
        framed = codec.encode(event)
        body = framed[5:]
        # Same bytes from both implementations, or the comparison means nothing.
        if reference.encode(record) != body:
            raise SystemExit(f"{type(event).__name__}: avro-python3 and fastavro bodies differ")
        if codec.decode(framed, type(event)) != event:
            raise SystemExit(f"{type(event).__name__}: Codec round trip changed the event")

        parsed = schema.parsed
        event_type = type(event)

        def ref_roundtrip(reference: ReferenceCodec = reference, record: Any = record) -> object:
            return reference.decode(reference.encode(record))

        def codec_roundtrip(event: Any = event, event_type: type[Any] = event_type) -> object:
            return codec.decode(codec.encode(event), event_type)

        def raw_roundtrip(parsed: Any = parsed, record: Any = record) -> object:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, record)
            buf.seek(0)
            return fastavro.schemaless_reader(buf, parsed, None)

        ref_us = per_call_us(ref_roundtrip)
        codec_us = per_call_us(codec_roundtrip)
        raw_us = per_call_us(raw_roundtrip)
        lines = len(getattr(event, "lines", None) or getattr(event, "procedures", None) or [])
        rows.append((f"{event_type.__name__} ({lines} lines)", len(body), ref_us, codec_us, raw_us))

    header = ("event", "body B", "avro-python3 µs", "fastavro Codec µs", "fastavro raw µs",
              "ratio ref/Codec", "ratio ref/raw")
    table = [header] + [
        (name, str(size), f"{ref:.1f}", f"{cod:.1f}", f"{raw:.1f}", f"{ref / cod:.1f}×", f"{ref / raw:.1f}×")
        for name, size, ref, cod, raw in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print(f"µs per encode+decode, median of {REPEATS} repetitions (python {sys.version.split()[0]}, "
          f"fastavro {fastavro.__version__})")
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  ".join("-" * w for w in widths))
    print("body B = Avro body without the 5-byte Confluent header; avro-python3 and fastavro write the same bytes.")
    print(f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
