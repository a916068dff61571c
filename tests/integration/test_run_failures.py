"""`claims run` when its broker dies under it: it says so in one line ("run failed: …"),
prints the partial summary, exits non-zero and leaves no process of the run behind — on
the embedded Tansu and on a loopback Apache Kafka of its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.runtime.kafka import read_topic
from engine.settings import Settings
from tests.fixtures.kafka import BACKENDS

pytestmark = pytest.mark.integration

START_S = 240.0  # a Kafka of its own formats and starts first
EXIT_S = 90.0


def _env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    env.update(CLAIMS_STATE_DIR=str(state_dir), CLAIMS_KAFKA_LIB_DIR=str(Settings().kafka_lib_dir))
    return env


def _processes_of(state_dir: Path) -> dict[int, str]:
    """Live processes started for the run (their environment names its state directory):
    pid → command line."""
    found = {}
    marker = f"CLAIMS_STATE_DIR={state_dir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            state = (proc / "stat").read_text().split(")")[1].split()[0]
            if state != "Z" and marker in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def _broker_pids(state_dir: Path) -> list[int]:
    """The broker's processes: the Tansu binary, or the Kafka JVMs."""
    return [pid for pid, cmdline in _processes_of(state_dir).items()
            if Path(cmdline.split(" ")[0]).name.startswith("tansu") or "kafka.Kafka" in cmdline]


def _read_until(run: subprocess.Popen[bytes], prefix: str, timeout_s: float) -> list[str]:
    assert run.stdout is not None
    deadline, lines = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        line = run.stdout.readline().decode()
        lines.append(line)
        if line.startswith(prefix):
            return lines
        if not line and run.poll() is not None:
            break
    raise AssertionError(f"claims run never said {prefix!r}: {''.join(lines)[-2000:]}")


async def _until_claims_flow(bootstrap: str, timeout_s: float) -> None:
    settings = replace(Settings(), bootstrap_servers=bootstrap)  # the run's topics: the default prefix
    async with asyncio.timeout(timeout_s):
        while not await read_topic(settings, settings.topic("claims-submitted"), timeout_s=5):
            pass  # each read long-polls the topic's partitions


@pytest.mark.parametrize("broker", BACKENDS)
def test_a_run_whose_broker_dies_fails_in_one_line_and_leaves_nothing_running(tmp_path: Path, broker: str) -> None:
    summary_file = tmp_path / "summary.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--broker", broker, "--encounters", "20000", "--rate", "200",
         "--summary", str(summary_file), "--no-live", "--no-web"],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        before = _read_until(run, "payer simulator: pid", START_S)
        bootstrap = next(line for line in before if line.startswith("broker: ")).split(" ", 1)[1].strip()
        asyncio.run(_until_claims_flow(bootstrap, START_S))  # the broker dies mid-stream, not at start
        brokers = _broker_pids(tmp_path)
        assert brokers, _processes_of(tmp_path)
        for pid in brokers:
            os.kill(pid, signal.SIGKILL)
        rest, _ = run.communicate(timeout=EXIT_S)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    output = "".join(before) + rest.decode()

    assert run.returncode == 1, output[-3000:]
    assert "run failed: the embedded broker" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    summary = json.loads(summary_file.read_text())  # the partial summary, as far as the run got
    assert summary["settled"] is False and summary["encounters"] >= 0
    deadline = time.monotonic() + 30
    while _processes_of(tmp_path):
        assert time.monotonic() < deadline, f"left running after the run: {_processes_of(tmp_path)}"
        time.sleep(0.2)  # polling /proc for the exits, bounded by the deadline
