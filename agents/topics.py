"""Every topic, declared once, in flow order.

ticks -> features -> predictions -> outcomes -> (learning) -> performance, alerts / model-events;
tick-batches (several ticks a record, connectors.batching), external-features and feedback enter beside
the ticks; dead-letters collects what any stage rejected.
All data topics are keyed by symbol and share one partition count, so Faust co-partitions them: the
worker that owns a symbol's ticks also owns its external feedback and its model state.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.settings import Settings


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
    return created
