"""The billers' pages as HTML strings, pure (data in, HTML out): every value escaped, the member
id masked but for its last 4, money from Decimals only, no name, birth date, address or note."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, date
from decimal import Decimal
from importlib import resources
from urllib.parse import quote, urlencode

from engine.denials.desk import mask_member_id
from engine.denials.work_items import (
    SORTS,
    QueueOverview,
    WorkItemAccounting,
    WorkItemState,
    WorkListEntry,
    appeal_deadline,
    days_left,
)
from engine.model.events import ClaimSubmitted, DenialAction, DenialActionType, DenialWorkItem
from engine.ops.timeline import TimelineEntry
from engine.web.auth import Session, local_path
from engine.web.forms import ACTIONS, allowed_actions

A = DenialActionType

ACTION_LABELS: dict[DenialActionType, str] = {
    A.CLAIM: "Claim (assign to me)",
    A.RESUBMIT: "Resubmit a corrected claim",
    A.VOID: "Void the claim",
    A.APPEAL: "Appeal",
    A.WRITE_OFF: "Write off",
    A.REOPEN: "Reopen",
}

#: The pages' stylesheet (static/style.css), read once and inlined in each page: the CSP
#: allows inline style and nothing external.
CSS = resources.files("engine.web").joinpath("static/style.css").read_text(encoding="utf-8")


def esc(value: object) -> str:
    """Every value that reaches the page goes through here."""
    return html.escape(str(value), quote=True)


def money(amount: Decimal) -> str:
    """Decimal with 2 decimals and thousands separators; a float is a bug, not a value."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be a Decimal, got {type(amount).__name__}")
    return f"{amount:,.2f}"


def codes(values: Iterable[str]) -> str:
    return ", ".join(values) or "-"


def item_url(work_item_id: str) -> str:
    return "/items/" + quote(work_item_id, safe="")


def queue_url(queue: str, sort: str | None = None) -> str:
    return "/queues/" + quote(queue, safe="") + (f"?{urlencode({'sort': sort})}" if sort else "")


def claim_url(claim_id: str) -> str:
    return "/claims/" + quote(claim_id, safe="")


def page(title: str, body: str, session: Session | None, *, flash: Iterable[tuple[str, str]] = ()) -> str:
    """The page frame: navigation, who is logged in, the messages, the body."""
    if session is None:
        who = '<span class="who"><a href="/login">log in</a> to act</span>'
    else:
        who = (f'<span class="who">logged in as <b>{esc(session.user)}</b> '
               f'<form class="inline" method="post" action="/logout">'
               f'<input type="hidden" name="csrf" value="{esc(session.csrf)}">'
               f'<button type="submit">log out</button></form></span>')
    messages = "".join(f'<div class="msg {esc(kind)}" role="{"alert" if kind == "error" else "status"}">{esc(text)}'
                       f'</div>' for kind, text in flash)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{esc(title)} · Claimflow</title><style>\n{CSS}</style></head><body>'
            f'<header><a href="/"><b>Claimflow</b> denial queues</a> <a href="/dashboard">ops dashboard</a>'
            f'{who}</header>'
            f'<main><h1>{esc(title)}</h1>{messages}{body}</main></body></html>')


def kv_table(rows: Iterable[tuple[str, str]]) -> str:
    """Rows of (label, already-escaped HTML)."""
    return '<table class="kv">' + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def render_overview(overview: Mapping[str, QueueOverview], accounting: WorkItemAccounting, refused: int,
                    session: Session | None) -> str:
    rows = "".join(
        f'<tr><td><a href="{esc(queue_url(o.queue))}">{esc(o.queue)}</a></td>'
        f'<td class="num">{o.open_count}</td><td class="num">{o.actionable_count}</td>'
        f'<td class="num">{money(o.amount_at_risk)}</td>'
        f'<td class="num">{"-" if o.oldest_open_days is None else o.oldest_open_days}</td></tr>'
        for o in overview.values())
    queues = ('<table><tr><th>queue</th><th class="num">open</th><th class="num">waiting for a biller</th>'
              f'<th class="num">$ at risk</th><th class="num">oldest open (days)</th></tr>{rows}</table>'
              if overview else '<p class="note">No denial work items yet.</p>')
    statuses = ", ".join(f"{esc(s)} {n}" for s, n in accounting.by_status.items() if n) or "-"
    totals = kv_table([
        ("created", str(accounting.created)), ("open", str(accounting.open)),
        ("resolved", str(accounting.resolved)),
        ("denials resolved (money back)", str(accounting.denials_resolved)),
        ("recovered $", money(accounting.recovered_amount)), ("written off $", money(accounting.written_off_amount)),
        ("by status", statuses), ("refused actions", str(refused)),
    ])
    return page("Denial queues", f"{queues}<h2>Work items</h2>{totals}", session)


#: Column → the sort its header link gives (None: not sortable).
LIST_COLUMNS: tuple[tuple[str, str | None, bool], ...] = (
    ("work item", None, False), ("claim", None, False), ("payer", None, False), ("CARC", None, False),
    ("$ at risk", "amount", True), ("appeal by", "deadline", False), ("days left", "deadline", True),
    ("age (days)", "age", True), ("priority", "priority", True), ("status", None, False),
)


def render_work_list(queue: str, sort: str, entries: list[WorkListEntry],
                     others: list[tuple[DenialWorkItem, WorkItemState]], on: date, session: Session | None) -> str:
    heads = []
    for name, key, numeric in LIST_COLUMNS:
        label = esc(name)
        if key is not None:
            label = (f'<a href="{esc(queue_url(queue, key))}">{label}</a>' + (" ▼" if key == sort else ""))
        heads.append(f'<th{" class=num" if numeric else ""}>{label}</th>')
    rows = "".join(
        f'<tr><td><a href="{esc(item_url(e.item.work_item_id))}">{esc(e.item.work_item_id)}</a></td>'
        f'<td>{esc(e.item.claim_id)}</td><td>{esc(e.item.payer_id)}</td>'
        f'<td>{esc(e.item.group_code)}-{esc(e.item.carc)}</td><td class="num">{money(e.item.amount_at_risk)}</td>'
        f'<td>{esc(e.appeal_deadline)}</td>'
        f'<td class="num{" expired" if e.expired else ""}">{e.days_left}{" (expired)" if e.expired else ""}</td>'
        f'<td class="num">{(on - e.item.created_at.date()).days}</td><td class="num">{money(e.priority)}</td>'
        f'<td class="status">{esc(e.state.status)}</td></tr>'
        for e in entries)
    table = (f'<table><tr>{"".join(heads)}</tr>{rows}</table>' if entries
             else '<p class="note">Nothing in this queue is waiting for a biller.</p>')
    other_rows = "".join(
        f'<tr><td><a href="{esc(item_url(i.work_item_id))}">{esc(i.work_item_id)}</a></td><td>{esc(i.claim_id)}</td>'
        f'<td class="status">{esc(s.status)}</td><td>{esc(s.replacement_claim_id or "-")}</td>'
        f'<td class="num">{money(s.recovered_amount)}</td><td class="num">{money(s.written_off_amount)}</td></tr>'
        for i, s in others)
    rest = (f'<h2>Waiting for the payer or closed</h2><table><tr><th>work item</th><th>claim</th><th>status</th>'
            f'<th>replacement / void</th><th class="num">recovered</th><th class="num">written off</th></tr>'
            f'{other_rows}</table>' if others else "")
    sorts = " · ".join(f'<a href="{esc(queue_url(queue, s))}">{esc(s)}</a>' if s != sort else f"<b>{esc(s)}</b>"
                       for s in SORTS)
    return page(f"{queue} by {sort}", f'<p>sort by: {sorts}</p>{table}{rest}', session)


def render_item(item: DenialWorkItem, state: WorkItemState, claim: ClaimSubmitted | None,
                appeal_days_by_payer: Mapping[str, int], on: date, session: Session | None, *,
                flash: Iterable[tuple[str, str]] = (), refused: Iterable[tuple[DenialAction, str]] = ()) -> str:
    deadline = appeal_deadline(item, appeal_days_by_payer)
    left = days_left(deadline, on)
    left_text = f'<span class="expired">{left} days (expired)</span>' if left < 0 else f"{left} days"
    facts = kv_table([
        ("claim", f'<a href="{esc(claim_url(item.claim_id))}">{esc(item.claim_id)}</a>'),
        ("standing claim", f'<a href="{esc(claim_url(state.current_claim_id))}">{esc(state.current_claim_id)}</a>'),
        ("remittance", esc(item.remittance_id)),
        ("payer", esc(item.payer_id)),
        ("member", esc(mask_member_id(claim.member_id)) if claim else "-"),
        ("date of service", esc(item.date_of_service)),
        ("diagnoses", esc(" ".join(claim.diagnoses)) if claim else "-"),
        ("queue", f'<a href="{esc(queue_url(item.queue))}">{esc(item.queue)}</a> ({esc(item.category)})'),
        ("reasons", "<br>".join(esc(r) for r in item.reasons) or "-"),
        ("CARCs", esc(codes(item.all_carcs))), ("RARCs", esc(codes(item.rarcs))),
        ("billed", money(item.billed_amount)), ("$ at risk", money(item.amount_at_risk)),
        ("appeal by", f"{esc(deadline)} ({left_text})"),
        ("suggested action", esc(item.suggested_action)),
        ("usually recoverable", "yes" if item.recoverable else "no"),
        ("status", f'<span class="status" id="status">{esc(state.status)}</span> (round {state.round})'),
        ("assignee", esc(state.assignee or "-")),
        ("replacement / void", (f'<a href="{esc(claim_url(state.replacement_claim_id))}">'
                                f'{esc(state.replacement_claim_id)}</a>') if state.replacement_claim_id else "-"),
        ("written off", money(state.written_off_amount)),
        ("recovered", f'<span id="recovered">{money(state.recovered_amount)}</span>'),
        ("history", "<br>".join(esc(h) for h in state.history) or "-"),
    ])
    if claim is None:
        lines = f'<p class="msg error">Claim {esc(state.current_claim_id)} is not on claims-submitted.</p>'
    else:
        lines = (f'<h2>Lines of {esc(claim.claim_id)}</h2><table><tr><th>line</th><th>code</th><th>modifiers</th>'
                 f'<th class="num">units</th><th class="num">charge</th><th>dx pointers</th></tr>'
                 + "".join(f'<tr><td>{ln.line_number}</td><td>{esc(ln.procedure_code)}</td>'
                           f'<td>{esc(",".join(ln.modifiers) or "-")}</td><td class="num">{ln.units}</td>'
                           f'<td class="num">{money(ln.charge)}</td><td>{esc(",".join(map(str, ln.dx_pointers)))}</td>'
                           f'</tr>' for ln in claim.lines) + "</table>")
    refusals = [(a, why) for a, why in refused if a.work_item_id == item.work_item_id]
    refused_html = ("<h2>Refused actions</h2><ul>" + "".join(
        f"<li>{esc(a.action_id)} {esc(a.action)} by {esc(a.user)}: {esc(why)}</li>" for a, why in refusals) + "</ul>"
        if refusals else "")
    forms = render_forms(item, state, claim, session)
    return page(f"Work item {item.work_item_id}", facts + lines + refused_html + forms, session, flash=flash)


def _form(item: DenialWorkItem, kind: DenialActionType, name: str, session: Session | None, inner: str) -> str:
    csrf = esc(session.csrf) if session else ""
    return (f'<form class="action" method="post" action="{esc(item_url(item.work_item_id))}/{name}" id="form-{name}">'
            f'<h3>{esc(ACTION_LABELS[kind])}</h3><input type="hidden" name="csrf" value="{csrf}">{inner}'
            f'<button type="submit">{esc(name)}</button></form>')


def _note(required: bool = False) -> str:
    return (f'<label>note (no PHI{", required" if required else ""}) '
            f'<input type="text" name="note" size="60" maxlength="500"{" required" if required else ""}></label>')


def render_forms(item: DenialWorkItem, state: WorkItemState, claim: ClaimSubmitted | None,
                 session: Session | None) -> str:
    """One form per action the item's status allows; none of the others."""
    kinds = allowed_actions(state)
    if not kinds:
        return '<p class="note">No biller action is possible in this status.</p>'
    intro = ('' if session else '<p class="msg error">You are not logged in: <a href="/login?'
             + esc(urlencode({"next": item_url(item.work_item_id)})) + '">log in</a> to act.</p>')
    parts = ["<h2>Actions</h2>", intro]
    for kind in kinds:
        name = next(n for n, k in ACTIONS.items() if k == kind)
        if kind == A.CLAIM:
            parts.append(_form(item, kind, name, session, ""))
        elif kind == A.RESUBMIT:
            if claim is None:
                continue
            parts.append(_form(item, kind, name, session, resubmit_fields(claim)))
        elif kind == A.VOID:
            parts.append(_form(item, kind, name, session, _note()))
        elif kind == A.APPEAL:
            parts.append(_form(item, kind, name, session, _note(required=True)))
        elif kind == A.WRITE_OFF:
            parts.append(_form(item, kind, name, session,
                               f'<label>adjustment reason (required) <input type="text" name="adjustment_reason" '
                               f'size="6" maxlength="10" required value="{esc(item.carc)}"></label>'
                               f'<label>amount <input type="text" name="amount" size="10" '
                               f'placeholder="{money(state.amount_at_risk)}"></label>{_note()}'))
        elif kind == A.REOPEN:
            parts.append(_form(item, kind, name, session, _note()))
    return "".join(parts)


def resubmit_fields(claim: ClaimSubmitted) -> str:
    """The standing claim's lines, prefilled: change what needs changing, tick what goes."""
    rows = "".join(
        f'<tr><td>{ln.line_number}</td>'
        f'<td><input type="text" name="line-{ln.line_number}-code" value="{esc(ln.procedure_code)}" size="7"></td>'
        f'<td><input type="text" name="line-{ln.line_number}-modifiers" value="{esc(",".join(ln.modifiers))}" '
        f'size="10"></td>'
        f'<td><input type="text" name="line-{ln.line_number}-units" value="{ln.units}" size="3"></td>'
        f'<td><input type="text" name="line-{ln.line_number}-pointers" '
        f'value="{esc(",".join(map(str, ln.dx_pointers)))}" size="7"></td>'
        f'<td><input type="text" name="line-{ln.line_number}-charge" placeholder="{money(ln.charge)}" size="9"></td>'
        f'<td><input type="checkbox" name="line-{ln.line_number}-drop" aria-label="drop line {ln.line_number}"></td>'
        f'</tr>' for ln in claim.lines)
    return (f'<input type="hidden" name="standing_claim_id" value="{esc(claim.claim_id)}">'
            f'<table><tr><th>line</th><th>procedure code</th><th>modifiers (comma-separated)</th><th>units</th>'
            f'<th>dx pointers</th><th>charge (blank: as billed / fee schedule)</th><th>drop line</th></tr>{rows}'
            f'</table><p><label>diagnoses (comma-separated, in order) <input type="text" name="diagnoses" size="40" '
            f'value="{esc(",".join(claim.diagnoses))}"></label></p>'
            f'<p>{_note()}</p><p><label><input type="checkbox" name="force"> send even if the local checks find '
            f'errors (the engine checks again)</label></p>')


def render_timeline(claim_id: str, entries: list[TimelineEntry], items: list[tuple[DenialWorkItem, WorkItemState]],
                    session: Session | None) -> str:
    rows = "".join(f'<tr><td class="when">{esc(e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))}</td>'
                   f'<td>{esc(e.stage)}</td><td>{esc(e.what)}</td></tr>' for e in entries)
    linked = "".join(f'<li><a href="{esc(item_url(i.work_item_id))}">{esc(i.work_item_id)}</a> {esc(i.queue)} '
                     f'<span class="status">{esc(s.status)}</span></li>' for i, s in items)
    work = f"<h2>Denial work items</h2><ul>{linked}</ul>" if linked else ""
    return page(f"Claim {claim_id}", f'<table><tr><th>at (UTC)</th><th>stage</th><th>what</th></tr>{rows}</table>'
                + work, session)


def render_login(session: Session | None, login_csrf: str, target: str, user: str = "",
                 error: str | None = None) -> str:
    body = (f'<form class="action" method="post" action="/login">'
            f'<input type="hidden" name="csrf" value="{esc(login_csrf)}">'
            f'<input type="hidden" name="next" value="{esc(local_path(target))}">'
            f'<p><label>user id <input type="text" name="user" value="{esc(user)}" required maxlength="64" '
            f'autocomplete="username"></label></p>'
            f'<p><label>token <input type="password" name="token" required autocomplete="current-password">'
            f'</label></p><button type="submit">log in</button></form>'
            f'<p class="note">The token is the one <code>claims run</code> / <code>claims web</code> printed '
            f'(or CLAIMS_WEB_TOKEN). Your user id is recorded on every action.</p>')
    return page("Log in", body, session, flash=[("error", error)] if error else [])


def render_message(title: str, text: str, session: Session | None, *, link: tuple[str, str] | None = None) -> str:
    more = f' <a href="{esc(link[0])}">{esc(link[1])}</a>' if link else ""
    return page(title, f"<p>{esc(text)}{more}</p>", session)
