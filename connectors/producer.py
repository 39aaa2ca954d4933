"""The one Kafka producer factory: every producer of the project is built here.

Idempotent (``acks=all``), and with the murmur2 partitioner, the Java client's and aiokafka's (so
Faust's) default: a key lands in the same partition number whichever client produced it, which keeps
the topics co-partitioned.
"""

from __future__ import annotations

from typing import Any

PARTITIONER = "murmur2_random"
# A checkpoint holds every model of a partition's symbols; allow it to outgrow Kafka's 1 MB default.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


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
