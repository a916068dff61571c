"""``claims top``: the dashboard's figures live in the terminal (rich), from a ``Monitor``
that reads the topics itself, so it works beside any running engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from engine.ops.monitor import CATCH_UP_S, SAMPLE_INTERVAL_S, Monitor
from engine.settings import Settings
from engine.web.dashboard import tiles
from engine.wire.codec import Codec


def top_view(status: Mapping[str, Any]) -> Group:
    """Tiles, then stages (counts, rates, latency), lag, payers, money and the queues."""
    glance = Table(title="Claimflow — top", show_header=False)
    for key, value in tiles(status):
        glance.add_row(key, value)
    stages = Table(title="stages")
    for column in ("stage", "in", "out", "in/s", "out/s", "p50 s", "p95 s", "p99 s"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    latency = status["latency_s"]
    for stage, figures in status["stages"].items():
        lat = latency.get(stage, {})
        stages.add_row(stage, f"{figures['in']:,}", f"{figures['out']:,}", f"{figures['in_per_s']:,.1f}",
                       f"{figures['out_per_s']:,.1f}",
                       *("–" if lat.get(q) is None else f"{lat[q]:.3f}" for q in ("p50", "p95", "p99")))
    e2e = latency["end_to_end"]
    stages.add_row("end to end", "", "", "", "",
                   *("–" if e2e.get(q) is None else f"{e2e[q]:.3f}" for q in ("p50", "p95", "p99")))
    lag = Table(title="consumer lag")
    for column in ("group", "topic", "lag"):
        lag.add_column(column, justify="right" if column == "lag" else "left")
    for group, topics in status["lag"].items():
        for topic, n in topics.items():
            lag.add_row(group, topic, f"{n:,}")
    payers = Table(title="first-pass denials", min_width=30)
    payers.add_column("payer")
    payers.add_column("rate", justify="right")
    for payer, rate in status["first_pass_denial_rate"].items():
        payers.add_row(payer, f"{rate:.1%}")
    money = Table(title="$ and A/R aging")
    money.add_column("what")
    money.add_column("$", justify="right")
    for kind, value in (*status["amounts"].items(), *(("A/R " + b, v) for b, v in status["ar_aging"].items())):
        money.add_row(kind.replace("_", " "), value)
    queues = Table(title="denial queues")
    for column in ("queue", "open", "for a biller", "$ at risk", "oldest (days)"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for queue, figures in status["denial_queues"].items():
        queues.add_row(queue, f"{figures['open']:,}", f"{figures['for_a_biller']:,}", figures["at_risk"],
                       "" if figures["oldest_open_days"] is None else str(figures["oldest_open_days"]))
    return Group(glance, stages, lag, payers, money, queues)


async def run_top(settings: Settings, bootstrap: str, codec: Codec, console: Console, once: bool) -> None:
    """Live until Ctrl-C; ``once``: catch up with the topics, take two samples one
    interval apart (rates need two), print, stop."""
    monitor = Monitor(settings, bootstrap, codec)
    try:
        if once:
            await monitor.open()
            await monitor.readback.read_all(timeout_s=CATCH_UP_S)
            await monitor.sample()
            deadline = time.monotonic() + SAMPLE_INTERVAL_S
            while time.monotonic() < deadline:  # what flows meanwhile makes the rates
                await monitor.readback.poll(timeout_ms=200)
            await monitor.sample()
            console.print(top_view(monitor.status()))
            return
        await monitor.start()
        with Live(top_view(monitor.status()), console=console, refresh_per_second=1) as live:
            while True:
                await asyncio.sleep(SAMPLE_INTERVAL_S)
                live.update(top_view(monitor.status()))
    finally:
        await monitor.stop()
