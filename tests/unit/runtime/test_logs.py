"""engine.runtime.logs: while the broker is unreachable the clients retry every 100 ms and
would log each attempt (3,000 lines a minute); one line per message per interval goes
through, saying how many were held back."""

from __future__ import annotations

import logging

import pytest

from engine.runtime.logs import OncePerInterval, quiet_client_retries


def _record(msg: str, *args: object, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_one_line_per_message_per_interval_says_how_many_were_held_back() -> None:
    now = [0.0]
    once = OncePerInterval(interval_s=30.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    passed = []
    for tick in range(600):  # a minute of retries every 100 ms, against two nodes
        now[0] = tick / 10
        record = _record(template, tick % 2, "Connect call failed")
        if once.filter(record):
            passed.append(record.getMessage())
    assert len(passed) == 2
    assert passed[0] == "Unable connect to node with id 0: Connect call failed"
    assert passed[1].endswith("(299 more like it in 30 s)")


def test_other_messages_and_loggers_are_let_through_on_their_own() -> None:
    once = OncePerInterval(interval_s=30.0, clock=lambda: 0.0)
    assert once.filter(_record("Unable connect to node with id %s", 1))
    assert once.filter(_record("Failed fetch messages from %s", 1))
    assert once.filter(_record("Unable connect to node with id %s", 1, name="aiokafka.client"))
    assert not once.filter(_record("Unable connect to node with id %s", 2))


def test_a_message_with_a_percent_sign_still_formats() -> None:
    now = [0.0]
    once = OncePerInterval(interval_s=1.0, clock=lambda: now[0])
    assert once.filter(_record("lag 100%% of %s", "x"))
    assert not once.filter(_record("lag 100%% of %s", "x"))
    now[0] = 2.0
    record = _record("lag 100%% of %s", "x")
    assert once.filter(record) and record.getMessage() == "lag 100% of x (1 more like it in 2 s)"


def test_the_client_loggers_get_the_filter(caplog: pytest.LogCaptureFixture) -> None:
    quiet_client_retries()
    caplog.set_level(logging.ERROR)
    for _ in range(50):
        logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s: %s", 1, "refused")
    assert len([r for r in caplog.records if r.name == "aiokafka.conn"]) == 1
