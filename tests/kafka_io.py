"""Small confluent-kafka helpers for tests: produce raw records, read a topic to its end."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value, timestamp_ms in records:
        producer.produce(topic, key=key, value=value, timestamp=timestamp_ms or 0)
    assert producer.flush(30) == 0


def paced_replay(settings, files, speed: float, produced: list[int]) -> None:
    """``livelearn replay`` of each file at ``speed`` (1 = real time), one after the other, by the replay's
    own code (to run in a thread: the ticks arrive while a test kills and restarts workers; the CLI's
    broker check before a file could meet a broker restart, the producer itself waits one out). What
    each file produced is appended to ``produced``."""
    from connectors.replay import replay
    from connectors.sink import KafkaSink

    for path in files:
        sink = KafkaSink(settings.client_config(), settings.topic("ticks"), settings.topic("dead-letters"),
                         key_of=settings.partition_key)
        produced.append(replay([path], sink, speed=speed, progress=False).produced)
        sink.flush(240)


def watermarks(consumer, tp, timeout: float = 30.0) -> tuple[int, int]:
    """Low and high watermark, retried while a just-started broker still elects partition leaders."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def read_topic(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 60.0,
               idle: float = 3.0) -> list:
    """All messages of a topic (every partition, from the beginning).

    With ``expect``: until that many arrived (or the timeout). Without: until ``idle`` seconds pass
    without a message once the first one arrived (an empty topic is read for up to ``idle`` seconds
    after the partitions are assigned and their offsets known).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
    has_data = any(watermarks(consumer, tp)[1] > 0 for tp in partitions)
    consumer.assign(partitions)
    messages = []
    deadline = time.monotonic() + timeout
    last_seen = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                waited = time.monotonic() - last_seen
                if expect is None and waited > idle and (messages or not has_data):
                    break
                continue
            messages.append(message)
            last_seen = time.monotonic()
            if expect is not None and len(messages) >= expect:
                break
    finally:
        consumer.close()
    return messages


def wait_for_distinct(bootstrap: str, topic: str, decode, key, at_least: int, timeout: float) -> set:
    """Distinct ``key(record)`` of a topic, read until ``at_least`` of them arrived (or the timeout);
    at-least-once republishes some records after a restart, hence distinct."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: set = set()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < at_least and time.monotonic() < deadline:
            seen.update(key(decode(m.value())) for m in consumer.consume(500, 0.2) if not m.error())
    finally:
        consumer.close()
    return seen
