"""Apache Kafka on loopback: one node or a KRaft cluster of combined broker+controller
nodes, started from the jars ``pom.xml`` pins (docs/broker.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from engine.runtime.broker import BrokerError, _die_with_parent, accepts_connections, free_loopback_port
from engine.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

POM = PROJECT_ROOT / "pom.xml"
_MAVEN_NS = {"m": "http://maven.apache.org/POM/4.0.0"}

#: The broker settings every node gets, on loopback and in docker-compose.yml (a test
#: checks the compose file against them). ``{rf}`` / ``{isr}``: the cluster's replication
#: factor (nodes, at most 3) and ``min.insync.replicas`` (2 from three nodes on).
BROKER_SETTINGS: Mapping[str, str] = {
    "auto.create.topics.enable": "false",  # `claims topics apply` owns topics
    "group.initial.rebalance.delay.ms": "0",  # no 3 s wait before a group's first join
    "offsets.topic.num.partitions": "8",
    "offsets.topic.replication.factor": "{rf}",
    "transaction.state.log.replication.factor": "{rf}",
    "transaction.state.log.min.isr": "{isr}",
    "default.replication.factor": "{rf}",
    "min.insync.replicas": "{isr}",
    "unclean.leader.election.enable": "false",
    "share.coordinator.state.topic.replication.factor": "{rf}",
    "share.coordinator.state.topic.min.isr": "{isr}",
}

_LOG4J2 = """<Configuration status="WARN">
  <Appenders><Console name="out" target="SYSTEM_OUT"><PatternLayout pattern="%d %p [%c{1}] %m%n"/></Console></Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="out"/></Root>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/></Loggers>
</Configuration>
"""


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version ``pom.xml`` pins (its one source)."""
    root = ElementTree.parse(pom).getroot()
    version = root.findtext("m:properties/m:kafka.version", namespaces=_MAVEN_NS)
    if not version:
        raise BrokerError(f"{pom}: no <kafka.version> property")
    return version


def replication_for(nodes: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a cluster of ``nodes``."""
    rf = min(nodes, 3)
    return rf, 2 if rf >= 3 else 1


def broker_settings(nodes: int) -> dict[str, str]:
    rf, isr = replication_for(nodes)
    return {key: value.format(rf=rf, isr=isr) for key, value in BROKER_SETTINGS.items()}


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is not None and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError("no java on PATH: `make kafka` installs Debian's openjdk-17-jre-headless")
    return found


def ensure_classpath(lib_root: Path, pom: Path = POM) -> Path:
    """The folder of the pinned broker's jars, copied there by Maven on first use (Maven's
    own cache, ``~/.m2``, serves later copies without a download)."""
    version = kafka_version(pom)
    lib = lib_root / f"kafka-{version}"
    marker = lib / ".complete"
    if marker.exists() and marker.read_text() == pom.read_text():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("no mvn on PATH: `make kafka` installs Debian's maven")
    shutil.rmtree(lib, ignore_errors=True)
    lib.mkdir(parents=True)
    started = time.monotonic()
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={lib}"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise BrokerError(f"mvn could not fetch Kafka {version}: {(result.stdout + result.stderr).strip()[-2000:]}")
    log.info("Kafka %s classpath in %s (%.1f s)", version, lib, time.monotonic() - started)
    marker.write_text(pom.read_text())
    return lib


@dataclass(frozen=True)
class ListenerSecurity:
    """TLS and SASL on the client listener (also the inter-broker one): PEM files and the
    users it knows, PLAIN from the JAAS line and SCRAM written at format time."""

    protocol: str  # SSL, SASL_PLAINTEXT or SASL_SSL
    ca_file: Path | None = None  # PEM: the CA clients and brokers trust
    key_file: Path | None = None  # PEM: the brokers' private key (PKCS#8, unencrypted)
    cert_file: Path | None = None  # PEM: the brokers' certificate chain
    client_auth: str = "none"  # required: clients must present a certificate the CA signed
    users: Mapping[str, str] = field(default_factory=dict)  # name -> password, for PLAIN and SCRAM
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-512")
    admin: str = "admin"  # the brokers' own user (inter-broker, the launcher's checks)

    def broker_properties(self) -> dict[str, str]:
        listener = self.protocol.lower()
        props: dict[str, str] = {}
        if self.protocol in ("SSL", "SASL_SSL"):
            if self.key_file is None or self.cert_file is None or self.ca_file is None:
                raise BrokerError(f"{self.protocol} needs the CA, the brokers' key and their certificate")
            keystore = self.key_file.with_name("broker-keystore.pem")  # key, then its chain: one file
            keystore.write_text(self.key_file.read_text().strip() + "\n" + self.cert_file.read_text())
            props.update({
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(keystore),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.ca_file),
                "ssl.client.auth": self.client_auth,
            })
        if self.protocol.startswith("SASL_"):
            plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
            props.update({
                "sasl.enabled.mechanisms": ",".join(self.mechanisms),
                "sasl.mechanism.inter.broker.protocol": "PLAIN",
                f"listener.name.{listener}.plain.sasl.jaas.config":
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{self.admin}" password="{self.users[self.admin]}" {plain_users};',
            })
            for mechanism in self.mechanisms:
                if mechanism.startswith("SCRAM-"):
                    props[f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config"] = (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;")
        return props

    def scram_arguments(self) -> list[str]:
        """``StorageTool format --add-scram`` for every user and SCRAM mechanism."""
        return [argument for mechanism in self.mechanisms if mechanism.startswith("SCRAM-")
                for name, password in self.users.items()
                for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]

    def admin_client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(cafile=str(self.ca_file))
            if self.client_auth == "required":
                raise BrokerError("the launcher's checks present no client certificate: use client_auth='requested'")
        if self.protocol.startswith("SASL_"):
            options.update(sasl_mechanism="PLAIN", sasl_plain_username=self.admin,
                           sasl_plain_password=self.users[self.admin])
        return options


@dataclass
class KafkaNode:
    node_id: int
    broker_port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # on purpose (kill, stop_node): not a failure to report

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class KafkaCluster:
    """Apache Kafka in KRaft mode on loopback, owned by this process.

    Its data, configuration and ports live under ``directory`` (``cluster.json``), so a
    second start finds the same cluster with its data. Nodes run in their own session and
    get SIGTERM from the kernel should this process die.
    """

    directory: Path
    nodes: int = 1
    port: int = 0  # the first node's broker port; 0 picks free ports
    lib_root: Path = field(default_factory=lambda: Path.home() / ".claimflow" / "kafka-lib")
    heap_mb: int = 512
    extra_settings: Mapping[str, str] = field(default_factory=dict)
    state_file: Path | None = None  # where other commands on this machine find it
    security: ListenerSecurity | None = None  # the client listener's TLS/SASL; None: PLAINTEXT
    members: list[KafkaNode] = field(default_factory=list)
    cluster_id: str = ""
    _classpath: str = ""

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.members)

    @property
    def client_options(self) -> dict[str, Any]:
        """How the launcher's own checks connect: as the cluster's admin user."""
        return self.security.admin_client_options() if self.security else {}

    @property
    def replication_factor(self) -> int:
        return replication_for(self.nodes)[0]

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.members if n.node_id == node_id)

    # --- start -------------------------------------------------------------
    async def start(self, timeout_s: float = 120.0) -> None:
        lib = await asyncio.to_thread(ensure_classpath, self.lib_root)
        self._classpath = f"{lib}/*"
        self._load_or_create_layout()
        for node in self.members:
            if not (node.data_dir / "meta.properties").exists():
                await asyncio.to_thread(self._format, node)
        for node in self.members:
            self._launch(node)
        try:
            await self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self._write_state()

    def _load_or_create_layout(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        layout_file = self.directory / "cluster.json"
        if layout_file.exists():
            layout = json.loads(layout_file.read_text())
            if len(layout["nodes"]) != self.nodes:
                raise BrokerError(f"{self.directory} holds a {len(layout['nodes'])}-node cluster, not {self.nodes}: "
                                  "use another state directory or the same --nodes")
            self.cluster_id = layout["cluster_id"]
            self.members = [KafkaNode(n["node_id"], n["broker_port"], n["controller_port"],
                                      self.directory / f"node-{n['node_id']}") for n in layout["nodes"]]
            return
        self.cluster_id = self._random_uuid()
        self.members = []
        for index in range(self.nodes):
            node_id = index + 1
            broker_port = self.port + index if self.port else free_loopback_port()
            self.members.append(KafkaNode(node_id, broker_port, free_loopback_port(),
                                          self.directory / f"node-{node_id}"))
        layout_file.write_text(json.dumps({
            "cluster_id": self.cluster_id,
            "nodes": [{"node_id": n.node_id, "broker_port": n.broker_port, "controller_port": n.controller_port}
                      for n in self.members],
        }, indent=2))

    def _java_command(self, main: str, *args: str, heap_mb: int = 128) -> list[str]:
        log4j = self.directory / "log4j2.xml"
        if not log4j.exists():
            log4j.write_text(_LOG4J2)
        return [_java(), f"-Xmx{heap_mb}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
                "-cp", self._classpath, main, *args]

    def _random_uuid(self) -> str:
        out = subprocess.run(self._java_command("kafka.tools.StorageTool", "random-uuid"),
                             capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    def node_properties(self, node: KafkaNode) -> dict[str, str]:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.members)
        protocol = self.security.protocol if self.security else "PLAINTEXT"
        return {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"{protocol}://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"{protocol}://127.0.0.1:{node.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": protocol,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{protocol}:{protocol}",
            "log.dirs": str(node.data_dir),
            **broker_settings(self.nodes),
            **(self.security.broker_properties() if self.security else {}),
            **self.extra_settings,
        }

    def _write_config(self, node: KafkaNode) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.node_properties(node).items()]
        node.config_file.write_text("\n".join(lines) + "\n")

    def _format(self, node: KafkaNode) -> None:
        self._write_config(node)
        result = subprocess.run(
            self._java_command("kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                               "-c", str(node.config_file), "--ignore-formatted",
                               *(self.security.scram_arguments() if self.security else ())),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting node {node.node_id} failed: {(result.stdout + result.stderr).strip()}")

    def _launch(self, node: KafkaNode) -> None:
        node.stopped = False
        self._write_config(node)  # the settings of this version of the code, on every start
        with node.log_file.open("ab") as out:
            node.process = subprocess.Popen(
                self._java_command("kafka.Kafka", str(node.config_file), heap_mb=self.heap_mb),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        log.info("kafka node %s starting on %s (pid %s)", node.node_id, node.address, node.process.pid)

    async def wait_ready(self, timeout_s: float = 120.0, nodes: int | None = None) -> None:
        """Until the cluster's metadata lists ``nodes`` brokers (all of them by default)."""
        want = self.nodes if nodes is None else nodes
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            for node in self.members:
                if node.process is not None and node.process.poll() is not None and not node.stopped:
                    raise BrokerError(f"kafka node {node.node_id} exited with {node.process.returncode}: "
                                      f"{_tail(node.log_file)}")
            live = [n.address for n in self.members
                    if n.running and await accepts_connections("127.0.0.1", n.broker_port)]
            if not live:  # not yet listening: ask no client (it would log every refusal)
                last = "no node listening yet"
                await asyncio.sleep(0.1)
                continue
            client = AIOKafkaClient(bootstrap_servers=",".join(live), request_timeout_ms=3000, **self.client_options)
            try:
                await client.bootstrap()
                last = f"{len(client.cluster.brokers())} of {want} brokers registered"
                if len(client.cluster.brokers()) >= want:
                    return
            except (KafkaError, OSError) as exc:
                last = exc
            finally:
                await client.close()
            await asyncio.sleep(0.2)
        raise BrokerError(f"kafka at {self.bootstrap_servers} not ready within {timeout_s}s: {last}")

    async def wait_in_sync(self, timeout_s: float = 120.0) -> None:
        """Until every partition of every topic has all its replicas in sync (after a node
        came back: the next one may go down only then, or ``min.insync.replicas`` fails)."""
        deadline = time.monotonic() + timeout_s
        lagging: list[str] = []
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000,
                                        **self.client_options)
            try:
                await admin.start()
                described = await admin.describe_topics(await admin.list_topics())
                lagging = [f"{t['topic']}[{p['partition']}]" for t in described for p in t["partitions"]
                           if set(p["isr"]) != set(p["replicas"]) or p["leader"] < 0]
                if not lagging:
                    return
            except (KafkaError, OSError) as exc:
                lagging = [str(exc)]
            finally:
                await admin.close()
            await asyncio.sleep(0.5)
        raise BrokerError(f"replicas not in sync within {timeout_s}s: {', '.join(lagging[:5])}")

    async def leader_of(self, topic: str, partition: int = 0) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000,
                                    **self.client_options)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
            return int(next(p["leader"] for p in described["partitions"] if p["partition"] == partition))
        finally:
            await admin.close()

    # --- faults and restarts (the tests' leader kill and rolling restart) ----
    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no controlled shutdown, as a crash."""
        node = self.node(node_id)
        node.stopped = True
        if node.process is not None and node.running:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()

    def stop_node(self, node_id: int, timeout_s: float = 60.0) -> None:
        """SIGTERM one node and wait for its controlled shutdown."""
        node = self.node(node_id)
        node.stopped = True
        _terminate(node, timeout_s)

    async def restart_node(self, node_id: int, timeout_s: float = 120.0) -> None:
        node = self.node(node_id)
        if node.running:
            node.stopped = True
            await asyncio.to_thread(_terminate, node, 60.0)
        self._launch(node)
        await self.wait_ready(timeout_s)

    # --- stop --------------------------------------------------------------
    def stop(self, timeout_s: float = 60.0) -> None:
        """Every node, one after another (the last ones still have a controller quorum
        for their controlled shutdown only while a majority lives, so the stragglers
        get SIGKILL after ``timeout_s``: their data is already flushed)."""
        if self.state_file is not None:
            _remove_state_if_ours(self.state_file, os.getpid())
        for node in self.members:
            if node.running:
                assert node.process is not None
                node.process.terminate()
        deadline = time.monotonic() + timeout_s
        for node in self.members:
            if node.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(max(0.1, deadline - time.monotonic()))
            if node.process.poll() is None:
                log.warning("kafka node %s did not stop in %.0f s: killed", node.node_id, timeout_s)
                node.process.kill()
                node.process.wait()

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        pids = [n.process.pid for n in self.members if n.process is not None]
        payload = {"bootstrap_servers": self.bootstrap_servers, "pid": os.getpid(), "broker_pid": pids[0],
                   "kind": "kafka", "nodes": self.nodes}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(self.state_file)

    async def __aenter__(self) -> KafkaCluster:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


def _terminate(node: KafkaNode, timeout_s: float) -> None:
    if node.process is None or not node.running:
        return
    node.process.terminate()
    try:
        node.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        node.process.kill()
        node.process.wait()


def _remove_state_if_ours(state_file: Path, owner_pid: int) -> None:
    try:
        recorded = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return
    if recorded.get("pid") == owner_pid:
        state_file.unlink(missing_ok=True)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
