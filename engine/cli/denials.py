"""``claims denials …``: the biller's denial work queues from the terminal.

queues / list / show read the queues back from the topics (``engine.denials.desk``);
claim / resubmit / void / appeal / writeoff / reopen publish one ``DenialAction`` each
through the same ``DenialDesk`` the web page uses: checked first against the item's state
(and, for a corrected claim, against the coding rules and the scrubber), so a refused
action says why at once and publishes nothing. Ids, codes and amounts only: no name,
birth date or note; the member id masked but for its last 4."""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from engine.cli.context import console, context, err, int_list, positions, user_id
from engine.denials.desk import ActionRefused, ActionRequest, DenialDesk, mask_member_id, today
from engine.denials.work_items import (
    RECOVERED,
    RESOLVED,
    SORTS,
    ClaimCorrections,
    LineCorrection,
    WorkItemStatus,
    appeal_deadline,
    days_left,
    queue_overview,
    work_list,
)
from engine.model.events import DenialActionType

denials_app = typer.Typer(help="The denial work queues: queues, list, show, claim, resubmit, void, appeal, writeoff, "
                               "reopen.", no_args_is_help=True)

ItemRef = Annotated[str, typer.Argument(metavar="ID", help="Work item id (or claim id).")]
User = Annotated[str | None, typer.Option(help="Your user id (default: CLAIMS_USER or login).")]
Note = Annotated[str | None, typer.Option(help="Why, for the record (no PHI).")]


def _desk() -> DenialDesk:
    return DenialDesk(*context())


def _refused(exc: ActionRefused) -> typer.Exit:
    err.print(escape(str(exc)), style="red")
    return typer.Exit(1)


@denials_app.command("queues")
def queues() -> None:
    """Per queue: open items, those waiting for a biller, $ at risk, the oldest open item."""
    desk = _desk()
    table = Table(title="denial queues")
    for column in ("queue", "open", "for a biller", "$ at risk", "oldest (days)"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for o in queue_overview(asyncio.run(desk.queues()).items, today()).values():
        table.add_row(o.queue, str(o.open_count), str(o.actionable_count), f"{o.amount_at_risk:,.2f}",
                      "" if o.oldest_open_days is None else str(o.oldest_open_days))
    console.print(table)


@denials_app.command("list")
def list_items(queue: Annotated[str, typer.Option(help="The queue, e.g. denials.coding.")],
               sort: Annotated[str, typer.Option(help=f"One of {', '.join(SORTS)}.")] = "priority") -> None:
    """The items of a queue waiting for a biller, in the order to work them."""
    if sort not in SORTS:
        err.print(f"unknown sort {sort!r}; one of {', '.join(SORTS)}", style="red")
        raise typer.Exit(2)
    desk = _desk()
    table = Table(title=f"{queue} by {sort}")
    for column in ("work item", "claim", "payer", "CARC", "$ at risk", "appeal by", "days left", "priority", "status"):
        table.add_column(column)
    for e in work_list(asyncio.run(desk.queues()).items, queue, today(), sort=sort,
                       appeal_days_by_payer=desk.appeal_days):
        table.add_row(e.item.work_item_id, e.item.claim_id, e.item.payer_id, f"{e.item.group_code}-{e.item.carc}",
                      f"{e.item.amount_at_risk:,.2f}", str(e.appeal_deadline),
                      f"{e.days_left}{' (expired)' if e.expired else ''}", f"{e.priority:,.2f}", str(e.state.status))
    console.print(table)


@denials_app.command("show")
def show(ref: ItemRef) -> None:
    """One item: the reasons in words, the claim's lines, the money, the deadline, the
    suggested action, its history."""
    desk = _desk()
    try:
        item, state = asyncio.run(desk.item(ref))
        claim = asyncio.run(desk.claim(state.current_claim_id))
    except ActionRefused as exc:
        raise _refused(exc) from None
    deadline = appeal_deadline(item, desk.appeal_days)
    table = Table(title=f"work item {item.work_item_id}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for what, value in (
        ("claim", item.claim_id), ("standing claim", state.current_claim_id), ("remittance", item.remittance_id),
        ("payer", item.payer_id), ("member", mask_member_id(claim.member_id)),
        ("date of service", str(item.date_of_service)), ("diagnoses", " ".join(claim.diagnoses)),
        ("queue", f"{item.queue} ({item.category})"), ("reasons", "\n".join(item.reasons)),
        ("RARCs", " ".join(item.rarcs) or "-"), ("billed", f"{item.billed_amount:,.2f}"),
        ("at risk", f"{item.amount_at_risk:,.2f}"), ("appeal by", f"{deadline} ({days_left(deadline, today())} days)"),
        ("suggested action", item.suggested_action), ("usually recoverable", "yes" if item.recoverable else "no"),
        ("status", f"{state.status} (round {state.round})"), ("assignee", state.assignee or "-"),
        ("replacement / void", state.replacement_claim_id or "-"),
        ("written off", f"{state.written_off_amount:,.2f}"), ("recovered", f"{state.recovered_amount:,.2f}"),
        ("history", " ".join(state.history) or "-"),
    ):
        table.add_row(what, escape(value))
    console.print(table)
    lines = Table(title=f"lines of {claim.claim_id}")
    for column in ("line", "code", "modifiers", "units", "charge", "dx pointers"):
        lines.add_column(column)
    for ln in claim.lines:
        lines.add_row(str(ln.line_number), ln.procedure_code, ",".join(ln.modifiers) or "-", str(ln.units),
                      f"{ln.charge:,.2f}", ",".join(map(str, ln.dx_pointers)))
    console.print(lines)


#: What each action waits for: the engine's or the payer's answer.
_ANSWERED = {
    DenialActionType.RESUBMIT: {WorkItemStatus.RESOLVED_PAID, WorkItemStatus.OPEN, WorkItemStatus.IN_PROGRESS},
    DenialActionType.APPEAL: {WorkItemStatus.APPEAL_WON, WorkItemStatus.APPEAL_LOST},
}


def _act(ref: str, request: ActionRequest, wait: float = 0.0) -> None:
    desk = _desk()
    try:
        action, after = asyncio.run(desk.act(ref, request))
    except ActionRefused as exc:
        raise _refused(exc) from None
    sent = f" (claim {action.replacement_claim_id})" if action.replacement_claim_id else ""
    console.print(f"{action.action_id}: {request.kind} on {action.work_item_id}{sent} → {after.status}")
    answered = _ANSWERED.get(request.kind)
    if not wait or answered is None:
        return
    state = asyncio.run(desk.wait_for(action.work_item_id, answered, wait))
    if state is None:
        console.print(f"no answer within {wait:.0f} s: still {after.status} (see `claims denials show "
                      f"{action.work_item_id}`)")
        return
    outcome = f"{state.status}, recovered {state.recovered_amount:,.2f}" if state.status in RECOVERED | RESOLVED \
        else f"{state.status} (round {state.round}): see `claims denials show {action.work_item_id}`"
    console.print(outcome)


@denials_app.command("claim")
def claim(ref: ItemRef, user: User = None) -> None:
    """Assign the item to you."""
    _act(ref, ActionRequest(DenialActionType.CLAIM, user_id(user)))


def _corrections(proc: list[str], mod: list[str], units: list[str], pointers: list[str], drop_line: list[int],
                 dx: str | None, charge: list[str]) -> ClaimCorrections:
    by_line: dict[int, dict[str, object]] = {}
    for number, code in positions(proc, "--proc").items():
        by_line.setdefault(number, {})["procedure_code"] = code.upper()
    for number, mods in positions(mod, "--mod").items():
        by_line.setdefault(number, {})["modifiers"] = tuple(m.strip().upper() for m in mods.split(",") if m.strip())
    for number, count in positions(units, "--units").items():
        by_line.setdefault(number, {})["units"] = int(count)
    for number, ptrs in positions(pointers, "--pointers").items():
        by_line.setdefault(number, {})["dx_pointers"] = int_list(ptrs, "--pointers")
    for number, amount in positions(charge, "--charge").items():
        try:
            by_line.setdefault(number, {})["charge"] = Decimal(amount)
        except InvalidOperation:
            raise typer.BadParameter(f"--charge takes LINE=AMOUNT, got {amount!r}") from None
    return ClaimCorrections(
        lines=tuple(LineCorrection(number, **fix) for number, fix in sorted(by_line.items())),  # type: ignore[arg-type]
        diagnoses=tuple(code.strip().upper() for code in dx.split(",") if code.strip()) if dx is not None else None,
        remove_lines=frozenset(drop_line),
    )


@denials_app.command("resubmit")
def resubmit(
    ref: ItemRef,
    proc: Annotated[list[str] | None, typer.Option(help="Replace the code of line N: N=CODE (repeat).")] = None,
    mod: Annotated[list[str] | None, typer.Option(help="Set the modifiers of line N: N=59,RT (N= clears).")] = None,
    units: Annotated[list[str] | None, typer.Option(help="Set the units of line N: N=COUNT.")] = None,
    pointers: Annotated[list[str] | None, typer.Option(help="Set the dx pointers of line N: N=1,2.")] = None,
    charge: Annotated[list[str] | None, typer.Option(help="Set the charge of line N: N=AMOUNT.")] = None,
    drop_line: Annotated[list[int] | None, typer.Option(help="Remove line N (repeat).")] = None,
    dx: Annotated[str | None, typer.Option(help="The diagnoses, in order, e.g. M17.11,E11.9.")] = None,
    note: Note = None, user: User = None,
    force: Annotated[bool, typer.Option(help="Send even if the local checks find errors "
                                             "(the engine checks again).")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the payer's answer (0: don't wait).")] = 0.0,
) -> None:
    """Send a corrected claim (frequency 7, naming the claim it replaces). It goes through
    the coding checks and the scrubber here and again in the engine; the payer reverses the
    claim it replaces and adjudicates this one. Line numbers are those `show` prints."""
    corrections = _corrections(proc or [], mod or [], units or [], pointers or [], drop_line or [], dx, charge or [])
    _act(ref, ActionRequest(DenialActionType.RESUBMIT, user_id(user), note=note, corrections=corrections,
                            force=force), wait)


@denials_app.command("void")
def void(ref: ItemRef, note: Note = None, user: User = None) -> None:
    """Void the claim standing at the payer (frequency 8): the payer takes back what it paid."""
    _act(ref, ActionRequest(DenialActionType.VOID, user_id(user), note=note))


@denials_app.command("appeal")
def appeal(ref: ItemRef,
           note: Annotated[str, typer.Option(help="The grounds of the appeal (no PHI).")],
           user: User = None,
           wait: Annotated[float, typer.Option(help="Seconds to wait for the payer's decision (0: don't wait).")] = 0.0
           ) -> None:
    """Appeal the denial for its $ at risk; the payer decides (overturned: it pays)."""
    _act(ref, ActionRequest(DenialActionType.APPEAL, user_id(user), note=note), wait)


@denials_app.command("writeoff")
def writeoff(ref: ItemRef,
             reason: Annotated[str, typer.Option(help="The adjustment reason, e.g. the CARC written off.")],
             note: Note = None,
             amount: Annotated[str | None, typer.Option(help="Amount; default the item's $ at risk.")] = None,
             user: User = None) -> None:
    """Write the item off with an adjustment reason: the claim's balance drops by it."""
    try:
        value = Decimal(amount) if amount is not None else None
    except InvalidOperation:
        raise typer.BadParameter(f"--amount takes an amount, got {amount!r}") from None
    _act(ref, ActionRequest(DenialActionType.WRITE_OFF, user_id(user), note=note, adjustment_reason=reason,
                            amount=value))


@denials_app.command("reopen")
def reopen(ref: ItemRef, note: Note = None, user: User = None) -> None:
    """Reopen a written-off, lost-appeal or voided item (a write-off is taken back)."""
    _act(ref, ActionRequest(DenialActionType.REOPEN, user_id(user), note=note))
