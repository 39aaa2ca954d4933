"""Read whole topics (every partition, from the beginning) and decode them: for reports and the demo.

Readers see each output once whatever the processing guarantee: librdkafka's consumers read committed
records only (exactly-once: outputs of an aborted transaction never show), and a record repeated by an
at-least-once worker after a crash (byte-identical, same id) is dropped by its identity.
"""

from __future__ import annotations

import sys

from agents.settings import Settings
from cli.errors import CliError
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


def read_records(settings: Settings, stage: str, schema: str, idle_s: float = 10.0,
                 timeout_s: float = 600.0) -> list[dict]:
    """Decoded records of a stage's topic, in partition/offset order per partition, each once.

    A topic not read to its end (the broker went away, or no record came for ``idle_s`` while some
    partition was unfinished) raises :class:`CliError`: scores computed from part of a run would look
    like the run's. Records that do not decode are skipped and counted on stderr, with the first reason."""
    topic = settings.topic(stage)
    codec = make_codec(schema, settings.schema_registry_url, topic)
    records = []
    dedup = Dedup(stage)
    undecodable, first = 0, ""
    with TopicToEnd(settings.client_config(), topic, timeout=timeout_s, idle=idle_s) as reader:
        for message in reader:
            try:
                record = codec.decode(message.value(), message.topic(), message.partition(), message.offset())
            except DecodeError as exc:
                undecodable, first = undecodable + 1, first or str(exc)
                continue
            if dedup.fresh(record):
                records.append(record)
        if not reader.complete:
            raise CliError(f"{topic} was not read to its end ({len(records):,} records read; the read stops after "
                           f"{timeout_s:.0f} s, or after {idle_s:.0f} s without a record): is the broker "
                           "answering? Nothing was scored from a partial read", code=2)
    if undecodable:
        print(f"{topic}: {undecodable:,} records skipped that do not decode as {schema} (first: {first})",
              file=sys.stderr)
    return records
