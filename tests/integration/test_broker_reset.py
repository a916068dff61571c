"""A broker that comes back empty is noticed: the engine's worker and the coder simulator
each stop with one clear line and exit code 3 once the topics they started on are gone,
instead of deduplicating against state that no longer exists (both brokers)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from engine.cli.run import start_worker
from engine.runtime.cluster_watch import EXIT_BROKER_RESET, declared_topics
from engine.runtime.kafka import make_admin, make_producer
from engine.settings import Settings
from engine.wire.codec import default_codec
from engine.wire.topics import Topic
from tests.factories import make_encounter
from tests.fixtures.kafka import wait_for_record

pytestmark = pytest.mark.integration


def _wait_for_line(log: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)  # polling a child's log file for the line it writes
    raise TimeoutError(f"{text!r} not in {log} within {timeout_s:.0f}s")


def _exit_code(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None


async def test_processes_stop_when_their_topics_are_gone(topic_settings: Settings, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = topic_settings
    monkeypatch.setenv("CLAIMS_CLUSTER_CHECK_S", "1")
    monkeypatch.setenv("CLAIMS_LOG_LEVEL", "INFO")
    logs = {"worker": tmp_path / "worker.log", "coder": tmp_path / "coder.log"}
    processes = {"worker": start_worker(settings, settings.bootstrap_servers, log_path=logs["worker"]),
                 "coder": start_worker(settings, settings.bootstrap_servers, ("simulate", "coder"), logs["coder"])}
    try:
        for log in logs.values():  # each has seen the broker as it started on it
            _wait_for_line(log, "watching cluster", 60)
        encounter = make_encounter(encounter_id="ENC-BEFORE-RESET")
        producer = make_producer(settings, settings.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic(Topic.ENCOUNTERS),
                                         default_codec(settings.schemas_dir).encode(encounter),
                                         key=encounter.encounter_id.encode())
        finally:
            await producer.stop()
        await wait_for_record(settings, settings.topic(Topic.CODED), lambda r: r.key == b"ENC-BEFORE-RESET", 60)

        admin = make_admin(settings)
        await admin.start()
        try:
            await admin.delete_topics(declared_topics(settings))  # what a broker restarted empty looks like
        finally:
            await admin.close()

        for name, process in processes.items():
            assert _exit_code(process, 60) == EXIT_BROKER_RESET, name
            text = logs[name].read_text(errors="replace")
            assert "stops: the broker at" in text and "came back without" in text, name
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
