"""Small confluent-kafka helpers for tests: produce raw records, read a topic to its end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


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
               idle: float = 3.0, distinct: tuple[Callable[[Any], Any], int] | None = None,
               to_end: bool = False) -> list:
    """All messages of a topic (every partition, from the beginning).

    With ``expect``: until that many arrived (or the timeout). Without: until ``idle`` seconds pass
    without a message once the first one arrived (an empty topic is read for up to ``idle`` seconds
    after the partitions are assigned and their offsets known). With ``distinct=(key, n)``, the idle
    stop waits until ``n`` distinct ``key(message)`` have arrived (a read stopped by a pause alone once
    missed most of a topic on a loaded machine); a read that ends short prints where each partition
    stopped against its watermarks (under read_committed, a position short of the end is a transaction
    left open). With ``to_end``: until every partition has been read to its end once, with no idle
    wait; only for a topic whose writers have finished or been waited for (a backtest that exited, a
    worker whose last records were read from another topic after an idle wait).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": to_end})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
    has_data = any(watermarks(consumer, tp)[1] > 0 for tp in partitions)
    consumer.assign(partitions)
    messages = []
    keys: set = set()
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    last_seen = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() and message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
                if len(at_end) == len(partitions):
                    break
                continue
            if message is None or message.error():
                waited = time.monotonic() - last_seen
                enough = distinct is None or len(keys) >= distinct[1]
                if expect is None and waited > idle and (messages or not has_data) and enough:
                    break
                continue
            messages.append(message)
            if distinct is not None:
                keys.add(distinct[0](message))
            last_seen = time.monotonic()
            if expect is not None and len(messages) >= expect:
                break
        if distinct is not None and len(keys) < distinct[1]:
            ends = {tp.partition: (tp.offset, consumer.get_watermark_offsets(tp, timeout=10))
                    for tp in consumer.position(consumer.assignment())}
            print(f"{topic}: {len(keys)} of {distinct[1]} distinct records read; "
                  f"partition: (position, (low, high)) {ends}")
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
