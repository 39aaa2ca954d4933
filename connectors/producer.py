"""The one Kafka producer factory: every producer of the project is built here.

Idempotent (``acks=all``), and with the murmur2 partitioner, the Java client's and aiokafka's (so
Faust's) default: a key lands in the same partition number whichever client produced it, which keeps
the topics co-partitioned.
"""

from __future__ import annotations

import time
from typing import Any

PARTITIONER = "murmur2_random"
# A record is stamped with its event time, unless that is more than this far ahead of this machine's
# clock. Kafka 4's brokers refuse a batch holding a record stamped over log.message.timestamp.after.max.ms
# ahead of theirs (an hour by default; unlimited before 4.0) with INVALID_TIMESTAMP, so one tick stamped
# 2099 cost `produce` the 700 good ticks beside it (tests/integration/test_hygiene_kafka.py against a
# 4.1.1 broker). Such a tick is still sent, its value unchanged; the worker's gate dead-letters one more
# than LIVELEARN_GATE_CLOCK_AHEAD_MS ahead as future_event. A minute keeps live ticks from a slightly
# fast exchange clock on their event time.
FUTURE_STAMP_MS = 60_000
# A checkpoint holds every model of a partition's symbols; allow it to outgrow Kafka's 1 MB default.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class DeliveryFailed(RuntimeError):
    """Records the broker did not take (refused, or not acknowledged in time); the CLI says it in a line."""


def make_producer(client_config: dict[str, Any], **overrides: Any):
    """A confluent-kafka Producer with the project's defaults, ``overrides`` (librdkafka names with
    ``_`` for ``.``) on top: ``make_producer(config, linger_ms=20)``."""
    from confluent_kafka import Producer

    config = {
        **client_config,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": PARTITIONER,
        "linger.ms": 5,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "queue.buffering.max.messages": 1_000_000,
    }
    config.update({name.replace("_", "."): value for name, value in overrides.items()})
    return Producer(config)


def kafka_timestamp(event_time_ms: int | None, now_ms: int | None = None) -> int:
    """The Kafka timestamp for a record of this event time; 0 (librdkafka: the producer's clock) for
    none, or for one more than :data:`FUTURE_STAMP_MS` ahead of ``now_ms`` (this machine's clock).

    >>> kafka_timestamp(1_577_836_859_999, now_ms=1_800_000_000_000)
    1577836859999
    >>> kafka_timestamp(4_081_000_000_000, now_ms=1_800_000_000_000)
    0
    """
    if not event_time_ms:
        return 0
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    return 0 if event_time_ms - now_ms > FUTURE_STAMP_MS else event_time_ms
