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


@pytest.mark.parametrize(("logger", "template", "args", "kept"), [
    ("faust.topics", "send: topic=%r k=%r v=%r timestamp=%r partition=%r",
     ("claimflow-awaiting_eligibility-changelog", b"ENC-1", b"Ana Marquez MCR123456789", 1.0, 3),
     ["claimflow-awaiting_eligibility-changelog", "3"]),
    ("aiokafka.producer.producer", "Sending (key=%s value=%s) to %s",
     (b"ENC-1", b"Ana Marquez MCR123456789", "TopicPartition(topic='claims.encounters', partition=2)"),
     ["claims.encounters"]),
])
def test_the_clients_debug_lines_never_carry_a_records_key_or_value(caplog, logger, template, args, kept) -> None:
    from engine.runtime.logs import redact_record_content

    redact_record_content()
    with caplog.at_level(logging.DEBUG, logger=logger):
        logging.getLogger(logger).debug(template, *args)
    (line,) = [r.getMessage() for r in caplog.records if r.name == logger]
    assert "Ana Marquez" not in line and "MCR123456789" not in line and "ENC-1" not in line
    assert all(k in line for k in kept) and "not logged" in line
