"""`claims run`'s live table shows what the run has done, the billers' part included."""

from __future__ import annotations

from rich.console import Console

from engine.cli.run import progress_table
from engine.ops.reconciliation import Tally, summarize


def test_the_live_table_shows_the_denial_work_and_its_money(settings, samples, codec):
    from engine.model.events import DenialWorkItem

    tally = Tally()
    item = samples[DenialWorkItem]
    tally.add("denials.missing-information", item.claim_id.encode(), codec.encode(item), codec)
    console = Console(record=True, width=120)
    console.print(progress_table(tally, summarize(tally, settings, 1.0), rate=0.0, elapsed=1.0, sent=0))
    text = console.export_text()
    assert "denial work items open / resolved" in text and "1 / 0" in text
    assert "recovered / written off $" in text and "0.00 / 0.00" in text
    assert "denial queue missing-information" in text
