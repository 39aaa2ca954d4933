"""Read whole topics (every partition, from the beginning) and decode them: for reports and the demo.

Readers see each output once whatever the processing guarantee: librdkafka's consumers read committed
records only (exactly-once: outputs of an aborted transaction never show), and a record repeated by an
at-least-once worker after a crash (byte-identical, same id) is dropped by its identity.
"""

from __future__ import annotations

from agents.settings import Settings
from connectors.topic_end import TopicToEnd
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
    topic = settings.topic(stage)
    codec = make_codec(schema, settings.schema_registry_url, topic)
    records = []
    dedup = Dedup(stage)
    with TopicToEnd(settings.client_config(), topic, timeout=timeout_s, idle=max(idle_s, 10)) as reader:
        for message in reader:
            try:
                record = codec.decode(message.value(), message.topic(), message.partition(), message.offset())
            except DecodeError:
                continue
            if dedup.fresh(record):
                records.append(record)
    return records
