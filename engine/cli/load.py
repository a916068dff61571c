"""``claims load``: an open-loop load on the whole engine. The raw aiokafka hop is measured
first on the same broker; then the EHR sends at a target rate that does not slow down when
the engine does, step after step (``--find-max``: up while each rate is sustained), and
the report gives each step's figures beside their ratio to the hop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from engine.cli.run import RunFailed, RunOptions, broker_for, run_children, start_worker, stop_processes
from engine.ops.baseline import raw_hop_rate
from engine.ops.load import (
    Pace,
    ProcessWatch,
    Sample,
    Step,
    bytes_per_encounter,
    max_sustained,
    next_rate,
    ratio,
    send_open_loop,
)
from engine.ops.monitor import Monitor
from engine.runtime.kafka import (
    ClusterRefused,
    assign_all,
    check_connection,
    make_consumer,
    read_to_highwater,
    resolve_idempotence,
    started,
)
from engine.settings import Settings
from engine.wire.codec import default_codec
from engine.wire.topics import apply_topics, load_topics
from simulators.coder import CoderSimulator
from simulators.coverage import write_master_data
from simulators.ehr import PlannedRecord, endless_plan, practice_for
from simulators.payer.adjudication import PayerBook

#: Seconds between two samples of a step.
SAMPLE_EVERY_S = 1.0
#: The longest warm-up before the first step.
WARM_UP_MAX_S = 180.0
#: A backlog of up to this many seconds of offered encounters (in records: each makes
#: about six, one per topic it crosses) counts as caught up.
WARM_UP_BACKLOG_S = 5.0


@dataclass(frozen=True)
class LoadOptions:
    rate: float  # encounters per second: the one rate, or --find-max's first
    duration_s: float  # per step
    find_max: bool = False
    max_rate: float = 20_000.0
    workers: int = 1
    coder: bool = True
    seed: int = 1
    bad_rate: float = 0.04
    hop_messages: int = 50_000
    report_path: Path | None = None
    live: bool = True


async def run_load(settings: Settings, options: LoadOptions, console: Console) -> dict[str, Any]:
    """The load, start to report. The payer answers at once (``payer_time_scale`` 0), so
    end to end is encounter produced → remittance posted, the engine's own time."""
    settings = replace(settings, seed=options.seed, payer_time_scale=0.0)
    codec = default_codec(settings.schemas_dir)
    book = PayerBook.load(settings.payer_profiles_file)
    practice = practice_for(options.seed, book)
    write_master_data(practice.records(), settings.master_data_dir, practice.authorizations)
    run_options = RunOptions(encounters=None, rate=options.rate, seed=options.seed, bad_rate=options.bad_rate,
                             resend_rate=0.0, summary_path=None, timeout_s=float("inf"), live=False,
                             coder=options.coder, workers=options.workers)
    async with broker_for(settings) as broker:
        bootstrap = broker.bootstrap_servers
        try:
            await check_connection(settings.with_bootstrap(bootstrap))
        except ClusterRefused as exc:
            raise RunFailed(str(exc)) from None
        settings = await resolve_idempotence(settings, bootstrap)
        console.print(f"broker: {bootstrap}; measuring the raw aiokafka hop ({options.hop_messages:,} messages)")
        baseline = await raw_hop_rate(bootstrap, settings, codec, options.hop_messages)
        console.print(f"raw aiokafka hop: {baseline:,.0f} msg/s")
        await apply_topics(settings.with_bootstrap(bootstrap), load_topics(settings))
        children = {name: start_worker(settings, bootstrap, command, log)
                    for name, (command, log) in run_children(settings, run_options).items()}
        watch = ProcessWatch({"load driver": os.getpid(), **{name: p.pid for name, p in children.items()},
                              **{f"broker {name}": p.pid for name, p in broker.processes.items()}})
        coder = CoderSimulator(settings, bootstrap, codec) if options.coder else None
        monitor = Monitor(settings, bootstrap, codec, sample_interval_s=SAMPLE_EVERY_S)
        stop_sending = asyncio.Event()
        pace = Pace(options.rate)
        tasks: list[asyncio.Task[Any]] = []
        steps: list[Step] = []
        began = time.monotonic()
        try:
            await monitor.start()
            if coder is not None:
                tasks.append(asyncio.create_task(coder.run(), name="coder-simulator"))
            plan: Iterator[PlannedRecord] = itertools.chain.from_iterable(
                endless_plan(options.seed, options.bad_rate, 0.0, codec, book, practice=practice))
            tasks.append(asyncio.create_task(send_open_loop(settings, bootstrap, plan, pace, stop_sending),
                                             name="ehr"))
            await _warm_up(options, pace, monitor, console)
            rate: float | None = options.rate
            while rate is not None:
                step = await _hold(rate, options, pace, monitor, watch, children, tasks, console)
                steps.append(step)
                if not step.sustained():  # the next step starts without this one's backlog
                    await _drain(rate, pace, monitor, console)
                rate = next_rate(steps, options.max_rate) if options.find_max else None
            elapsed = time.monotonic() - began
            stop_sending.set()
            record_bytes = await _record_bytes(settings, bootstrap)
        finally:
            stop_sending.set()
            if coder is not None:
                coder.stop.set()
            stop_processes(list(children.values()), 20.0)
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 10.0)
            await monitor.stop()
    report = _report(settings, options, baseline, steps, pace, elapsed, record_bytes, monitor)
    if options.report_path is not None:
        options.report_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


async def _hold(rate: float, options: LoadOptions, pace: Pace, monitor: Monitor, watch: ProcessWatch,
                children: dict[str, Any], tasks: list[asyncio.Task[Any]], console: Console) -> Step:
    """One step: ``rate`` offered for ``options.duration_s``, sampled every few seconds."""
    pace.rate = rate
    step = Step(rate, options.duration_s)
    monitor.readback.tally.latency.restart_window()
    sent_before, began = pace.sent, time.monotonic()
    live = Live(console=console, refresh_per_second=2, transient=True) if options.live else None
    with live if live is not None else contextlib.nullcontext():
        while (elapsed := time.monotonic() - began) < options.duration_s:
            await asyncio.sleep(min(SAMPLE_EVERY_S, options.duration_s - elapsed))
            for name, process in children.items():
                if process.poll() is not None:
                    raise RunFailed(f"the {name} exited with code {process.returncode}")
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise RunFailed(f"{task.get_name()} failed: {task.exception()!r}")
            status = monitor.status()  # its own task reads the topics and samples rates and lag
            step.samples.append(Sample(time.monotonic() - began, pace.sent - sent_before, status["lag_total"],
                                       status["stages"], watch.read()))
            if live is not None:
                live.update(_progress(step))
    step.sent = pace.sent - sent_before
    step.latency_s = monitor.status()["latency_s"]
    step.behind_at_end = {f"{row.group} {row.topic}[{row.partition}]": row.lag for row in monitor.lags if row.lag}
    verdict = "sustained" if step.sustained() else "NOT sustained"
    if not step.sender_kept_up():
        verdict += f": the sender offered only {step.sent_per_s():,.0f}/s"
    console.print(f"{rate:,.0f} encounters/s for {options.duration_s:.0f} s: {verdict} "
                  f"(backlog {step.lag_growth_per_s():+,.0f} records/s)")
    return step


async def _warm_up(options: LoadOptions, pace: Pace, monitor: Monitor, console: Console) -> None:
    """Send at the first rate until the engine has posted a remittance and its backlog is
    under ``WARM_UP_BACKLOG_S`` seconds' worth of encounters (workers joined, tables
    recovered, the payer answering): the first step measures the engine, not its start."""
    began = time.monotonic()
    while time.monotonic() - began < WARM_UP_MAX_S:
        await asyncio.sleep(SAMPLE_EVERY_S)
        status = monitor.status()
        posted = status["latency_s"].get("end_to_end", {}).get("count") or 0
        if posted and status["lag_total"] <= options.rate * WARM_UP_BACKLOG_S:
            console.print(f"warmed up in {time.monotonic() - began:.0f} s ({pace.sent:,} encounters sent)")
            return
    raise RunFailed(f"the engine posted no remittance, or its backlog stayed over "
                    f"{options.rate * WARM_UP_BACKLOG_S:,.0f} records, "
                    f"for {WARM_UP_MAX_S:.0f} s at {options.rate:,.0f} encounters/s: lower --rate")


async def _drain(rate: float, pace: Pace, monitor: Monitor, console: Console) -> None:
    """Pause the sender until the backlog is back under ``WARM_UP_BACKLOG_S`` seconds of
    ``rate`` (bounded by ``WARM_UP_MAX_S``)."""
    pace.paused = True
    began = time.monotonic()
    try:
        while time.monotonic() - began < WARM_UP_MAX_S:
            await asyncio.sleep(SAMPLE_EVERY_S)
            if monitor.status()["lag_total"] <= rate * WARM_UP_BACKLOG_S:
                console.print(f"backlog cleared in {time.monotonic() - began:.0f} s")
                return
        raise RunFailed(f"the engine did not clear its backlog in {WARM_UP_MAX_S:.0f} s with nothing sent")
    finally:
        pace.paused = False


def _progress(step: Step) -> Table:
    last = step.samples[-1]
    table = Table(title=f"claims load — {step.rate:,.0f} encounters/s offered, {last.t_s:4.0f} s "
                        f"of {step.duration_s:.0f}", show_header=True)
    for column in ("stage", "in/s", "out/s"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for stage, figures in last.stages.items():
        table.add_row(stage, f"{figures.get('in_per_s', 0):,.0f}", f"{figures.get('out_per_s', 0):,.0f}")
    table.add_row("backlog (records)", f"{last.lag:,}", "")
    for name, usage in last.processes.items():
        table.add_row(name, f"{usage['cpu_percent']:.0f} % CPU", f"{usage['rss_mb']:.0f} MB")
    return table


async def _record_bytes(settings: Settings, bootstrap: str) -> dict[str, int]:
    """Record bytes (key, value, headers) on every topic of the run: the prefixed topics
    and the apps' changelogs."""
    totals: dict[str, int] = {}
    async with started(make_consumer(settings.with_bootstrap(bootstrap), auto_offset_reset="earliest")) as consumer:
        metadata = await consumer._client.fetch_all_metadata()
        names = [t for t in metadata.topics()
                 if (settings.topic_prefix and t.startswith(settings.topic_prefix)) or t.startswith(settings.app_id)]
        partitions = await assign_all(consumer, names)

        def add(records: list[Any]) -> None:
            for r in records:
                size = len(r.key or b"") + len(r.value or b"") + sum(len(k) + len(v or b"") for k, v in r.headers)
                totals[r.topic] = totals.get(r.topic, 0) + size

        await read_to_highwater(consumer, partitions, 300.0, add)
    return totals


def _report(settings: Settings, options: LoadOptions, baseline: float, steps: list[Step], pace: Pace,
            elapsed: float, record_bytes: dict[str, int], monitor: Monitor) -> dict[str, Any]:
    status = monitor.status()
    encounters = status["summary"]["encounters"]
    best = max_sustained(steps)
    return {
        "broker": settings.broker if not settings.bootstrap_servers else "configured",
        "raw_hop_msg_per_s": round(baseline),
        "steps": [step.figures(baseline) for step in steps],
        "max_sustained_encounters_per_s": best,
        "max_sustained_ratio_to_raw_hop": ratio(best, baseline) if best else None,
        "encounters_sent": pace.sent,
        "encounters_read_back": encounters,
        "sender_behind_s": round(pace.behind_s, 2),
        "elapsed_s": round(elapsed, 1),
        "record_bytes_per_encounter": bytes_per_encounter(record_bytes, encounters),
        "workers": options.workers,
    }
