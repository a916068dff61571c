"""835 files both ways on a real broker, through the CLI a biller would use: the loop's
remittances exported as an 835 that pyx12 accepts, the same file ingested back into the
same remittances (posting adds nothing: it dedupes by remittance id, across a worker
restart), a payer's 835 for claims we never sent landing as unapplied cash, and
`claims show` telling a denied claim's story from the same events."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop, start_worker, stop_process
from engine.model.events import ClaimStatus, ClaimSubmitted, PaymentReceived, Remittance, UnappliedPayment
from engine.runtime.kafka import read_events
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec
from engine.x12.validation import validate_835
from tests.fixtures.kafka import SettingsFactory, on_broker, read_topic
from tests.integration.test_coding_review import claims

pytestmark = pytest.mark.integration

N_ENCOUNTERS = 150
WAIT_S = 120.0
FIXTURES = Path(__file__).parent.parent / "fixtures" / "x12"


async def _events(settings: Settings, codec: Codec, topic: str, event_type: type) -> list:
    return await read_events(settings, settings.bootstrap_servers, codec, topic, event_type)


async def _caught_up(settings: Settings, group_id: str, topic: str) -> None:
    """Wait (bounded) until ``group_id`` has committed every record on ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                records = await read_topic(settings, settings.topic(topic), timeout_s=5.0)
                ends = Counter[int]()
                for r in records:
                    ends[r.partition] = max(ends[r.partition], r.offset + 1)
                committed = await admin.list_consumer_group_offsets(
                    group_id, partitions=[TopicPartition(settings.topic(topic), p) for p in ends])
                if all(committed[TopicPartition(settings.topic(topic), p)].offset >= end for p, end in ends.items()):
                    return
                await asyncio.sleep(0.5)  # polling the committed offsets, not waiting out a race
    finally:
        await admin.close()


@on_broker("kafka")
async def test_an_exported_835_validates_and_ingests_back_into_the_same_remittances(
        settings_factory: SettingsFactory, tmp_path: Path) -> None:
    settings = settings_factory()
    codec = default_codec(settings.schemas_dir)
    options = RunOptions(encounters=N_ENCOUNTERS, rate=None, seed=5, bad_rate=0.0, resend_rate=0.0,
                         summary_path=None, timeout_s=240, live=False)
    summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))
    assert summary["settled"] is True
    original = await _events(settings, codec, "remittances", Remittance)
    statuses_before = len(await read_topic(settings, settings.topic("claim-status"), timeout_s=10.0))
    assert original and statuses_before

    exported = tmp_path / "loop.835"
    result = claims(settings, "export", "835", "--out", str(exported))
    assert result.returncode == 0, result.stderr
    assert validate_835(exported.read_text(encoding="latin-1")) == []

    result = claims(settings, "ingest", "835", str(exported))
    assert result.returncode == 0, result.stderr
    after = await _events(settings, codec, "remittances", Remittance)
    ingested = [r for r in after if r.source.startswith("835:")]
    assert not await _events(settings, codec, "unapplied-cash", UnappliedPayment)
    payments = await _events(settings, codec, "payments", PaymentReceived)
    assert payments and sum(p.unapplied for p in payments) == 0

    by_id = {r.remittance_id: r for r in original}
    assert len(ingested) == len(by_id)  # one per exported remittance
    for r in ingested:
        mine = by_id[r.remittance_id]  # the same id: the same payment, whichever way it came
        assert (r.claim_id, r.claim_status_code, r.billed_amount, r.allowed_amount, r.paid_amount,
                r.patient_responsibility, r.payer_claim_control_number) == (
            mine.claim_id, mine.claim_status_code, mine.billed_amount, mine.allowed_amount, mine.paid_amount,
            mine.patient_responsibility, mine.payer_claim_control_number)
        assert sorted((a.group_code, a.carc, a.amount) for a in r.all_adjustments()) == sorted(
            (a.group_code, a.carc, a.amount) for a in mine.all_adjustments())

    # A biller's view of one denied claim, from the same events: its whole timeline, no PHI.
    denied = next(r for r in original if r.claim_status_code == "4")
    shown = claims(settings, "show", denied.claim_id)
    assert shown.returncode == 0, shown.stderr
    assert denied.claim_id in shown.stdout and denied.remittance_id in shown.stdout
    claim = next(c for c in await _events(settings, codec, "claims-submitted", ClaimSubmitted)
                 if c.claim_id == denied.claim_id)
    assert claim.member_id not in shown.stdout
    assert claims(settings, "show", "CLM-NOT-THERE").returncode == 1

    # Posting (a worker started afresh, its ledger recovered from the changelog) sees each
    # remittance a second time and posts nothing new.
    worker = start_worker(settings, settings.bootstrap_servers)
    try:
        await _caught_up(settings, settings.app_id, "remittances")
    finally:
        stop_process(worker)
    statuses = await _events(settings, codec, "claim-status", ClaimStatus)
    assert len(statuses) == statuses_before

    # A payer's file for claims that are not ours: every claim payment is unapplied cash.
    result = claims(settings, "ingest", "835", str(FIXTURES / "835_multi_claim.835"))
    assert result.returncode == 0, result.stderr
    unapplied = await _events(settings, codec, "unapplied-cash", UnappliedPayment)
    assert unapplied and all(u.reason for u in unapplied)
    assert len(await _events(settings, codec, "payments", PaymentReceived)) == len(payments) + 1
