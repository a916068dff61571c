"""`claims broker --kafka` and `claims run --broker kafka` as a user runs them: the data
outlives a restart of the broker, Ctrl-C stops it cleanly, a killed `claims` leaves no JVM
behind, and a run on a Kafka of its own settles and leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.runtime.kafka import make_producer, read_topic
from engine.settings import Settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif("kafka" not in os.environ.get("CLAIMS_TEST_BROKERS", "kafka"),
                       reason="CLAIMS_TEST_BROKERS leaves out Apache Kafka"),
]

TOPIC = "kept.across.restarts"


def _env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    env.update(CLAIMS_STATE_DIR=str(state_dir), CLAIMS_KAFKA_LIB_DIR=str(Settings().kafka_lib_dir))
    return env


def _start_broker(state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`claims broker --kafka` in the background; its bootstrap servers once it says them."""
    broker = subprocess.Popen([sys.executable, "-m", "engine", "broker", "--kafka"], env=_env(state_dir),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert broker.stdout is not None
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = broker.stdout.readline().decode()
        lines.append(line)
        if line.startswith("bootstrap servers:"):
            return broker, line.split(":", 1)[1].strip()
        if not line and broker.poll() is not None:
            break
    broker.kill()
    raise AssertionError(f"claims broker --kafka said no bootstrap servers: {''.join(lines)[-2000:]}")


def _jvm_pids(state_dir: Path) -> list[int]:
    """The Kafka JVMs whose configuration lives under ``state_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                state = (proc / "stat").read_text().split(")")[1].split()[0]
            except OSError:
                continue
            if "kafka.Kafka" in cmdline and str(state_dir) in cmdline and state != "Z":
                pids.append(int(proc.name))
    return pids


def _wait_until_no_jvm(state_dir: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _jvm_pids(state_dir):
        assert time.monotonic() < deadline, f"Kafka JVMs left after {timeout_s}s: {_jvm_pids(state_dir)}"
        time.sleep(0.2)  # polling /proc for the exit, bounded by the deadline


async def test_the_data_outlives_a_restart_and_no_jvm_outlives_claims(tmp_path: Path) -> None:
    broker, bootstrap = _start_broker(tmp_path)
    settings = Settings().with_bootstrap(bootstrap)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
        await admin.close()
        producer = make_producer(settings, bootstrap)
        await producer.start()
        await producer.send_and_wait(TOPIC, b"still here", key=b"k")
        await producer.stop()
        assert _jvm_pids(tmp_path)
    finally:
        os.killpg(broker.pid, signal.SIGKILL)  # `claims` dies without cleaning up
        broker.communicate(timeout=30)
    _wait_until_no_jvm(tmp_path, 60)  # the kernel told the JVM (PR_SET_PDEATHSIG)

    broker, bootstrap = _start_broker(tmp_path)  # the same state directory: the same cluster
    try:
        records = await read_topic(Settings().with_bootstrap(bootstrap), TOPIC)
        assert [r.value for r in records] == [b"still here"]
    finally:
        os.killpg(broker.pid, signal.SIGINT)  # Ctrl-C
        out, _ = broker.communicate(timeout=90)
    assert broker.returncode == 0, out.decode()[-2000:]
    assert _jvm_pids(tmp_path) == []
    assert not (tmp_path / "broker.json").exists()


def test_a_run_on_a_kafka_of_its_own_settles_and_leaves_nothing_running(tmp_path: Path) -> None:
    summary_file = tmp_path / "s.json"
    done = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--broker", "kafka", "--encounters", "100", "--seed", "9",
         "--summary", str(summary_file), "--no-live", "--no-web"],
        env=_env(tmp_path), capture_output=True, timeout=280,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(summary_file.read_text())
    assert summary["settled"] and all(i["holds"] for i in summary["identities"].values())
    assert summary["remittances"] > 0
    assert _jvm_pids(tmp_path) == []
    assert not (tmp_path / "broker.json").exists()
