"""The biller's web page: the denial work queues in a browser (issue 6).

Server-rendered HTML (aiohttp, inline CSS, no script, no external asset) over the same
``DenialDesk`` as ``claims denials``: every page reads the queues back from the topics,
every action is a ``DenialAction`` the desk checks against the item's state first, so a
refused action says why and publishes nothing.

Reading is open; acting needs the configured token: a biller logs in once (user id +
token) and gets a random session id in an HttpOnly, SameSite=Strict cookie, kept in
memory here (never the token), with a per-session CSRF token every form carries. Scripts
send ``Authorization: Bearer <token>`` and a ``user`` field instead and get JSON back.

PHI: ids, codes, dates of service and amounts only; the member id masked but for its
last 4; never a name, birth date, address or EHR note. Everything rendered is escaped.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from engine.denials.desk import (
    ActionRefused,
    ActionRequest,
    DenialDesk,
    NoSuchWorkItem,
    find_item,
    mask_member_id,
    today,
)
from engine.denials.work_items import (
    SORTS,
    TRANSITIONS,
    ClaimCorrections,
    FoldedQueues,
    LineCorrection,
    QueueOverview,
    WorkItemAccounting,
    WorkItemState,
    WorkListEntry,
    appeal_deadline,
    days_left,
    queue_overview,
    work_item_accounting,
    work_list,
)
from engine.model.events import ClaimSubmitted, DenialAction, DenialActionType, DenialWorkItem, Finding
from engine.ops.monitor import Monitor
from engine.ops.timeline import TimelineEntry, claim_family, claim_timeline, read_claim_events
from engine.posting.routing import DenialRouting
from engine.settings import Settings
from engine.web.dashboard import ops_routes
from engine.wire.codec import Codec

log = logging.getLogger(__name__)

A = DenialActionType
SESSION_COOKIE = "claimflow_session"
LOGIN_COOKIE = "claimflow_login"  # login CSRF: a random value the login form must echo
SESSION_TTL_S = 8 * 3600.0  # a working day
MAX_SESSIONS = 10_000  # a bound on memory: the oldest session goes first
#: User ids as the events record them: an id, no spaces (not a name). ``engine`` and
#: ``payer:…`` are the engine's and the payer's own actors, never a biller.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
RESERVED_USERS = frozenset({"engine"})

#: URL name → action a biller may take; APPEAL_DECIDED and RESUBMIT_REJECTED are the
#: payer's and the engine's, never offered.
ACTIONS: dict[str, DenialActionType] = {
    "claim": A.CLAIM,
    "resubmit": A.RESUBMIT,
    "void": A.VOID,
    "appeal": A.APPEAL,
    "writeoff": A.WRITE_OFF,
    "reopen": A.REOPEN,
}
ACTION_LABELS: dict[DenialActionType, str] = {
    A.CLAIM: "Claim (assign to me)",
    A.RESUBMIT: "Resubmit a corrected claim",
    A.VOID: "Void the claim",
    A.APPEAL: "Appeal",
    A.WRITE_OFF: "Write off",
    A.REOPEN: "Reopen",
}

HEADERS = {
    # No script, no frame, no external anything: the page needs none of it.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # claim data: not kept in a shared cache or the back button
}


# --- rendering helpers ------------------------------------------------------------------


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


def local_path(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def item_url(work_item_id: str) -> str:
    return "/items/" + quote(work_item_id, safe="")


def queue_url(queue: str, sort: str | None = None) -> str:
    return "/queues/" + quote(queue, safe="") + (f"?{urlencode({'sort': sort})}" if sort else "")


def claim_url(claim_id: str) -> str:
    return "/claims/" + quote(claim_id, safe="")


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff}header .who{margin-left:auto}
main{padding:1em 1.2em;max-width:1200px}
h1{font-size:1.35em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff;margin-bottom:1em}
th,td{border:1px solid #d0d5dc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:13em}
.expired{color:#b00020;font-weight:600}.msg{padding:.5em .8em;margin:.5em 0;border-radius:3px}
.ok{background:#e3f4e6;border:1px solid #5a9e66}.error{background:#fde8ea;border:1px solid #b00020}
.note{color:#555}form.action{background:#fff;border:1px solid #d0d5dc;padding:.6em .8em;margin:.6em 0}
form.action h3{margin:0 0 .4em;font-size:1em}label{margin-right:1em}
input[type=text],input[type=password]{padding:.15em .3em}button{padding:.25em .9em}
.status{font-weight:600}td.when{white-space:nowrap}form.inline{display:inline}
"""


@dataclass
class Session:
    """A logged-in biller: who, the CSRF token their forms carry, messages for the next page."""

    user: str
    csrf: str
    expires_at: float
    flash: list[tuple[str, str]] = field(default_factory=list)


class Sessions:
    """In-memory sessions, keyed by a hash of the cookie value (the raw value is not kept)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, limit: int = MAX_SESSIONS) -> None:
        self.ttl_s, self.limit = ttl_s, limit
        self._by_key: dict[str, Session] = {}

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def new(self, user: str) -> tuple[str, Session]:
        now = time.monotonic()
        self._by_key = {k: s for k, s in self._by_key.items() if s.expires_at > now}
        while len(self._by_key) >= self.limit:
            self._by_key.pop(next(iter(self._by_key)))
        session_id = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), now + self.ttl_s)
        self._by_key[self._key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        key = self._key(session_id)
        session = self._by_key.get(key)
        if session is not None and session.expires_at <= time.monotonic():
            del self._by_key[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._by_key.pop(self._key(session_id), None)


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time, on bytes; an empty configured token matches nothing."""
    if not token or given is None:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def valid_user_id(user: str) -> bool:
    return bool(USER_ID.fullmatch(user)) and user.lower() not in RESERVED_USERS


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
            f'<title>{esc(title)} · Claimflow</title><style>{CSS}</style></head><body>'
            f'<header><a href="/"><b>Claimflow</b> denial queues</a> <a href="/dashboard">ops dashboard</a>'
            f'{who}</header>'
            f'<main><h1>{esc(title)}</h1>{messages}{body}</main></body></html>')


def kv_table(rows: Iterable[tuple[str, str]]) -> str:
    """Rows of (label, already-escaped HTML)."""
    return '<table class="kv">' + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


# --- pages (pure: data in, HTML out) ------------------------------------------------------


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


def allowed_actions(state: WorkItemState) -> list[DenialActionType]:
    """The biller actions the item's status allows now (``engine.denials.work_items.TRANSITIONS``)."""
    return [kind for kind in ACTIONS.values() if state.status in TRANSITIONS[kind]]


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


# --- forms → requests ------------------------------------------------------------------------


class FormError(ValueError):
    """A form field that cannot be read; nothing was published."""


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise FormError(f"{what}: a whole number, got {text.strip()!r}") from None


def _amount(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise FormError(f"{what}: an amount like 120.00, got {text.strip()!r}") from None
    if not value.is_finite() or value < 0:
        raise FormError(f"{what}: an amount of 0.00 or more, got {text.strip()!r}")
    return value.quantize(Decimal("0.01"))


def _code_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip().upper() for part in re.split(r"[,\s]+", text) if part.strip())


def parse_corrections(form: Mapping[str, str], claim: ClaimSubmitted) -> ClaimCorrections:
    """The resubmit form against the standing claim: a field changes a line only when it
    differs from what the claim has, so an untouched form is a plain resubmission."""
    fixes: list[LineCorrection] = []
    remove: set[int] = set()
    for ln in claim.lines:
        prefix = f"line-{ln.line_number}-"
        if form.get(prefix + "drop"):
            remove.add(ln.line_number)
            continue
        change: dict[str, object] = {}
        code = form.get(prefix + "code", "").strip().upper()
        if code and code != ln.procedure_code:
            change["procedure_code"] = code
        if prefix + "modifiers" in form:
            modifiers = _code_list(form[prefix + "modifiers"])
            if modifiers != tuple(ln.modifiers):
                change["modifiers"] = modifiers
        units = form.get(prefix + "units", "").strip()
        if units:
            count = _int(units, f"line {ln.line_number} units")
            if count < 1:
                raise FormError(f"line {ln.line_number} units: at least 1")
            if count != ln.units:
                change["units"] = count
        pointers = form.get(prefix + "pointers", "").strip()
        if pointers:
            parsed = tuple(_int(p, f"line {ln.line_number} dx pointers") for p in re.split(r"[,\s]+", pointers) if p)
            if parsed != tuple(ln.dx_pointers):
                change["dx_pointers"] = parsed
        charge = form.get(prefix + "charge", "").strip()
        if charge:
            change["charge"] = _amount(charge, f"line {ln.line_number} charge")
        if change:
            fixes.append(LineCorrection(ln.line_number, **change))  # type: ignore[arg-type]
    diagnoses: tuple[str, ...] | None = None
    if "diagnoses" in form:
        given = _code_list(form["diagnoses"])
        if not given:
            raise FormError("diagnoses: at least one code")
        diagnoses = given if given != tuple(claim.diagnoses) else None
    if remove and len(remove) == len(claim.lines):
        raise FormError("every line is dropped: void the claim instead")
    return ClaimCorrections(lines=tuple(fixes), diagnoses=diagnoses, remove_lines=frozenset(remove))


def _text(form: Mapping[str, str], name: str, limit: int = 500) -> str | None:
    value = form.get(name, "").strip()
    if len(value) > limit:
        raise FormError(f"{name}: at most {limit} characters")
    return value or None


def parse_action(kind: DenialActionType, form: Mapping[str, str], user: str,
                 claim: ClaimSubmitted | None = None) -> ActionRequest:
    """The form of one action as the desk's request; ``claim`` (the standing claim) is
    needed for a resubmission only."""
    note = _text(form, "note")
    if kind == A.APPEAL and not note:
        raise FormError("an appeal needs a note: the grounds of the appeal")
    if kind == A.WRITE_OFF:
        reason = _text(form, "adjustment_reason", 10)
        if not reason:
            raise FormError("a write-off needs an adjustment reason")
        amount = form.get("amount", "").strip()
        return ActionRequest(kind, user, note=note, adjustment_reason=reason.upper(),
                             amount=_amount(amount, "amount") if amount else None)
    if kind == A.RESUBMIT:
        if claim is None:
            raise FormError("the standing claim is not on claims-submitted")
        standing = form.get("standing_claim_id", "").strip()
        if standing and standing != claim.claim_id:
            raise FormError(f"the claim standing at the payer is now {claim.claim_id}, not {standing}: "
                            f"reload the item and correct that one")
        return ActionRequest(kind, user, note=note, corrections=parse_corrections(form, claim),
                             force=bool(form.get("force")))
    return ActionRequest(kind, user, note=note)


def redact(text: str, claim: ClaimSubmitted | None) -> str:
    """A refusal message as shown: the patient's birth date, should a check ever quote it,
    is blanked (the scrubber's SCRUB_DOS_BEFORE_BIRTH no longer does; this guards the page
    against the next rule that might); everything else is ids and codes."""
    if claim is not None and claim.patient_birth_date is not None:
        text = text.replace(claim.patient_birth_date.isoformat(), "[birth date]")
    return text


def refusal_lines(exc: ActionRefused, claim: ClaimSubmitted | None) -> list[str]:
    """What the biller reads: why, and each finding of a claim that failed the checks."""
    findings: list[Finding] = exc.findings
    if not findings:
        return [redact(str(exc), claim)]
    return ["The corrected claim fails the checks; nothing was sent:",
            *(redact(f"{f.severity} {f.rule_id} {f.element}: {f.message}", claim) for f in findings)]


# --- the application ---------------------------------------------------------------------------


@dataclass
class Actor:
    """Who acts, and their session (None: a script with the bearer token)."""

    user: str
    session: Session | None = None


DESK = web.AppKey("desk", DenialDesk)
TOKEN = web.AppKey("token", str)
SESSIONS = web.AppKey("sessions", Sessions)
ROUTING = web.AppKey("routing", DenialRouting)


def _session(request: web.Request) -> Session | None:
    return request.app[SESSIONS].get(request.cookies.get(SESSION_COOKIE))


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _see_other(location: str) -> web.Response:
    """Post/redirect/get: the browser reloads the page, not the form."""
    return web.Response(status=303, headers={"Location": location})


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    return response


async def overview(request: web.Request) -> web.Response:
    folded = await request.app[DESK].queues()
    return _html(render_overview(queue_overview(folded.items, today()),
                                 work_item_accounting(s for _, s in folded.items), len(folded.refused),
                                 _session(request)))


async def queue_page(request: web.Request) -> web.Response:
    queue = request.match_info["queue"]
    session = _session(request)
    if queue not in request.app[ROUTING].queues():
        return _html(render_message("No such queue", f"There is no queue {queue}.", session, link=("/", "queues")),
                     404)
    sort = request.query.get("sort", "priority")
    if sort not in SORTS:
        return _html(render_message("Unknown sort", f"Sort by one of {', '.join(SORTS)}.", session,
                                    link=(queue_url(queue), queue)), 400)
    desk = request.app[DESK]
    folded = await desk.queues()
    on = today()
    entries = work_list(folded.items, queue, on, sort=sort, appeal_days_by_payer=desk.appeal_days)
    listed = {e.item.work_item_id for e in entries}
    others = [(i, s) for i, s in folded.items if i.queue == queue and i.work_item_id not in listed]
    return _html(render_work_list(queue, sort, entries, others, on, session))


async def _standing_claim(desk: DenialDesk, state: WorkItemState) -> ClaimSubmitted | None:
    try:
        return await desk.claim(state.current_claim_id)
    except ActionRefused:
        return None


async def item_page(request: web.Request) -> web.Response:
    ref = request.match_info["work_item_id"]
    desk = request.app[DESK]
    session = _session(request)
    folded: FoldedQueues = await desk.queues()
    try:
        item, state = find_item(folded.items, ref)
    except ActionRefused as exc:
        return _html(render_message("No such work item", str(exc), session, link=("/", "queues")), 404)
    claim = await _standing_claim(desk, state)
    flash = session.flash[:] if session else []
    if session:
        session.flash.clear()
    return _html(render_item(item, state, claim, desk.appeal_days, today(), session, flash=flash,
                             refused=folded.refused))


async def claim_page(request: web.Request) -> web.Response:
    claim_id = request.match_info["claim_id"]
    desk = request.app[DESK]
    session = _session(request)
    events, folded = await asyncio.gather(read_claim_events(desk.settings, desk.bootstrap, desk.codec), desk.queues())
    entries = claim_timeline(claim_id, events)
    if not entries:
        return _html(render_message("No such claim", f"No claim {claim_id} on claims-submitted.", session,
                                    link=("/", "queues")), 404)
    family = {c.claim_id for c in claim_family(claim_id, events.claims)}
    items = [(i, s) for i, s in folded.items if i.claim_id in family]
    return _html(render_timeline(claim_id, entries, items, session))


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


def _new_login_csrf(request: web.Request, response: web.StreamResponse) -> str:
    value = secrets.token_urlsafe(24)
    response.set_cookie(LOGIN_COOKIE, value, httponly=True, samesite="Strict", path="/login", max_age=3600,
                        secure=request.secure)
    return value


async def login_form(request: web.Request) -> web.Response:
    response = _html("")
    response.text = render_login(_session(request), _new_login_csrf(request, response),
                                 request.query.get("next", "/"))
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = {k: str(v) for k, v in (await request.post()).items()}
    user, target = form.get("user", "").strip(), local_path(form.get("next"))
    expected = request.cookies.get(LOGIN_COOKIE, "")

    def again(error: str, status: int) -> web.Response:
        response = _html("", status)
        response.text = render_login(None, _new_login_csrf(request, response), target,
                                     user if valid_user_id(user) else "", error)
        return response

    if not expected or not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
        return again("The login form expired (or cookies are off): try again.", 403)
    if not valid_user_id(user):
        return again("User id: letters, digits, '.', '_', '@' or '-', no spaces (an id, not a name).", 400)
    if not token_matches(form.get("token"), request.app[TOKEN]):
        log.warning("web: failed login for user %s", user)  # the id only; never the token given
        return again("Wrong user id or token.", 401)
    request.app[SESSIONS].drop(request.cookies.get(SESSION_COOKIE))
    session_id, session = request.app[SESSIONS].new(user)
    session.flash.append(("ok", f"Logged in as {user}."))
    response = _see_other(target)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="Strict", path="/",
                        max_age=int(SESSION_TTL_S), secure=request.secure)  # Secure whenever served over HTTPS
    response.del_cookie(LOGIN_COOKIE, path="/login")
    log.info("web: user %s logged in", user)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    session = _session(request)
    if session is not None and hmac.compare_digest(str(form.get("csrf", "")).encode(), session.csrf.encode()):
        request.app[SESSIONS].drop(request.cookies.get(SESSION_COOKIE))
    response = _see_other("/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def _refuse_unauthenticated(request: web.Request, ref: str, token_given: bool) -> web.Response:
    if token_given:
        return web.json_response({"error": "invalid token"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="claimflow"'})
    response = _html(render_message("Log in to act", "Acting on a work item needs you to log in with the token; "
                                    "nothing was done.", None,
                                    link=("/login?" + urlencode({"next": item_url(ref)}), "log in")), 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="claimflow"'
    return response


async def authenticate(request: web.Request, form: Mapping[str, str]) -> Actor | web.Response:
    """Who acts: a valid bearer token + a ``user`` field, or a session whose CSRF token the
    form carries. Anything else is refused before the desk is asked for anything."""
    ref = request.match_info.get("work_item_id", "")
    header = request.headers.get("Authorization")
    if header is not None:
        if not token_matches(bearer(header), request.app[TOKEN]):
            return _refuse_unauthenticated(request, ref, True)
        user = form.get("user", "").strip()
        if not valid_user_id(user):
            return web.json_response({"error": "a user id is required: letters, digits, '.', '_', '@' or '-'"},
                                     status=400)
        return Actor(user)
    session = _session(request)
    if session is None:
        return _refuse_unauthenticated(request, ref, False)
    if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
        return _html(render_message("Form expired", "This form does not belong to your session (reload the page "
                                    "and try again); nothing was done.", session, link=(item_url(ref), ref)), 403)
    return Actor(session.user, session)


async def act(request: web.Request) -> web.StreamResponse:
    ref, name = request.match_info["work_item_id"], request.match_info["action"]
    kind = ACTIONS.get(name)
    if kind is None:
        return _html(render_message("No such action", f"There is no action {name}.", _session(request)), 404)
    form = {k: str(v) for k, v in (await request.post()).items()}
    actor = await authenticate(request, form)
    if isinstance(actor, web.Response):
        return actor
    desk = request.app[DESK]
    claim: ClaimSubmitted | None = None
    try:
        _, state = await desk.item(ref)
        if kind in (A.RESUBMIT, A.VOID):  # corrections read it; a refusal is redacted with it
            claim = await _standing_claim(desk, state)
        action, after = await desk.act(ref, parse_action(kind, form, actor.user, claim))
    except (ActionRefused, FormError) as exc:
        lines = refusal_lines(exc, claim) if isinstance(exc, ActionRefused) else [str(exc)]
        log.info("web: %s on %s by %s refused", kind, ref, actor.user)
        missing = isinstance(exc, NoSuchWorkItem)
        if actor.session is None:
            status = 404 if missing else 400 if isinstance(exc, FormError) else 409
            return web.json_response({"error": lines[0], "findings": lines[1:]}, status=status)
        if missing:
            return _html(render_message("No such work item", lines[0], actor.session, link=("/", "queues")), 404)
        actor.session.flash.extend(("error", line) for line in lines)
        return _see_other(item_url(ref))
    log.info("web: %s %s on %s by %s", action.action_id, kind, action.work_item_id, actor.user)
    if actor.session is None:
        return web.json_response({"action_id": action.action_id, "work_item_id": action.work_item_id,
                                  "action": str(kind), "status": str(after.status),
                                  "replacement_claim_id": action.replacement_claim_id})
    sent = f" (claim {action.replacement_claim_id})" if action.replacement_claim_id else ""
    actor.session.flash.append(("ok", f"{action.action_id}: {kind} on {action.work_item_id}{sent} → {after.status}"))
    return _see_other(item_url(action.work_item_id))


def make_app(desk: DenialDesk, token: str, monitor: Monitor | None = None) -> web.Application:
    """The page over one desk. ``token`` is what a biller logs in with; it must be set.
    With a ``monitor``, the ops dashboard, ``/status`` and ``/metrics`` are served too."""
    if not token:
        raise ValueError("the web page needs a token (CLAIMS_WEB_TOKEN, or one drawn at random)")
    app = web.Application(middlewares=[security_headers], client_max_size=256 * 1024)
    app[DESK] = desk
    app[TOKEN] = token
    app[SESSIONS] = Sessions()
    app[ROUTING] = DenialRouting.load(desk.settings.denial_routing_file)
    app.add_routes([
        web.get("/", overview),
        web.get("/health", health),
        web.get("/login", login_form),
        web.post("/login", login),
        web.post("/logout", logout),
        web.get("/queues/{queue}", queue_page),
        web.get("/items/{work_item_id}", item_page),
        web.post("/items/{work_item_id}/{action}", act),
        web.get("/claims/{claim_id}", claim_page),
    ])
    if monitor is not None:
        app.add_routes(ops_routes(monitor))
    return app


def _warm(desk: DenialDesk) -> None:
    """Reference data (fees, payers, coding tables) loaded before the first request, off
    the event loop, so the first page or resubmission does not stall every other one."""
    _ = desk.ctx, desk.coding


class WebServer:
    """The page served on ``settings.web_host:settings.web_port`` (port 0: any free port)."""

    def __init__(self, settings: Settings, bootstrap: str, codec: Codec, token: str,
                 monitor: Monitor | None = None) -> None:
        self.settings = settings
        self.desk = DenialDesk(settings, bootstrap, codec)
        self.app = make_app(self.desk, token, monitor)
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Bind and serve; the base URL, e.g. ``http://127.0.0.1:8088/``."""
        await asyncio.to_thread(_warm, self.desk)
        runner = web.AppRunner(self.app, access_log_format='%a "%r" %s %b %Tfs')
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.web_host, self.settings.web_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}/"

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

