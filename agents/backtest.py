"""backtest: the pipeline over the ticks already on the ticks topics, read and written in batches.

The batched replay path. A confluent-kafka consumer reads every partition of the ticks topic (and of
tick-batches, whose records it unpacks as the worker does) from its start up to the end offset it had
when the run began, thousands of records per call; each tick goes
through a fresh :class:`streams.pipeline.PartitionPipeline` per partition (the worker's own), and the
outputs are queued to librdkafka, which sends them in batches. Faust's per-event machinery is skipped,
the computation is not: the records equal those of a fresh worker on the same topic (prediction ids,
probabilities, weights, alerts, outcomes; ``latency_ms``, performance latencies and dead letters'
error times are wall-clock).

Run it instead of a worker on a topic prefix of its own (``LIVELEARN_TOPIC_PREFIX``), not beside one:
both would publish the same outputs. It writes no checkpoints: a backtest is re-run from the start.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from agents.app import Runtime
from agents.settings import Settings
from agents.steps import batch_steps
from schemas.codec import DecodeError
from streams.pipeline import PartitionPipeline, Step

log = logging.getLogger("livelearn.backtest")
BATCH = 5_000


def run_backtest(settings: Settings, progress: Callable[[int, int], None] | None = None,
                 timeout: float = 20.0) -> dict[str, int]:
    """Process the ticks topics as they are now; returns counts (ticks, vectors, predictions, alerts,
    dead letters). ``progress(done, total)`` (records) is called after each batch. A symbol's ticks
    are expected on one of the two topics: across topics the order is the consumer's, as in a worker."""
    from confluent_kafka import Consumer, TopicPartition

    runtime = Runtime(settings, faust=False)
    topics = [runtime.topic_names["ticks"], runtime.topic_names["tick-batches"]]
    consumer = Consumer({**settings.client_config(), "group.id": f"livelearn-backtest-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.max.bytes": 64 * 1024 * 1024})
    counts = {"ticks": 0, "vectors": 0, "predictions": 0, "alerts": 0, "dead_letters": 0}
    try:
        ends: dict[tuple[str, int], int] = {}
        starts = []
        listed = consumer.list_topics(timeout=timeout).topics
        if topics[0] not in listed:
            raise RuntimeError(f"topic {topics[0]} does not exist (replay data into it first)")
        for topic in topics:
            metadata = listed.get(topic)
            if metadata is None or metadata.error is not None:
                continue  # tick-batches: made by the first worker or batched replay
            for partition in sorted(metadata.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
                if high > low:
                    ends[topic, partition] = high
                    starts.append(TopicPartition(topic, partition, low))
        total = sum(ends[tp.topic, tp.partition] - tp.offset for tp in starts)
        if not total:
            raise RuntimeError(f"topics {' and '.join(topics)} hold no ticks: nothing to backtest (replay ticks into "
                               "them first)")
        pipelines = {partition: PartitionPipeline(runtime.pipeline) for partition in {p for _, p in ends}}
        codec, batch_codec = runtime.codecs["ticks"], runtime.codecs["tick-batches"]
        consumer.assign(starts)
        remaining = set(ends)
        records = 0
        while remaining:
            # Never ask for more than is left: consume() waits its whole timeout for a batch it cannot fill,
            # a second lost at the end of every run.
            for message in consumer.consume(max(1, min(BATCH, total - records)), 1.0):
                if message.error():
                    log.warning("backtest: consumer error %s", message.error())
                    continue
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if (topic, partition) not in remaining or offset >= ends[topic, partition]:
                    continue  # arrived after the run began
                if offset + 1 >= ends[topic, partition]:
                    remaining.discard((topic, partition))
                records += 1
                origin = (topic, partition, offset, message.key(), message.value())
                if topic == topics[0]:
                    counts["ticks"] += 1
                    try:
                        step = pipelines[partition].on_tick(codec.decode(message.value(), topic, partition, offset),
                                                            int(time.time() * 1000), origin)
                    except DecodeError as exc:
                        step = Step(rejection=("featurize", "decode_error", str(exc), None))
                    _emit(runtime, step, origin, counts)
                    continue
                try:
                    ticks = batch_codec.decode(message.value(), topic, partition, offset)["ticks"]
                except DecodeError as exc:
                    _emit(runtime, Step(rejection=("featurize", "decode_error", str(exc), None)), origin, counts)
                    continue
                for step, own in batch_steps(pipelines[partition], ticks, int(time.time() * 1000), origin,
                                             codec.encode):
                    counts["ticks"] += 1
                    _emit(runtime, step, own, counts)
            runtime.producer.poll(0)
            if progress:
                progress(records, total)
        now_ms = int(time.time() * 1000)
        for pipeline in pipelines.values():  # what a reorder window still holds
            for released, origin in pipeline.flush(now_ms):
                _emit_one(runtime, released, origin, counts)
    finally:
        consumer.close()
    runtime.flush_now(timeout=120)
    return counts


def _produce(runtime: Runtime, stage: str, key, record: dict, timestamp_ms: int | None = None) -> None:
    while not runtime.produce_now(stage, key, record, timestamp_ms):
        pass  # produce_now served deliveries; the queue drains as the broker acknowledges


def _emit(runtime: Runtime, step: Step, origin: tuple, counts: dict[str, int]) -> None:
    _emit_one(runtime, step, origin, counts)
    for released, held_origin in step.released:
        _emit_one(runtime, released, held_origin, counts)


def _emit_one(runtime: Runtime, step: Step, origin: tuple, counts: dict[str, int]) -> None:
    topic, partition, offset, key, value = origin
    for output in step.records:
        counts["vectors"] += output.stage == "features"
        counts["predictions"] += output.stage == "predictions"
        counts["alerts"] += output.stage == "alerts"
        _produce(runtime, output.stage, output.key, output.record, output.timestamp_ms)
    runtime.metrics.export(step.stats)
    if step.rejection is not None:
        stage, code, reason, error = step.rejection
        if error is not None:
            log.error("%s failed on %s[%s]@%s", stage, topic, partition, offset, exc_info=error)
        counts["dead_letters"] += 1
        record = runtime.dead_letter_record(stage, code, reason, topic, partition, offset, key, value)
        _produce(runtime, "dead-letters", record["key"], record)
