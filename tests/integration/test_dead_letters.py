"""`claims dlq` on a real broker: a claim the claim stage cannot build (a code missing from
the fee schedule) is dead-lettered, not lost; once the code is added, `claims dlq replay`
turns it into its claim, and replaying it again changes nothing."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop, start_worker
from engine.model.events import ClaimSubmitted, DeadLetter, Encounter
from engine.ops.metrics import consumer_lag, engine_groups
from engine.runtime.kafka import connection_environment, make_admin
from engine.settings import Settings
from engine.wire.codec import default_codec
from simulators.ehr import Kind, plan_encounters
from simulators.payer.adjudication import PayerBook
from tests.fixtures.kafka import SettingsFactory, read_topic

pytestmark = pytest.mark.integration

N_ENCOUNTERS = 80
SEED = 5


def _missing_code(settings: Settings) -> tuple[str, set[str]]:
    """A procedure code some (not most) of the planned clean encounters use, and those encounters."""
    codec = default_codec(settings.schemas_dir)
    planned = plan_encounters(N_ENCOUNTERS, SEED, 0.0, 0.0, codec, PayerBook.load(settings.payer_profiles_file))
    using: dict[str, set[str]] = {}
    for record in planned:
        if record.kind is Kind.GOOD:
            for procedure in codec.decode(record.value, Encounter).procedures:
                using.setdefault(procedure.code, set()).add(record.encounter_id)
    code = min((c for c, ids in using.items() if 2 <= len(ids) <= N_ENCOUNTERS // 4), key=lambda c: len(using[c]))
    return code, using[code]


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")},
           "CLAIMS_KAFKA_BOOTSTRAP": settings.bootstrap_servers, "CLAIMS_TOPIC_PREFIX": settings.topic_prefix,
           "CLAIMS_APP_ID": settings.app_id, "CLAIMS_STATE_DIR": str(settings.state_dir),
           **connection_environment(settings)}
    return subprocess.run([sys.executable, "-m", "engine", "dlq", *args], env=env, capture_output=True, timeout=120)


async def _claims_of(settings: Settings, encounters: set[str]) -> Counter[str]:
    codec = default_codec(settings.schemas_dir)
    records = await read_topic(settings, settings.topic("claims-submitted"))
    claims = (codec.decode(r.value, ClaimSubmitted) for r in records)
    return Counter(c.encounter_id for c in claims if c.encounter_id in encounters and c.frequency_code == "1")


async def _caught_up(settings: Settings, timeout_s: float) -> None:
    """Wait until the worker's group has committed every record of its topics."""
    deadline = time.monotonic() + timeout_s
    admin = make_admin(settings)
    await admin.start()
    try:
        while time.monotonic() < deadline:
            ends: dict[TopicPartition, int] = {}
            for topic in engine_groups(settings)[settings.app_id]:
                for record in await read_topic(settings, settings.topic(topic)):
                    tp = TopicPartition(record.topic, record.partition)
                    ends[tp] = max(ends.get(tp, 0), record.offset + 1)
            group = {settings.app_id: engine_groups(settings)[settings.app_id]}
            lags = await consumer_lag(admin, settings, group, ends)
            if lags and all(row.lag == 0 for row in lags):
                return
            await asyncio.sleep(0.5)  # polling the group's committed offsets, bounded by the deadline
        raise TimeoutError(f"the worker did not catch up within {timeout_s:.0f}s")
    finally:
        await admin.close()


async def test_a_claim_missing_its_fee_replays_into_its_claim_once_the_code_is_added(
        settings_factory: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_factory()
    code, encounters = _missing_code(settings)
    fees = tmp_path / "fees-without-one-code.csv"
    with settings.fee_schedule_file.open() as full, fees.open("w") as cut:
        cut.writelines(line for line in full if not line.startswith(f"{code},"))
    monkeypatch.setenv("CLAIMS_FEE_SCHEDULE", str(fees))  # the worker's and the payer's children read it
    options = RunOptions(encounters=N_ENCOUNTERS, rate=None, seed=SEED, bad_rate=0.0, resend_rate=0.0,
                         summary_path=None, timeout_s=240, live=False, coder=False)
    summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))
    assert summary["settled"] is True  # the dead letters balance the identities

    codec = default_codec(settings.schemas_dir)
    letters = [codec.decode(r.value, DeadLetter) for r in await read_topic(settings, settings.topic("dead-letter"))]
    fee_letters = [x for x in letters if "fee schedule" in x.reason]
    assert fee_letters and {x.source_key.decode() for x in fee_letters if x.source_key} == encounters
    assert {x.stage for x in fee_letters} <= {"claims", "eligibility"}
    assert await _claims_of(settings, encounters) == Counter()

    listed = _cli(settings, "list", "--reason", "fee schedule")
    assert listed.returncode == 0 and f"procedure {code}" in listed.stdout.decode()

    monkeypatch.delenv("CLAIMS_FEE_SCHEDULE")  # the code added: the shipped schedule has it
    worker = start_worker(settings, settings.bootstrap_servers, log_path=tmp_path / "worker.log")
    try:
        replayed = _cli(settings, "replay", "--reason", "fee schedule")
        assert replayed.returncode == 0, replayed.stderr.decode()[-2000:]
        deadline = time.monotonic() + 90
        while await _claims_of(settings, encounters) != Counter(dict.fromkeys(encounters, 1)):
            assert time.monotonic() < deadline, "the replayed letters did not become claims"
        assert _cli(settings, "replay", "--reason", "fee schedule").returncode == 0  # again: nothing changes
        await _caught_up(settings, 90)
        assert await _claims_of(settings, encounters) == Counter(dict.fromkeys(encounters, 1))
    finally:
        worker.terminate()
        worker.wait(30)
