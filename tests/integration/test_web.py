"""The biller's web page in a real browser, on a real broker: headless Chromium (Debian's
``chromium``, driven by Playwright, no browser download) opens the page after a seeded
run, is refused an action before logging in (nothing is published), logs in, goes from
the overview to a queue to an item whose member id it sees masked, claims it, is told why
a correction the coding checks refuse was not sent, resubmits the denied claim, and
reloads until the payer's answer shows the item RESOLVED_PAID with money recovered; the
topics agree (a frequency-7 replacement naming the denied claim, and its PAID remittance)."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop, start_worker, stop_process
from engine.denials.desk import DenialDesk, mask_member_id
from engine.denials.work_items import WorkItemState, WorkItemStatus
from engine.model.events import ClaimSubmitted, DenialAction, DenialWorkItem, Remittance, RemittanceOutcome
from engine.runtime.kafka import read_events
from engine.settings import Settings
from engine.web.app import WebServer
from engine.wire.codec import default_codec
from simulators.payer.adjudication import PayerBook
from tests.fixtures.kafka import SettingsFactory, on_broker

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CLAIMS_CHROMIUM", "/usr/bin/chromium")
WAIT_S = 60.0
USER = "biller-7"
#: Queues whose denials the payer simulator can only have drawn at random (and draws only
#: on originals): a plain resubmission of such a claim is paid.
RANDOM_DENIAL_QUEUES = ("denials.missing-information", "denials.medical-necessity", "denials.coding", "denials.other")
#: CARCs a deterministic rule gives, which a replacement with the same content meets again.
RULE_CARCS = frozenset({"31", "26", "27", "29", "129", "18", "197", "15"})


def paid_on_resubmission(items: list[tuple[DenialWorkItem, WorkItemState]], book: PayerBook
                         ) -> tuple[DenialWorkItem, WorkItemState]:
    """An open item that a plain resubmission gets paid: every CARC on it is one no rule of
    its payer gives. Medicaid first (no cost sharing, so what it pays is recovered), then
    the most money."""

    def by_rule(payer_id: str) -> frozenset[str]:
        profile = book.payers[payer_id]
        return RULE_CARCS | set(profile.non_covered) | {rule.carc for rule in profile.bundled}

    candidates = [(i, s) for i, s in items if i.queue in RANDOM_DENIAL_QUEUES and s.status == WorkItemStatus.OPEN
                  and not ({i.carc, *i.all_carcs} & by_rule(i.payer_id))]
    assert candidates, f"no randomly denied item in {RANDOM_DENIAL_QUEUES}: {[(i.queue, i.carc) for i, _ in items]}"
    return min(candidates, key=lambda c: (c[0].payer_id != "MCD01", -c[0].amount_at_risk, c[0].work_item_id))


async def text(page: Page) -> str:
    return await page.inner_text("body")


async def follow(page: Page, selector: str) -> None:
    """Click a link or a form's button and wait for the page it leads to (after redirects)."""
    async with page.expect_navigation():
        await page.click(selector)


@on_broker("kafka")
async def test_a_biller_resubmits_a_denied_claim_in_the_browser_and_sees_it_paid(
        settings_factory: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (`make browser`) or set CLAIMS_CHROMIUM")
    monkeypatch.setenv("CLAIMS_PAYER_TIME_SCALE", "0")  # the processes read it: payments come at once
    settings: Settings = replace(settings_factory(payer_time_scale=0.0, web_host="127.0.0.1", web_port=0), seed=5)
    codec = default_codec(settings.schemas_dir)
    bootstrap = settings.bootstrap_servers
    options = RunOptions(encounters=200, rate=None, seed=5, bad_rate=0.0, resend_rate=0.0, summary_path=None,
                         timeout_s=240, live=False)
    summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))
    assert summary["settled"] is True and summary["denied"] > 0

    desk = DenialDesk(settings, bootstrap, codec)
    item, _ = paid_on_resubmission((await desk.queues()).items, PayerBook.load(settings.payer_profiles_file))
    denied = await desk.claim(item.claim_id)
    assert await read_events(settings, bootstrap, codec, "denial-actions", DenialAction) == []

    # run_closed_loop stopped its worker and payer: the replacement needs both again.
    worker = start_worker(settings, bootstrap)
    payer = start_worker(settings, bootstrap, ("simulate", "payer"), settings.payer_log_file)
    token = secrets.token_urlsafe(24)
    server = WebServer(settings, bootstrap, codec, token)
    screenshot = tmp_path / "denial-item.png"
    try:
        base = await server.start()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                item_url = f"{base}items/{item.work_item_id}"

                # Not logged in: the page reads, the member id masked, but an action is refused.
                await page.goto(item_url)
                shown = await text(page)
                assert mask_member_id(denied.member_id) in shown and denied.member_id not in shown
                assert denied.patient_last_name not in shown and str(denied.patient_birth_date) not in shown
                async with page.expect_navigation() as refused:
                    await page.click("#form-resubmit button[type=submit]")
                response = await refused.value
                assert response is not None and response.status == 401
                assert "Log in to act" in await text(page)
                assert await read_events(settings, bootstrap, codec, "denial-actions", DenialAction) == []

                # Log in from the refusal's link; back on the item.
                await follow(page, "main a[href^='/login?next=']")
                await page.fill("input[name=user]", USER)
                await page.fill("input[name=token]", token)
                async with page.expect_navigation(url=item_url):
                    await page.click("form[action='/login'] button[type=submit]")
                assert f"logged in as {USER}" in await text(page)

                # Overview → the item's queue (sorted by amount) → the item.
                await page.goto(base)
                overview = await text(page)
                assert "$ at risk" in overview and "recovered $" in overview and item.queue in overview
                await follow(page, f"a[href='/queues/{item.queue}']")
                await follow(page, f"a[href='/queues/{item.queue}?sort=amount']")
                assert f"{item.queue} by amount" in await text(page)
                await follow(page, f"a[href='/items/{item.work_item_id}']")
                assert page.url == item_url

                # Claim it, then resubmit the claim as it stands (the denial was the payer's draw).
                await follow(page, "#form-claim button[type=submit]")
                assert f"CLAIM on {item.work_item_id}" in await text(page)
                assert await page.inner_text("#status") == "IN_PROGRESS"
                # A correction the coding checks refuse says why, and sends nothing.
                await page.fill("#form-resubmit input[name=line-1-modifiers]", "ZZ")
                await follow(page, "#form-resubmit button[type=submit]")
                errors = [await m.inner_text() for m in await page.query_selector_all(".msg.error")]
                assert errors[0] == "The corrected claim fails the checks; nothing was sent:"
                assert any(e.startswith("ERROR MODIFIER_UNKNOWN") and "=ZZ" in e for e in errors[1:]), errors
                assert await page.inner_text("#status") == "IN_PROGRESS"
                assert [str(a.action) for a in await read_events(settings, bootstrap, codec, "denial-actions",
                                                                 DenialAction)] == ["CLAIM"]
                await page.fill("#form-resubmit input[name=note]", "resubmitted as billed")
                await follow(page, "#form-resubmit button[type=submit]")
                assert f"RESUBMIT on {item.work_item_id}" in await text(page)

                # The engine checks and sends it, the payer answers: reload until it shows.
                deadline = time.monotonic() + WAIT_S
                while (status := await page.inner_text("#status")) != "RESOLVED_PAID":
                    assert status == "RESUBMITTED", f"the replacement was not paid: {await text(page)}"
                    assert time.monotonic() < deadline, f"no answer within {WAIT_S:.0f} s: still {status}"
                    await page.reload()
                recovered = Decimal((await page.inner_text("#recovered")).replace(",", ""))
                assert recovered > 0
                await page.screenshot(path=str(screenshot), full_page=True)

                await page.goto(f"{base}claims/{item.claim_id}")
                timeline = await text(page)
                assert f"replacement of {item.claim_id}" in timeline and "RESUBMIT on" in timeline
            finally:
                await browser.close()
    finally:
        await server.stop()
        stop_process(worker)
        stop_process(payer)
        if screenshot.exists() and os.environ.get("CLAIMS_TEST_ARTIFACTS"):
            artifacts = Path(os.environ["CLAIMS_TEST_ARTIFACTS"])
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copy(screenshot, artifacts / screenshot.name)

    # The topics say the same: one replacement of the denied claim, paid; the biller's actions.
    _, state = await desk.item(item.work_item_id)
    assert (state.status, state.assignee, state.recovered_amount) == (WorkItemStatus.RESOLVED_PAID, USER, recovered)
    claims = await read_events(settings, bootstrap, codec, "claims-submitted", ClaimSubmitted)
    replacements = [c for c in claims if c.original_claim_id == item.claim_id]
    assert [(c.claim_id, c.frequency_code) for c in replacements] == [(state.replacement_claim_id, "7")]
    remittances = await read_events(settings, bootstrap, codec, "remittances", Remittance)
    answers = [r for r in remittances if r.claim_id == state.replacement_claim_id]
    assert [r.outcome for r in answers] == [RemittanceOutcome.PAID]
    assert answers[0].paid_amount - state.paid_before == recovered
    actions = await read_events(settings, bootstrap, codec, "denial-actions", DenialAction)
    assert [(str(a.action), a.user) for a in actions if a.user == USER] == [("CLAIM", USER), ("RESUBMIT", USER)]
    assert screenshot.stat().st_size > 0
