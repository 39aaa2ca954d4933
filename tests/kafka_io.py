"""Small confluent-kafka helpers for tests: produce raw records, read a topic to its end."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value, timestamp_ms in records:
        producer.produce(topic, key=key, value=value, timestamp=timestamp_ms or 0)
    assert producer.flush(30) == 0


def read_topic(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 60.0,
               idle: float = 3.0) -> list:
    """All messages of a topic (every partition, from the beginning) once ``expect`` arrived or it is idle."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    messages = []
    deadline = time.monotonic() + timeout
    last_seen = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                if expect is None and time.monotonic() - last_seen > idle:
                    break
                continue
            if message.error():
                continue
            messages.append(message)
            last_seen = time.monotonic()
            if expect is not None and len(messages) >= expect:
                break
    finally:
        consumer.close()
    return messages
