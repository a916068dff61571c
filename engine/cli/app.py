"""The ``claims`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from engine.cli.coding import coding_app
from engine.cli.context import bootstrap as _bootstrap
from engine.cli.context import console, err
from engine.cli.context import load_settings as _settings
from engine.cli.dead_letters import dlq_app
from engine.cli.denials import denials_app
from engine.cli.simulate import simulate_app
from engine.cli.x12 import export_app, ingest_app
from engine.runtime.broker import EmbeddedBroker
from engine.runtime.kafka_cluster import kafka_version, replication_for
from engine.runtime.local_broker import kafka_cluster
from engine.settings import Settings
from engine.wire.topics import Topic

app = typer.Typer(help="Claimflow: encounter → coded → claim → remittance → denial queues, on Kafka.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
topics_app = typer.Typer(help="Topics declared in topics.yaml.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(simulate_app, name="simulate")
app.add_typer(coding_app, name="coding")
app.add_typer(denials_app, name="denials")
app.add_typer(export_app, name="export")
app.add_typer(ingest_app, name="ingest")
app.add_typer(dlq_app, name="dlq")


@app.command()
def run(
    encounters: Annotated[int | None, typer.Option(help="Stop when this many encounters settled; "
                                                        "default: run until Ctrl-C.")] = None,
    rate: Annotated[float | None, typer.Option(help="Encounters per second (default: CLAIMS_RATE, 50; "
                                                    "0 = flat out).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the simulators: same seed, same encounters and outcomes.")] = 1,
    bad_rate: Annotated[float | None, typer.Option(help="Share of bad encounters (undecodable, truncated, "
                                                        "invalid codes, missing data).")] = None,
    resend_rate: Annotated[float | None, typer.Option(help="Share of encounters the EHR sends twice.")] = None,
    lapsed_rate: Annotated[float | None, typer.Option(help="Share from patients whose coverage lapsed or whose "
                                                           "member id is wrong (eligibility holds them).")] = None,
    incomplete_rate: Annotated[float | None, typer.Option(help="Share with bad registration or provider data "
                                                               "(the scrubber stops them).")] = None,
    summary: Annotated[Path | None, typer.Option(help="Write the summary JSON here.")] = None,
    timeout: Annotated[float, typer.Option(help="Fail if a bounded run has not settled "
                                                "after this many seconds.")] = 900.0,
    no_live: Annotated[bool, typer.Option("--no-live", help="No live table (logs and CI).")] = False,
    coder: Annotated[bool, typer.Option("--coder/--no-coder",
                                        help="Run the coder simulator on the coding-review queue.")] = True,
    web: Annotated[bool, typer.Option("--web/--no-web",
                                      help="Serve the billers' denial-queue page (CLAIMS_WEB_PORT).")] = True,
    broker: Annotated[str | None, typer.Option(help="When no broker is configured or running: tansu (embedded, "
                                                   "memory only) or kafka (a loopback Apache Kafka, "
                                                   "CLAIMS_KAFKA_NODES nodes). Default CLAIMS_BROKER, tansu.")] = None,
    stay: Annotated[bool, typer.Option("--stay",
                                       help="Once settled, keep the engine, the payer and the page up until Ctrl-C "
                                            "(work the queues meanwhile).")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Engine workers side by side (they split the partitions).")] = 1,
    chaos: Annotated[str | None, typer.Option(help="Stop or kill children at random points, each restarted: "
                                                   "e.g. worker:term:3,worker:kill:3,payer:kill:2,coder:term "
                                                   "(targets worker, payer, coder; signals term, kill). The "
                                                   "summary then holds the kills and the end-to-end audit.")] = None,
    chaos_every: Annotated[float, typer.Option(min=0.0, help="Mean seconds between two --chaos kills.")] = 2.0,
) -> None:
    """The closed loop: broker, topics, engine worker, EHR and payer simulators, live progress."""
    from engine.cli.run import RunFailed, RunOptions, run_closed_loop
    from engine.ops.chaos import ChaosSpecError, parse_chaos

    try:
        kills = tuple(parse_chaos(chaos or ""))
    except ChaosSpecError as exc:
        err.print(f"--chaos {exc}", style="red", markup=False)
        raise typer.Exit(2) from None
    settings = _with_broker(_settings(), broker)
    if rate is None:
        rate = None if encounters is not None else settings.rate
    options = RunOptions(
        encounters=encounters,
        rate=rate or None,
        seed=seed,
        bad_rate=settings.bad_rate if bad_rate is None else bad_rate,
        resend_rate=settings.resend_rate if resend_rate is None else resend_rate,
        lapsed_rate=settings.lapsed_rate if lapsed_rate is None else lapsed_rate,
        incomplete_rate=settings.incomplete_rate if incomplete_rate is None else incomplete_rate,
        summary_path=summary,
        timeout_s=timeout,
        live=not no_live and console.is_terminal,
        coder=coder,
        web=web,
        stay=stay,
        workers=workers,
        chaos=kills,
        chaos_every_s=chaos_every,
    )
    try:
        result = asyncio.run(run_closed_loop(settings, options, console))
    except RunFailed as exc:
        err.print(f"run failed: {exc}", style="red", markup=False, soft_wrap=True)
        if exc.summary is not None:  # how far it got
            console.print_json(json.dumps({k: v for k, v in exc.summary.items() if k != "identities"}))
        raise typer.Exit(1) from None
    console.print_json(json.dumps({k: v for k, v in result.items() if k != "identities"}))
    for name, identity in result["identities"].items():
        mark = "[green]holds[/green]" if identity["holds"] else "[red]BROKEN[/red]"
        console.print(f"{mark}  {name}  ({identity['lhs']} vs {identity['rhs']})")
    if result["interrupted"]:
        raise typer.Exit(130)
    if not result["settled"]:
        raise typer.Exit(1)


@app.command()
def web() -> None:
    """The engine's pages alone (denial queues, ops dashboard, /status, /metrics) on the
    configured broker, until Ctrl-C (actions need CLAIMS_WEB_TOKEN, or the token printed here)."""
    from engine.cli.run import engine_pages
    from engine.wire.codec import default_codec

    settings = _settings()
    bootstrap = _bootstrap(settings)

    async def serve() -> None:
        async with engine_pages(settings, bootstrap, default_codec(settings.schemas_dir), console, True):
            await asyncio.Event().wait()  # until Ctrl-C

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


@app.command()
def top(once: Annotated[bool, typer.Option("--once", help="Read the topics to their end, print once, exit.")] = False
        ) -> None:
    """The ops figures live in the terminal: throughput and latency per stage, consumer lag,
    denial rates, the $ flow and A/R aging (the dashboard's figures), until Ctrl-C."""
    from engine.cli.top import run_top
    from engine.wire.codec import default_codec

    settings = _settings()
    bootstrap = _bootstrap(settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_top(settings, bootstrap, default_codec(settings.schemas_dir), console, once))


@app.command()
def reconcile(
    grace: Annotated[float, typer.Option(help="Seconds an encounter may go without an outcome before it "
                                              "counts as stuck or lost (in flight until then).")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the audit as JSON.")] = False,
) -> None:
    """Audit the topics end to end by distinct ids: every encounter ended somewhere, no
    original claim, posting, work item or statement twice, the identities hold. Exit 1 on
    any gap or duplicate (redeliveries are reported, not failures). Safe on production:
    it reads without a consumer group and prints ids only."""
    from rich.table import Table

    from engine.ops.audit import reconcile as run_audit
    from engine.wire.codec import default_codec

    settings = _settings()
    result = asyncio.run(run_audit(settings, _bootstrap(settings), default_codec(settings.schemas_dir), grace))
    report = result.report()
    if as_json:
        console.print_json(json.dumps(report))
    else:
        table = Table(title="reconcile")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("first ids")
        for name, value in report.items():
            if isinstance(value, dict) and "count" in value:
                table.add_row(name, str(value["count"]), escape(" ".join(value["ids"][:5])))
            elif name not in ("redelivered_by_topic", "broken_identities"):
                table.add_row(name, str(value), "")
        for name in report["broken_identities"]:
            table.add_row("broken identity", "", escape(name))
        console.print(table)
    if not result.ok:
        raise typer.Exit(1)


def _with_broker(settings: Settings, broker: str | None) -> Settings:
    """``settings`` with ``--broker``'s kind, when it was given (exit 2 on a bad one)."""
    if broker is None:
        return settings
    try:
        return dataclasses.replace(settings, broker=broker)
    except ValueError as exc:
        err.print(str(exc).replace("CLAIMS_BROKER", "--broker"), style="red")
        raise typer.Exit(2) from None


@app.command()
def load(
    rate: Annotated[float, typer.Option(min=1.0, help="Encounters per second offered (with --find-max: the "
                                                      "first step's).")] = 100.0,
    duration: Annotated[float, typer.Option(min=4.0, help="Seconds each rate is held.")] = 30.0,
    find_max: Annotated[bool, typer.Option("--find-max", help="Ramp the rate (x1.5 a step) until the backlog "
                                                              "grows without bound; report the highest "
                                                              "sustained.")] = False,
    max_rate: Annotated[float, typer.Option(help="--find-max goes no higher.")] = 20_000.0,
    workers: Annotated[int, typer.Option(min=1, help="Engine workers side by side.")] = 1,
    coder: Annotated[bool, typer.Option("--coder/--no-coder", help="Run the coder simulator.")] = True,
    hop_messages: Annotated[int, typer.Option(min=1000, help="Messages of the raw-hop baseline.")] = 50_000,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    broker: Annotated[str | None, typer.Option(help="When no broker is configured or running: tansu or "
                                                   "kafka (as `claims run --broker`).")] = None,
    no_live: Annotated[bool, typer.Option("--no-live", help="No live table.")] = False,
) -> None:
    """An open-loop load on the whole engine: the EHR at a rate that does not slow down
    when the engine does, figures per stage, latency, lag, CPU and RSS, each beside its ratio
    to the raw aiokafka hop measured first on the same broker."""
    from engine.cli.load import LoadOptions, run_load
    from engine.cli.run import RunFailed

    settings = _with_broker(_settings(), broker)
    options = LoadOptions(rate=rate, duration_s=duration, find_max=find_max, max_rate=max_rate, workers=workers,
                          coder=coder, bad_rate=settings.bad_rate, hop_messages=hop_messages, report_path=report,
                          live=not no_live and console.is_terminal)
    try:
        result = asyncio.run(run_load(settings, options, console))
    except RunFailed as exc:
        err.print(f"load failed: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print_json(json.dumps(result))


@app.command()
def worker() -> None:
    """The engine's stream processors only (coding, claims, denial routing)."""
    from engine.worker.stages import run_worker

    settings = _settings()
    run_worker(settings, _bootstrap(settings))


@app.command()
def show(claim_id: Annotated[str, typer.Argument(help="A claim id (any version: original, replacement, void).")]
         ) -> None:
    """A claim's whole timeline from the events: encounter, coding findings and actions, every
    claim version, remittances, statements and denial work items (no PHI). Exit 1 if unknown."""
    from rich.table import Table

    from engine.ops.timeline import claim_timeline, read_claim_events
    from engine.wire.codec import default_codec

    settings = _settings()
    codec = default_codec(settings.schemas_dir)
    events = asyncio.run(read_claim_events(settings, _bootstrap(settings), codec))
    entries = claim_timeline(claim_id, events)
    if not entries:
        err.print(escape(f"no claim {claim_id} on {settings.topic(Topic.CLAIMS_SUBMITTED)}"), style="red")
        raise typer.Exit(1)
    table = Table(title=f"claim {claim_id}")
    for column in ("when (UTC)", "stage", "what"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry.at.strftime("%Y-%m-%d %H:%M:%S"), entry.stage, escape(entry.what))
    console.print(table)


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Loopback port (Kafka: the first node's; the others follow); "
                                           "0 picks free ones.")] = 0,
    kafka: Annotated[bool, typer.Option("--kafka", help="Apache Kafka (KRaft, from the jars pom.xml pins; data "
                                                         "kept under the state directory) instead of Tansu.")] = False,
    nodes: Annotated[int | None, typer.Option(help="Kafka nodes (3: replication factor 3, min.insync.replicas 2); "
                                                   "default CLAIMS_KAFKA_NODES, 1.")] = None,
) -> None:
    """Run a broker alone, in the foreground, until Ctrl-C: the embedded Tansu (memory only) or Apache Kafka."""
    settings = _settings()
    if nodes is not None and not kafka:
        err.print("--nodes needs --kafka (Tansu runs one node)", style="red")
        raise typer.Exit(2)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if kafka:
            cluster = kafka_cluster(settings, settings.kafka_dir, nodes=nodes, port=port,
                                    state_file=settings.broker_state_file)
            async with cluster:
                rf, isr = replication_for(cluster.nodes)
                console.print(f"bootstrap servers: {cluster.bootstrap_servers}")
                console.print(f"Apache Kafka {kafka_version()}, {cluster.nodes} KRaft node(s), replication factor "
                              f"{rf}, min.insync.replicas {isr}; data in {escape(str(settings.kafka_dir))}. "
                              "Ctrl-C to stop.")
                _print_reach(cluster.bootstrap_servers, rf)
                await stop.wait()
            return
        async with EmbeddedBroker(port=port, state_file=settings.broker_state_file) as embedded:
            console.print(f"bootstrap servers: {embedded.bootstrap_servers}")
            console.print("embedded Tansu broker, memory only: data is lost when it stops. Ctrl-C to stop.")
            _print_reach(embedded.bootstrap_servers, 1)
            await stop.wait()

    asyncio.run(serve())


def _print_reach(bootstrap_servers: str, replication_factor: int) -> None:
    extra = f" CLAIMS_REPLICATION_FACTOR={replication_factor}" if replication_factor > 1 else ""
    console.print(f"other terminals: CLAIMS_KAFKA_BOOTSTRAP={bootstrap_servers}{extra} (or nothing: "
                  "commands on this machine find it)")
    sys.stdout.flush()


@topics_app.command("apply")
def topics_apply() -> None:
    """Create missing topics; report drift from topics.yaml (never deletes data)."""
    from engine.wire.topics import apply_topics, load_topics

    settings = _settings()
    report = asyncio.run(apply_topics(settings.with_bootstrap(_bootstrap(settings)), load_topics(settings)))
    for line in report.lines():
        console.print(line)
    if report.drift:
        raise typer.Exit(3)


if __name__ == "__main__":
    app()
