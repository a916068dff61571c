"""``claims export 837|835`` and ``claims ingest 835``: X12 5010 files out of and into the topics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from engine.cli.context import bootstrap as _bootstrap
from engine.cli.context import console, err
from engine.cli.context import load_settings as _settings
from engine.wire.topics import Topic

if TYPE_CHECKING:
    from engine.model.events import ClaimSubmitted, Remittance

export_app = typer.Typer(help="Export transactions as X12 5010.", no_args_is_help=True)
ingest_app = typer.Typer(help="Read X12 5010 files from payers into the topics.", no_args_is_help=True)


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
    accept_unbalanced: Annotated[bool, typer.Option(
        "--accept-unbalanced",
        help="Ingest a file that does not balance (BPR02, CLP, SVC) or count (SE01), its findings flagged.")] = False,
) -> None:
    """A payer's 835 into remittances, unapplied cash and payments.

    Claim payments matched to our claims by patient control number become remittances
    (posting dedupes by remittance id), the others unapplied cash; each transaction is a
    payment with its PLB adjustments. Exit 2 when the file is not a readable 5010 835, or
    when it does not balance or its control counts are wrong (each finding names its
    transaction and segment) unless ``--accept-unbalanced``."""

    from rich.table import Table

    from engine.wire.codec import default_codec
    from engine.x12.remittance_835_ingest import ingest_reference, publish, totals
    from engine.x12.remittance_835_matching import match_file
    from engine.x12.remittance_835_read import read_835
    from engine.x12.validation import balance_findings_835

    try:
        text = file.read_text(encoding="latin-1")
    except OSError as exc:
        err.print(escape(f"cannot read {file}: {exc.strerror}"), style="red")
        raise typer.Exit(2) from None
    try:
        payments = read_835(text)
        findings = balance_findings_835(text)
    except ValueError as exc:
        err.print(escape(f"{file} is not a readable 835: {exc}"), style="red")
        raise typer.Exit(2) from None
    for finding in findings:
        err.print(escape(finding.removeprefix("claimflow: ")), style="yellow" if accept_unbalanced else "red")
    if findings and not accept_unbalanced:
        err.print(escape(f"{file} refused: {len(findings)} balancing or control-count findings, nothing "
                         "published (--accept-unbalanced ingests it with them flagged)"), style="red")
        raise typer.Exit(2)

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
    if findings:
        summary.add_row("accepted unbalanced: findings", str(len(findings)))
    console.print(summary)
