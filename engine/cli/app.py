"""The ``claims`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer
from rich.console import Console
from rich.markup import escape

from engine.cli.coding import coding_app
from engine.cli.context import bootstrap as _bootstrap
from engine.cli.context import load_settings as _settings
from engine.cli.denials import denials_app
from engine.runtime.broker import EmbeddedBroker
from engine.wire.topics import Topic

if TYPE_CHECKING:
    from engine.model.events import ClaimSubmitted, Remittance

app = typer.Typer(help="Claimflow: encounter → coded → claim → remittance → denial queues, on Kafka.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
topics_app = typer.Typer(help="Topics declared in topics.yaml.", no_args_is_help=True)
simulate_app = typer.Typer(help="The EHR and payer simulators, standalone.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(simulate_app, name="simulate")
app.add_typer(coding_app, name="coding")
app.add_typer(denials_app, name="denials")
export_app = typer.Typer(help="Export transactions as X12 5010.", no_args_is_help=True)
app.add_typer(export_app, name="export")
ingest_app = typer.Typer(help="Read X12 5010 files from payers into the topics.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")

console = Console()
err = Console(stderr=True)


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
    stay: Annotated[bool, typer.Option("--stay",
                                       help="Once settled, keep the engine, the payer and the page up until Ctrl-C "
                                            "(work the queues meanwhile).")] = False,
) -> None:
    """The closed loop: broker, topics, engine worker, EHR and payer simulators, live progress."""
    from engine.cli.run import RunFailed, RunOptions, run_closed_loop

    settings = _settings()
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
    )
    try:
        result = asyncio.run(run_closed_loop(settings, options, console))
    except RunFailed as exc:
        err.print(f"[red]run failed: {exc}[/red]")
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
def broker(port: Annotated[int, typer.Option(help="Loopback port; 0 picks a free one.")] = 0) -> None:
    """Run the embedded Tansu broker alone, in the foreground (memory only)."""
    settings = _settings()

    async def serve() -> None:
        embedded = EmbeddedBroker(port=port, state_file=settings.broker_state_file)
        await embedded.start_and_wait()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            console.print(f"bootstrap servers: {embedded.bootstrap_servers}")
            console.print("embedded Tansu broker, memory only: data is lost when it stops. Ctrl-C to stop.")
            console.print(f"other terminals: CLAIMS_KAFKA_BOOTSTRAP={embedded.bootstrap_servers} (or nothing: "
                          "commands on this machine find it)")
            sys.stdout.flush()
            await stop.wait()
        finally:
            embedded.stop()

    asyncio.run(serve())


@topics_app.command("apply")
def topics_apply() -> None:
    """Create missing topics; report drift from topics.yaml (never deletes data)."""
    from engine.wire.topics import apply_topics, load_topics

    settings = _settings()
    report = asyncio.run(apply_topics(_bootstrap(settings), load_topics(settings)))
    for line in report.lines():
        console.print(line)
    if report.drift:
        raise typer.Exit(3)


def _report_x12_errors(errors: list[str], label: str, valid_message: str) -> None:
    """Print the first 20 validation errors, redacted (pyx12 quotes element values: names
    and member ids are PHI), and exit 1; or say the interchange is valid."""
    from engine.x12.validation import redact_x12_error

    for error in errors[:20]:
        err.print(escape(redact_x12_error(error)), style="red")
    if errors:
        err.print(f"[red]{label}: {len(errors)} errors[/red]")
        raise typer.Exit(1)
    console.print(valid_message)


@export_app.command("837")
def export_837(
    out: Annotated[Path, typer.Option(help="Write the X12 interchange here.")],
    since: Annotated[datetime | None, typer.Option(help="Only claims submitted at or after this time (UTC).")] = None,
    validate: Annotated[bool, typer.Option(help="Validate with pyx12 before writing; exit 1 on errors.")] = True,
) -> None:
    """The submitted claims as one X12 837P (005010X222A1) interchange."""

    from engine.wire.codec import default_codec
    from engine.x12.claim_837_write import claim_problems, write_837p
    from engine.x12.export import next_control_number, submitted_claims
    from engine.x12.validation import validate_837p

    settings = _settings()
    codec = default_codec(settings.schemas_dir)
    since_utc = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    claims = asyncio.run(submitted_claims(settings, _bootstrap(settings), codec, since_utc))
    writable = [claim for claim in claims if not claim_problems(claim)]
    for claim in claims:
        for problem in claim_problems(claim):  # the scrubber should have stopped these: say so, leave them out
            err.print(f"[yellow]{claim.claim_id} left out: {problem}[/yellow]")
    claims = writable
    if not claims:
        err.print("no submitted claims to export")
        raise typer.Exit(1)
    text = write_837p(claims, settings, next_control_number(settings.state_dir), datetime.now(UTC))
    out.write_text(text)
    console.print(f"{len(claims)} claims → {out} ({len(text):,} bytes)")
    if validate:
        _report_x12_errors(validate_837p(text), "pyx12", "pyx12: valid 005010X222A1, no errors")


@export_app.command("835")
def export_835(
    out: Annotated[Path, typer.Option(help="Write the X12 interchange here.")],
    start: Annotated[datetime | None, typer.Option("--from", formats=["%Y-%m-%d"],
                                                      help="Only payments dated on or after this day.")] = None,
    end: Annotated[datetime | None, typer.Option("--to", formats=["%Y-%m-%d"],
                                                    help="Only payments dated on or before this day.")] = None,
    payer: Annotated[str | None, typer.Option(help="Only this payer id's remittances.")] = None,
    validate: Annotated[bool, typer.Option(help="Validate with pyx12 and the 835 balancing; exit 1 on errors.")] = True,
) -> None:
    """The remittances of a period as one X12 835 (005010X221A1) interchange.

    One transaction per payer, trace number, payment date and payee; a remittance whose
    claim is gone from claims-submitted, or which the 835 cannot express, is left out
    with a warning."""

    from engine.wire.codec import default_codec
    from engine.x12.export import next_control_number
    from engine.x12.remittance_835_period import claims_answered, remittances_for_period
    from engine.x12.remittance_835_read import read_835
    from engine.x12.remittance_835_write import remittance_problems, write_835
    from engine.x12.validation import validate_835

    settings = _settings()
    codec = default_codec(settings.schemas_dir)
    bootstrap = _bootstrap(settings)
    first, last = (day.date() if day is not None else None for day in (start, end))

    async def select() -> tuple[list[Remittance], dict[str, ClaimSubmitted]]:
        remittances = await remittances_for_period(settings, bootstrap, codec, first, last, payer)
        return remittances, await claims_answered(settings, bootstrap, codec, remittances)

    remittances, claims = asyncio.run(select())
    writable = []
    for remittance in remittances:  # ids and amounts only: no PHI on the terminal
        claim = claims.get(remittance.claim_id)
        problems = (remittance_problems(remittance, claim) if claim is not None
                    else [f"remittance {remittance.remittance_id}: claim {remittance.claim_id} is not on "
                          "claims-submitted (past its retention?)"])
        for problem in problems:
            err.print(escape(f"left out: {problem}"), style="yellow")
        if not problems:
            writable.append(remittance)
    if not writable:
        err.print("no remittances to export")
        raise typer.Exit(1)
    text = write_835(writable, claims, settings, next_control_number(settings.state_dir), datetime.now(UTC))
    out.write_text(text)
    payments = read_835(text)
    total = sum((p.payment_amount for p in payments), Decimal("0.00"))
    claim_payments = sum(len(p.claims) for p in payments)
    console.print(f"transactions: {len(payments)}, claim payments: {claim_payments}, total paid: {total:,.2f} "
                  f"→ {out} ({len(text):,} bytes)")
    if validate:
        _report_x12_errors(validate_835(text), "835 validation", "pyx12: valid 005010X221A1, balanced, no errors")


@ingest_app.command("835")
def ingest_835(
    file: Annotated[Path, typer.Argument(help="The X12 835 file (any delimiters).")],
    dry_run: Annotated[bool, typer.Option("--dry-run",
                                          help="Match and show what would be published; produce nothing.")] = False,
) -> None:
    """A payer's 835 into remittances, unapplied cash and payments.

    Claim payments matched to our claims by patient control number become remittances
    (posting dedupes by remittance id), the others unapplied cash; each transaction is a
    payment with its PLB adjustments. Exit 2 when the file is not a readable 835."""

    from rich.table import Table

    from engine.wire.codec import default_codec
    from engine.x12.remittance_835_ingest import ingest_reference, publish, totals
    from engine.x12.remittance_835_matching import match_file
    from engine.x12.remittance_835_read import read_835

    try:
        text = file.read_text(encoding="latin-1")
    except OSError as exc:
        err.print(escape(f"cannot read {file}: {exc.strerror}"), style="red")
        raise typer.Exit(2) from None
    try:
        payments = read_835(text)
    except ValueError as exc:
        err.print(escape(f"{file} is not a readable 835: {exc}"), style="red")
        raise typer.Exit(2) from None

    settings = _settings()
    codec = default_codec(settings.schemas_dir)
    bootstrap = _bootstrap(settings)
    claims_by_pcn, known = asyncio.run(ingest_reference(settings, bootstrap, codec))
    results = match_file(payments, claims_by_pcn, f"835:{file.name}", datetime.now(UTC), known)
    emits = [emit for result in results for emit in result.emits()]

    if dry_run:  # ids, codes and amounts only: never names, member ids or birth dates
        table = Table(title=f"would publish {len(emits)} events (dry run)")
        for column in ("topic", "key", "id", "claim / PCN", "status", "outcome / reason", "paid"):
            table.add_column(column, justify="right" if column == "paid" else "left")
        for result in results:
            for r in result.remittances:
                table.add_row(Topic.REMITTANCES, r.claim_id, r.remittance_id, r.claim_id, r.claim_status_code,
                              str(r.outcome), f"{r.paid_amount:,.2f}")
            for u in result.unapplied:
                table.add_row(Topic.UNAPPLIED_CASH, u.payer_id, u.item_id, u.patient_control_number,
                              u.claim_status_code, u.reason, f"{u.paid_amount:,.2f}")
            p = result.payment
            table.add_row(Topic.PAYMENTS, p.payer_id, p.payment_id, p.trace_number, p.payment_method,
                          f"{p.matched} matched, {p.unapplied} unapplied", f"{p.payment_amount:,.2f}")
        console.print(table)
    else:
        asyncio.run(publish(settings, bootstrap, codec, emits))

    summary = Table(title=f"{file.name} ({'dry run: nothing published' if dry_run else 'published'})",
                    show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for name, value in totals(results).items():
        summary.add_row(name, f"{value:,.2f}" if isinstance(value, Decimal) else str(value))
    console.print(summary)


@simulate_app.command("ehr")
def simulate_ehr(
    encounters: Annotated[int, typer.Option(help="How many encounters to send.")] = 1000,
    rate: Annotated[float, typer.Option(help="Encounters per second; 0 = flat out.")] = 50.0,
    seed: Annotated[int, typer.Option()] = 1,
    bad_rate: Annotated[float | None, typer.Option()] = None,
    resend_rate: Annotated[float | None, typer.Option()] = None,
    lapsed_rate: Annotated[float | None, typer.Option()] = None,
    incomplete_rate: Annotated[float | None, typer.Option()] = None,
) -> None:
    """Send encounters from the EHR simulator to the encounters topic (and write the
    master data the payer simulator answers eligibility from)."""
    from engine.wire.codec import default_codec
    from simulators.coverage import write_master_data
    from simulators.ehr import plan_encounters, practice_for, send_planned
    from simulators.payer.adjudication import PayerBook

    settings = _settings()
    bootstrap = _bootstrap(settings)
    codec = default_codec(settings.schemas_dir)
    book = PayerBook.load(settings.payer_profiles_file)
    practice = practice_for(seed, book)
    write_master_data(practice.records(), settings.master_data_dir, practice.authorizations)
    planned = plan_encounters(
        encounters, seed, settings.bad_rate if bad_rate is None else bad_rate,
        settings.resend_rate if resend_rate is None else resend_rate, codec, book,
        lapsed_rate=settings.lapsed_rate if lapsed_rate is None else lapsed_rate,
        incomplete_rate=settings.incomplete_rate if incomplete_rate is None else incomplete_rate, practice=practice,
    )
    sent = asyncio.run(send_planned(settings, bootstrap, planned, rate or None))
    console.print(f"sent {sent} records ({encounters} encounters plus resends)")


@simulate_app.command("master-data")
def simulate_master_data(seed: Annotated[int, typer.Option()] = 1) -> None:
    """Write the simulated patients and coverage for a seed (what the payer simulator knows)."""
    from simulators.coverage import write_master_data
    from simulators.ehr import practice_for
    from simulators.payer.adjudication import PayerBook

    settings = _settings()
    practice = practice_for(seed, PayerBook.load(settings.payer_profiles_file))
    write_master_data(practice.records(), settings.master_data_dir, practice.authorizations)
    console.print(f"{len(practice.members)} patients and their coverage in {settings.master_data_dir}")


@simulate_app.command("payer")
def simulate_payer(seed: Annotated[int | None, typer.Option(help="Default: CLAIMS_SEED.")] = None) -> None:
    """Run the payer simulator (a faust app): eligibility answers, adjudication with
    accumulators, remittances paid out after each payer's latency; until Ctrl-C."""
    from simulators.payer.app import run_payer

    settings = _settings()
    settings = replace(settings, seed=seed if seed is not None else settings.seed)
    run_payer(settings, _bootstrap(settings))


@simulate_app.command("coder")
def simulate_coder() -> None:
    """Run the coder simulator: new coding work items → fixes, queries, audit outcomes, until Ctrl-C."""
    from engine.wire.codec import default_codec
    from simulators.coder import CoderSimulator

    settings = _settings()
    _serve_until_signal(CoderSimulator(settings, _bootstrap(settings), default_codec(settings.schemas_dir)))


class _Simulator(Protocol):
    stop: asyncio.Event

    async def run(self) -> None: ...


def _serve_until_signal(simulator: _Simulator) -> None:
    """Run a simulator until SIGINT/SIGTERM sets its stop event."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, simulator.stop.set)
        await simulator.run()

    asyncio.run(serve())


if __name__ == "__main__":
    app()
