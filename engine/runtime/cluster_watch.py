"""A broker that came back empty is not the broker a process started on. Its tables,
dedupe entries and committed offsets describe data that no longer exists: going on would
drop re-sent encounters as duplicates of claims that were never kept. Each long-running
process watches its cluster's id and its topics and stops, loudly, when either changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from engine.runtime.kafka import client_options
from engine.settings import Settings

log = logging.getLogger(__name__)

#: The exit code of a process that found its broker emptied under it.
EXIT_BROKER_RESET = 3


class BrokerReset(RuntimeError):
    """The broker is not the one this process started on (cluster id changed, topics gone)."""


@dataclass
class ClusterWatch:
    """What the broker looked like at the first check (its cluster id; which of ``topics``
    it had), compared at every check after."""

    settings: Settings
    topics: Collection[str]
    cluster_id: str | None = None
    present: frozenset[str] = field(default_factory=frozenset)
    checked: bool = False

    #: The reset the last check saw, raised only if the next one sees it too: a node that
    #: has just restarted in a rolling restart may answer before it caught up.
    suspected: str | None = None

    async def check(self) -> None:
        """Raise ``BrokerReset`` if the cluster id changed or a topic seen before is gone, two
        checks in a row; an unreachable broker is not a reset (the clients wait for it, and
        say so)."""
        try:
            cluster_id, names = await cluster_metadata(self.settings)
        except (KafkaError, OSError, TimeoutError):
            return
        present = frozenset(self.topics) & names
        if not self.checked:
            self.cluster_id, self.present, self.checked = cluster_id, present, True
            log.info("watching cluster %s: %d of %d topics present", cluster_id, len(present), len(self.topics))
            return
        reset = self._reset(cluster_id, present)
        if reset is not None and reset == self.suspected:
            raise BrokerReset(reset)
        self.suspected = reset
        if reset is None:
            self.present |= present
        else:
            log.warning("the broker looks reset (%s); checking again before stopping", reset)

    def _reset(self, cluster_id: str | None, present: frozenset[str]) -> str | None:
        if cluster_id != self.cluster_id:
            return (f"the broker at {self.settings.bootstrap_servers} is another cluster now "
                    f"(cluster id {self.cluster_id!r} → {cluster_id!r})")
        gone = sorted(self.present - present)
        if gone:
            return (f"the broker at {self.settings.bootstrap_servers} came back without "
                    f"{len(gone)} of its topics (e.g. {gone[0]})")
        return None


async def cluster_metadata(settings: Settings) -> tuple[str | None, frozenset[str]]:
    """The cluster id (Metadata v2 and later) and every topic name, from a client of its own."""
    client = AIOKafkaClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000,
                            **client_options(settings))
    try:
        await client.bootstrap()
        response = await client.send(client.get_random_node(), MetadataRequest(None))
        return getattr(response, "cluster_id", None), frozenset(topic[1] for topic in response.topics)
    finally:
        await client.close()


def stop_on_reset(reset: BrokerReset, what: str) -> None:
    """Say why in one line and leave at once, with ``EXIT_BROKER_RESET``: nothing may be
    committed or written against a broker that lost the data it stands for."""
    log.critical("%s stops: %s; its state would deduplicate against data that no longer exists. Recreate "
                 "the topics (`claims topics apply`) and start it again on an empty state.", what, reset)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_BROKER_RESET)


def declared_topics(settings: Settings) -> list[str]:
    """Every topic ``topics.yaml`` declares, as named on the broker."""
    from engine.wire.topics import load_topics

    return [spec.name for spec in load_topics(settings).values()]


async def watch_cluster(settings: Settings, what: str, stop: asyncio.Event) -> None:
    """Check the cluster every ``settings.cluster_check_s`` until ``stop``; a reset ends the process."""
    watch = ClusterWatch(settings, declared_topics(settings))
    while not stop.is_set():
        try:
            await watch.check()
        except BrokerReset as reset:
            stop_on_reset(reset, what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.cluster_check_s)
