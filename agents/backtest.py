"""backtest: the pipeline over the ticks already on the ticks topic, read and written in batches.

The batched replay path. A confluent-kafka consumer reads every partition of the ticks topic from its
start up to the end offset it had when the run began, thousands of records per call; each tick goes
through the worker's own stage functions (:func:`agents.featurize.featurize_now`,
:func:`agents.predict.predict_and_learn_now`) with a fresh state per partition, and the outputs are
queued to librdkafka, which sends them in batches. Faust's per-event machinery is skipped, the
computation is not: the records equal those of a fresh worker on the same topic (prediction ids,
probabilities, weights, alerts, feedback; ``latency_ms``, performance latencies and dead letters'
error times are wall-clock).

Run it instead of a worker on a topic prefix of its own (``LIVELEARN_TOPIC_PREFIX``), not beside one:
both would publish the same outputs. It writes no checkpoints: a backtest is re-run from the start.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from agents.app import dead_letter_record, flush_now, produce_now, producer, settings
from agents.featurize import STAGE as FEATURIZE
from agents.featurize import PartitionPipeline, featurize_now
from agents.predict import STAGE as PREDICT
from agents.predict import predict_and_learn_now
from streams.learning import InvalidVector

log = logging.getLogger("livelearn.backtest")
BATCH = 5_000


def _produce(stage: str, key, record: dict, timestamp_ms: int | None = None) -> None:
    while not produce_now(stage, key, record, timestamp_ms):
        pass  # produce_now served deliveries; the queue drains as the broker acknowledges


def run_backtest(progress: Callable[[int, int], None] | None = None, timeout: float = 20.0) -> dict[str, int]:
    """Process the ticks topic as it is now; returns counts (ticks, vectors, predictions, alerts,
    dead letters). ``progress(done, total)`` is called after each batch."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic("ticks")
    consumer = Consumer({**settings.client_config(), "group.id": f"livelearn-backtest-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.max.bytes": 64 * 1024 * 1024})
    counts = {"ticks": 0, "vectors": 0, "predictions": 0, "alerts": 0, "dead_letters": 0}
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise RuntimeError(f"topic {topic} does not exist (replay data into it first)")
        ends, starts = {}, []
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        total = sum(ends[tp.partition] - tp.offset for tp in starts)
        states = {partition: PartitionPipeline() for partition in ends}
        consumer.assign(starts)
        remaining = set(ends)
        while remaining:
            for message in consumer.consume(BATCH, 1.0):
                if message.error():
                    log.warning("backtest: consumer error %s", message.error())
                    continue
                partition, offset = message.partition(), message.offset()
                if partition not in remaining or offset >= ends[partition]:
                    continue  # arrived after the run began
                if offset + 1 >= ends[partition]:
                    remaining.discard(partition)
                counts["ticks"] += 1
                _process(states[partition], message, topic, partition, offset, counts)
            producer.poll(0)
            if progress:
                progress(counts["ticks"], total)
    finally:
        consumer.close()
    flush_now(timeout=120)
    return counts


def _process(state: PartitionPipeline, message, topic: str, partition: int, offset: int,
             counts: dict[str, int]) -> None:
    key, value = message.key(), message.value()
    vector, rejection = featurize_now(state.engine, value, topic, partition, offset)
    if rejection is not None:
        counts["dead_letters"] += 1
        _produce("dead-letters", key, dead_letter_record(FEATURIZE, *rejection, topic, partition, offset, key, value))
    if vector is None:
        return
    counts["vectors"] += 1
    _produce("features", key, vector, vector["event_time_ms"])
    try:
        outputs = predict_and_learn_now(state.models, vector, key)
    except InvalidVector as exc:
        counts["dead_letters"] += 1
        _produce("dead-letters", key, dead_letter_record(PREDICT, "invalid_features", str(exc), topic, partition,
                                                         offset, key, value))
        return
    except Exception as exc:
        log.exception("predict failed on %s[%s]@%s", topic, partition, offset)
        counts["dead_letters"] += 1
        _produce("dead-letters", key, dead_letter_record(PREDICT, "internal_error", f"{type(exc).__name__}: {exc}",
                                                         topic, partition, offset, key, value))
        return
    for stage, output_key, record, timestamp_ms in outputs:
        counts["predictions"] += stage == "predictions"
        counts["alerts"] += stage == "alerts"
        _produce(stage, output_key, record, timestamp_ms)

