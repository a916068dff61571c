"""The denial loop closed through the CLI a biller uses, on a real broker with the worker
and the payer simulator running as in production: a corrected claim (frequency 7) goes
through the engine's checks and gets paid, an appeal is decided by the payer, a write-off
takes the claim's balance down, a void takes the original back, a correction that fails
the checks is refused before anything is published (and, forced, is rejected by the
engine), and the run's accounting reports what the billers resolved."""

from __future__ import annotations

import io
import time
from decimal import Decimal

import pytest
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop
from engine.denials.desk import DenialDesk
from engine.denials.work_items import ACTIONABLE, RESOLVED, WorkItemStatus
from engine.model.events import ClaimState, ClaimStatus, ClaimSubmitted, DenialAction, Remittance
from engine.ops.reconciliation import ReadBack, summarize
from engine.posting.routing import DenialRouting
from engine.runtime.kafka import read_events
from engine.wire.codec import default_codec
from tests.fixtures.kafka import SettingsFactory
from tests.integration.test_coding_review import claims
from tests.integration.test_payer import running

pytestmark = pytest.mark.integration

WAIT_S = 90.0
#: Denials the payer simulator applies to replacements too (simulators/payer/adjudication.py
#: rule_denials): a plain resubmission of these is denied again.
RULE_CARCS = {"15", "18", "26", "27", "29", "31", "96", "97", "129", "197", "204", "234"}


async def test_billers_close_the_loop_from_the_terminal(settings_factory: SettingsFactory,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMS_PAYER_TIME_SCALE", "0")  # the payer answers at once
    settings = settings_factory()
    codec = default_codec(settings.schemas_dir)
    options = RunOptions(encounters=200, rate=None, seed=5, bad_rate=0.0, resend_rate=0.0, summary_path=None,
                         timeout_s=240, live=False)
    summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))
    assert summary["settled"] is True
    assert summary["work_items_created"] == summary["denials_routed"] == sum(summary["denials_by_queue"].values()) > 4
    assert summary["work_items_resolved"] == 0 and summary["denials_resolved"] == 0

    desk = DenialDesk(settings, settings.bootstrap_servers, codec)
    items = [(i, s) for i, s in (await desk.queues()).items if s.status in ACTIONABLE]
    # Medicaid first: no cost sharing, so what its replacement is paid comes back from the
    # payer (a Medicare replacement may go wholly to the deductible: paid, nothing from the payer).
    fixable = sorted((i for i, _ in items if i.carc not in RULE_CARCS),
                     key=lambda i: (i.payer_id != "MCD01", -i.amount_at_risk))
    others = [i for i, _ in items if i not in fixable[:2]]
    assert len(fixable) >= 2 and len(others) >= 2, [(i.queue, i.carc) for i, _ in items]
    to_resubmit, to_appeal = fixable[0], fixable[1]
    to_write_off, to_void = others[0], others[1]

    async with running(settings, ("worker",)), running(settings, ("simulate", "payer")):
        # A correction that fails the coding checks is refused before anything is published.
        bad = claims(settings, "denials", "resubmit", to_resubmit.work_item_id, "--proc", "1=9921X",
                     "--charge", "1=100.00")
        assert bad.returncode == 1 and "PROC_FORMAT" in bad.stderr, bad.stderr
        assert await read_events(settings, settings.bootstrap_servers, codec, "denial-actions", DenialAction) == []

        # Forced, the engine checks it again and sends it back to the biller, unsent.
        forced = claims(settings, "denials", "resubmit", to_resubmit.work_item_id, "--proc", "1=9921X",
                        "--charge", "1=100.00", "--force", "--wait", str(WAIT_S), "--user", "biller-1")
        assert forced.returncode == 0 and "IN_PROGRESS" in forced.stdout, forced.stdout + forced.stderr
        _, state = await desk.item(to_resubmit.work_item_id)
        assert state.status == WorkItemStatus.IN_PROGRESS and state.replacement_claim_id is None

        # The plain resubmission goes out and is paid: the loop closes.
        paid = claims(settings, "denials", "resubmit", to_resubmit.work_item_id, "--wait", str(WAIT_S),
                      "--user", "biller-1")
        assert paid.returncode == 0 and "RESOLVED_PAID" in paid.stdout, paid.stdout + paid.stderr
        _, state = await desk.item(to_resubmit.work_item_id)
        replacement = await desk.claim(state.replacement_claim_id or "")
        assert (replacement.frequency_code, replacement.original_claim_id) == ("7", to_resubmit.claim_id)
        assert replacement.patient_control_number == (await desk.claim(to_resubmit.claim_id)).patient_control_number
        assert state.recovered_amount > 0

        appealed = claims(settings, "denials", "appeal", to_appeal.work_item_id, "--note", "records attached",
                          "--wait", str(WAIT_S))
        assert appealed.returncode == 0, appealed.stderr
        _, appeal_state = await desk.item(to_appeal.work_item_id)
        assert appeal_state.status in (WorkItemStatus.APPEAL_WON, WorkItemStatus.APPEAL_LOST)

        wrote_off = claims(settings, "denials", "writeoff", to_write_off.work_item_id, "--reason", to_write_off.carc)
        assert wrote_off.returncode == 0, wrote_off.stderr
        voided = claims(settings, "denials", "void", to_void.work_item_id, "--note", "billed in error")
        assert voided.returncode == 0, voided.stderr

        def latest_status(statuses: list[ClaimStatus], claim_id: str) -> ClaimStatus:
            return [s for s in statuses if s.claim_id == claim_id][-1]

        async def settled() -> dict[str, object]:
            readback = ReadBack(settings, settings.bootstrap_servers, codec,
                                DenialRouting.load(settings.denial_routing_file).queues())
            await readback.start()
            try:
                return summarize(await readback.read_all(), settings, 1.0)
            finally:
                await readback.stop()

        # Wait for the ledger to follow the write-off and for the void's reversal (bounded).
        deadline = time.monotonic() + WAIT_S
        while True:
            statuses = await read_events(settings, settings.bootstrap_servers, codec, "claim-status", ClaimStatus)
            remits = await read_events(settings, settings.bootstrap_servers, codec, "remittances", Remittance)
            written = latest_status(statuses, to_write_off.claim_id).written_off_amount
            void_reversed = any(r.claim_id == to_void.claim_id and r.claim_status_code == "22" for r in remits)
            if written and void_reversed:
                break
            if time.monotonic() > deadline:
                pytest.fail("the write-off never reached the ledger or the void was never answered")

    write_off_status = latest_status(statuses, to_write_off.claim_id)
    assert write_off_status.written_off_amount == to_write_off.amount_at_risk
    assert write_off_status.balance == Decimal("0.00")  # what was at risk is all the claim still owed
    assert latest_status(statuses, to_resubmit.claim_id).status == ClaimState.REVERSED
    assert latest_status(statuses, replacement.claim_id).status in (ClaimState.PAID, ClaimState.PARTIALLY_PAID)
    if appeal_state.status == WorkItemStatus.APPEAL_WON:
        assert latest_status(statuses, to_appeal.claim_id).appeal_paid_amount == to_appeal.amount_at_risk

    actions = await read_events(settings, settings.bootstrap_servers, codec, "denial-actions", DenialAction)
    kinds = [str(a.action) for a in actions]
    assert kinds.count("RESUBMIT_REJECTED") == 1 and kinds.count("APPEAL_DECIDED") == 1
    submitted = await read_events(settings, settings.bootstrap_servers, codec, "claims-submitted", ClaimSubmitted)
    assert sorted(c.claim_id for c in submitted if c.frequency_code != "1") == sorted(
        [replacement.claim_id, f"{to_void.claim_id}-V1"])  # the forced, rejected correction never went out

    after = await settled()
    assert all(i["holds"] for i in after["identities"].values()), after["identities"]
    assert after["denials_resolved"] == 1 + (appeal_state.status == WorkItemStatus.APPEAL_WON)
    assert Decimal(after["recovered_amount"]) == state.recovered_amount + appeal_state.recovered_amount
    assert Decimal(after["written_off_amount"]) == to_write_off.amount_at_risk
    assert after["work_items_resolved"] == 4  # paid, appeal decided, written off, voided
    assert after["work_items_open"] + after["work_items_resolved"] == after["work_items_created"]
    resolved_by_status = {s: n for s, n in after["work_items_by_status"].items() if WorkItemStatus(s) in RESOLVED}
    assert resolved_by_status == {"RESOLVED_PAID": 1, "WRITTEN_OFF": 1, "VOIDED": 1, str(appeal_state.status): 1}

    timeline = claims(settings, "show", to_resubmit.claim_id)
    assert timeline.returncode == 0 and "RESUBMIT" in timeline.stdout
