"""Read whole topics (every partition, from the beginning) and decode them: for reports and the demo."""

from __future__ import annotations

import time
import uuid

from agents.settings import Settings
from schemas.codec import DecodeError, make_codec


def read_records(settings: Settings, stage: str, schema: str, idle_s: float = 2.0,
                 timeout_s: float = 120.0) -> list[dict]:
    """Decoded records of a stage's topic, in partition/offset order per partition."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic(stage)
    codec = make_codec(schema, settings.schema_registry_url, topic)
    consumer = Consumer({**settings.client_config(), "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        ends = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > low:
                ends[tp.partition] = high
        if not ends:
            return []
        consumer.assign([tp for tp in partitions if tp.partition in ends])
        records = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while len(done) < len(ends) and time.monotonic() < deadline and time.monotonic() - last < max(idle_s, 10):
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            last = time.monotonic()
            try:
                records.append(codec.decode(message.value(), message.topic(), message.partition(), message.offset()))
            except DecodeError:
                continue
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return records
    finally:
        consumer.close()
