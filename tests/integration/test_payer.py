"""The payer simulator and posting on a real broker, each in its own process as in
production (`claims simulate payer`, `claims worker`): accumulators that survive a payer
restart (they live in a faust table), a corrected claim that reverses its original, a void,
and the ledger and statements posting makes of them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from engine.claims.build import FeeSchedule
from engine.cli.run import start_worker, stop_process
from engine.model.events import (
    ClaimState,
    ClaimStatus,
    ClaimSubmitted,
    GroupCode,
    PatientStatement,
    Remittance,
)
from engine.reference.master_data import Providers
from engine.runtime.kafka import make_producer, read_topic
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec
from simulators.coverage import Coverage, PatientRecord, write_master_data
from tests.factories import make_claim
from tests.integration.test_coding_review import ADDRESS, PATIENT

pytestmark = pytest.mark.integration

WAIT_S = 90.0
MEMBER = "MCR555000111"
DEDUCTIBLE = Decimal("283.00")  # Medicare Part B 2026, the profile file's MCR01 default plan


@pytest.fixture
def payer_settings(topic_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """No stochastic denials (the profiles say so), payments released at once."""
    profiles = yaml.safe_load(topic_settings.payer_profiles_file.read_text())
    for payer in profiles["payers"]:
        payer["first_pass_denial_rate"] = 0.0
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(profiles))
    monkeypatch.setenv("CLAIMS_PAYER_PROFILES", str(path))
    monkeypatch.setenv("CLAIMS_PAYER_TIME_SCALE", "0")
    monkeypatch.setenv("CLAIMS_LOG_LEVEL", "INFO")  # faust's rebalance and recovery lines, for a failure's error
    coverage = Coverage(MEMBER, "MCR01", "MCR01-STANDARD", "18", None, date(2020, 1, 1), None)
    settings = replace(topic_settings, payer_profiles_file=path, payer_time_scale=0.0)
    write_master_data([PatientRecord(PATIENT, ADDRESS, coverage)], settings.master_data_dir)
    return settings


def _claim(claim_id: str, days_ago: int, frequency: str = "1", original: str | None = None) -> ClaimSubmitted:
    """A Medicare office visit with a joint injection: 99214 + 20610."""
    providers = Providers.load(Settings().providers_file)
    fees = FeeSchedule.load(Settings().fee_schedule_file)
    return make_claim(
        claim_id, [("99214", fees.charge("99214", 1)), ("20610", fees.charge("20610", 1))],
        encounter_id=f"E-{claim_id}", encounter_occurred_at=datetime.now(UTC), frequency_code=frequency,
        original_claim_id=original, payer_id="MCR01", member_id=MEMBER, patient_id=PATIENT.patient_id,
        billing_npi=providers.billing.npi, rendering_npi=next(iter(providers.rendering)),
        date_of_service=date.today() - timedelta(days=days_ago), diagnoses=["M17.11"], submitted_at=datetime.now(UTC),
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, command: tuple[str, ...]) -> AsyncIterator[None]:
    process = start_worker(settings, settings.bootstrap_servers, command, settings.state_dir / f"{command[-1]}.log")
    try:
        yield
    finally:
        stop_process(process)


async def _submit(settings: Settings, codec: Codec, claim: ClaimSubmitted) -> None:
    producer = make_producer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("claims-submitted"), codec.encode(claim),
                                     key=claim.claim_id.encode())
    finally:
        await producer.stop()


async def _until(settings: Settings, codec: Codec, topic: str, event_type: type, done: Callable[[list], bool]) -> list:
    """Every event on ``topic`` once ``done`` says they are enough (bounded wait). On a
    time-out the processes' logs (ids and offsets only) go into the error, so a failure
    in CI can be read without a rerun."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        events = [codec.decode(r.value, event_type) for r in await read_topic(settings,
                                                                               settings.topic(topic), timeout_s=2.0)]
        if done(events):
            return events
    logs = "\n".join(f"--- {log.name} (last 80 lines)\n" + "\n".join(log.read_text().splitlines()[-80:])
                     for log in sorted(settings.state_dir.glob("*.log")))
    raise TimeoutError(f"{topic}: not there within {WAIT_S:.0f}s\n{logs}")


def _pr(remit: Remittance, carc: str) -> Decimal:
    return sum((a.amount for a in remit.all_adjustments() if a.group_code == GroupCode.PR and a.carc == carc),
               Decimal("0.00"))


def _for(remits: list[Remittance], claim_id: str, status: str) -> Remittance:
    return next(r for r in remits if r.claim_id == claim_id and r.claim_status_code == status)


async def test_accumulators_survive_a_payer_restart_and_a_replacement_reverses_its_original(
        payer_settings: Settings) -> None:
    settings = payer_settings
    codec = default_codec(settings.schemas_dir)
    first, second, third = _claim("CLM-A", 20), _claim("CLM-B", 15), _claim("CLM-C", 10)

    def have(*keys: tuple[str, str]) -> Callable[[list], bool]:
        return lambda remits: set(keys) <= {(r.claim_id, r.claim_status_code) for r in remits}

    async with running(settings, ("worker",)):
        async with running(settings, ("simulate", "payer")):
            await _submit(settings, codec, first)
            await _until(settings, codec, "remittances", Remittance, have(("CLM-A", "1")))
            await _submit(settings, codec, second)
            remits = await _until(settings, codec, "remittances", Remittance, have(("CLM-B", "1")))
        a, b = _for(remits, "CLM-A", "1"), _for(remits, "CLM-B", "1")
        # The first visit of the year goes to the deductible; the second finishes it and pays.
        assert _pr(a, "1") == a.allowed_amount and a.paid_amount == Decimal("0.00")
        assert _pr(a, "1") + _pr(b, "1") == DEDUCTIBLE
        assert b.paid_amount > a.paid_amount

        # A new payer process recovers the member's accumulators from the table's changelog.
        async with running(settings, ("simulate", "payer")):
            await _submit(settings, codec, third)
            remits = await _until(settings, codec, "remittances", Remittance, have(("CLM-C", "1")))
            c = _for(remits, "CLM-C", "1")
            assert _pr(c, "1") == Decimal("0.00")
            assert _pr(c, "2") == (c.allowed_amount * Decimal("0.20")).quantize(Decimal("0.01"))
            assert c.paid_amount == c.allowed_amount - _pr(c, "2")

            # A corrected claim for the first visit: the original is reversed, then the
            # replacement adjudicated against accumulators given back by the reversal.
            await _submit(settings, codec, replace(_claim("CLM-A2", 20, "7", "CLM-A"), lines=first.lines))
            # A void of the third: answered by its reversal alone.
            await _submit(settings, codec, _claim("CLM-C8", 10, "8", c.payer_claim_control_number))
            remits = await _until(settings, codec, "remittances", Remittance,
                                  have(("CLM-A", "22"), ("CLM-A2", "1"), ("CLM-C", "22")))
        reversal, replacement = _for(remits, "CLM-A", "22"), _for(remits, "CLM-A2", "1")
        assert reversal.payer_claim_control_number == a.payer_claim_control_number
        assert (reversal.billed_amount, reversal.paid_amount, reversal.patient_responsibility) == \
            (-a.billed_amount, -a.paid_amount, -a.patient_responsibility)
        assert _pr(replacement, "1") == _pr(a, "1")  # the deductible it gave back, taken again
        assert not any(r.claim_id == "CLM-C8" for r in remits)

        statuses = await _until(settings, codec, "claim-status", ClaimStatus,
                                lambda s: {("CLM-A", ClaimState.REVERSED), ("CLM-C", ClaimState.REVERSED),
                                           ("CLM-A2", ClaimState.PAID)} <= {(x.claim_id, x.status) for x in s})
    latest = {s.claim_id: s for s in statuses}  # in order per claim (one partition each)
    assert latest["CLM-A"].paid_amount == latest["CLM-A"].patient_responsibility == Decimal("0.00")
    assert latest["CLM-A"].balance == Decimal("0.00") and latest["CLM-A"].remittances_posted == 2
    assert latest["CLM-B"].balance == Decimal("0.00") and latest["CLM-B"].status == ClaimState.PAID

    statements = await _until(settings, codec, "statements", PatientStatement,
                              lambda s: {"CLM-A", "CLM-A2"} <= {x.claim_id for x in s if x.amount > 0}
                              and any(x.claim_id == "CLM-A" and x.amount < 0 for x in s))
    owed_for_a = [x for x in statements if x.claim_id == "CLM-A"]
    assert sorted(x.amount for x in owed_for_a) == [-_pr(a, "1"), _pr(a, "1")]  # billed, then credited
    assert all(x.deductible == x.amount for x in owed_for_a)
