"""engine.web.app without a broker: rendering (escaping, masking, money, which forms a status
offers), the resubmit form read back into ``ClaimCorrections``, and authentication
(login, session cookie, CSRF, bearer token) through aiohttp's test client with a stand-in
desk that only records what it is asked. Anything about topics is in
tests/integration/test_web.py, on the real broker."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any, cast

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from engine.denials.desk import ActionRefused, ActionRequest, DenialDesk, NoSuchWorkItem
from engine.denials.work_items import (
    TRANSITIONS,
    ClaimCorrections,
    FoldedQueues,
    LineCorrection,
    WorkItemState,
    WorkItemStatus,
    new_state,
    work_list,
)
from engine.model.events import (
    Address,
    ClaimLine,
    ClaimSubmitted,
    DenialAction,
    DenialActionType,
    DenialWorkItem,
    Finding,
    Severity,
    Subscriber,
)
from engine.settings import Settings
from engine.web.app import make_app
from engine.web.auth import (
    LOGIN_COOKIE,
    LOGIN_FAILURES_ALLOWED,
    SESSION_COOKIE,
    LoginThrottle,
    Sessions,
    bearer,
    local_path,
    token_matches,
    valid_user_id,
)
from engine.web.forms import ACTIONS, FormError, allowed_actions, parse_action, parse_corrections, redact, refusal_lines
from engine.web.render import esc, money, render_forms, render_item, render_work_list, resubmit_fields

A, S = DenialActionType, WorkItemStatus
TOKEN = "s3cret-token-for-the-unit-tests"
TODAY = date(2026, 3, 20)
BIRTH = date(1961, 7, 14)
MEMBER = "MCR555000111"


def denied_item(**changes: Any) -> DenialWorkItem:
    item = DenialWorkItem(
        work_item_id="DN-1", claim_id="C-1", remittance_id="R-1", encounter_id="ENC-1", payer_id="MCR01",
        category="missing-information", queue="denials.missing-information", carc="16", group_code="CO",
        all_carcs=["16"], rarcs=["MA130"], reasons=["CO-16: claim lacks information"],
        amount_at_risk=Decimal("1234.50"), billed_amount=Decimal("1234.50"),
        suggested_action="Supply the missing data and resubmit.", recoverable=True,
        date_of_service=date(2026, 2, 27), created_at=datetime(2026, 3, 10, 9, 0, tzinfo=UTC),
    )
    return dataclasses.replace(item, **changes)


def standing_claim(**changes: Any) -> ClaimSubmitted:
    """A claim full of PHI, so the tests can show none of it reaches the page."""
    day = date(2026, 2, 27)
    claim = ClaimSubmitted(
        claim_id="C-1", encounter_id="ENC-1", encounter_occurred_at=datetime(2026, 2, 27, tzinfo=UTC),
        patient_control_number="C-1", frequency_code="1", original_claim_id=None, payer_id="MCR01",
        member_id=MEMBER, patient_id="P-1", billing_npi="1234567893", rendering_npi="1245319599",
        date_of_service=day, place_of_service="11", diagnoses=["M17.11", "E11.9"],
        lines=[ClaimLine(1, "99214", ["25"], 1, Decimal("180.00"), [1, 2], day),
               ClaimLine(2, "20610", [], 2, Decimal("240.00"), [1], day)],
        total_charge=Decimal("420.00"), submitted_at=datetime(2026, 3, 1, tzinfo=UTC),
        subscriber=Subscriber("18", "Evelyn", "Marchetti", BIRTH, "F",
                              Address("12 Orchard Lane", "Springfield", "IL", "62704")),
        patient_first_name="Evelyn", patient_last_name="Marchetti", patient_birth_date=BIRTH, patient_sex="F",
        patient_address=Address("12 Orchard Lane", "Springfield", "IL", "62704"),
    )
    return dataclasses.replace(claim, **changes)


class Inputs(HTMLParser):
    """The fields a browser would post for one form: name → prefilled value (checkboxes
    only when checked), as the page renders them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag != "input" or not a.get("name"):
            return
        if a.get("type") == "checkbox" and "checked" not in a:
            return
        self.fields[str(a["name"])] = a.get("value") or ""


def posted(html: str) -> dict[str, str]:
    parser = Inputs()
    parser.feed(html)
    return parser.fields


# --- rendering --------------------------------------------------------------------------------


def test_money_is_a_decimal_with_two_places_and_a_float_is_refused() -> None:
    assert money(Decimal("1234.5")) == "1,234.50"
    assert money(Decimal("0")) == "0.00"
    with pytest.raises(TypeError):
        money(1234.5)  # type: ignore[arg-type]


def test_the_item_page_masks_the_member_id_and_shows_no_patient_data() -> None:
    claim = standing_claim()
    page = render_item(denied_item(), new_state(denied_item()), claim, {"MCR01": 120}, TODAY, None)
    assert "••••••••0111" in page and MEMBER not in page
    for phi in ("Evelyn", "Marchetti", "Orchard", "Springfield", "62704", BIRTH.isoformat(), "1961"):
        assert phi not in page, phi
    # What a biller needs is there: codes, lines, money, the deadline from the payer's window.
    for shown in ("M17.11 E11.9", "99214", "20610", "1,234.50", "240.00",
                  "2026-07-08 (110 days)", "CO-16: claim lacks information", "MA130", "OPEN"):
        assert shown in page, shown


def test_an_expired_deadline_is_flagged() -> None:
    page = render_item(denied_item(), new_state(denied_item()), standing_claim(), {"MCR01": 5}, TODAY, None)
    assert "2026-03-15" in page and "-5 days (expired)" in page


def test_everything_rendered_is_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    item = denied_item(reasons=[hostile], suggested_action='"><img src=x onerror=alert(1)>')
    state = dataclasses.replace(new_state(item), assignee="a<b")
    page = render_item(item, state, standing_claim(diagnoses=[hostile]), {}, TODAY, None)
    assert "<script>" not in page and "<img" not in page
    assert esc(hostile) in page and "a&lt;b" in page


@pytest.mark.parametrize("status", list(WorkItemStatus))
def test_only_the_forms_the_status_allows_are_shown(status: WorkItemStatus) -> None:
    state = dataclasses.replace(new_state(denied_item()), status=status)
    page = render_forms(denied_item(), state, standing_claim(), None)
    offered = {name for name in ACTIONS if f'id="form-{name}"' in page}
    expected = {name for name, kind in ACTIONS.items() if status in TRANSITIONS[kind]}
    assert offered == expected
    assert set(allowed_actions(state)) == {ACTIONS[n] for n in expected}
    assert "APPEAL_DECIDED" not in page and "RESUBMIT_REJECTED" not in page


def test_a_logged_out_page_says_to_log_in_and_a_logged_in_one_carries_the_csrf_token() -> None:
    item, state = denied_item(), new_state(denied_item())
    anonymous = render_forms(item, state, standing_claim(), None)
    assert "You are not logged in" in anonymous and 'name="csrf" value=""' in anonymous
    _, session = Sessions().new("biller-7")
    logged_in = render_forms(item, state, standing_claim(), session)
    assert "not logged in" not in logged_in
    assert logged_in.count(f'name="csrf" value="{session.csrf}"') == len(allowed_actions(state))


def test_the_work_list_links_rows_and_sort_headers_and_flags_expired_items() -> None:
    items = [(denied_item(), new_state(denied_item())),
             (denied_item(work_item_id="DN-2", claim_id="C-2", amount_at_risk=Decimal("10.00")),
              new_state(denied_item(work_item_id="DN-2", claim_id="C-2", amount_at_risk=Decimal("10.00"))))]
    entries = work_list(items, "denials.missing-information", TODAY, sort="amount", appeal_days_by_payer={"MCR01": 5})
    page = render_work_list("denials.missing-information", "amount", entries, [], TODAY, None)
    assert page.index("DN-1") < page.index("DN-2")
    assert 'href="/items/DN-1"' in page and 'href="/items/DN-2"' in page
    for sort in ("priority", "deadline", "amount", "age"):
        assert f'href="/queues/denials.missing-information?sort={sort}"' in page
    assert page.count("(expired)") == 2


# --- forms ------------------------------------------------------------------------------------------


def test_the_untouched_resubmit_form_is_a_plain_resubmission() -> None:
    claim = standing_claim()
    assert parse_corrections(posted(resubmit_fields(claim)), claim) == ClaimCorrections()


def test_the_resubmit_form_reads_back_into_corrections() -> None:
    claim = standing_claim()
    form = posted(resubmit_fields(claim)) | {
        "line-1-code": " 99213 ", "line-1-modifiers": "25, 59", "line-1-units": "1",
        "line-2-drop": "on", "line-2-units": "3",  # a dropped line's other fields do not matter
        "diagnoses": "m17.12, e11.9",
    }
    assert parse_corrections(form, claim) == ClaimCorrections(
        lines=(LineCorrection(1, procedure_code="99213", modifiers=("25", "59")),),
        diagnoses=("M17.12", "E11.9"), remove_lines=frozenset({2}))
    cleared = posted(resubmit_fields(claim)) | {"line-1-modifiers": "", "line-2-pointers": "2",
                                                "line-2-charge": "199.9"}
    assert parse_corrections(cleared, claim) == ClaimCorrections(lines=(
        LineCorrection(1, modifiers=()), LineCorrection(2, dx_pointers=(2,), charge=Decimal("199.90"))))


@pytest.mark.parametrize("change, message", [
    ({"line-1-units": "two"}, "line 1 units: a whole number"),
    ({"line-1-units": "0"}, "line 1 units: at least 1"),
    ({"line-2-pointers": "1,x"}, "line 2 dx pointers"),
    ({"line-2-charge": "-5"}, "line 2 charge"),
    ({"diagnoses": " , "}, "diagnoses: at least one code"),
    ({"line-1-drop": "on", "line-2-drop": "on"}, "void the claim instead"),
])
def test_a_bad_resubmit_form_is_refused(change: dict[str, str], message: str) -> None:
    claim = standing_claim()
    with pytest.raises(FormError, match=re.escape(message)):
        parse_corrections(posted(resubmit_fields(claim)) | change, claim)


def test_action_forms_become_desk_requests() -> None:
    assert parse_action(A.CLAIM, {}, "biller-7") == ActionRequest(A.CLAIM, "biller-7")
    with pytest.raises(FormError, match="appeal needs a note"):
        parse_action(A.APPEAL, {"note": "  "}, "biller-7")
    assert parse_action(A.APPEAL, {"note": "records attached"}, "biller-7").note == "records attached"
    with pytest.raises(FormError, match="adjustment reason"):
        parse_action(A.WRITE_OFF, {"adjustment_reason": ""}, "biller-7")
    wrote_off = parse_action(A.WRITE_OFF, {"adjustment_reason": "co45", "amount": "1,000.5"}, "biller-7")
    assert (wrote_off.adjustment_reason, wrote_off.amount) == ("CO45", Decimal("1000.50"))
    assert parse_action(A.WRITE_OFF, {"adjustment_reason": "16"}, "b").amount is None  # the desk's default
    claim = standing_claim()
    resubmit = parse_action(A.RESUBMIT, posted(resubmit_fields(claim)) | {"force": "on"}, "biller-7", claim)
    assert resubmit.force and resubmit.corrections == ClaimCorrections()
    with pytest.raises(FormError, match="reload the item"):  # the form was for a claim no longer standing
        parse_action(A.RESUBMIT, posted(resubmit_fields(claim)), "biller-7", standing_claim(claim_id="C-1-R2"))


def test_a_refusal_never_shows_the_birth_date() -> None:
    claim = standing_claim()
    finding = Finding("SCRUB_DOS_BEFORE_BIRTH", Severity.ERROR,
                      f"date of service 1960-01-01 is before the patient's birth date {BIRTH}", "date_of_service")
    refused = ActionRefused(f"claim C-1-R1 fails the checks: {finding.message}", [finding])
    headline, line = refusal_lines(refused, claim)
    assert "fails the checks" in headline
    assert line == "ERROR SCRUB_DOS_BEFORE_BIRTH date_of_service: date of service 1960-01-01 is before the " \
                   "patient's birth date [birth date]"
    assert refusal_lines(ActionRefused(f"refused on {BIRTH}"), claim) == ["refused on [birth date]"]
    assert redact("nothing to hide", claim) == "nothing to hide"


def test_small_auth_helpers() -> None:
    assert local_path("/items/DN-1?x=1") == "/items/DN-1?x=1"
    for outside in ("//evil.example/", "https://evil.example/", "/\\evil.example", "", None):
        assert local_path(outside) == "/"
    assert bearer(f"Bearer {TOKEN}") == TOKEN and bearer(f"bearer  {TOKEN} ") == TOKEN
    assert bearer("Basic abc") is None and bearer("Bearer ") is None and bearer(None) is None
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN[:-1], TOKEN)
    assert not token_matches("", "") and not token_matches(None, TOKEN)
    assert valid_user_id("biller-7") and valid_user_id("jane.doe@clinic")
    for bad in ("Jane Doe", "", "engine", "payer:MCR01", "x" * 65, "<b>"):
        assert not valid_user_id(bad), bad
    with pytest.raises(ValueError, match="needs a token"):
        make_app(cast(DenialDesk, FakeDesk()), "")


def test_sessions_expire_and_their_ids_are_not_kept() -> None:
    sessions = Sessions(ttl_s=-1.0)
    session_id, _ = sessions.new("biller-7")
    assert sessions.get(session_id) is None
    sessions = Sessions(limit=2)
    first, _ = sessions.new("a")
    sessions.new("b")
    sessions.new("c")
    assert sessions.get(first) is None  # the oldest went to make room
    assert all(first not in key for key in sessions._by_key)


# --- routing and authentication (a stand-in desk: no topics are involved) ---------------------------


class FakeDesk:
    """Records what the page asks; one open item, DN-1. Not a model of the topics."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.acted: list[tuple[str, ActionRequest]] = []
        self.item_ = denied_item()
        self.state = new_state(self.item_)

    @property
    def appeal_days(self) -> dict[str, int]:
        return {"MCR01": 120}

    async def queues(self) -> FoldedQueues:
        return FoldedQueues([(self.item_, self.state)], [])

    async def item(self, ref: str) -> tuple[DenialWorkItem, WorkItemState]:
        if ref not in ("DN-1", "C-1"):
            raise NoSuchWorkItem(f"no work item {ref}")
        return self.item_, self.state

    async def claim(self, claim_id: str) -> ClaimSubmitted:
        return standing_claim()

    async def act(self, ref: str, request: ActionRequest) -> tuple[DenialAction, WorkItemState]:
        if request.kind == A.REOPEN:
            raise ActionRefused("action DA-X: REOPEN is not allowed on work item DN-1 in status OPEN")
        self.acted.append((ref, request))
        action = DenialAction("DA-1", "DN-1", "C-1", request.kind, request.user, datetime.now(UTC))
        return action, dataclasses.replace(self.state, status=S.IN_PROGRESS, assignee=request.user)


@pytest_asyncio.fixture
async def web() -> AsyncIterator[tuple[TestClient[Any, Any], FakeDesk]]:
    desk = FakeDesk()
    async with TestClient(TestServer(make_app(cast(DenialDesk, desk), TOKEN))) as client:
        yield client, desk


async def _login(client: TestClient[Any, Any], user: str = "biller-7", token: str = TOKEN) -> Any:
    form = await client.get("/login?next=/items/DN-1")
    csrf = posted(await form.text())["csrf"]
    return await client.post("/login", data={"user": user, "token": token, "csrf": csrf, "next": "/items/DN-1"},
                             allow_redirects=False)


async def _csrf(client: TestClient[Any, Any]) -> str:
    page = await client.get("/items/DN-1")
    return posted(await page.text())["csrf"]


async def test_health_and_the_security_headers(web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, _ = web
    response = await client.get("/health")
    assert response.status == 200 and await response.text() == "ok"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    missing = await client.get("/nowhere")
    assert missing.status == 404 and missing.headers["X-Frame-Options"] == "DENY"


async def test_unknown_items_queues_actions_and_sorts(web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, desk = web
    assert (await client.get("/items/DN-404")).status == 404
    assert (await client.get("/queues/denials.nowhere")).status == 404
    assert (await client.get("/queues/denials.missing-information?sort=cost")).status == 400
    listed = await client.get("/queues/denials.missing-information?sort=deadline")
    assert listed.status == 200 and "DN-1" in await listed.text()
    nothing = await client.post("/items/DN-1/delete", headers={"Authorization": f"Bearer {TOKEN}"},
                                data={"user": "biller-7"})
    assert nothing.status == 404
    missing = await client.post("/items/DN-404/claim", headers={"Authorization": f"Bearer {TOKEN}"},
                                data={"user": "biller-7"})
    assert missing.status == 404 and desk.acted == []


async def test_acting_without_a_session_or_token_is_refused_and_does_nothing(
        web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, desk = web
    anonymous = await client.post("/items/DN-1/claim", data={"user": "biller-7"}, allow_redirects=False)
    assert anonymous.status == 401 and 'href="/login?next=%2Fitems%2FDN-1"' in await anonymous.text()
    wrong = await client.post("/items/DN-1/claim", data={"user": "biller-7"},
                              headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    forged = await client.post("/items/DN-1/claim", data={"user": "biller-7"}, cookies={SESSION_COOKIE: TOKEN})
    assert forged.status == 401
    assert desk.acted == []


async def test_a_bearer_token_acts_for_the_user_it_names(web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, desk = web
    auth = {"Authorization": f"Bearer {TOKEN}"}
    nobody = await client.post("/items/DN-1/claim", headers=auth, data={})
    assert nobody.status == 400 and desk.acted == []
    named = await client.post("/items/DN-1/claim", headers=auth, data={"user": "Jane Doe"})
    assert named.status == 400 and desk.acted == []
    done = await client.post("/items/DN-1/claim", headers=auth, data={"user": "biller-9"})
    assert done.status == 200
    assert await done.json() == {"action_id": "DA-1", "work_item_id": "DN-1", "action": "CLAIM",
                                 "status": "IN_PROGRESS", "replacement_claim_id": None}
    assert desk.acted == [("DN-1", ActionRequest(A.CLAIM, "biller-9"))]
    refused = await client.post("/items/DN-1/reopen", headers=auth, data={"user": "biller-9"})
    assert refused.status == 409 and "not allowed" in (await refused.json())["error"]
    bad_form = await client.post("/items/DN-1/appeal", headers=auth, data={"user": "biller-9"})
    assert bad_form.status == 400 and "appeal needs a note" in (await bad_form.json())["error"]
    assert len(desk.acted) == 1


async def test_login_sets_a_session_cookie_that_is_not_the_token(web: tuple[TestClient[Any, Any], FakeDesk],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    client, _ = web
    caplog.set_level(logging.DEBUG)
    wrong = await _login(client, token="guess-" + TOKEN)
    assert wrong.status == 401 and SESSION_COOKIE not in wrong.cookies
    assert "Wrong user id or token" in await wrong.text()
    name = await _login(client, user="Jane Doe")
    assert name.status == 400 and SESSION_COOKIE not in name.cookies
    ok = await _login(client)
    assert ok.status == 303 and ok.headers["Location"] == "/items/DN-1"
    header = next(h for h in ok.headers.getall("Set-Cookie") if h.startswith(SESSION_COOKIE + "="))
    value = header.split(";")[0].split("=", 1)[1]
    assert TOKEN not in value and len(value) >= 32
    attributes = {part.strip().lower() for part in header.split(";")[1:]}
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    assert TOKEN not in caplog.text and "guess-" not in caplog.text
    page = await client.get("/items/DN-1")
    assert "logged in as <b>biller-7</b>" in await page.text() and "Logged in as biller-7." in await page.text()


async def test_login_needs_the_forms_own_csrf_value_and_stays_on_this_site(
        web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, _ = web
    forged = await client.post("/login", data={"user": "biller-7", "token": TOKEN, "csrf": "x"},
                               allow_redirects=False)
    assert forged.status == 403 and SESSION_COOKIE not in forged.cookies
    form = await client.get("/login")
    assert LOGIN_COOKIE in form.cookies
    csrf = posted(await form.text())["csrf"]
    away = await client.post("/login", data={"user": "biller-7", "token": TOKEN, "csrf": csrf,
                                             "next": "//evil.example/"}, allow_redirects=False)
    assert away.status == 303 and away.headers["Location"] == "/"


async def test_a_session_acts_only_with_its_csrf_token(web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, desk = web
    assert (await _login(client)).status == 303
    no_csrf = await client.post("/items/DN-1/claim", data={}, allow_redirects=False)
    assert no_csrf.status == 403 and desk.acted == []
    bad_csrf = await client.post("/items/DN-1/claim", data={"csrf": "guess"}, allow_redirects=False)
    assert bad_csrf.status == 403 and desk.acted == []
    csrf = await _csrf(client)
    done = await client.post("/items/DN-1/claim", data={"csrf": csrf, "user": "someone-else"}, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/items/DN-1"
    assert desk.acted == [("DN-1", ActionRequest(A.CLAIM, "biller-7"))]  # the session's user, not the form's
    shown = await (await client.get("/items/DN-1")).text()
    assert "DA-1: CLAIM on DN-1 → IN_PROGRESS" in shown
    assert "DA-1: CLAIM" not in await (await client.get("/items/DN-1")).text()  # shown once

    refused = await client.post("/items/DN-1/reopen", data={"csrf": csrf}, allow_redirects=False)
    assert refused.status == 303
    shown = await (await client.get("/items/DN-1")).text()
    assert 'class="msg error"' in shown and "REOPEN is not allowed" in shown

    bad_form = await client.post("/items/DN-1/appeal", data={"csrf": csrf, "note": ""}, allow_redirects=False)
    assert bad_form.status == 303 and len(desk.acted) == 1
    assert "appeal needs a note" in await (await client.get("/items/DN-1")).text()

    assert (await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)).status == 303
    after = await client.post("/items/DN-1/claim", data={"csrf": csrf}, allow_redirects=False)
    assert after.status == 401 and len(desk.acted) == 1


async def test_the_resubmit_form_posts_the_corrections(web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, desk = web
    await _login(client)
    page = await (await client.get("/items/DN-1")).text()
    start = page.index('id="form-resubmit"')
    form = posted(page[start:page.index("</form>", start)])
    form |= {"line-2-drop": "on", "note": "line 2 was billed twice"}
    done = await client.post("/items/DN-1/resubmit", data=form, allow_redirects=False)
    assert done.status == 303
    (_, request), = desk.acted
    assert request.kind == A.RESUBMIT and request.user == "biller-7" and request.note == "line 2 was billed twice"
    assert request.corrections == ClaimCorrections(remove_lines=frozenset({2})) and not request.force


async def test_failed_logins_are_throttled_per_client(web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, _ = web
    for _ in range(LOGIN_FAILURES_ALLOWED):
        assert (await _login(client, token="guess")).status == 401
    throttled = await _login(client, token="guess")
    assert throttled.status == 429 and int(throttled.headers["Retry-After"]) > 0
    assert "Too many failed logins" in await throttled.text()
    right_token = await _login(client)  # the right token waits too: guessing must not pay
    assert right_token.status == 429
    bearer = await client.post("/items/DN-1/claim", data={"user": "biller-7"},
                               headers={"Authorization": "Bearer guess"})
    assert bearer.status == 429


def test_the_throttle_forgets_failures_older_than_its_window() -> None:
    now = [1000.0]
    throttle = LoginThrottle(allowed=2, window_s=60.0, clock=lambda: now[0])
    throttle.failed("10.0.0.1")
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == pytest.approx(60.0)
    assert throttle.retry_after("10.0.0.2") == 0  # per client
    now[0] += 61
    assert throttle.retry_after("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 0  # a success clears the count


async def test_no_server_software_or_version_in_the_headers(web: tuple[TestClient[Any, Any], FakeDesk]) -> None:
    client, _ = web
    for path in ("/health", "/login", "/no-such-page"):
        response = await client.get(path)
        server = response.headers.get("Server", "")
        assert "aiohttp" not in server.lower() and "python" not in server.lower(), (path, server)
