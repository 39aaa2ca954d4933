"""Read a topic from its start to its end as of now: every partition, in offset order per partition.

One reader for everything that needs "the whole topic" (checkpoint restore, the CLI's readers, reports).
The end of a partition is its end-of-partition event, not ``offset + 1 == high watermark``: with
transactions the high watermark counts commit markers, which are never delivered, so that test would
never pass and every read would wait for its timeout. Empty partitions are not assigned at all.
Consumers read committed records only (librdkafka's default), so aborted outputs never show.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any


class TopicToEnd:
    """``with TopicToEnd(config, topic) as reader: for message in reader: ...`` yields every record
    (errors other than end-of-partition are skipped); ``reader.consumer`` stays usable inside the
    block (e.g. for other watermarks). Stops at the end of every partition, after ``timeout`` seconds
    in all, or (with ``idle``) after that long without a record."""

    def __init__(self, client_config: dict[str, Any], topic: str, group_prefix: str = "reader",
                 timeout: float = 120.0, idle: float | None = None, metadata_timeout: float = 10.0):
        self.config = {**client_config, "group.id": f"{group_prefix}-{uuid.uuid4().hex}",
                       "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True}
        self.topic, self.timeout, self.idle, self.metadata_timeout = topic, timeout, idle, metadata_timeout
        self.consumer: Any = None

    def __enter__(self) -> TopicToEnd:
        from confluent_kafka import Consumer

        self.consumer = Consumer(self.config)
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.close()

    def _ends(self) -> dict[int, int]:
        """Partition -> high watermark, for the partitions that hold records."""
        from confluent_kafka import TopicPartition

        metadata = self.consumer.list_topics(self.topic, timeout=self.metadata_timeout).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            return {}
        ends = {}
        for p in metadata.partitions:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                            timeout=self.metadata_timeout)
            if high > low:
                ends[p] = high
        return ends

    def __iter__(self) -> Iterator[Any]:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        ends = self._ends()
        if not ends:
            return
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
        done: set[int] = set()
        started = last = time.monotonic()
        while len(done) < len(ends):
            now = time.monotonic()
            if now - started > self.timeout or (self.idle is not None and now - last > self.idle):
                return
            message = self.consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    done.add(message.partition())
                continue
            last = time.monotonic()
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
            yield message
