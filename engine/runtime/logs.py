"""Client logs that stay readable while the broker is away (aiokafka and faust retry a
lost connection every 100 ms and log each attempt; one line per message per interval
goes through, with a count of what was held back) and that never carry a record's
content: at debug level both clients log every key and value they send, and ours are
encounters, claims and member ids (PHI)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: One line per message per this many seconds while a failure repeats.
REPEAT_EVERY_S = 30.0
#: The loggers whose retries repeat: the Kafka client and faust's driver on top of it.
CLIENT_LOGGERS = ("aiokafka", "faust.transport")


class OncePerInterval(logging.Filter):
    """Lets a record through when its logger has not logged the same message (the
    template, not the formatted text: node ids and errors vary) within ``interval_s``."""

    def __init__(self, interval_s: float = REPEAT_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s, self.clock = interval_s, clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, str(record.msg)), self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} ({last[1]} more like it in {now - last[0]:.0f} s)"
            record.args = ()
        self._last[key] = (now, 0)
        return True


def quiet_client_retries(interval_s: float = REPEAT_EVERY_S) -> None:
    """Install ``OncePerInterval`` on every client logger that exists now: each module's
    logger is made when it is imported, and ``engine.runtime.kafka_compat`` has imported
    aiokafka and faust's driver when it calls this."""
    once = OncePerInterval(interval_s)
    for name in [n for n in logging.Logger.manager.loggerDict if n.startswith(CLIENT_LOGGERS)] + list(CLIENT_LOGGERS):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OncePerInterval) for f in logger.filters):
            logger.addFilter(once)


#: The clients' debug lines that print a record's key and value, by logger and template,
#: each with the argument positions to keep (the topic, the partition) and its new text.
RECORD_CONTENT_LINES: dict[tuple[str, str], tuple[tuple[int, ...], str]] = {
    ("faust.topics", "send: topic=%r k=%r v=%r timestamp=%r partition=%r"):
        ((0, 4), "send: topic=%r partition=%r (key and value not logged)"),
    ("aiokafka.producer.producer", "Sending (key=%s value=%s) to %s"):
        ((2,), "Sending a record to %s (key and value not logged)"),
}


class WithoutRecordContent(logging.Filter):
    """Rewrites the clients' debug lines that would print a record's key and value."""

    def filter(self, record: logging.LogRecord) -> bool:
        rewrite = RECORD_CONTENT_LINES.get((record.name, str(record.msg)))
        if rewrite is not None and isinstance(record.args, tuple):
            kept, text = rewrite
            record.msg, record.args = text, tuple(record.args[i] for i in kept if i < len(record.args))
        return True


def redact_record_content() -> None:
    """Install ``WithoutRecordContent`` on the loggers of ``RECORD_CONTENT_LINES`` (first, so
    no other filter sees the content)."""
    for name in {logger for logger, _ in RECORD_CONTENT_LINES}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithoutRecordContent) for f in logger.filters):
            logger.filters.insert(0, WithoutRecordContent())
