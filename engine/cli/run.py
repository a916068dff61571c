"""``claims run``: the whole closed loop in one command — embedded broker (unless a
cluster is configured), topics, the engine's worker, both simulators, live progress,
and the summary read back from the topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from engine.ops.audit import audit
from engine.ops.chaos import ChaosReport, Kill, run_chaos
from engine.ops.reconciliation import ReadBack, Tally, all_settled, summarize, unsettled
from engine.posting.routing import DenialRouting
from engine.runtime.broker import _die_with_parent, running_broker_address
from engine.runtime.kafka import ClusterRefused, check_connection, connection_environment, resolve_idempotence
from engine.runtime.local_broker import RunBroker, run_broker
from engine.settings import Settings
from engine.wire.codec import default_codec
from engine.wire.topics import apply_topics, load_topics
from simulators.coder import CoderSimulator
from simulators.coverage import write_master_data
from simulators.ehr import Practice, endless_plan, plan_encounters, practice_for, send_planned
from simulators.payer.adjudication import PayerBook, profile_fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    encounters: int | None  # None: open-ended, until Ctrl-C
    rate: float | None  # encounters per second; None: as fast as possible
    seed: int
    bad_rate: float
    resend_rate: float
    summary_path: Path | None
    timeout_s: float
    live: bool = True
    lapsed_rate: float = 0.0
    incomplete_rate: float = 0.0
    coder: bool = True  # the coder simulator works the coding-review queue
    web: bool = False  # serve the billers' page (engine/web/app.py) while the run lasts
    stay: bool = False  # once settled, keep the engine, the payer and the page up until Ctrl-C
    workers: int = 1  # engine workers side by side (one consumer group: they split the partitions)
    chaos: tuple[Kill, ...] = ()  # children to stop or kill at random points, each restarted (engine/ops/chaos.py)
    chaos_every_s: float = 2.0  # the mean gap between two kills (each drawn from half to one and a half times it)


class RunFailed(RuntimeError):
    """The run could not go on; ``summary`` is how far it got, when it got that far."""

    def __init__(self, reason: str, summary: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.summary = summary


@contextlib.asynccontextmanager
async def broker_for(settings: Settings) -> AsyncIterator[RunBroker]:
    """The configured cluster, else a `claims broker` running on this machine, else an
    embedded broker (``CLAIMS_BROKER``: Tansu, or a loopback Kafka) for the duration of the run."""
    existing = settings.bootstrap_servers or running_broker_address(settings)
    if existing:
        yield RunBroker(existing)
        return
    async with run_broker(settings, settings.broker) as broker:
        yield broker


def start_worker(settings: Settings, bootstrap_servers: str, command: tuple[str, ...] = ("worker",),
                 log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """The engine's agents in their own process (as in production: `claims worker`), or
    another faust app (`claims simulate payer`). Its log goes to the state directory
    (``worker.log``), off the live screen."""
    env = {**os.environ, "CLAIMS_KAFKA_BOOTSTRAP": bootstrap_servers, "CLAIMS_TOPIC_PREFIX": settings.topic_prefix,
           "CLAIMS_APP_ID": settings.app_id, "CLAIMS_SEED": str(settings.seed),
           "CLAIMS_STATE_DIR": str(settings.state_dir), "CLAIMS_IDEMPOTENCE": settings.idempotence,
           "CLAIMS_PROCESSING_GUARANTEE": settings.processing_guarantee,
           "CLAIMS_PAYER_TIME_SCALE": repr(settings.payer_time_scale), **connection_environment(settings)}
    log_path = log_path or settings.worker_log_file
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "engine", *command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped by us, in order, not by the terminal's Ctrl-C
            preexec_fn=_die_with_parent,
        )


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    stop_processes([process], timeout_s)


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM to all at once, then SIGKILL to whatever still runs after ``timeout_s``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_children(settings: Settings, options: RunOptions) -> dict[str, tuple[tuple[str, ...], Path]]:
    """The run's child processes by name: each one's command and log file."""
    logs = settings.worker_log_file
    children: dict[str, tuple[tuple[str, ...], Path]] = {}
    for n in range(1, options.workers + 1):
        name = "engine worker" if options.workers == 1 else f"engine worker {n}"
        children[name] = (("worker",), logs if n == 1 else logs.with_name(f"{logs.stem}-{n}{logs.suffix}"))
    children["payer simulator"] = (("simulate", "payer"), settings.payer_log_file)
    if options.coder and any(kill.target == "coder" for kill in options.chaos):
        children["coder simulator"] = (("simulate", "coder"), logs.with_name("coder.log"))
    return children


@contextlib.asynccontextmanager
async def engine_pages(settings: Settings, bootstrap: str, codec: Any, console: Console, wanted: bool,
                       readback: ReadBack | None = None) -> AsyncIterator[None]:
    """The engine's web pages for the run's duration: the billers' denial queues and the
    ops dashboard (with ``/status`` and ``/metrics``), its figures from ``readback`` (the
    run's own) or from a reader of its own. The token is the configured one
    (``CLAIMS_WEB_TOKEN``, never printed) or one drawn for this run and printed here, on the
    operator's own terminal. A busy port costs the pages, not the run."""
    if not wanted:
        yield
        return
    from engine.ops.monitor import Monitor
    from engine.web.app import WebServer

    token = settings.web_token or secrets.token_urlsafe(16)
    monitor = Monitor(settings, bootstrap, codec, readback)
    server = WebServer(settings, bootstrap, codec, token, monitor)
    try:
        await monitor.start()
        url = await server.start()
    except Exception as exc:  # a busy port, most likely (CLAIMS_WEB_PORT)
        console.print(f"[yellow]web pages not served: {type(exc).__name__}: {exc}[/yellow]")
        await monitor.stop()
        yield
        return
    shown = "CLAIMS_WEB_TOKEN" if settings.web_token else token
    console.print(f"ops dashboard: {url}dashboard  (also {url}metrics, {url}status)")
    console.print(f"denial queues: {url}  (sign in with a user id and the token: {shown})")
    try:
        yield
    finally:
        await server.stop()
        await monitor.stop()


def progress_table(tally: Tally, summary: dict[str, Any], rate: float, elapsed: float, sent: int) -> Table:
    table = Table(title=f"Claimflow — closed loop  ({elapsed:5.1f} s, {rate:,.0f} events/s)", show_header=False,
                  min_width=64)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    rows = [
        ("encounters sent by the EHR", sent),
        ("encounters on the topic", summary["encounters"]),
        ("coded (first pass)", summary["coded_first_pass"]),
        ("to coding review", summary["coding_review"]),
        *((f"  rule {rule}", n) for rule, n in
          sorted(summary["coding_findings_by_rule"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]),
        ("  fixed by coders → coded", summary["coded_after_review"]),
        ("  queried (waiting for the provider)", summary["coding_queries"]),
        ("audit samples (also billed)", summary["coding_audit_sampled"]),
        ("dead-lettered", summary["dead_lettered"]),
        ("eligibility asked (270)", summary["eligibility_requests"]),
        ("  held: not covered (front desk)", summary["eligibility_held"]),
        ("claims built", summary["claims_built"]),
        ("  stopped by the scrubber", summary["scrub_rejected"]),
        ("claims submitted", summary["claims_submitted"]),
        ("duplicates dropped", summary["duplicates_dropped"]),
        ("remittances", summary["remittances"]),  # summary keys
        ("paid", summary["paid"]),
        ("partially paid", summary["partially_paid"]),
        ("denied", summary["denied"]),
        ("reversed (CLP02 22)", summary["reversed"]),
        ("patient statements", summary["statements"]),
    ]
    for name, value in rows:
        table.add_row(name, f"{value:,}")
    for queue, n in summary["denials_by_queue"].items():
        table.add_row(f"  denial queue {queue}", f"{n:,}")
    table.add_row("denial work items open / resolved", f"{summary['work_items_open']:,} / "
                  f"{summary['work_items_resolved']:,}")
    table.add_row("  recovered / written off $", f"{summary['recovered_amount']} / {summary['written_off_amount']}")
    table.add_row("billed / paid / patient $", f"{summary['billed_amount']} / {summary['paid_amount']} / "
                  f"{summary['patient_responsibility']}")
    for payer, seen in summary["first_pass_by_payer"].items():
        table.add_row(f"  {payer} first-pass denial rate", f"{seen['denial_rate']:.1%} of {seen['claims']:,}")
    return table


async def run_closed_loop(settings: Settings, options: RunOptions, console: Console) -> dict[str, Any]:
    settings = replace(settings, seed=options.seed)
    codec = default_codec(settings.schemas_dir)
    book = PayerBook.load(settings.payer_profiles_file)
    routing = DenialRouting.load(settings.denial_routing_file)
    # The run's patients and their coverage, as files: the payer simulator answers
    # eligibility from them, as a payer knows its members.
    practice = practice_for(options.seed, book)
    write_master_data(practice.records(), settings.master_data_dir, practice.authorizations)
    t0 = time.monotonic()
    failure: RunFailed | None = None
    elapsed, interrupted, started = 0.0, False, t0
    async with broker_for(settings) as broker:
        bootstrap = broker.bootstrap_servers
        console.print(f"broker: {bootstrap}")
        try:
            await check_connection(settings.with_bootstrap(bootstrap))
        except ClusterRefused as exc:
            raise RunFailed(str(exc)) from None
        settings = await resolve_idempotence(settings, bootstrap)  # asked once; the children inherit it
        report = await apply_topics(settings.with_bootstrap(bootstrap), load_topics(settings))
        console.print(f"topics: {report.lines()[-1]}")
        commands = run_children(settings, options)
        children: dict[str, subprocess.Popen[bytes]] = {}
        for name, (command, log_file) in commands.items():
            children[name] = start_worker(settings, bootstrap, command, log_file)
            console.print(f"{name}: pid {children[name].pid}, log {log_file}")
        readback = ReadBack(settings, bootstrap, codec, routing.queues())
        # In this process, unless the chaos is to kill it: then it is a child like the others.
        coder = CoderSimulator(settings, bootstrap, codec) if options.coder and "coder simulator" not in commands \
            else None
        stop_ehr = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        chaos = ChaosReport(finished=not options.chaos)
        try:
            await readback.start()
            await readback.mark_baseline()
            async with engine_pages(settings, bootstrap, codec, console, options.web, readback):
                if coder is not None:
                    tasks.append(asyncio.create_task(coder.run(), name="coder-simulator"))
                if options.chaos:
                    def restart(name: str) -> subprocess.Popen[bytes]:
                        return start_worker(settings, bootstrap, *commands[name])

                    tasks.append(asyncio.create_task(
                        run_chaos(list(options.chaos), children, restart, options.seed, chaos,
                                  (options.chaos_every_s / 2, options.chaos_every_s * 1.5)), name="chaos"))
                sent = [0]
                if options.encounters is not None:
                    planned = plan_encounters(options.encounters, options.seed, options.bad_rate, options.resend_rate,
                                              codec, book, lapsed_rate=options.lapsed_rate,
                                              incomplete_rate=options.incomplete_rate, practice=practice)
                    expected = len(planned)
                    tasks.append(asyncio.create_task(
                        send_planned(settings, bootstrap, planned, options.rate, _setter(sent), stop_ehr), name="ehr"))
                else:
                    expected = -1
                    tasks.append(asyncio.create_task(
                        _send_endless(settings, bootstrap, codec, book, options, sent, stop_ehr, practice), name="ehr"))
                started = time.monotonic()
                watched = [broker.processes, children]
                elapsed, interrupted = await _watch(settings, readback, watched, tasks, expected, options,
                                                    console, started, sent, lambda: chaos.finished)
                if options.stay and not interrupted:  # Ctrl-C is how a stay ends: not an interruption
                    console.print(f"settled after {elapsed:.1f} s; the engine, the payer and the page stay up "
                                  f"for the billers: Ctrl-C stops them")
                    await _watch(settings, readback, watched, tasks, -1,
                                 replace(options, timeout_s=float("inf")), console, started, sent)
        except RunFailed as exc:
            failure, elapsed = exc, time.monotonic() - started
        except (KafkaError, OSError) as exc:  # the broker went away under the run
            failure, elapsed = RunFailed(_broker_lost(broker, exc)), time.monotonic() - started
        finally:
            await _stop_run(stop_ehr, coder, tasks, readback, children,
                            broker_gone=any(p.poll() is not None for p in broker.processes.values()))
    summary = summarize(readback.tally, settings, elapsed)
    summary["denials_vs_payer_profiles"] = profile_fit(summary["first_pass_by_payer"], book)
    summary["seed"] = options.seed
    summary["startup_s"] = round(started - t0, 2)
    summary["interrupted"] = interrupted
    summary["settled"] = failure is None and not interrupted and all(i["holds"] for i in summary["identities"].values())
    if options.chaos:
        summary["chaos"] = chaos.figures()
    if options.chaos or failure is not None:  # the end-to-end audit too: what is lost, stuck or twice
        summary["audit"] = audit(readback.tally, settings, int(time.time() * 1000), grace_s=0).report()
        summary["settled"] = summary["settled"] and summary["audit"]["ok"]
    if failure is not None:
        summary["failure"] = str(failure)
    if options.summary_path is not None:
        options.summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    if failure is not None:
        raise RunFailed(str(failure), summary)
    return summary


def _broker_lost(broker: RunBroker, error: BaseException) -> str:
    """Why the run lost its broker, in one line: the embedded broker's exit if it died."""
    for name, process in broker.processes.items():
        if process.poll() is not None:
            return f"the {name} exited with code {process.returncode}"
    return f"lost the broker at {broker.bootstrap_servers}: {type(error).__name__}: {error}"


#: How long children get to stop after SIGTERM: to flush and commit; with the broker gone
#: there is nothing to flush to, so they get less before SIGKILL.
STOP_S = 20.0
STOP_WITHOUT_BROKER_S = 5.0


async def _stop_run(stop_ehr: asyncio.Event, coder: CoderSimulator | None, tasks: list[asyncio.Task[Any]],
                    readback: ReadBack, children: dict[str, subprocess.Popen[bytes]], broker_gone: bool) -> None:
    """Stop everything a run started, each step bounded and none able to skip the next:
    the chaos first (it restarts children), then the children (an error in the
    read-back's stop must not leave them running)."""
    stop_ehr.set()
    if coder is not None:
        coder.stop.set()
    for task in tasks:
        if task.get_name() == "chaos":
            task.cancel()
            await _finish(task, TASK_STOP_S)
    stop_processes(list(children.values()), STOP_WITHOUT_BROKER_S if broker_gone else STOP_S)
    for task in tasks:
        await _finish(task, TASK_STOP_S)
    await _finish(asyncio.ensure_future(readback.stop()), TASK_STOP_S)


#: How long the run's own tasks (EHR, coder, read-back) get to finish when it stops.
TASK_STOP_S = 10.0


async def _finish(task: asyncio.Future[Any], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for ``task``, then cancel it and wait a moment more; never
    raise (its error was reported already, or does not matter on the way out)."""
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:
            log.warning("%s did not stop: left to the interpreter's exit", task)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" on exit


def _setter(box: list[int]) -> Any:
    def set_value(n: int) -> None:
        box[0] = n

    return set_value


async def _send_endless(settings: Settings, bootstrap: str, codec: Any, book: PayerBook, options: RunOptions,
                        sent: list[int], stop: asyncio.Event, practice: Practice) -> None:
    base = 0
    for block in endless_plan(options.seed, options.bad_rate, options.resend_rate, codec, book,
                              lapsed_rate=options.lapsed_rate, incomplete_rate=options.incomplete_rate,
                              practice=practice):
        if stop.is_set():
            return

        def on_sent(k: int, base: int = base) -> None:
            sent[0] = base + k

        n = await send_planned(settings, bootstrap, block, options.rate, on_sent, stop)
        base += n


async def _watch(settings: Settings, readback: ReadBack, processes: list[dict[str, subprocess.Popen[bytes]]],
                 tasks: list[asyncio.Task[Any]], expected: int, options: RunOptions, console: Console,
                 started: float, sent: list[int], ready: Callable[[], bool] = lambda: True) -> tuple[float, bool]:
    """Poll the topics until the run settles (or Ctrl-C); keep the screen live. ``processes``:
    the run's children by name (a child the chaos restarts is out of its table meanwhile);
    ``ready``: whether the run may settle yet (the chaos done)."""
    last_total, last_t, rate = 0, time.monotonic(), 0.0
    live = Live(console=console, refresh_per_second=4, transient=False) if options.live else None
    try:
        with live if live is not None else contextlib.nullcontext():
            while True:
                await readback.poll(timeout_ms=200)
                now = time.monotonic()
                summary = summarize(readback.tally, settings, now - started)
                total = sum(readback.tally.records.values())
                if now - last_t >= 1.0:
                    rate, last_total, last_t = (total - last_total) / (now - last_t), total, now
                if live is not None:
                    live.update(progress_table(readback.tally, summary, rate, now - started, sent[0]))
                if expected >= 0 and ready() and all_settled(readback.tally, expected, settings, options.coder,
                                                             summary):
                    return now - started, False
                for name, process in [item for table in processes for item in table.items()]:
                    if process.poll() is not None:
                        raise RunFailed(f"the {name} exited with code {process.returncode} (see its log in "
                                        f"{settings.state_dir})")
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise RunFailed(f"{task.get_name()} failed: {task.exception()!r}")
                if now - started > options.timeout_s:
                    behind = unsettled(readback.tally, expected, settings, options.coder, summary)
                    behind += [] if ready() else ["the chaos kills not done"]
                    raise RunFailed(f"not settled after {options.timeout_s:.0f} s: {'; '.join(behind)}")
    except asyncio.CancelledError:  # Ctrl-C: stop cleanly and report what happened
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        return time.monotonic() - started, True

