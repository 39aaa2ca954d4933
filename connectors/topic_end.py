"""Read a topic from its start to its end as of now: every partition, in offset order per partition.

One reader for everything that needs "the whole topic" (checkpoint restore, the CLI's readers, reports).
The end of a partition is its end-of-partition event, not ``offset + 1 == high watermark``: with
transactions the high watermark counts commit markers, which are never delivered, so that test would
never pass and every read would wait for its timeout. Empty partitions are not assigned at all.
Consumers read committed records only (librdkafka's default), so aborted outputs never show.

A read_committed consumer sees a partition only up to its last stable offset (LSO): the first record
of the oldest transaction still open. Records committed after that record are there but hidden, and
librdkafka's watermark query answers the LSO too. A reader that must see every record committed
before it started (a checkpoint restore: an open transaction of a killed worker's partition hid a
newer checkpoint of another partition on the same checkpoints partition, and a restore from the older
one skipped 200 ticks in a chaos run) asks for ``stable=True``: the partitions' high watermarks are
read uncommitted first, and the read begins once every LSO has reached them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def asked_again(call: Callable[[], T], transient: Container[int], deadline: float) -> T:
    """``call()``, asked again every 0.2 s while it raises a KafkaError whose code is in ``transient``
    (a topic just created, a leader being elected), until ``deadline`` (``time.monotonic()``)."""
    from confluent_kafka import KafkaError, KafkaException

    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.code() not in transient or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class TopicToEnd:
    """``with TopicToEnd(config, topic) as reader: for message in reader: ...`` yields every record
    (of ``partitions`` only, where given; errors other than end-of-partition are skipped);
    ``reader.consumer`` stays usable inside the block (e.g. for other watermarks). Stops at the end of
    every partition read, after ``timeout`` seconds in all, or (with ``idle``) after that long without
    a record."""

    def __init__(self, client_config: dict[str, Any], topic: str, group_prefix: str = "reader",
                 timeout: float = 120.0, idle: float | None = None, metadata_timeout: float = 10.0,
                 strict: bool = False, stable: bool = False, partitions: Iterable[int] | None = None):
        self.config = {**client_config, "group.id": f"{group_prefix}-{uuid.uuid4().hex}",
                       "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True}
        self.topic, self.timeout, self.idle, self.metadata_timeout = topic, timeout, idle, metadata_timeout
        # strict: a metadata error other than "no such topic" raises instead of reading as an empty topic
        # (a broker that is restarting answers "leader not available"; a checkpoint restore must not
        # take that for "no checkpoints").
        self.strict = strict
        self.stable = stable
        # Only these partitions of the topic (those that exist); None: all of them.
        self.partitions = None if partitions is None else frozenset(partitions)
        # stable: the partitions whose open transaction held the read back last time, with the offsets
        # (LSO, high watermark), so a caller can say what it waits for.
        self.unstable: dict[int, tuple[int, int]] = {}
        self.consumer: Any = None
        # True once every partition was read to its end (False after a timeout or idle stop: a reader
        # that must see everything, like a checkpoint restore, checks it).
        self.complete = False
        # The partitions the last read went through, with the end offsets it read them to (empty: the
        # topic was unknown, had no partitions or held no records), for a caller's log.
        self.ends: dict[int, int] = {}

    def __enter__(self) -> TopicToEnd:
        from confluent_kafka import Consumer

        self.consumer = Consumer(self.config)
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.close()

    def _watermarks(self, consumer: Any = None) -> dict[int, tuple[int, int]]:
        """Partition -> (low, end offset); the end is the LSO for a read_committed consumer."""
        from confluent_kafka import TopicPartition

        consumer = consumer or self.consumer
        metadata = consumer.list_topics(self.topic, timeout=self.metadata_timeout).topics.get(self.topic)
        if metadata is None:
            return {}
        if metadata.error is not None:
            from confluent_kafka import KafkaError, KafkaException

            if self.strict and metadata.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaException(metadata.error)
            return {}
        # One deadline for the whole read: a topic of many leaderless partitions waits metadata_timeout, not
        # that once per partition.
        deadline = time.monotonic() + self.metadata_timeout
        return {p: self._partition_watermarks(consumer, TopicPartition(self.topic, p), deadline)
                for p in metadata.partitions if self.partitions is None or p in self.partitions}

    def _partition_watermarks(self, consumer: Any, partition: Any, deadline: float) -> tuple[int, int]:
        """One partition's watermarks, asked again until ``deadline`` (``time.monotonic()``) while the
        broker answers that it is not (yet) the partition's leader: a topic just created, or a leader
        being elected, answered NOT_LEADER_FOR_PARTITION once under load, and the reader raised it."""
        from confluent_kafka import KafkaError

        transient = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                     KafkaError.UNKNOWN_TOPIC_OR_PART}
        return asked_again(lambda: consumer.get_watermark_offsets(partition, timeout=self.metadata_timeout),
                           transient, deadline)

    def _ends(self, consumer: Any = None) -> dict[int, int]:
        """Partition -> end offset, for the partitions that hold records."""
        return {p: high for p, (low, high) in self._watermarks(consumer).items() if high > low}

    def _stable_ends(self, started: float) -> dict[int, int] | None:
        """The read_committed ends once each is at least the partition's high watermark as of now; None
        when an open transaction still holds one back after ``timeout`` (see :attr:`unstable`)."""
        from confluent_kafka import Consumer

        probe = Consumer({**self.config, "isolation.level": "read_uncommitted"})
        try:
            highs = self._ends(probe)
        finally:
            probe.close()
        while True:
            marks = self._watermarks()
            self.unstable = {p: (marks[p][1] if p in marks else 0, high) for p, high in highs.items()
                             if p not in marks or marks[p][1] < high}
            if not self.unstable:
                return {p: end for p, (low, end) in marks.items() if end > low}
            if time.monotonic() - started > self.timeout:
                return None
            time.sleep(0.2)

    def __iter__(self) -> Iterator[Any]:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        self.complete, self.ends = False, {}
        started = time.monotonic()
        ends = self._stable_ends(started) if self.stable else self._ends()
        if ends is None:
            return
        self.ends = dict(ends)
        if not ends:
            self.complete = True
            return
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
        done: set[int] = set()
        last = time.monotonic()
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
        self.complete = True


def committed_offsets(client_config: dict[str, Any], group: str, topic_partitions: list[tuple[str, int]],
                      timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """A consumer group's committed positions (the next offset it will read) for these partitions,
    those it has committed only. Asked without joining the group (an OffsetFetch request), so the
    group's members are not disturbed."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_config, "group.id": group, "enable.auto.commit": False})
    try:
        answer = consumer.committed([TopicPartition(t, p) for t, p in topic_partitions], timeout=timeout)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in answer if tp.error is None and tp.offset >= 0}


def read_between(client_config: dict[str, Any], topic: str, partition: int, start: int, stop: int,
                 timeout: float = 60.0) -> Iterator[Any]:
    """The records of one partition from offset ``start`` up to, not including, ``stop`` (committed
    records only; offsets the log no longer holds are simply not there: compare the first offset
    with ``start``). Raises TimeoutError when the read does not get to ``stop`` or the partition's end
    within ``timeout`` seconds: a caller that must see every record cannot take a part for the whole."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    if stop <= start:
        return
    consumer = Consumer({**client_config, "group.id": f"range-reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    return
                if message.error().fatal():
                    raise KafkaException(message.error())
                continue
            if message.offset() >= stop:
                return
            yield message
            if message.offset() + 1 >= stop:
                return
        raise TimeoutError(f"{topic}[{partition}] not read from offset {start} to {stop} within {timeout:.0f} s")
    finally:
        consumer.close()


def first_offset(client_config: dict[str, Any], topic: str, partition: int, timeout: float = 10.0) -> int:
    """The oldest offset a partition still holds (its log start: retention moves it on)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_config, "group.id": f"watermarks-{uuid.uuid4().hex}"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[0]
    finally:
        consumer.close()
