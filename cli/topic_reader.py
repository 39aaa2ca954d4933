"""Read whole topics (every partition, from the beginning) and decode them: for reports and the demo.

Readers see each output once whatever the processing guarantee: librdkafka's consumers read committed
records only (exactly-once: outputs of an aborted transaction never show), and a record repeated by an
at-least-once worker after a crash (byte-identical, same id) is dropped by its identity.
"""

from __future__ import annotations

import time
import uuid

from agents.settings import Settings
from schemas.codec import DecodeError, make_codec


def identity(stage: str, record: dict) -> tuple | None:
    """What makes an output record unique (None: a stage whose records are not de-duplicated)."""
    if stage in ("predictions", "outcomes"):
        return (record["prediction_id"],)
    if stage == "shadow-predictions":
        return (record["prediction_id"], record["model_id"])
    if stage == "alerts":
        return (record["alert_id"], record["status"])
    if stage == "model-events":
        return (record["event_id"],)
    return None


class Dedup:
    """Drops records already seen (by :func:`identity`), remembering the last ``memory`` identities."""

    def __init__(self, stage: str, memory: int = 1_000_000):
        self.stage, self.memory = stage, memory
        self.seen: dict[tuple, None] = {}
        self.dropped = 0

    def fresh(self, record: dict) -> bool:
        key = identity(self.stage, record)
        if key is None:
            return True
        if key in self.seen:
            self.dropped += 1
            return False
        self.seen[key] = None
        if len(self.seen) > self.memory:
            del self.seen[next(iter(self.seen))]
        return True


def read_records(settings: Settings, stage: str, schema: str, idle_s: float = 2.0,
                 timeout_s: float = 120.0) -> list[dict]:
    """Decoded records of a stage's topic, in partition/offset order per partition, each once."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    topic = settings.topic(stage)
    codec = make_codec(schema, settings.schema_registry_url, topic)
    # Partition EOF marks the end (transaction markers count in the high watermark but are never delivered).
    consumer = Consumer({**settings.client_config(), "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": True})
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
        dedup = Dedup(stage)
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while len(done) < len(ends) and time.monotonic() < deadline and time.monotonic() - last < max(idle_s, 10):
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    done.add(message.partition())
                continue
            last = time.monotonic()
            try:
                record = codec.decode(message.value(), message.topic(), message.partition(), message.offset())
            except DecodeError:
                continue
            if dedup.fresh(record):
                records.append(record)
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return records
    finally:
        consumer.close()
