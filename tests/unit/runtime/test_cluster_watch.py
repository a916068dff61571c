"""engine.runtime.cluster_watch: a changed cluster id or a topic gone is a reset; a broker
that does not answer is not."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError

from engine.runtime import cluster_watch
from engine.runtime.cluster_watch import BrokerReset, ClusterWatch


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    state: dict[str, object] = {"id": "k1", "topics": {"a", "b", "other"}, "down": False}

    async def metadata(settings):  # type: ignore[no-untyped-def]
        if state["down"]:
            raise KafkaConnectionError()
        return state["id"], frozenset(state["topics"])  # type: ignore[arg-type]

    monkeypatch.setattr(cluster_watch, "cluster_metadata", metadata)
    return state


async def test_a_topic_gone_or_a_new_cluster_id_is_a_reset(broker, settings) -> None:
    watch = ClusterWatch(settings, ["a", "b", "c"])
    await watch.check()  # the broker as it started: c is not there yet
    broker["topics"] = {"a", "b", "c"}
    await watch.check()  # a topic created later is watched from then on
    broker["down"] = True
    await watch.check()  # unreachable: the clients wait, it is no reset
    broker["down"], broker["topics"] = False, {"a", "b"}
    await watch.check()  # once: suspected, not yet a reset (a node just restarted may lag)
    with pytest.raises(BrokerReset, match="without 1 of its topics"):
        await watch.check()
    broker["topics"], broker["id"] = {"a", "b", "c"}, "k2"
    await watch.check()
    with pytest.raises(BrokerReset, match="another cluster"):
        await watch.check()


async def test_a_reset_seen_once_then_not_again_is_no_reset(broker, settings) -> None:
    watch = ClusterWatch(settings, ["a", "b"])
    await watch.check()
    broker["topics"] = {"a"}
    await watch.check()  # a node answered before it caught up
    broker["topics"] = {"a", "b"}
    await watch.check()
    broker["topics"] = {"a"}
    await watch.check()  # once more, not twice in a row: still no reset
    assert watch.suspected is not None and watch.present == {"a", "b"}
