"""Read whole topics (every partition, from the beginning) and decode them: for reports and the demo.

Readers see each output once whatever the processing guarantee: librdkafka's consumers read committed
records only (exactly-once: outputs of an aborted transaction never show), and a record repeated by an
at-least-once worker after a crash (byte-identical, same id) is dropped by its identity.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable

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


def missing_topic(settings: Settings, stage: str, timeout: float = 10.0) -> str | None:
    """None when the stage's topic exists; otherwise what to tell the user: the topic, the prefix in
    use, and the prefixes this broker does have topics of that stage under (a mistyped or forgotten
    ``LIVELEARN_TOPIC_PREFIX`` is the usual cause, and reading would otherwise report an empty run)."""
    from confluent_kafka.admin import AdminClient

    topic = settings.topic(stage)
    names = AdminClient(settings.client_config()).list_topics(timeout=timeout).topics
    if topic in names:
        return None
    return (f"topic {topic} does not exist (LIVELEARN_TOPIC_PREFIX={settings.topic_prefix!r} on "
            f"{settings.bootstrap_servers}){prefix_hint(names, stage, settings.topic_prefix)}")


def prefix_hint(names: Iterable[str], stage: str, prefix: str) -> str:
    """The prefixes whole livelearn topic sets have on a broker, closest to ``prefix`` first (a typo shows
    its intended prefix at the head of the list).

    >>> prefix_hint(["a.ticks", "a.alerts", "b.ticks", "b.alerts", "x.shadow-alerts"], "alerts", "b,")
    "; this broker has alerts topics under the prefixes 'b.', 'a.'"
    >>> prefix_hint([], "alerts", "a.")
    '; nothing has run on this broker yet (the worker and `livelearn replay` create the topics)'
    """
    names = set(names)
    prefixes = {p for p in (name[: -len(stage)] for name in names if name.endswith(stage))
                if f"{p}ticks" in names and not p.startswith("_")}
    if not prefixes:  # (difflib refuses n=0: a fresh broker was an error, not this line)
        return "; nothing has run on this broker yet (the worker and `livelearn replay` create the topics)"
    ranked = difflib.get_close_matches(prefix, sorted(prefixes), n=len(prefixes), cutoff=0.0)
    return (f"; this broker has {stage} topics under the prefixes {', '.join(repr(p) for p in ranked[:8])}"
            f"{' ...' if len(ranked) > 8 else ''}")


# Records between progress lines (on a terminal only): a day-long run's topics hold millions.
PROGRESS_EVERY = 100_000


def read_records(settings: Settings, stage: str, schema: str, idle_s: float = 10.0,
                 timeout_s: float = 600.0, keep: Callable[[dict], dict] | None = None) -> list[dict]:
    """Decoded records of a stage's topic, in partition/offset order per partition, each once; with
    ``keep``, what it returns of each record (a long run's topics need not be held whole). On a
    terminal, a progress line every ``PROGRESS_EVERY`` records.

    A topic that does not exist, or one not read to its end (the broker went away, or no record came
    for ``idle_s`` while some partition was unfinished) raises :class:`CliError`: scores computed from
    part of a run would look like the run's. Records that do not decode are skipped and counted on stderr, with the first reason."""
    problem = missing_topic(settings, stage)
    if problem is not None:
        raise CliError(problem, code=2)
    topic = settings.topic(stage)
    codec = make_codec(schema, settings.schema_registry_url, topic)
    records = []
    dedup = Dedup(stage)
    undecodable, first = 0, ""
    progress, read = sys.stderr.isatty(), 0
    with TopicToEnd(settings.client_config(), topic, timeout=timeout_s, idle=idle_s) as reader:
        for read, message in enumerate(reader, 1):
            if progress and read % PROGRESS_EVERY == 0:
                print(f"\rreading {topic}: {read:,} records", end="", file=sys.stderr, flush=True)
            try:
                record = codec.decode(message.value(), message.topic(), message.partition(), message.offset())
            except DecodeError as exc:
                undecodable, first = undecodable + 1, first or str(exc)
                continue
            if dedup.fresh(record):
                records.append(record if keep is None else keep(record))
        if progress and read >= PROGRESS_EVERY:
            print(file=sys.stderr)
        if not reader.complete:
            raise CliError(f"{topic} was not read to its end ({len(records):,} records read; the read stops after "
                           f"{timeout_s:.0f} s, or after {idle_s:.0f} s without a record): is the broker "
                           "answering? Nothing was scored from a partial read", code=2)
    if undecodable:
        print(f"{topic}: {undecodable:,} records skipped that do not decode as {schema} (first: {first})",
              file=sys.stderr)
    return records
