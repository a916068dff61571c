"""The coder review queue on a real broker, worked through the CLI as a coder would:
a corrected item is re-checked by the worker, billed, adjudicated by the payer
simulator and answered with a remittance; a queried item waits for the provider."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest

from engine.cli.run import start_worker, stop_process
from engine.coding.queue import QueueReader, new_action, publish_action
from engine.coding.review import ItemStatus
from engine.model.events import (
    Address,
    ClaimSubmitted,
    CodingActionType,
    Encounter,
    Procedure,
    Remittance,
)
from engine.reference.master_data import Providers
from engine.runtime.kafka import make_producer
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec
from simulators.coverage import Coverage, PatientRecord, write_master_data
from tests.factories import make_encounter, make_patient
from tests.fixtures.kafka import wait_for_record

pytestmark = pytest.mark.integration

WAIT_S = 90.0


PATIENT = make_patient(patient_id="MRN900001", first_name="Test", last_name="Patient", birth_date=date(1970, 5, 17))
ADDRESS = Address("1 TEST ST", "DENVER", "CO", "80202")
MEMBER = "PPO123456789"


def _encounter(encounter_id: str, diagnoses: list[str], lines: list[Procedure]) -> Encounter:
    providers = Providers.load(Settings().providers_file)
    return make_encounter(
        encounter_id=encounter_id, source_system="test", occurred_at=datetime.now(UTC), patient=PATIENT,
        payer_id="PPO01", member_id=MEMBER, billing_npi=providers.billing.npi,
        rendering_npi=next(iter(providers.rendering)), date_of_service=date.today() - timedelta(days=3),
        diagnoses=diagnoses, procedures=lines, clinical_note=None, patient_address=ADDRESS,
    )


def _the_payer_knows_the_member(settings: Settings) -> None:
    coverage = Coverage(MEMBER, "PPO01", "PPO01-GOLD", "18", None, date(2020, 1, 1), None)
    write_master_data([PatientRecord(PATIENT, ADDRESS, coverage)], settings.master_data_dir)


@contextlib.asynccontextmanager
async def engine_running(settings: Settings, codec: Codec) -> AsyncIterator[None]:
    """The worker (its own process, as `claims worker`) and the payer simulator (its own
    process, as `claims simulate payer`)."""
    _the_payer_knows_the_member(settings)
    worker = start_worker(settings, settings.bootstrap_servers)
    payer = start_worker(settings, settings.bootstrap_servers, ("simulate", "payer"), settings.payer_log_file)
    try:
        yield
    finally:
        stop_process(worker)
        stop_process(payer)


def claims(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The `claims` CLI in a subprocess, pointed at this test's broker and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    env.update(CLAIMS_KAFKA_BOOTSTRAP=settings.bootstrap_servers, CLAIMS_TOPIC_PREFIX=settings.topic_prefix,
               CLAIMS_STATE_DIR=str(settings.state_dir), CLAIMS_USER="coder-17", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "engine", *args], env=env, capture_output=True, text=True,
                          timeout=WAIT_S + 30)


async def _send(settings: Settings, codec: Codec, *encounters: Encounter) -> None:
    producer = make_producer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        for enc in encounters:
            await producer.send_and_wait(settings.topic("encounters"), codec.encode(enc), key=enc.encounter_id.encode())
    finally:
        await producer.stop()


async def test_a_corrected_item_reaches_a_remittance_and_a_query_waits_for_its_answer(topic_settings: Settings
                                                                                      ) -> None:
    settings = topic_settings
    codec = default_codec(settings.schemas_dir)
    header_code = _encounter("ENC-CR-1", ["M54.5"], [Procedure("99203", [], 1, [1])])  # header, not billable
    sex_conflict = _encounter("ENC-CR-2", ["N40.0"], [Procedure("99214", [], 1, [1])])  # BPH, female patient
    async with engine_running(settings, codec):
        await _send(settings, codec, header_code, sex_conflict)
        async with QueueReader(settings, settings.bootstrap_servers, codec) as reader:
            queue = await reader.until(lambda q: {"ENC-CR-1", "ENC-CR-2"} <= {i.encounter_id for i in q.values()},
                                       timeout_s=WAIT_S)
        by_encounter = {item.encounter_id: item for item in queue.values()}
        assert by_encounter["ENC-CR-1"].rule_ids == ["ICD10_NOT_BILLABLE"]
        assert by_encounter["ENC-CR-2"].rule_ids == ["ICD10_SEX_CONFLICT"]

        listed = claims(settings, "coding", "list")
        assert listed.returncode == 0, listed.stderr
        assert by_encounter["ENC-CR-1"].work_item_id in listed.stdout and "ICD10_SEX_CONFLICT" in listed.stdout
        shown = claims(settings, "coding", "show", "ENC-CR-1")
        assert shown.returncode == 0, shown.stderr
        assert "Low back pain" in shown.stdout and "not billable" in shown.stdout
        assert "Test" not in shown.stdout and "PPO123456789" not in shown.stdout  # no name, no member id

        # An incomplete fix is refused locally and nothing is published.
        refused = claims(settings, "coding", "fix", "ENC-CR-1", "--dx", "1=M54")
        assert refused.returncode == 1 and "still fails" in refused.stderr

        fixed = claims(settings, "coding", "fix", "ENC-CR-1", "--dx", "1=M54.50", "--note", "documented low back "
                       "pain, unspecified", "--wait", str(WAIT_S))
        assert fixed.returncode == 0, fixed.stderr
        assert "RESOLVED" in fixed.stdout

        submitted = await wait_for_record(settings, settings.topic("claims-submitted"),
                                          lambda r: r.key is not None and b"ENC-CR-1" in (r.value or b""), WAIT_S)
        claim = codec.decode(submitted.value, ClaimSubmitted)
        assert claim.encounter_id == "ENC-CR-1" and claim.diagnoses == ["M54.50"]
        remitted = await wait_for_record(settings, settings.topic("remittances"),
                                         lambda r: r.key == claim.claim_id.encode(), WAIT_S)
        assert codec.decode(remitted.value, Remittance).encounter_id == "ENC-CR-1"

        # The sex conflict needs the provider: query, answer, then fix.
        queried = claims(settings, "coding", "query", "ENC-CR-2", "--question", "BPH documented for a female "
                         "patient: is the sex in registration wrong, or the diagnosis?")
        assert queried.returncode == 0, queried.stderr
        answered = claims(settings, "coding", "answer", "ENC-CR-2", "--answer", "Registration is right; the "
                          "symptom was urinary frequency, not BPH.", "--provider", "dr-0042")
        assert answered.returncode == 0, answered.stderr
        waiting = claims(settings, "coding", "list", "--status", "ANSWERED")
        assert by_encounter["ENC-CR-2"].work_item_id in waiting.stdout
        fixed = claims(settings, "coding", "fix", "ENC-CR-2", "--dx", "1=R35.0", "--wait", "0")
        assert fixed.returncode == 0, fixed.stderr
        async with QueueReader(settings, settings.bootstrap_servers, codec) as reader:
            item = (await reader.until(lambda q: q[by_encounter["ENC-CR-2"].work_item_id].status
                                       in (ItemStatus.RESOLVED, ItemStatus.OPEN), timeout_s=WAIT_S)
                    )[by_encounter["ENC-CR-2"].work_item_id]
        assert item.status == ItemStatus.RESOLVED
        assert [h.what.split(":")[0] for h in item.history] == [
            "opened", "query", "answer", "fix", "correction passed the checks"]
        assert item.question and "BPH" in item.question and item.answer and "frequency" in item.answer

        # Once resolved, nothing more can be done to it: the CLI refuses, and a fix that
        # gets past a stale view anyway is rejected by the engine, never billed twice.
        again = claims(settings, "coding", "answer", "ENC-CR-2", "--answer", "too late")
        assert again.returncode == 3 and "RESOLVED" in again.stderr
        stale = new_action(item, action=CodingActionType.FIX, actor="coder-99", note=None, changes=[],
                           corrected_encounter=codec.encode(sex_conflict))
        await publish_action(settings, settings.bootstrap_servers, codec, stale)
        async with QueueReader(settings, settings.bootstrap_servers, codec) as reader:
            after = (await reader.until(lambda q: stale.action_id in q[item.work_item_id].rejected_fixes,
                                        timeout_s=WAIT_S))[item.work_item_id]
        assert after.status == ItemStatus.RESOLVED
        assert "already resolved" in after.rejected_fixes[stale.action_id]
