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
    """All messages of a topic (every partition, from the beginning).

    With ``expect``: until that many arrived (or the timeout). Without: until every partition reached
    the high watermark it had when the read began (``idle`` is kept for callers; the watermarks decide).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
    ends = {}
    if expect is None:
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > low:
                ends[tp.partition] = high
        if not ends:
            consumer.close()
            return []
    consumer.assign(partitions)
    messages = []
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            messages.append(message)
            if expect is not None:
                if len(messages) >= expect:
                    break
            elif message.offset() + 1 >= ends.get(message.partition(), 0):
                done.add(message.partition())
                if len(done) >= len(ends):
                    break
    finally:
        consumer.close()
    return messages
