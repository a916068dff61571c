"""`claims run` as a user runs it: a bounded run exits 0 with a balanced summary, and
Ctrl-C midway stops everything — no broker or worker process left behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.model.events import ClaimState, ClaimStatus
from engine.settings import Settings
from engine.wire.codec import default_codec
from tests.fixtures.kafka import read_topic

pytestmark = pytest.mark.integration


def _env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    env["CLAIMS_STATE_DIR"] = str(state_dir)
    return env


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_bounded_run_exits_zero_with_identities(tmp_path: Path) -> None:
    summary_file = tmp_path / "s.json"
    done = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--encounters", "200", "--seed", "7", "--bad-rate", "0.05",
         "--summary", str(summary_file), "--no-live"],
        env=_env(tmp_path), capture_output=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(summary_file.read_text())
    assert summary["settled"] and all(i["holds"] for i in summary["identities"].values())
    assert summary["encounters"] >= 200 and summary["dead_lettered"] > 0 and summary["coding_review"] > 0
    assert summary["denied"] > 0
    assert not (tmp_path / "broker.json").exists()


async def test_ctrl_c_midway_leaves_no_broker_or_worker(tmp_path: Path) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--rate", "100", "--seed", "11", "--no-live"],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        assert run.stdout is not None
        worker_pid = None
        deadline = time.monotonic() + 60
        while worker_pid is None and time.monotonic() < deadline:
            line = run.stdout.readline().decode()
            match = re.search(r"worker: pid (\d+)", line)
            worker_pid = int(match.group(1)) if match else None
        assert worker_pid, "the run announces its worker"
        state = json.loads((tmp_path / "broker.json").read_text())
        # wait for the loop to be really running: remittances routed to claim statuses
        bootstrap = state["bootstrap_servers"]
        deadline = time.monotonic() + 90
        codec = default_codec(Settings().schemas_dir)
        while not [r for r in await read_topic(Settings().with_bootstrap(bootstrap), "claims.claim-status")
                   if codec.decode(r.value, ClaimStatus).status == ClaimState.PAID]:
            assert time.monotonic() < deadline, "no claim got paid within 90 s"
            await asyncio.sleep(0.5)  # polling the topic, bounded by the deadline
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, out.decode()[-2000:]
    assert '"interrupted": true' in out.decode()
    assert _dead(state["broker_pid"]) and _dead(worker_pid)
    assert not (tmp_path / "broker.json").exists()
