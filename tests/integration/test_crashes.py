"""Nothing lost, nothing billed twice, under crashes: a closed loop of a couple of thousand
encounters with two engine workers, during which each worker, the payer simulator and
the coder simulator are stopped with SIGTERM and killed with SIGKILL at random points and
restarted at once (engine/ops/chaos.py), on both brokers. The end-to-end audit (what
`claims reconcile` runs) finds every encounter ended, nothing twice, the books balanced."""

from __future__ import annotations

import io
import signal

import pytest
from rich.console import Console

from engine.cli.run import RunFailed, RunOptions, run_closed_loop
from engine.ops.chaos import parse_chaos
from tests.fixtures.kafka import SettingsFactory

pytestmark = pytest.mark.integration

#: Three of each per process, as the issue asks; `make soak` runs more over longer.
CHAOS = "worker:term:3,worker:kill:3,payer:term:3,payer:kill:3,coder:term:3,coder:kill:3"
N_ENCOUNTERS = 2000
RATE = 60.0  # encounters/s: the stream (about 33 s) spans the kills, not a burst before them
CHAOS_EVERY_S = 1.5  # the mean gap between kills


@pytest.mark.timeout(600)  # a loop of 2,000 encounters at 40/s with 18 restarts: about 2 minutes
async def test_kills_and_restarts_lose_nothing_and_bill_nothing_twice(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    kills = tuple(parse_chaos(CHAOS))
    options = RunOptions(encounters=N_ENCOUNTERS, rate=RATE, seed=17, bad_rate=0.04, resend_rate=0.01,
                         summary_path=None, timeout_s=420, live=False, workers=2, chaos=kills,
                         chaos_every_s=CHAOS_EVERY_S)
    try:
        summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))
    except RunFailed as failed:  # say what did not settle: the audit's lost and stuck ids, the chaos
        partial = failed.summary or {}
        pytest.fail(f"{failed}: audit {partial.get('audit')}, chaos {partial.get('chaos', {}).get('kills')} kills, "
                    f"identities {[n for n, i in partial.get('identities', {}).items() if not i['holds']]}")

    assert summary["chaos"]["kills"] == len(kills) == 18
    assert summary["chaos"]["by_target_and_signal"] == {
        f"{target}:{signal}": 3 for target in ("coder", "payer", "worker") for signal in ("SIGKILL", "SIGTERM")}
    assert {kill["name"] for kill in summary["chaos"]["each"] if kill["target"] == "worker"} <= {
        "engine worker 1", "engine worker 2"}
    # SIGTERM is a clean stop, never a crash: exit 0, or -15 when it lands in a restart
    # before the process has its handler (the payer exited 1: its release timer produced
    # after faust had stopped the producer).
    assert [(kill["name"], kill["exit_code"]) for kill in summary["chaos"]["each"]
            if kill["signal"] == "SIGTERM" and kill["exit_code"] not in (0, -signal.SIGTERM)] == []
    audited = summary["audit"]
    assert (audited["lost"]["count"], audited["in_flight"]["count"], audited["duplicates"]) == (0, 0, 0), audited
    assert audited["broken_identities"] == [] and audited["ok"]
    assert audited["encounters"] == N_ENCOUNTERS  # distinct ids: the EHR's resends come on top
    assert all(identity["holds"] for identity in summary["identities"].values())
    assert summary["remittances_unbalanced"] == 0 and summary["repeated_claim_ids"] == 0
    assert summary["statement_amount"] == summary["patient_responsibility"]
    assert summary["settled"] is True
