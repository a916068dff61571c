"""Ops figures on a real broker. Consumer lag against a known backlog, rising while the
worker is paused and draining when it resumes. During a seeded `claims run`, the dashboard
in headless Chromium (Debian's chromium through Playwright) shows non-zero throughput,
with a screenshot kept as a test artifact. After the run, `/metrics` parsed with
prometheus-client's parser carries the summary's counts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from playwright.async_api import async_playwright
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop, start_worker, stop_process
from engine.ops.monitor import Monitor
from engine.settings import Settings
from engine.wire.codec import default_codec
from simulators.coverage import write_master_data
from simulators.ehr import plan_encounters, practice_for, send_planned
from simulators.payer.adjudication import PayerBook
from tests.fixtures.kafka import SettingsFactory

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CLAIMS_CHROMIUM", "/usr/bin/chromium")
WAIT_S = 90.0


async def _until(what: str, check: Callable[[], asyncio.Future[bool] | bool], timeout_s: float = WAIT_S) -> None:
    """Wait for ``check`` (a coroutine function or a plain one) to say yes, bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.25)  # between two reads of the broker: the wait itself is bounded
    pytest.fail(f"{what}: not within {timeout_s:.0f} s")


async def _send_encounters(settings: Settings, n: int, seed: int) -> None:
    codec = default_codec(settings.schemas_dir)
    book = PayerBook.load(settings.payer_profiles_file)
    practice = practice_for(seed, book)
    write_master_data(practice.records(), settings.master_data_dir, practice.authorizations)
    sent = await send_planned(settings, settings.bootstrap_servers,
                              plan_encounters(n, seed, 0.0, 0.0, codec, book, practice=practice), rate=None)
    assert sent == n


@contextlib.asynccontextmanager
async def monitoring(settings: Settings) -> AsyncIterator[Monitor]:
    monitor = Monitor(settings, settings.bootstrap_servers, default_codec(settings.schemas_dir))
    await monitor.start()
    try:
        yield monitor
    finally:
        await monitor.stop()


def _lag(monitor: Monitor, group: str, topic: str) -> int:
    return sum(row.lag for row in monitor.lags if row.group == group and row.topic == topic)


async def test_lag_matches_a_known_backlog_rises_while_the_worker_is_paused_and_drains(
        topic_settings: Settings) -> None:
    settings = topic_settings
    group = settings.app_id  # the engine worker's group
    await _send_encounters(settings, 200, seed=11)

    async with monitoring(settings) as monitor:
        # A group that never committed is not running: no lag rows, rather than the whole topic.
        await _until("the backlog read", lambda: sum(
            monitor.readback.consumer.highwater(TopicPartition(settings.topic("encounters"), p)) or 0
            for p in range(8)) == 200)
        await monitor.sample()
        assert not [row for row in monitor.lags if row.group == group]

        # A known commit: 30 records in on each partition that has them.
        tps = [TopicPartition(settings.topic("encounters"), p) for p in range(8)]
        ends = {tp: monitor.readback.consumer.highwater(tp) or 0 for tp in tps}
        committer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group,
                                     enable_auto_commit=False)
        await committer.start()
        try:
            committer.assign(tps)
            await committer.commit({tp: min(30, end) for tp, end in ends.items()})
        finally:
            await committer.stop()
        expected = sum(end - min(30, end) for end in ends.values())
        await _until("lag = end - committed", lambda: _lag(monitor, group, "encounters") == expected)

        worker = start_worker(settings, settings.bootstrap_servers)
        try:
            await _until("the worker drains the backlog", lambda: _lag(monitor, group, "encounters") == 0)
            worker.send_signal(signal.SIGSTOP)
            try:
                await _send_encounters(settings, 150, seed=12)
                await _until("lag rises while the worker is paused",
                             lambda: _lag(monitor, group, "encounters") >= 150, timeout_s=30)
            finally:
                worker.send_signal(signal.SIGCONT)
            await _until("lag drains once the worker resumes", lambda: _lag(monitor, group, "encounters") == 0)
        finally:
            stop_process(worker)


def _records(families: dict, name: str, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in families[name].samples if s.name.endswith("_total")}


async def test_the_dashboard_shows_the_run_live_and_metrics_carry_the_summary(
        settings_factory: SettingsFactory, tmp_path: Path) -> None:
    settings = replace(settings_factory(), web_port=0, web_token=secrets.token_urlsafe(12))
    output = io.StringIO()
    options = RunOptions(encounters=900, rate=60.0, seed=9, bad_rate=0.02, resend_rate=0.0, summary_path=None,
                         timeout_s=240, live=False, web=True, stay=True)
    run = asyncio.create_task(run_closed_loop(settings, options, Console(file=output, width=400)))
    try:
        url = await _printed_url(output, run)
        shot = tmp_path / "dashboard.png"
        async with async_playwright() as pw:
            assert Path(CHROMIUM).exists(), f"Debian's chromium is needed at {CHROMIUM} (make test installs it)"
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1300})

                async def tile(name: str) -> float:
                    text = await page.locator(".tile", has_text=name).locator(".v").inner_text()
                    return float(text.replace(",", ""))

                async def throughput_shown() -> bool:
                    """The whole loop flowing: encounters in, and remittances being posted."""
                    await page.goto(f"{url}dashboard")
                    return (await page.locator("svg.chart").count() == 8 and await tile("encounters in / s") > 0
                            and await tile("remittances posted / s") > 0)

                await _until("non-zero throughput on the dashboard", throughput_shown)
                assert await page.locator("svg polyline").count() >= 1  # the throughput lines are drawn
                await page.screenshot(path=str(shot), full_page=True)
            finally:
                await browser.close()
        assert shot.stat().st_size > 10_000
        if os.environ.get("CLAIMS_TEST_ARTIFACTS"):
            Path(os.environ["CLAIMS_TEST_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["CLAIMS_TEST_ARTIFACTS"]) / shot.name)

        await _until("the run settles", lambda: "settled after" in output.getvalue(), timeout_s=240)
        scraped: list[str] = []

        async def caught_up() -> bool:
            """The engine's group has committed everything (faust commits every second)."""
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}metrics") as response:
                    assert response.status == 200
                    scraped.append(await response.text())
            lag = [s for f in text_string_to_metric_families(scraped[-1]) if f.name == "claimflow_consumer_lag"
                   for s in f.samples if s.labels["group"] == settings.app_id]
            return bool(lag) and all(s.value == 0 for s in lag)

        await _until("the engine's lag back to 0", caught_up)
        text = scraped[-1]
    finally:
        run.cancel()  # how a --stay run ends: Ctrl-C
        summary = await run
    families = {f.name: f for f in text_string_to_metric_families(text)}
    records = _records(families, "claimflow_topic_records", "topic")
    for topic, key in (("encounters", "encounters"), ("coded", "coded"), ("claims-submitted", "claims_submitted"),
                       ("remittances", "remittances"), ("dead-letter", "dead_lettered"),
                       ("statements", "statements"), ("front-desk", "eligibility_held")):
        assert records[topic] == summary[key], topic
    assert sum(v for k, v in records.items() if k.startswith("denials.")) == sum(summary["denials_by_queue"].values())
    stages = {(s.labels["stage"], s.labels["direction"]): s.value
              for s in families["claimflow_stage_events"].samples if s.name.endswith("_total")}
    assert stages[("coding", "in")] == summary["encounters"] + records["coding-actions"]
    assert stages[("coding", "out")] == summary["coded"] + records["coding-review"]
    latency = {s.labels["stage"]: s.value for s in families["claimflow_stage_latency_seconds"].samples
               if s.name.endswith("_count")}
    assert latency["end_to_end"] > 0 and latency["coding"] >= summary["coded_first_pass"]
    groups = {s.labels["group"] for s in families["claimflow_consumer_lag"].samples}
    assert groups == {settings.app_id, settings.payer_app_id, settings.coder_group_id}
    denial = {s.labels["payer"]: s.value for s in families["claimflow_first_pass_denial_rate"].samples}
    assert denial == {payer: seen["denial_rate"] for payer, seen in summary["first_pass_by_payer"].items()}
    assert summary["settled"] is True


async def _printed_url(output: io.StringIO, run: asyncio.Task[object]) -> str:
    """The base URL `claims run` prints when its pages are up."""
    found: list[str] = []

    def printed() -> bool:
        if run.done():
            run.result()  # the run failed: say why
        match = re.search(r"ops dashboard: (http://\S+?/)dashboard", output.getvalue())
        if match:
            found.append(match.group(1))
        return bool(found)

    await _until("the dashboard URL", printed, timeout_s=60)
    return found[0]
