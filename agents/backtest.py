"""backtest: the pipeline over the inputs already on the input topics, read and written in batches.

The batched replay path. A confluent-kafka consumer reads every partition of the ticks topic (and of
tick-batches, whose records it unpacks as the worker does, and of external-features) from its start
up to the end offset it had when the run began, thousands of records per call; each tick goes
through a fresh :class:`streams.pipeline.PartitionPipeline` per partition (the worker's own), and the
outputs are queued to librdkafka, which sends them in batches. Faust's per-event machinery is skipped,
the computation is not: the records equal those of a fresh worker on the same topic (prediction ids,
probabilities, weights, alerts, outcomes; ``latency_ms``, performance latencies and dead letters'
error times are wall-clock).

External feedback (the feedback topic) is applied too, in the order it became known: a record whose
``feedback_time_ms`` is F is applied to its partition before the first tick with an event time after
F (feedback left after the last tick, at the end), and never before the tick of the prediction it
names (a feedback clock behind the ticks' would have it dead-lettered as unknown, where a worker,
meeting it after the prediction, learns it); feedback still held at the end for a prediction never
made (streams.early_feedback) is refused then. A worker applies feedback as it arrives; live,
that is the same order, and a backtest gives one answer every time. The feedback topic is read
whole before the ticks (it is held in memory: feedback is sparse next to ticks). Vectors on the
external-features topic (``livelearn replay-dataset``, a dataset's rows) are predicted and learned
as a worker does, feedback applied before them by their event time as before ticks.

Run it instead of a worker on a topic prefix of its own (``LIVELEARN_TOPIC_PREFIX``), not beside one:
both would publish the same outputs. It writes no checkpoints: a backtest is re-run from the start.

With ``jobs`` above 1 the input partitions are shared out among that many processes (:func:`shard`),
as a consumer group shares them among workers: each process reads its partitions of every input topic
and of the feedback topic, and runs them through its own pipelines and producer. A partition is the
unit of state (a basis group's symbols, their models, their feedback), so each key's records are the
ones one process gives, in the same order; only how records of different input partitions interleave
on an output partition differs, as it does between runs of one process.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from agents.app import Runtime
from agents.settings import Settings
from agents.steps import batch_steps
from schemas.codec import DecodeError
from streams.early_feedback import named_time
from streams.pipeline import PartitionPipeline, Step

log = logging.getLogger("livelearn.backtest")
BATCH = 5_000
# The worker's output producer sends at once (LIVELEARN_OUTPUT_LINGER_MS, 0 by default: latency); a
# backtest has none to keep and thousands of records a second to send, and sent one small request at a
# time they cost the broker more CPU than they need. Measured (bench/backtest_jobs.py's capture run,
# one process, two runs each, 2026-12-05): 50 ms took the broker's CPU over the run from 2.2-2.4 s to
# 0.3 s and the backtest from 8.0-8.4 s to 6.7-7.1 s. Records are the same: the order within a
# partition is the idempotent producer's whatever the batching.
LINGER_MS = 50.0


COUNTS = ("ticks", "vectors_in", "feedback", "learned", "vectors", "predictions", "alerts", "dead_letters")


def run_backtest(settings: Settings, progress: Callable[[int, int], None] | None = None,
                 timeout: float = 20.0, jobs: int = 1) -> dict[str, int]:
    """Process the input topics as they are now; returns counts (ticks, vectors_in, feedback, learned,
    vectors, predictions, alerts, dead letters, and ``jobs``: the processes that ran). ``progress(done,
    total)`` (records) is called after each batch. A symbol's inputs are expected on one of the ticks,
    tick-batches and external-features topics: across them the order is the consumer's, as in a
    worker. ``jobs``: the most processes to share the input partitions among (one runs here; how many
    are worth starting: :func:`cli.processes.auto_jobs`)."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if jobs > 1:
        sizes = partition_sizes(settings, INPUTS, timeout)
        shards = shard(sizes, jobs)
        if len(shards) > 1:
            return _run_in_processes(settings, shards, progress, timeout, sum(sizes.values()))
    return {**_run(settings, progress, timeout, None), "jobs": 1}


def shard(sizes: dict[int, int], jobs: int) -> list[frozenset[int]]:
    """Input partitions (with their record counts) shared out among at most ``jobs`` processes, about
    evenly by records: the largest first, each to the least loaded process so far (ties: the first).
    Partitions with no record are left out; fewer shards than ``jobs`` where there are fewer partitions.

    >>> shard({0: 100, 1: 60, 2: 50, 3: 0}, 2)
    [frozenset({0}), frozenset({1, 2})]
    >>> shard({0: 10, 1: 0}, 4)
    [frozenset({0})]
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    used = min(jobs, sum(1 for size in sizes.values() if size > 0))
    loads: list[tuple[int, int, set[int]]] = [(0, i, set()) for i in range(used)]
    for partition, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        if size <= 0:
            break
        load, i, partitions = min(loads)
        partitions.add(partition)
        loads[i] = (load + size, i, partitions)
    return [frozenset(partitions) for _, _, partitions in loads]


# The topics a backtest reads, by stage.
INPUTS = ("ticks", "tick-batches", "external-features", "feedback")


def partition_sizes(settings: Settings, stages: tuple[str, ...], timeout: float) -> dict[int, int]:
    """Records per partition number now, the stages' topics together (offsets: transaction markers
    included; a topic that does not exist holds none)."""
    from confluent_kafka import Consumer

    consumer = Consumer({**settings.client_config(), "group.id": f"livelearn-backtest-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    sizes: dict[int, int] = {}
    try:
        listed = consumer.list_topics(timeout=timeout).topics
        topics = [settings.topic(stage) for stage in stages]
        for (_, partition), (low, high) in _filled(consumer, listed, topics, None, timeout).items():
            sizes[partition] = sizes.get(partition, 0) + high - low
    finally:
        consumer.close()
    return sizes


def groups_reading(settings: Settings, topic: str, timeout: float) -> dict[str, int]:
    """The consumer groups with members assigned partitions of ``topic`` now (a running worker's group
    is its ``LIVELEARN_APP_ID``), with their member counts; empty when none reads it or the broker will
    not say (a principal without Describe on groups): the answer only words a note."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.client_config())
    try:
        listed = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
        ids = [group.group_id for group in listed.valid]
        if not ids:
            return {}
        described = admin.describe_consumer_groups(ids, request_timeout=timeout)
        reading = {}
        for group_id, future in described.items():
            members = future.result(timeout).members
            assigned = (tp for m in members if m.assignment for tp in m.assignment.topic_partitions)
            if any(tp.topic == topic for tp in assigned):
                reading[group_id] = len(members)
        return reading
    except Exception:  # noqa: BLE001 - a note's wording must not stop the backtest
        return {}


def _filled(consumer: Any, listed: dict, topics: list[str], partitions: frozenset[int] | None,
            timeout: float) -> dict[tuple[str, int], tuple[int, int]]:
    """``(low, high)`` offsets of every partition of ``topics`` (of ``partitions``; None: all) that holds
    records, in topic and partition order; a topic that does not exist (tick-batches, made by the first
    worker or a batched replay) holds none."""
    from confluent_kafka import TopicPartition

    found = {}
    for topic in topics:
        metadata = listed.get(topic)
        if metadata is None or metadata.error is not None:
            continue
        for partition in sorted(metadata.partitions):
            if partitions is None or partition in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
                if high > low:
                    found[topic, partition] = (low, high)
    return found


class ShardFailed(RuntimeError):
    """A process of a backtest run with ``jobs`` failed (the other processes were stopped)."""


def _run_in_processes(settings: Settings, shards: list[frozenset[int]],
                      progress: Callable[[int, int], None] | None, timeout: float, total: int = 0) -> dict[str, int]:
    """:func:`_run` of the first shard here and of each other shard in a process of its own (spawned:
    torch and librdkafka threads do not survive a fork; a process takes about 2 s to import what it
    runs, which this one has already done); their counts summed, their progress reported together (out
    of ``total`` records until every process has said its own). A process that fails or dies ends the
    others, and the run fails saying which partitions it had and why."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    level = logging.getLogger().getEffectiveLevel()
    processes = {i: context.Process(target=_run_shard, args=(settings, sorted(shards[i]), timeout, reports, i, level),
                                    name=f"livelearn-backtest-{i}", daemon=True)
                 for i in range(1, len(shards))}
    for process in processes.values():
        process.start()
    done: dict[int, dict[str, int]] = {}
    seen: dict[int, tuple[int, int]] = {}

    def failed(i: int, why: str) -> RuntimeError:
        return ShardFailed(f"backtest process {i} (input partitions {', '.join(map(str, sorted(shards[i])))}) "
                           f"{why}; the other processes were stopped, and the run's outputs so far may be on "
                           "the topics: run the backtest again on fresh topics")

    def said(kind: str, i: int, payload: Any) -> None:
        if kind == "progress":
            seen[i] = payload
            if progress:
                progress(sum(d for d, _ in seen.values()),
                         sum(t for _, t in seen.values()) if len(seen) == len(shards) else total)
        elif kind == "done":
            done[i] = payload
        else:
            raise failed(i, f"failed: {payload}")

    def hear(wait: float) -> None:
        """What the processes said (waiting up to ``wait`` for the first of it); a process gone without
        a result fails the run."""
        try:
            said(*reports.get(timeout=wait) if wait else reports.get_nowait())
            while True:
                said(*reports.get_nowait())
        except queue.Empty:
            pass
        dead = [i for i, process in processes.items() if i not in done and not process.is_alive()]
        if dead:
            try:  # a process reports before it exits, but the report may still be on its way
                said(*reports.get(timeout=5.0))
            except queue.Empty:
                raise failed(dead[0], f"ended with exit code {processes[dead[0]].exitcode} without a result") from None

    def here(done_here: int, total_here: int) -> None:
        seen[0] = (done_here, total_here)
        hear(0)  # a failure elsewhere stops this one too (raised out of its run)

    try:
        try:
            done[0] = _run(settings, here, timeout, shards[0])
        except ShardFailed:
            raise
        except Exception as exc:  # said as another process's failure is
            raise failed(0, f"failed: {type(exc).__name__}: {exc}") from exc
        while len(done) < len(shards):
            hear(1.0)
    finally:
        for i, process in processes.items():
            if i not in done and process.is_alive():
                process.terminate()
            process.join(timeout=30)
    counts = {name: sum(result[name] for result in done.values()) for name in COUNTS}
    return {**counts, "jobs": len(shards)}


def _run_shard(settings: Settings, partitions: list[int], timeout: float, reports: Any, i: int,
               level: int = logging.WARNING) -> None:
    """A backtest process: :func:`_run` of ``partitions``, reporting progress, counts or the error."""
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s %(name)s [backtest {i}] %(message)s")
    try:
        counts = _run(settings, lambda done, total: reports.put(("progress", i, (done, total))), timeout,
                      frozenset(partitions))
    except BaseException as exc:  # noqa: BLE001 - said to the parent, which fails the run with it
        reports.put(("error", i, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    reports.put(("done", i, counts))


def _run(settings: Settings, progress: Callable[[int, int], None] | None, timeout: float,
         partitions: frozenset[int] | None) -> dict[str, int]:
    """The backtest of the input ``partitions`` (None: all) in this process."""
    from confluent_kafka import Consumer, TopicPartition

    linger = max(settings.worker.output_linger_ms, LINGER_MS)
    runtime = Runtime(dataclasses.replace(settings, output_linger_ms=f"{linger:g}"), faust=False)
    topics = [runtime.topic_names[stage] for stage in ("ticks", "tick-batches", "external-features")]
    consumer = Consumer({**settings.client_config(), "group.id": f"livelearn-backtest-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.max.bytes": 64 * 1024 * 1024})
    counts = dict.fromkeys(COUNTS, 0)
    try:
        listed = consumer.list_topics(timeout=timeout).topics
        if topics[0] not in listed:
            raise RuntimeError(f"topic {topics[0]} does not exist (replay data into it first)")
        filled = _filled(consumer, listed, topics, partitions, timeout)
        ends = {where: high for where, (_, high) in filled.items()}
        starts = [TopicPartition(topic, partition, low) for (topic, partition), (low, _) in filled.items()]
        total = sum(ends[tp.topic, tp.partition] - tp.offset for tp in starts)
        if not total and partitions is None:
            raise RuntimeError(f"topics {', '.join(topics[:2])} and {topics[2]} hold nothing: nothing to backtest "
                               "(replay ticks or a dataset into them first)")
        pipelines = {partition: PartitionPipeline(runtime.pipeline) for partition in {p for _, p in ends}}
        feedback = _feedback_in_time_order(runtime, timeout, partitions)
        total += sum(map(len, feedback.values()))

        def pipeline_of(partition: int) -> PartitionPipeline:
            if partition not in pipelines:  # feedback of a partition without ticks: the worker's fresh state
                pipelines[partition] = PartitionPipeline(runtime.pipeline)
            return pipelines[partition]

        def feedback_before(partition: int, event_time_ms: int | None) -> None:
            """Apply the partition's feedback known before ``event_time_ms`` (None: all that is left)."""
            queue = feedback.get(partition)
            while queue and (event_time_ms is None or queue[0][0] < event_time_ms):
                _, origin, record, error = queue.popleft()
                step = (Step(rejection=("learn", "decode_error", error, None)) if record is None
                        else pipeline_of(partition).on_feedback(record, origin))
                counts["feedback"] += 1
                _emit(runtime, step, origin, counts)

        def apply_tick(tick: dict[str, Any], partition: int, origin: tuple) -> None:
            counts["ticks"] += 1
            feedback_before(partition, tick["event_time_ms"])
            _emit(runtime, pipelines[partition].on_tick(tick, int(time.time() * 1000), origin), origin, counts)

        def apply_batch(batch: dict[str, Any], partition: int, origin: tuple) -> None:
            for tick in batch["ticks"]:
                feedback_before(partition, tick["event_time_ms"])
                for step, own in batch_steps(pipelines[partition], [tick], int(time.time() * 1000), origin,
                                             runtime.codecs["ticks"].encode):
                    counts["ticks"] += 1
                    _emit(runtime, step, own, counts)

        def apply_vector(vector: dict[str, Any], partition: int, origin: tuple) -> None:
            counts["vectors_in"] += 1
            feedback_before(partition, vector["event_time_ms"])
            _emit(runtime, pipelines[partition].on_vector(vector), origin, counts)

        # topic -> (its codec, the stage that dead-letters a record that does not decode, what applies it)
        inputs = {topics[0]: (runtime.codecs["ticks"], "featurize", apply_tick),
                  topics[1]: (runtime.codecs["tick-batches"], "featurize", apply_batch),
                  topics[2]: (runtime.codecs["external-features"], "predict", apply_vector)}
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
                codec, stage, apply = inputs[topic]
                try:
                    record = codec.decode(message.value(), topic, partition, offset)
                except DecodeError as exc:
                    counts["ticks"] += topic == topics[0]
                    _emit(runtime, Step(rejection=(stage, "decode_error", str(exc), None)), origin, counts)
                    continue
                apply(record, partition, origin)
            runtime.producer.poll(0)
            if progress:
                progress(records + counts["feedback"], total)
        now_ms = int(time.time() * 1000)
        for pipeline in pipelines.values():  # what a reorder window still holds
            for released, origin in pipeline.flush(now_ms):
                _emit_one(runtime, released, origin, counts)
        for partition in sorted(feedback):
            feedback_before(partition, None)
        for pipeline in pipelines.values():  # feedback held for predictions that were never made
            for refused, origin in pipeline.refuse_held_feedback():
                _emit_one(runtime, refused, origin, counts)
        if progress:
            progress(total, total)
    finally:
        consumer.close()
    runtime.flush_now(timeout=120)
    return counts


def _feedback_in_time_order(runtime: Runtime, timeout: float,
                            partitions: frozenset[int] | None = None) -> dict[int, deque]:
    """The feedback topic (its ``partitions``; None: all) as it is now, by partition:
    ``(time, origin, record, error)`` in the order
    the backtest applies them, by the time the feedback became known (``feedback_time_ms``; a record
    that does not decode, by its Kafka timestamp, with the reason in ``error``), then by offset."""
    from connectors.topic_end import TopicToEnd

    topic, codec = runtime.topic_names["feedback"], runtime.codecs["feedback"]
    found: dict[int, list[tuple[int, int, tuple, dict[str, Any] | None, str | None]]] = {}
    # ``timeout`` bounds a metadata call; reading a whole topic may take longer.
    with TopicToEnd(runtime.settings.client_config(), topic, group_prefix="livelearn-backtest",
                    timeout=max(timeout, 600), metadata_timeout=timeout, strict=True) as reader:
        for message in reader:
            partition, offset = message.partition(), message.offset()
            if partitions is not None and partition not in partitions:
                continue
            origin = (topic, partition, offset, message.key(), message.value())
            try:
                record: dict[str, Any] | None = codec.decode(message.value(), topic, partition, offset)
                error = None
            except DecodeError as exc:
                record, error = None, str(exc)
            known = _applicable_at(record) if record is not None else message.timestamp()[1]
            found.setdefault(partition, []).append((known, offset, origin, record, error))
        if not reader.complete:
            raise RuntimeError(f"topic {topic} could not be read to its end (a broker that does not answer?)")
    return {p: deque((known, origin, record, error) for known, _, origin, record, error in sorted(
        rows, key=lambda row: (row[0], row[1]))) for p, rows in found.items()}


def _applicable_at(feedback: dict[str, Any]) -> int:
    """When the backtest applies a feedback record: when it became known, but not before its prediction."""
    made = named_time(feedback)
    return feedback["feedback_time_ms"] if made is None else max(feedback["feedback_time_ms"], made)


def _produce(runtime: Runtime, stage: str, key, record: dict, timestamp_ms: int | None = None) -> None:
    while not runtime.produce_now(stage, key, record, timestamp_ms):
        pass  # produce_now served deliveries; the queue drains as the broker acknowledges


def _emit(runtime: Runtime, step: Step, origin: tuple, counts: dict[str, int]) -> None:
    _emit_one(runtime, step, origin, counts)
    for released, held_origin in step.released:
        _emit_one(runtime, released, held_origin, counts)


def _emit_one(runtime: Runtime, step: Step, origin: tuple, counts: dict[str, int]) -> None:
    topic, partition, offset, key, value = origin
    counts["learned"] += step.stats.feedback_learned
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
