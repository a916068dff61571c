"""The billers' web page (issue 6): the aiohttp application over one ``DenialDesk`` (the same
as ``claims denials``), its routes and handlers, and the server that starts and stops it."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web

from engine.denials.desk import ActionRefused, DenialDesk, NoSuchWorkItem, find_item, today
from engine.denials.work_items import (
    SORTS,
    FoldedQueues,
    WorkItemState,
    queue_overview,
    work_item_accounting,
    work_list,
)
from engine.model.events import ClaimSubmitted, DenialActionType
from engine.ops.monitor import Monitor
from engine.ops.timeline import claim_family, claim_timeline, read_claim_events
from engine.posting.routing import DenialRouting
from engine.settings import Settings
from engine.web.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL_S,
    SESSIONS,
    THROTTLE,
    TOKEN,
    Actor,
    LoginThrottle,
    Sessions,
    bearer,
    csrf_matches,
    local_path,
    new_login_csrf,
    request_session,
    security_headers,
    token_matches,
    valid_user_id,
)
from engine.web.dashboard import ops_routes
from engine.web.forms import ACTIONS, FormError, parse_action, refusal_lines
from engine.web.render import (
    item_url,
    queue_url,
    render_item,
    render_login,
    render_message,
    render_overview,
    render_timeline,
    render_work_list,
)
from engine.wire.codec import Codec

log = logging.getLogger(__name__)

A = DenialActionType
DESK = web.AppKey("desk", DenialDesk)
ROUTING = web.AppKey("routing", DenialRouting)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _see_other(location: str) -> web.Response:
    """Post/redirect/get: the browser reloads the page, not the form."""
    return web.Response(status=303, headers={"Location": location})


async def overview(request: web.Request) -> web.Response:
    folded = await request.app[DESK].queues()
    return _html(render_overview(queue_overview(folded.items, today()),
                                 work_item_accounting(s for _, s in folded.items), len(folded.refused),
                                 request_session(request)))


async def queue_page(request: web.Request) -> web.Response:
    queue = request.match_info["queue"]
    session = request_session(request)
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
    session = request_session(request)
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
    session = request_session(request)
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


async def login_form(request: web.Request) -> web.Response:
    response = _html("")
    response.text = render_login(request_session(request), new_login_csrf(request, response),
                                 request.query.get("next", "/"))
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = {k: str(v) for k, v in (await request.post()).items()}
    user, target = form.get("user", "").strip(), local_path(form.get("next"))
    expected = request.cookies.get(LOGIN_COOKIE, "")

    def again(error: str, status: int) -> web.Response:
        response = _html("", status)
        response.text = render_login(None, new_login_csrf(request, response), target,
                                     user if valid_user_id(user) else "", error)
        return response

    throttle, client = request.app[THROTTLE], _client(request)
    wait = throttle.retry_after(client)
    if wait:
        response = again(f"Too many failed logins from this address: try again in {math.ceil(wait)} s.", 429)
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if not expected or not csrf_matches(form.get("csrf", ""), expected):
        return again("The login form expired (or cookies are off): try again.", 403)
    if not valid_user_id(user):
        return again("User id: letters, digits, '.', '_', '@' or '-', no spaces (an id, not a name).", 400)
    if not token_matches(form.get("token"), request.app[TOKEN]):
        throttle.failed(client)
        log.warning("web: failed login for user %s", user)  # the id only; never the token given
        return again("Wrong user id or token.", 401)
    throttle.succeeded(client)
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
    session = request_session(request)
    if session is not None and csrf_matches(str(form.get("csrf", "")), session.csrf):
        request.app[SESSIONS].drop(request.cookies.get(SESSION_COOKIE))
    response = _see_other("/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def _client(request: web.Request) -> str:
    """The address failures are counted against: the peer (a proxy in front is one client)."""
    return request.remote or "unknown"


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
        throttle, client = request.app[THROTTLE], _client(request)
        wait = throttle.retry_after(client)
        if wait:
            return web.json_response({"error": "too many failed logins from this address"}, status=429,
                                     headers={"Retry-After": str(math.ceil(wait))})
        if not token_matches(bearer(header), request.app[TOKEN]):
            throttle.failed(client)
            return _refuse_unauthenticated(request, ref, True)
        throttle.succeeded(client)
        user = form.get("user", "").strip()
        if not valid_user_id(user):
            return web.json_response({"error": "a user id is required: letters, digits, '.', '_', '@' or '-'"},
                                     status=400)
        return Actor(user)
    session = request_session(request)
    if session is None:
        return _refuse_unauthenticated(request, ref, False)
    if not csrf_matches(form.get("csrf", ""), session.csrf):
        return _html(render_message("Form expired", "This form does not belong to your session (reload the page "
                                    "and try again); nothing was done.", session, link=(item_url(ref), ref)), 403)
    return Actor(session.user, session)


async def act(request: web.Request) -> web.StreamResponse:
    ref, name = request.match_info["work_item_id"], request.match_info["action"]
    kind = ACTIONS.get(name)
    if kind is None:
        return _html(render_message("No such action", f"There is no action {name}.", request_session(request)), 404)
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
    app[THROTTLE] = LoginThrottle()
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
