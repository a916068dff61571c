"""Coding-check benchmark: µs per encounter for every rule (``check_encounter``).

The encounters are the EHR simulator's (seed 3, 10% coding errors of every kind, the
mix of ``claims run --bad-rate 0.1``), decoded once. In the same run, on the same
encounters, it times the Avro decode every stage pays (``Codec.decode``) as the
baseline, and reports checking as a ratio of it. The target (issue: coding checks)
is ≤ 50 µs per encounter on average, warm, i.e. after each code was seen once: the
per-code facts are cached (``engine.reference.codesets.icd10_info``), never a scan of the code set.

Also reports the cold cost (a fresh process's first pass over the same encounters),
and the lookup-structure check: the time per check does not grow with the number of
PTP edits loaded (the table is a dict keyed by code pair).

    python bench/coding.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import date

from engine.coding.rules import CodingReference, check_encounter
from engine.model.events import Encounter
from engine.reference.ncci import ModifierIndicator, PtpEdit, PtpTable
from engine.settings import Settings
from engine.wire.codec import default_codec
from simulators.ehr import UNREADABLE_KINDS, plan_encounters
from simulators.payer.adjudication import PayerBook

N_ENCOUNTERS = 5000
REPEATS = 5
TARGET_US = 50.0


def per_encounter_us(fn: Callable[[], object], n: int) -> float:
    """Median over REPEATS of µs per encounter."""
    runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def synthetic_ptp(base: PtpTable, extra: int) -> PtpTable:
    """The shipped edits plus ``extra`` made-up pairs (never billed): a table the size
    of the full CMS files (~2.6 million rows) to show lookups do not scan."""
    edits = [e for edits in base._by_pair.values() for e in edits]  # noqa: SLF001 - bench only
    for i in range(extra):
        edits.append(PtpEdit(f"{i % 90000 + 10000:05d}", f"{i // 90000 + 1000:04d}T", False, date(2020, 1, 1), None,
                             ModifierIndicator.ALLOWED, "synthetic"))
    return PtpTable(edits)


def main() -> None:
    settings = Settings()
    codec = default_codec(settings.schemas_dir)
    book = PayerBook.load(settings.payer_profiles_file)
    planned = plan_encounters(N_ENCOUNTERS, 3, 0.1, 0.0, codec, book, today=date(2026, 11, 25))
    readable = [r.value for r in planned if r.kind not in UNREADABLE_KINDS]
    encounters = [codec.decode(value, Encounter) for value in readable]
    ref = CodingReference.load(settings)
    n = len(encounters)

    started = time.perf_counter()
    for enc in encounters:
        check_encounter(enc, ref)
    cold_us = (time.perf_counter() - started) / n * 1e6

    check_us = per_encounter_us(lambda: [check_encounter(enc, ref) for enc in encounters], n)
    decode_us = per_encounter_us(lambda: [codec.decode(value, Encounter) for value in readable], n)

    big = CodingReference(ref.modifiers, synthetic_ptp(ref.ptp, 2_600_000), ref.mue, ref.demographic_edits)
    big_us = per_encounter_us(lambda: [check_encounter(enc, big) for enc in encounters], n)

    print(f"encounters: {n} (seed 3, 10% coding errors), {len(ref.ptp)} PTP edits, {len(ref.mue)} MUE values")
    print(f"Avro decode (baseline)      {decode_us:7.1f} µs/encounter")
    print(f"check_encounter, warm       {check_us:7.1f} µs/encounter   {check_us / decode_us:5.2f}× decode"
          f"   target ≤ {TARGET_US:.0f} µs: {'met' if check_us <= TARGET_US else 'MISSED'}")
    print(f"check_encounter, cold       {cold_us:7.1f} µs/encounter   (first pass: fills the per-code cache)")
    print(f"with 2.6 M PTP edits loaded {big_us:7.1f} µs/encounter   {big_us / check_us:5.2f}× the small table")


if __name__ == "__main__":
    main()
