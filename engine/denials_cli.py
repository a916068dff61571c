"""``claims denials …``: the biller's denial work queues from the terminal.

queues / list / show read the queues back from the topics (``engine.denial_queue``);
claim / writeoff / reopen publish one ``DenialAction`` each, checked first against the
item's state (the same fold every reader runs), so a refused action says why at once.
Ids, codes and amounts only: no name, birth date or member id."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.cli_context import context, user_id
from engine.codec import Codec
from engine.denial_queue import new_action_id, publish_action, read_queues
from engine.events import DenialAction, DenialActionType, DenialWorkItem
from engine.pipeline import ProcessingError
from engine.settings import Settings
from engine.workqueue import SORTS, WorkItemState, apply_action, appeal_deadline, days_left, queue_overview, work_list

denials_app = typer.Typer(help="The denial work queues: queues, list, show, claim, writeoff, reopen.",
                          no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _today() -> date:
    return datetime.now(timezone.utc).date()


def _items(settings: Settings, bootstrap: str, codec: Codec) -> list[tuple[DenialWorkItem, WorkItemState]]:
    return asyncio.run(read_queues(settings, bootstrap, codec)).items


def _find(items: list[tuple[DenialWorkItem, WorkItemState]], ref: str) -> tuple[DenialWorkItem, WorkItemState]:
    """By work item id, or by claim id when the claim has one item."""
    found = [(i, s) for i, s in items if ref in (i.work_item_id, i.claim_id)]
    if len(found) != 1:
        err.print(escape(f"no work item {ref}" if not found else f"{ref} names {len(found)} work items: use an id"),
                  style="red")
        raise typer.Exit(1)
    return found[0]


@denials_app.command("queues")
def queues() -> None:
    """Per queue: open items, those waiting for a biller, $ at risk, the oldest open item."""
    settings, bootstrap, codec = context()
    table = Table(title="denial queues")
    for column in ("queue", "open", "for a biller", "$ at risk", "oldest (days)"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for o in queue_overview(_items(settings, bootstrap, codec), _today()).values():
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
    settings, bootstrap, codec = context()
    table = Table(title=f"{queue} by {sort}")
    for column in ("work item", "claim", "payer", "CARC", "$ at risk", "appeal by", "days left", "priority", "status"):
        table.add_column(column)
    for e in work_list(_items(settings, bootstrap, codec), queue, _today(), sort=sort):
        table.add_row(e.item.work_item_id, e.item.claim_id, e.item.payer_id, f"{e.item.group_code}-{e.item.carc}",
                      f"{e.item.amount_at_risk:,.2f}", str(e.appeal_deadline),
                      f"{e.days_left}{' (expired)' if e.expired else ''}", f"{e.priority:,.2f}", str(e.state.status))
    console.print(table)


@denials_app.command("show")
def show(ref: Annotated[str, typer.Argument(help="Work item id (or claim id).")]) -> None:
    """One item: the reasons in words, the money, the deadline, the suggested action, its history."""
    settings, bootstrap, codec = context()
    item, state = _find(_items(settings, bootstrap, codec), ref)
    deadline = appeal_deadline(item, {})
    table = Table(title=f"work item {item.work_item_id}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for what, value in (
        ("claim", item.claim_id), ("remittance", item.remittance_id), ("payer", item.payer_id),
        ("queue", f"{item.queue} ({item.category})"), ("reasons", "\n".join(item.reasons)),
        ("RARCs", " ".join(item.rarcs) or "-"), ("billed", f"{item.billed_amount:,.2f}"),
        ("at risk", f"{item.amount_at_risk:,.2f}"), ("appeal by", f"{deadline} ({days_left(deadline, _today())} days)"),
        ("suggested action", item.suggested_action), ("usually recoverable", "yes" if item.recoverable else "no"),
        ("status", str(state.status)), ("assignee", state.assignee or "-"),
        ("written off", f"{state.written_off_amount:,.2f}"), ("recovered", f"{state.recovered_amount:,.2f}"),
        ("history", " ".join(state.history) or "-"),
    ):
        table.add_row(what, escape(value))
    console.print(table)


def _act(ref: str, kind: DenialActionType, user: str | None, **fields: object) -> None:
    settings, bootstrap, codec = context()
    item, state = _find(_items(settings, bootstrap, codec), ref)
    action = DenialAction(new_action_id(), item.work_item_id, item.claim_id, kind, user_id(user),
                          datetime.now(timezone.utc), **fields)  # type: ignore[arg-type]
    try:
        after = apply_action(state, action)
    except ProcessingError as exc:
        err.print(escape(str(exc)), style="red")
        raise typer.Exit(1) from None
    asyncio.run(publish_action(settings, bootstrap, codec, action))
    console.print(f"{action.action_id}: {kind} on {item.work_item_id} → {after.status}")


@denials_app.command("claim")
def claim(ref: Annotated[str, typer.Argument(help="Work item id (or claim id).")],
          user: Annotated[Optional[str], typer.Option(help="Your user id (default: CLAIMS_USER or login).")] = None
          ) -> None:
    """Assign the item to you."""
    _act(ref, DenialActionType.CLAIM, user)


@denials_app.command("writeoff")
def writeoff(ref: Annotated[str, typer.Argument(help="Work item id (or claim id).")],
             reason: Annotated[str, typer.Option(help="The adjustment reason, e.g. the CARC written off.")],
             note: Annotated[Optional[str], typer.Option(help="Why (no PHI).")] = None,
             amount: Annotated[Optional[str], typer.Option(help="Amount; default the item's $ at risk.")] = None,
             user: Annotated[Optional[str], typer.Option(help="Your user id.")] = None) -> None:
    """Write the item off with an adjustment reason: its balance goes to zero."""
    _act(ref, DenialActionType.WRITE_OFF, user, note=note, adjustment_reason=reason,
         amount=Decimal(amount) if amount is not None else None)


@denials_app.command("reopen")
def reopen(ref: Annotated[str, typer.Argument(help="Work item id (or claim id).")],
           note: Annotated[Optional[str], typer.Option(help="Why (no PHI).")] = None,
           user: Annotated[Optional[str], typer.Option(help="Your user id.")] = None) -> None:
    """Reopen a written-off, lost-appeal or voided item."""
    _act(ref, DenialActionType.REOPEN, user, note=note)
