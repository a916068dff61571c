"""The denial work queues after a seeded run, through the CLI a biller uses: the queues
hold every routed denial with its $ at risk, a biller claims and writes off an item, a
second write-off is refused without publishing anything, and the claim's timeline shows
the actions."""

from __future__ import annotations

import io
from collections import defaultdict
from decimal import Decimal

import pytest
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop
from engine.denials.desk import read_queues
from engine.denials.work_items import WorkItemStatus, work_item_accounting
from engine.model.events import DenialAction, DenialWorkItem
from engine.posting.routing import DenialRouting
from engine.runtime.kafka import read_events
from engine.wire.codec import default_codec
from tests.fixtures.kafka import SettingsFactory, on_broker
from tests.integration.test_coding_review import claims

pytestmark = pytest.mark.integration


@on_broker("tansu")
async def test_a_biller_works_the_queues_of_a_seeded_run(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    codec = default_codec(settings.schemas_dir)
    options = RunOptions(encounters=150, rate=None, seed=5, bad_rate=0.0, resend_rate=0.0, summary_path=None,
                         timeout_s=240, live=False)
    summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))
    assert summary["settled"] is True and summary["denied"] > 0

    routed: dict[str, DenialWorkItem] = {}
    for queue in DenialRouting.load(settings.denial_routing_file).queues():
        for item in await read_events(settings, settings.bootstrap_servers, codec, queue, DenialWorkItem):
            routed.setdefault(item.work_item_id, item)
    folded = await read_queues(settings, settings.bootstrap_servers, codec)
    assert {i.work_item_id for i, _ in folded.items} == set(routed)
    assert all(s.status == WorkItemStatus.OPEN for _, s in folded.items)

    shown = claims(settings, "denials", "queues")
    assert shown.returncode == 0, shown.stderr
    at_risk: dict[str, Decimal] = defaultdict(Decimal)
    for item in routed.values():
        at_risk[item.queue] += item.amount_at_risk
    for queue, amount in at_risk.items():
        assert queue in shown.stdout and f"{amount:,.2f}" in shown.stdout

    item = max(routed.values(), key=lambda i: i.amount_at_risk)
    listed = claims(settings, "denials", "list", "--queue", item.queue)
    assert listed.returncode == 0 and item.work_item_id in listed.stdout
    assert claims(settings, "denials", "claim", item.work_item_id, "--user", "biller-1").returncode == 0
    wrote_off = claims(settings, "denials", "writeoff", item.work_item_id, "--reason", item.carc)
    assert wrote_off.returncode == 0, wrote_off.stderr
    again = claims(settings, "denials", "writeoff", item.work_item_id, "--reason", item.carc)
    assert again.returncode == 1 and "already written off" in again.stderr

    actions = await read_events(settings, settings.bootstrap_servers, codec, "denial-actions", DenialAction)
    assert [str(a.action) for a in actions] == ["CLAIM", "WRITE_OFF"]
    folded = await read_queues(settings, settings.bootstrap_servers, codec)
    state = next(s for i, s in folded.items if i.work_item_id == item.work_item_id)
    assert (state.status, state.assignee, state.written_off_amount) == (
        WorkItemStatus.WRITTEN_OFF, "biller-1", item.amount_at_risk)
    accounting = work_item_accounting(s for _, s in folded.items)
    assert accounting.open + accounting.resolved == accounting.created == len(routed)
    assert accounting.resolved == 1

    timeline = claims(settings, "show", item.claim_id)
    assert timeline.returncode == 0 and "WRITE_OFF" in timeline.stdout and "CLAIM on" in timeline.stdout
