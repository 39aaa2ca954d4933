"""Where connectors put what they read: Avro ticks (or feedback) on Kafka, rejects on the dead-letter topic."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from connectors.producer import DeliveryFailed, kafka_timestamp, make_producer
from schemas.codec import make_codec
from schemas.records import dead_letter


class KafkaSink:
    """Idempotent Avro producer for one record topic plus the dead-letter topic."""

    def __init__(self, client_config: dict[str, str], topic: str, dead_letter_topic: str, schema: str = "tick",
                 registry_url: str = "", stage: str = "replay", linger_ms: int = 20,
                 key_of: Callable[[str], str] | None = None):
        self.topic = topic
        # Symbol -> Kafka key (schemas.keys: a basis group's pairs share a key, so a partition).
        self.key_of = key_of
        self.dead_letter_topic = dead_letter_topic
        self.stage = stage
        self.codec = make_codec(schema, registry_url, topic)
        self.dead_codec = make_codec("dead_letter", registry_url, dead_letter_topic)
        self.producer = make_producer(client_config, linger_ms=linger_ms)
        self.produced = 0
        self.rejected: Counter[str] = Counter()
        self.delivery_errors: list[str] = []

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.delivery_errors.append(str(err))

    def _produce(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, timestamp=kafka_timestamp(timestamp_ms),
                                      on_delivery=self._on_delivery)
                break
            except BufferError:
                # Local queue full: let librdkafka drain it, then retry (back-pressure, not data loss).
                self.producer.poll(0.1)
        self.producer.poll(0)

    def send(self, record: dict[str, Any], key: str, timestamp_ms: int) -> None:
        """Produce ``record`` keyed by ``key`` (a symbol, mapped by ``key_of`` when set)."""
        if self.key_of is not None:
            key = self.key_of(key)
        self._produce(self.topic, key.encode(), self.codec.encode(record), timestamp_ms)
        self.produced += 1

    def waiting(self, seconds: float) -> None:
        """The caller is about to wait (a paced replay): nothing is held here (see connectors.batching)."""

    def reject(self, reason_code: str, reason: str, origin: str, line: int, raw: bytes,
               key: bytes | None = None) -> None:
        self.rejected[reason_code] += 1
        record = dead_letter(self.stage, reason_code, reason, origin, -1, line, key, raw)
        self._produce(self.dead_letter_topic, key, self.dead_codec.encode(record), record["error_time_ms"])

    def flush(self, timeout: float = 60.0) -> None:
        remaining = self.producer.flush(timeout)
        if remaining:
            raise DeliveryFailed(f"{remaining} records were not delivered within {timeout:.0f} s")
        if self.delivery_errors:
            raise DeliveryFailed(f"{len(self.delivery_errors)} records failed delivery: {self.delivery_errors[0]}")
