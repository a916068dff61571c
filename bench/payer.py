"""Payer adjudication benchmark: µs per claim through ``simulators.payer.adjudication.adjudicate``
(rules, calibrated draw, pricing, accumulators, the member state's JSON load and dump as
the faust table holds it), against the Avro decode of the same claims measured in the
same run (what the payer agent pays anyway to read the claim).

Claims come from the real path: EHR simulator plan → coding stage → claim builder, for
the simulator's patient panel (several visits per member, so accumulators are exercised).

    python bench/payer.py [N_ENCOUNTERS]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, date, datetime

from engine.claims.build import ClaimContext, FeeSchedule, build_claim
from engine.coding.rules import CodingReference, code_encounter
from engine.model.events import ClaimSubmitted, CodedEncounter, Encounter
from engine.settings import Settings
from engine.wire.codec import default_codec
from simulators.ehr import Kind, plan_encounters, practice_for
from simulators.payer.adjudication import Calibration, MemberState, PayerBook, PayerReference, adjudicate

SEED = 7
TODAY = date(2026, 11, 2)


def main(n: int) -> None:
    settings = Settings()
    codec = default_codec(settings.schemas_dir)
    book = PayerBook.load(settings.payer_profiles_file)
    practice = practice_for(SEED, book, TODAY)
    ctx = ClaimContext.load(settings, codec)
    coding_ref = CodingReference.load(settings)
    now = datetime.now(UTC)
    claims: list[bytes] = []
    for record in plan_encounters(n, SEED, 0.0, 0.0, codec, book, today=TODAY, practice=practice):
        if record.kind != Kind.GOOD:
            continue
        emit = code_encounter(codec.decode(record.value, Encounter), record.value, coding_ref, now)[0]
        if isinstance(emit.event, CodedEncounter):
            claims.append(codec.encode(build_claim(emit.event, ctx, now)))
    members = {r.coverage.member_id: r.coverage for r in practice.records()}
    auths: dict[tuple[str, str], list] = {}
    for a in practice.authorizations:
        auths.setdefault((a.member_id, a.procedure_code), []).append(a)
    ref = PayerReference(book, members, auths, FeeSchedule.load(settings.fee_schedule_file).charges, SEED)

    decode_runs, adjudicate_runs = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        decoded = [codec.decode(raw, ClaimSubmitted) for raw in claims]
        decode_runs.append((time.perf_counter() - t0) / len(claims) * 1e6)
        table: dict[str, str] = {}
        calibration: dict[str, Calibration] = {}
        t0 = time.perf_counter()
        for claim in decoded:
            key = f"{claim.payer_id}|{claim.member_id}"
            state = MemberState.loads(table.get(key))
            adjudicate(claim, state, ref, calibration.setdefault(claim.payer_id, Calibration()), codec, now)
            table[key] = state.dumps()
        adjudicate_runs.append((time.perf_counter() - t0) / len(claims) * 1e6)
    decode_us, adjudicate_us = statistics.median(decode_runs), statistics.median(adjudicate_runs)
    print(f"claims: {len(claims):,} from {n:,} encounters, {len(table):,} members")
    print(f"Avro decode of a claim        {decode_us:8.1f} µs  (baseline)")
    print(f"adjudicate (with member state) {adjudicate_us:8.1f} µs  = {adjudicate_us / decode_us:.1f}× the decode")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
