"""``claims coding …``: the coder's work queue from the terminal.

list / show read the queue back from the topics; fix / query / answer / audit publish
one ``CodingAction`` each. A fix is checked here first (the same rules the worker
runs), so a coder sees at once whether the correction will pass; the worker re-checks
it and the claim goes on. Shows no name, birth date, member id or note: the coder
sees sex and age at the date of service, which the sex and age edits need.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from engine.cli.context import console, context, err, user_id
from engine.cli.context import int_list as _ints
from engine.cli.context import positions as _positions
from engine.coding.findings import has_errors
from engine.coding.queue import QueueReader, find_item, new_action, publish_action
from engine.coding.review import (
    NEEDS_CODER,
    Correction,
    CorrectionError,
    ItemStatus,
    WorkItem,
    apply_correction,
)
from engine.coding.rules import CodingReference, age_on, check_encounter
from engine.model.events import CodingActionType, Encounter, Finding
from engine.reference.codesets import icd10_info, normalize_icd10
from engine.settings import Settings
from engine.wire.codec import Codec

coding_app = typer.Typer(help="The coder review queue: list, show, fix, query, answer, audit.",
                         no_args_is_help=True)


async def _read(settings: Settings, bootstrap: str, codec: Codec) -> dict[str, WorkItem]:
    async with QueueReader(settings, bootstrap, codec) as reader:
        return reader.queue()


def _item_or_exit(queue: dict[str, WorkItem], ref: str) -> WorkItem:
    item = find_item(queue, ref)
    if item is None:
        err.print(f"[red]no coding work item {ref!r}[/red] (give a work item id such as CR-… or an encounter id)")
        raise typer.Exit(2)
    return item


def _refuse_if(item: WorkItem, action: CodingActionType) -> None:
    if reason := item.refusal(action):
        err.print(f"[red]{reason}[/red]")
        raise typer.Exit(3)


def _age(created: datetime) -> str:
    minutes = (datetime.now(UTC) - created).total_seconds() / 60
    return (f"{minutes:.0f}m" if minutes < 120 else f"{minutes / 60:.0f}h" if minutes < 2880
            else f"{minutes / 1440:.0f}d")


@coding_app.command("list")
def list_items(
    status: Annotated[list[ItemStatus] | None, typer.Option(help="Only these statuses (repeat). "
                      "Default: the items a coder has to act on (OPEN, ANSWERED, AUDIT_OPEN).")] = None,
    all_items: Annotated[bool, typer.Option("--all", help="Every item, closed ones included.")] = False,
    rule: Annotated[str | None, typer.Option(help="Only items with a finding of this rule id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (oldest first).")] = 50,
) -> None:
    """The queue, oldest first, with counts per status."""
    settings, bootstrap, codec = context()
    queue = asyncio.run(_read(settings, bootstrap, codec))
    wanted = set(ItemStatus) if all_items else set(status or NEEDS_CODER)
    rows = sorted((i for i in queue.values() if i.status in wanted
                   and (rule is None or rule.upper() in {f.rule_id for f in i.findings})),
                  key=lambda i: i.created_at)
    table = Table(title=f"coding work items ({len(rows)} of {len(queue)})")
    for column in ("work item", "encounter", "status", "rev", "kind", "rules", "age", "question"):
        table.add_column(column)
    for item in rows[:limit]:
        table.add_row(item.work_item_id, item.encounter_id, str(item.status), str(item.revision),
                      "audit" if item.is_audit else "errors", ", ".join(item.rule_ids) or "-", _age(item.created_at),
                      (item.question or "")[:40])
    console.print(table)
    counts = {str(s): sum(1 for i in queue.values() if i.status == s) for s in ItemStatus}
    console.print("  ".join(f"{name.lower()}: {n}" for name, n in counts.items() if n) or "the queue is empty")


@coding_app.command("show")
def show(item_ref: Annotated[str, typer.Argument(metavar="ID", help="Work item id (CR-…) or encounter id.")]) -> None:
    """One item: its findings, the codes with their ICD-10-CM descriptions, its history."""
    settings, bootstrap, codec = context()
    item = _item_or_exit(asyncio.run(_read(settings, bootstrap, codec)), item_ref)
    enc = codec.decode(item.encounter, Encounter)
    kind = "audit sample" if item.is_audit else "coding errors"
    console.print(f"[bold]{item.work_item_id}[/bold]  encounter {item.encounter_id}  {kind}  "
                  f"status [bold]{item.status}[/bold]  revision {item.revision}")
    age = age_on(enc.patient.birth_date, enc.date_of_service)
    console.print(f"patient {enc.patient.patient_id}, sex {enc.patient.sex}, age {age} on "
                  f"{enc.date_of_service:%Y-%m-%d}; payer {enc.payer_id}; place of service {enc.place_of_service}")
    _print_codes(enc)
    _print_findings(item.findings)
    if item.question:
        console.print(f"[yellow]query:[/yellow] {item.question}")
    if item.answer:
        console.print(f"[green]answer:[/green] {item.answer}")
    history = Table(title="history")
    for column in ("when (UTC)", "who", "what"):
        history.add_column(column)
    for entry in item.history:
        history.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.actor,
                        entry.what + (f" — {entry.note}" if entry.note and entry.note not in entry.what else ""))
    console.print(history)


def _print_codes(enc: Encounter) -> None:
    diagnoses = Table(title="diagnoses (principal first)")
    for column in ("#", "code", "ICD-10-CM description"):
        diagnoses.add_column(column)
    for position, raw in enumerate(enc.diagnoses, start=1):
        info = icd10_info(normalize_icd10(raw))
        description = info.description or "[red]not in ICD-10-CM FY2026[/red]"
        if info.exists and not info.billable:
            description += " [red](header: not billable)[/red]"
        diagnoses.add_row(str(position), normalize_icd10(raw), description)
    console.print(diagnoses)
    lines = Table(title="procedure lines")
    for column in ("line", "code", "modifiers", "units", "dx pointers"):
        lines.add_column(column)
    for position, proc in enumerate(enc.procedures, start=1):
        lines.add_row(str(position), proc.code, ",".join(proc.modifiers) or "-", str(proc.units),
                      ",".join(map(str, proc.dx_pointers)) or "-")
    console.print(lines)


def _print_findings(findings: list[Finding]) -> None:
    if not findings:
        console.print("[green]no findings[/green]")
        return
    table = Table(title="findings")
    for column in ("severity", "rule", "element", "message"):
        table.add_column(column)
    for finding in findings:
        color = "red" if finding.severity == "ERROR" else "yellow"
        table.add_row(f"[{color}]{finding.severity}[/{color}]", finding.rule_id, finding.element, finding.message)
    console.print(table)


@coding_app.command("fix")
def fix(
    item_ref: Annotated[str, typer.Argument(metavar="ID")],
    dx: Annotated[list[str] | None, typer.Option(help="Replace diagnosis N: N=CODE (repeat).")] = None,
    add_dx: Annotated[list[str] | None, typer.Option(help="Add a diagnosis at the end (repeat).")] = None,
    drop_dx: Annotated[list[int] | None, typer.Option(help="Remove diagnosis N (repeat); pointers follow.")] = None,
    dx_order: Annotated[str | None, typer.Option(help="The kept diagnoses in their new order, "
                                                      "e.g. 2,1 (principal first).")] = None,
    proc: Annotated[list[str] | None, typer.Option(help="Replace the code of line N: N=CODE (repeat).")] = None,
    mod: Annotated[list[str] | None, typer.Option(help="Set the modifiers of line N: N=25,RT (N= clears).")] = None,
    units: Annotated[list[str] | None, typer.Option(help="Set the units of line N: N=COUNT.")] = None,
    pointers: Annotated[list[str] | None, typer.Option(help="Set the dx pointers of line N: N=1,2.")] = None,
    drop_line: Annotated[list[int] | None, typer.Option(help="Remove line N (repeat).")] = None,
    note: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
    coder: Annotated[str | None, typer.Option(help="Your user id (default: CLAIMS_USER or login).")] = None,
    force: Annotated[bool, typer.Option(help="Submit even if the correction still fails the checks.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the worker's re-check (0: don't wait).")] = 30.0,
) -> None:
    """Correct the codes; the corrected encounter is re-checked and goes on to the claim.

    Every position is the one `claims coding show` prints, whatever else the same fix
    drops or reorders; dx pointers follow their diagnosis."""
    correction = Correction(
        set_dx=_positions(dx or [], "--dx"),
        add_dx=tuple(add_dx or ()),
        drop_dx=tuple(drop_dx or ()),
        dx_order=_ints(dx_order, "--dx-order") if dx_order else (),
        set_code=_positions(proc or [], "--proc"),
        set_modifiers={k: tuple(v.split(",")) if v else () for k, v in _positions(mod or [], "--mod").items()},
        set_units={k: int(v) for k, v in _positions(units or [], "--units").items()},
        set_pointers={k: _ints(v, "--pointers") for k, v in _positions(pointers or [], "--pointers").items()},
        drop_lines=tuple(drop_line or ()),
    )
    if correction.empty:
        err.print("[red]nothing to fix: give --dx, --add-dx, --drop-dx, --dx-order, --proc, --mod, --units, "
                  "--pointers or --drop-line[/red]")
        raise typer.Exit(2)
    settings, bootstrap, codec = context()

    async def go() -> int:
        async with QueueReader(settings, bootstrap, codec) as reader:
            item = _item_or_exit(reader.queue(), item_ref)
            _refuse_if(item, CodingActionType.FIX)
            original = codec.decode(item.encounter, Encounter)
            try:
                corrected, changes = apply_correction(original, correction)
            except CorrectionError as exc:
                err.print(f"[red]{exc}[/red]")
                return 2
            for change in changes:
                console.print(f"  {change}")
            findings = check_encounter(corrected, CodingReference.load(settings))
            _print_findings(findings)
            if has_errors(findings) and not force:
                err.print("[red]the correction still fails the checks: not submitted[/red] (fix the rest, or "
                          "--force to send it back to the queue as the next revision)")
                return 1
            action = new_action(item, action=CodingActionType.FIX, actor=user_id(coder), note=note, changes=changes,
                                corrected_encounter=codec.encode(corrected))
            await publish_action(settings, bootstrap, codec, action)
            console.print(f"submitted {action.action_id}: {item.work_item_id} revision {item.revision}")
            if wait <= 0:
                return 0
            try:
                queue = await reader.until(  # resolved, reopened as the next revision, or rejected
                    lambda q: action.action_id in q[item.work_item_id].rejected_fixes
                    or q[item.work_item_id].status == ItemStatus.RESOLVED
                    or q[item.work_item_id].revision > item.revision, timeout_s=wait)
            except TimeoutError:
                console.print(f"[yellow]no re-check within {wait:.0f}s: is `claims worker` running? The fix is "
                              "recorded and will be checked when it runs.[/yellow]")
                return 0
            after = queue[item.work_item_id]
            if action.action_id in after.rejected_fixes:
                err.print(f"[red]rejected by the engine:[/red] {after.rejected_fixes[action.action_id]}")
                return 3
            color = "green" if after.status == ItemStatus.RESOLVED else "red"
            console.print(f"re-checked: [{color}]{after.status}[/{color}]"
                          + (" — the encounter went on to claim generation" if after.status == ItemStatus.RESOLVED
                             else f" (revision {after.revision})"))
            return 0

    raise typer.Exit(asyncio.run(go()))


def _simple_action(item_ref: str, action: CodingActionType, actor: str, note: str | None) -> None:
    settings, bootstrap, codec = context()

    async def go() -> None:
        async with QueueReader(settings, bootstrap, codec) as reader:
            item = _item_or_exit(reader.queue(), item_ref)
            _refuse_if(item, action)
            event = new_action(item, action=action, actor=actor, note=note, changes=[], corrected_encounter=None)
            await publish_action(settings, bootstrap, codec, event)
            console.print(f"{item.work_item_id}: {str(action).lower().replace('_', ' ')} recorded ({event.action_id})")

    asyncio.run(go())


@coding_app.command("query")
def query(
    item_ref: Annotated[str, typer.Argument(metavar="ID")],
    question: Annotated[str, typer.Option(help="The question for the provider (no PHI beyond the chart's).")],
    coder: Annotated[str | None, typer.Option(help="Your user id.")] = None,
) -> None:
    """Ask the provider; the item waits, with the question, until answered."""
    _simple_action(item_ref, CodingActionType.QUERY, user_id(coder), question)


@coding_app.command("answer")
def answer(
    item_ref: Annotated[str, typer.Argument(metavar="ID")],
    text: Annotated[str, typer.Option("--answer", help="The provider's reply.")],
    provider: Annotated[str | None, typer.Option(help="The provider's user id.")] = None,
) -> None:
    """The provider's reply to a query: the item is back with the coders."""
    _simple_action(item_ref, CodingActionType.ANSWER, user_id(provider), text)


@coding_app.command("audit")
def audit(
    item_ref: Annotated[str, typer.Argument(metavar="ID")],
    agree: Annotated[bool, typer.Option("--agree/--disagree", help="Does the audit agree with the coding?")],
    note: Annotated[str | None, typer.Option(help="What the auditor found.")] = None,
    coder: Annotated[str | None, typer.Option(help="Your user id.")] = None,
) -> None:
    """Close an audit sample: agree, or disagree with a note (the claim already went out)."""
    action = CodingActionType.AUDIT_AGREE if agree else CodingActionType.AUDIT_DISAGREE
    _simple_action(item_ref, action, user_id(coder), note)

