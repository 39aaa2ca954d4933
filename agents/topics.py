"""Every topic, declared once, in flow order.

ticks -> features -> predictions -> outcomes -> (learning) -> performance, alerts / model-events;
tick-batches (several ticks a record, connectors.batching), external-features and feedback enter beside
the ticks; dead-letters collects what any stage rejected.
All data topics are keyed by symbol and share one partition count, so Faust co-partitions them: the
worker that owns a symbol's ticks also owns its external feedback and its model state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from agents.settings import Settings

log = logging.getLogger("livelearn.topics")


@dataclass(frozen=True)
class TopicSpec:
    stage: str
    schema: str
    doc: str
    retention_ms: int | None = None
    compacted: bool = False


DAY_MS = 86_400_000
# A checkpoint holds every model of a partition's symbols; allow it to outgrow Kafka's 1 MB default
# (larger states are split into several records, see agents.checkpoints).
CHECKPOINT_MAX_BYTES = 16 * 1024 * 1024
# A compacted topic keeps every record of its active segment, and a segment rolls only at
# segment.bytes (1 GiB by default) or segment.ms (7 days): a busy partition checkpoints a few MB every
# 5 s, so with the broker's defaults a restore (every restart and rebalance) read, and held, up to a
# gigabyte of superseded checkpoints per checkpoints partition (measured: 30,000 synthetic ticks left
# six checkpoints of 2.6 MB each on the topic, none compacted). Segments of 64 MiB (four of the
# largest record) or 10 minutes, cleaned once a tenth of the log is superseded, bound that.
COMPACTED_CONFIG = {"segment.bytes": str(4 * CHECKPOINT_MAX_BYTES), "segment.ms": str(10 * 60_000),
                    "min.cleanable.dirty.ratio": "0.1"}

FLOW: tuple[TopicSpec, ...] = (
    TopicSpec("ticks", "tick", "Market events from connectors (replay, live, produce, synth)."),
    TopicSpec("tick-batches", "tick_batch", "Micro-batches of one basis group's ticks from livelearn's own "
                                            "connectors (replay --batch); applied as the ticks topic's are."),
    TopicSpec("features", "features", "Per-symbol feature vectors, one per price tick."),
    TopicSpec("external-features", "features",
              "Feature vectors entering after featurize (labelled datasets, precomputed features)."),
    TopicSpec("predictions", "prediction", "Ensemble predictions, published before outcomes are known."),
    TopicSpec("shadow-predictions", "prediction", "Predictions of challenger variants that did not serve (shadow)."),
    TopicSpec("outcomes", "feedback", "Realised outcomes of predictions (market moves, dataset labels); the worker "
                                      "publishes them and does not read them back."),
    TopicSpec("feedback", "feedback", "External feedback on a prediction id (trading systems, people): an input."),
    TopicSpec("performance", "performance", "Periodic scores of every member, the ensemble and the baseline."),
    TopicSpec("alerts", "drift_alert", "Drift alerts and their resolutions."),
    TopicSpec("model-events", "model_event", "Model lifecycle: checkpoints, resets, promotions, rollbacks."),
    TopicSpec("dead-letters", "dead_letter", "Rejected input with reason and original bytes.", 30 * DAY_MS),
    TopicSpec("checkpoints", "checkpoint", "Stage state per input partition with the offset it reflects.",
              compacted=True),
)

BY_STAGE = {spec.stage: spec for spec in FLOW}
# The topics a worker reads, co-partitioned; the ticks topic first (a checkpoint's headline offset).
INPUT_STAGES: tuple[str, ...] = ("ticks", "tick-batches", "external-features", "feedback")


def topic_names(settings: Settings) -> dict[str, str]:
    return {spec.stage: settings.topic(spec.stage) for spec in FLOW}


class NotCoPartitioned(RuntimeError):
    """The input topics do not share one partition count (a worker refuses to start)."""


class InputTopicsNotListed(TimeoutError):
    """Input topics just created are still not in the broker's metadata answers (a worker does not start)."""


def copartitioned(counts: dict[str, int]) -> int:
    """The one partition count of the input topics ``counts`` (name -> partitions, in INPUT_STAGES order).

    A record's key picks its partition by hash modulo the topic's partition count, and Faust co-assigns
    only topics of equal counts. With unequal ones a basis group's ticks and its feedback reach
    partitions of different numbers, often held by different workers: the feedback finds no prediction
    there and is dead-lettered, and ticks and tick-batches of one group build two models, neither
    complete. So a worker refuses to start instead of running split.

    >>> copartitioned({"ticks": 4, "feedback": 4})
    4
    >>> copartitioned({"ticks": 4, "feedback": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    agents.topics.NotCoPartitioned: the input topics do not share one partition count (ticks 4, feedback 2): ...
    """
    if not counts:
        raise ValueError("no input topics to compare")
    largest = max(counts.values())
    if min(counts.values()) == largest:
        return largest
    shown = ", ".join(f"{name} {count}" for name, count in counts.items())
    raise NotCoPartitioned(
        f"the input topics do not share one partition count ({shown}): a basis group's ticks and its feedback "
        "would reach partitions of different numbers (feedback dead-lettered, a group split between two "
        f"models). Give each of them {largest} partitions (kafka-topics.sh --bootstrap-server HOST:PORT --alter "
        f"--topic NAME --partitions {largest}; with the local broker: livelearn kafka tool topics ...); in a "
        "topic that already holds records, the groups whose keys then hash to another partition start new "
        "models there.")


def input_partition_counts(settings: Settings, timeout: float = 30.0, topics: dict[str, Any] | None = None,
                           every: bool = False) -> dict[str, int]:
    """The partition count of each input topic that exists (INPUT_STAGES order), from ``topics`` (a
    metadata answer's topics) or asked now.

    ``every``: the input topics were just created, so wait, up to ``timeout`` seconds, until each of them
    is listed with its partitions. Kafka answers create_topics once the controller has the topic, and a
    broker's metadata answer can lag behind it (a topic missing, or listed with LEADER_NOT_AVAILABLE):
    a check right after creating them compared nothing, in 1 CI run of several."""
    names = [settings.topic(stage) for stage in INPUT_STAGES]
    if topics is not None:
        return _counts(topics, names)
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.client_config())
    deadline = time.monotonic() + timeout
    while True:
        counts = _counts(admin.list_topics(timeout=max(deadline - time.monotonic(), 1.0)).topics, names)
        missing = [name for name in names if name not in counts]
        if not every or not missing:
            return counts
        if time.monotonic() >= deadline:
            raise InputTopicsNotListed(f"input topics {', '.join(missing)} not listed with partitions by the "
                                       f"broker {timeout:.0f} s after they were created")
        time.sleep(0.2)


def _counts(topics: dict[str, Any], names: list[str]) -> dict[str, int]:
    return {name: len(topics[name].partitions) for name in names
            if name in topics and topics[name].error is None and topics[name].partitions}


def create_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics with explicit partition counts; returns the names it created."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.client_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = []
    for spec in FLOW:
        name = settings.topic(spec.stage)
        if name in existing:
            continue
        # Kafka timestamps are event times; a replay of 2020 data would fall outside any time-based
        # retention at once and be deleted at the next retention check. Data topics keep everything
        # unless LIVELEARN_RETENTION_MS says otherwise.
        config = {"retention.ms": str(spec.retention_ms if spec.retention_ms is not None else settings.retention_ms)}
        if spec.compacted:
            config["cleanup.policy"] = "compact"
            config["max.message.bytes"] = str(CHECKPOINT_MAX_BYTES)
            config.update(COMPACTED_CONFIG)
        wanted.append(NewTopic(name, num_partitions=settings.kafka.partitions,
                               replication_factor=settings.kafka.replication_factor, config=config))
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items() if wanted else []:
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    for spec in FLOW:
        name = settings.topic(spec.stage)
        if spec.compacted and name not in created:  # there before (or made meanwhile by another process)
            _compact_sooner(admin, name, timeout)
    return created


def _compact_sooner(admin: Any, name: str, timeout: float) -> None:
    """A compacted topic made before COMPACTED_CONFIG (or by hand) gets those settings where it has the
    broker's defaults; a value set on the topic itself is left as it is. A principal that may not alter
    topic configurations gets a warning: restores then read more than they need, nothing fails."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ConfigSource,
        ResourceType,
    )

    resource = ConfigResource(ResourceType.TOPIC, name)
    try:
        entries = _described(admin, resource, timeout)
        _say_expiry(name, entries)
        unset = [key for key in COMPACTED_CONFIG if key in entries and entries[key].value != COMPACTED_CONFIG[key]
                 and entries[key].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value]
        if not unset:
            return
        change = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry(key, COMPACTED_CONFIG[key], incremental_operation=AlterConfigOpType.SET) for key in unset])
        admin.incremental_alter_configs([change], request_timeout=timeout)[change].result(timeout)
        log.info("topic %s: set %s (superseded checkpoints are compacted away sooner)", name,
                 ", ".join(f"{key}={COMPACTED_CONFIG[key]}" for key in unset))
    except Exception as exc:  # never a reason not to start: the topic works as it is
        reason = exc.args[0].str() if isinstance(exc, KafkaException) and exc.args else repr(exc)
        log.warning("topic %s: could not set %s (%s): a restore reads every checkpoint the broker has not "
                    "compacted yet", name, ", ".join(COMPACTED_CONFIG), reason)


def _described(admin: Any, resource: Any, timeout: float, known_within: float = 10.0) -> dict[str, Any]:
    """The topic's configuration. A topic made moments before (by a test, an operator's script or
    another worker starting beside this one) may not be known yet to the broker that answers: that
    answer is asked again for up to ``known_within`` seconds. Taken as final, it cost the topic its
    compaction settings and the check of its retention (a test run hit it once on a loaded machine:
    the topic made just before, ``Unknown topic or partition``)."""
    from confluent_kafka import KafkaError

    from connectors.topic_end import asked_again

    return asked_again(lambda: admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout),
                       {KafkaError.UNKNOWN_TOPIC_OR_PART}, time.monotonic() + min(known_within, timeout))


def _say_expiry(name: str, entries: dict[str, Any]) -> None:
    """A checkpoints topic whose records expire (``cleanup.policy`` delete, or compact and delete, with
    a finite ``retention.ms``: made by hand or by another tool) loses the last checkpoint of a partition
    quiet for longer, and that partition then starts fresh. Said, not changed: the policy is the
    operator's."""
    policy = entries["cleanup.policy"].value if "cleanup.policy" in entries else "delete"
    retention = entries["retention.ms"].value if "retention.ms" in entries else None
    if "delete" in policy.split(",") and retention not in (None, "-1"):
        log.error("topic %s: cleanup.policy=%s with retention.ms=%s deletes checkpoints older than that: a partition "
                  "without a checkpoint newer than that starts fresh (its models are lost); set cleanup.policy=compact "
                  "on the topic", name, policy, retention)
