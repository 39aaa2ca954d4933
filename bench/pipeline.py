"""The pipeline through the real broker, side by side in one run:

(a) forwarders draining a backlog (consume, forward; bench/forwarders.py): a plain confluent-kafka
    loop (the physical reference), a Quix Streams no-op (the peer a user would pick), the Faust
    no-op agent (the framework's ceiling on this machine) and the same agent publishing through
    librdkafka as the worker does (``faust_rdkafka``);
(b) the full pipeline (ticks -> features -> ensemble -> predictions, learning from delayed outcomes,
    drift checks) draining the same backlog: events/s, and its ratio to the Faust no-op;
(c) end-to-end latency (produce time to prediction visible to a consumer) at a fixed offered rate, by
    default half the rate the worker drained in (b): offered more than it drains, the figure measures
    the backlog's growth (seconds at 2,000 ticks/s, the default before 2026-12-08), not the worker;
(d) the batched replay path (`livelearn backtest`: confluent-kafka batches through the same stage
    functions, no Faust) on the same backlog: events/s, ratio to (a), and whether its predictions are
    identical to (b)'s (every field but the wall-clock latency_ms);
(e) the worker draining the same backlog as micro-batches of 100 ticks a record (the tick-batches
    topic, connectors.batching): ticks/s against the Faust no-op's records/s, predictions identical;
(f) real ticks (the BTCUSDT capture's first 20,000 trades and book tickers, which cost the pipeline far
    less than a synthetic tick's prediction does): the worker draining them one a record and in
    batches of 100, ticks/s;
(g) the batched replay path on the same real ticks: ticks/s, ratio to the worker's one-a-record rate in
    (f), predictions identical to (f)'s. What a real tick costs decides the ratios: a synthetic tick
    makes a prediction every time, a real capture is mostly book tickers and fills of one event time.

Rates are taken from the first output record to the last, so start-up and group joins do not count:
by the broker's append times of the outputs (:func:`stamped_by_broker`), not by when the reader saw
them, which would depend on how far the forwarder or worker had got before the reader joined (on
2026-12-07 the plain loop had forwarded the 6,000 records before the reader's first fetch, and its
rate read 2.3 million a second, the reader's own).
Needs the local broker (livelearn kafka up).
Usage: python bench/pipeline.py [--ticks 6000] [--rate N] [--seconds 10] [--skip quix]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
from common import (
    ROOT,
    delete_topics_on_exit,
    free_port,
    isolated_settings,
    matched,
    result,
    running_worker,
)
from forwarders import KINDS, running, take

from agents.settings import Settings
from agents.topics import create_topics
from connectors.batching import TickBatcher
from connectors.recorded import read_file
from connectors.synth import generate
from schemas.codec import AvroCodec
from schemas.keys import BasisGroups

CAPTURE = ROOT / "data" / "binance" / "ws" / "spot_btcusdt_20240808.gz"
BATCH = 100
MAX_AUTO_RATE = 5000.0


def producer(bootstrap: str):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "partitioner": "murmur2_random",
                     "enable.idempotence": True})


def produce_backlog(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    p = producer(bootstrap)
    for key, value, timestamp in records:
        p.produce(topic, key=key, value=value, timestamp=timestamp)
        p.poll(0)
    p.flush()


def batch_records(ticks: list[dict], size: int = BATCH) -> list[tuple[bytes, bytes, int]]:
    """The ticks as tick-batches records, as `livelearn replay --batch` makes them."""
    codec = AvroCodec.for_topic_schema("tick_batch")
    out: list[tuple[bytes, bytes, int]] = []

    class Collect:
        def send(self, record, key, timestamp_ms):
            out.append((key.encode(), codec.encode(record), timestamp_ms))

        def flush(self):
            pass

    batcher = TickBatcher(Collect(), size=size, max_wait_ms=1e9, key_of=BasisGroups.parse("auto").key)
    for tick in ticks:
        batcher.send(tick, tick["symbol"], tick["event_time_ms"])
    batcher.flush()
    return out


def drain(base, name: str, stage: str, records: list[tuple[bytes, bytes, int]], predictions_expected: int):
    """A fresh worker draining ``records`` put on ``stage``'s topic first: predictions/s from the first
    output to the last, and its settings."""
    settings = isolated_settings(base, name)
    create_topics(settings)
    stamped_by_broker(base.bootstrap_servers, settings.topic("predictions"))
    produce_backlog(base.bootstrap_servers, settings.topic(stage), records)
    with running_worker(settings):
        first, last = count_until(base.bootstrap_servers, settings.topic("predictions"), predictions_expected, 600)
    return (predictions_expected - 1) / (last - first), settings


def backtest(base, name: str, records: list[tuple[bytes, bytes, int]]):
    """`livelearn backtest` over ``records`` put on a fresh ticks topic first: ticks/s over the run it
    reports, and its settings."""
    settings = isolated_settings(base, name)
    create_topics(settings)
    produce_backlog(base.bootstrap_servers, settings.topic("ticks"), records)
    # One process against one worker (the ratio); --jobs is bench/backtest_jobs.py's.
    done = subprocess.run([sys.executable, "-m", "cli.main", "backtest", "--quiet", "--jobs", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **settings.as_env()})
    if done.returncode != 0:
        raise RuntimeError(f"backtest {name} failed: {done.stderr[-2000:]}")
    return len(records) / float(matched(r" in ([0-9.]+) s ", done.stdout)), settings


APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


def stamped_by_broker(bootstrap: str, *topics: str) -> None:
    """Existing topics whose new records the broker stamps with their append time (ms), which
    :func:`count_until` then reads: a drain's span no longer depends on when its reader joined."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entry = ConfigEntry("message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry]) for topic in topics]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(30)


def count_until(bootstrap: str, topic: str, n: int, timeout: float, on_message=None,
                assigned: threading.Event | None = None) -> tuple[float, float]:
    """Consume ``topic`` from the start until ``n`` records; the times (s) of the first and the n-th: the
    broker's append times where it stamped every one of them (:func:`stamped_by_broker`), else when
    this reader saw them (monotonic; ``on_message`` gets that time in either case). ``assigned`` is set
    once the reader's group has given it the topic (a latency measure must not start before that)."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    consumer.subscribe([topic], on_assign=lambda *_: assigned.set() if assigned is not None else None)
    seen, deadline, first, last = 0, time.monotonic() + timeout, 0.0, 0.0
    stamped, appended = True, list[float]()  # the append times of the first and the latest record
    try:
        while seen < n and time.monotonic() < deadline:
            for message in take(consumer):
                if message.error() or seen >= n:
                    continue
                seen += 1
                last = time.monotonic()
                first = first or last
                kind, stamp = message.timestamp()
                stamped = stamped and kind == TIMESTAMP_LOG_APPEND_TIME
                appended[1:] = [stamp / 1000.0]
                if on_message:
                    on_message(message, last)
    finally:
        consumer.close()
    if seen < n:
        raise RuntimeError(f"{topic}: {seen}/{n} records within {timeout:.0f} s")
    # Append times are whole milliseconds: a span under one reads as one (the rate a lower bound).
    return (appended[0], max(appended[-1], appended[0] + 0.001)) if stamped else (first, last)


def predictions(bootstrap: str, topic: str, n: int) -> list[dict]:
    """The first ``n`` predictions of a one-partition topic, without the wall-clock latency."""
    from confluent_kafka import Consumer

    codec = AvroCodec.for_topic_schema("prediction")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + 120
    try:
        while len(out) < n and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if not message.error() and len(out) < n:
                    record = codec.decode(message.value())
                    record.pop("latency_ms")
                    out.append(record)
    finally:
        consumer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=6000, help="backlog drained in (a) and (b)")
    parser.add_argument("--rate", type=float, default=None,
                        help="offered ticks/s in (c) (default: half of the worker's drain rate in (b))")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of (c)")
    parser.add_argument("--skip", nargs="*", default=[], choices=KINDS, help="forwarders to leave out")
    args = parser.parse_args()
    base = Settings.from_env()
    bootstrap = base.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    delete_topics_on_exit(bootstrap, run)
    codec = AvroCodec.for_topic_schema("tick")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    # Enough ticks for (c) at any rate a worker here drains (a few thousand a second) unless told.
    ticks = list(generate(args.ticks + int((args.rate or MAX_AUTO_RATE) * args.seconds), seed=7))
    encoded = [(t["symbol"].encode(), codec.encode(t), t["event_time_ms"]) for t in ticks]

    # (a) forwarders draining a backlog.
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    forwarded: dict[str, float] = {}
    for kind in KINDS:
        if kind in args.skip:
            continue
        topic = f"bench-{run}.{kind}"
        for future in admin.create_topics([NewTopic(topic, 1, 1), NewTopic(topic + ".out", 1, 1, config=APPEND_TIME)]).values():
            future.result(30)
        produce_backlog(bootstrap, topic, encoded[: args.ticks])
        with running(kind, bootstrap, topic, f"bench-{kind}-{run}", free_port(), ready_probe=False) as process:
            if process is None:
                continue
            first, last = count_until(bootstrap, topic + ".out", args.ticks, 300)
            forwarded[kind] = (args.ticks - 1) / (last - first)
    noop_rate = forwarded.get("faust", float("nan"))

    # (b) full pipeline draining the same backlog.
    settings = isolated_settings(base, "pipeline")
    create_topics(settings)
    stamped_by_broker(bootstrap, settings.topic("predictions"))
    produce_backlog(bootstrap, settings.topic("ticks"), encoded[: args.ticks])
    with running_worker(settings):
        first, last = count_until(bootstrap, settings.topic("predictions"), args.ticks, 600)
        pipeline_rate = (args.ticks - 1) / (last - first)

        # (c) latency at a fixed offered rate, same worker, the stream continuing.
        rate = args.rate or min(pipeline_rate / 2, MAX_AUTO_RATE)
        sent: dict[str, float] = {}
        latencies: list[float] = []
        prediction_codec = AvroCodec.for_topic_schema("prediction")
        live = ticks[args.ticks: args.ticks + int(rate * args.seconds)]
        first_index = args.ticks + 1

        def on_prediction(message, at):
            pid = prediction_codec.decode(message.value())["prediction_id"]
            if pid in sent:
                latencies.append(at - sent[pid])

        joined = threading.Event()
        reader = threading.Thread(target=count_until, args=(bootstrap, settings.topic("predictions"),
                                                            args.ticks + len(live), 120 + args.seconds * 4,
                                                            on_prediction, joined))
        reader.start()
        # Ticks sent before the reader's group has joined would be timed with the join's wait in them
        # (bench/latency.py waits the same way).
        if not joined.wait(60):
            raise RuntimeError("(c): the reader's group gave it no partition within 60 s")
        time.sleep(1.0)  # the first fetch of a newly assigned partition, as bench/latency.py
        # Not the backlog's producer: an idempotent one holds its first few hundred ticks for about
        # 0.5 s while it gets its producer id, and they would reach the worker as a burst.
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "partitioner": "murmur2_random"})
        p.list_topics(settings.topic("ticks"), timeout=10)
        interval = 1.0 / rate
        t0 = time.monotonic()
        for i, tick in enumerate(live):
            due = t0 + i * interval
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            key, value, ts = encoded[args.ticks + i]
            sent[f"{tick['symbol']}-{tick['event_time_ms']}-{first_index + i}"] = time.monotonic()
            p.produce(settings.topic("ticks"), key=key, value=value, timestamp=ts)
            p.poll(0)
        p.flush()
        offered = len(live) / (time.monotonic() - t0)
        reader.join()

    # (d) batched replay of the same backlog into its own topics.
    batch_rate, batch_settings = backtest(base, "backtest", encoded[: args.ticks])
    identical = predictions(bootstrap, batch_settings.topic("predictions"), args.ticks) == \
        predictions(bootstrap, settings.topic("predictions"), args.ticks)

    # (e) the worker on the same backlog in micro-batches.
    batched_worker_rate, batched_settings = drain(base, "batches", "tick-batches", batch_records(ticks[: args.ticks]),
                                                  args.ticks)
    batched_identical = predictions(bootstrap, batched_settings.topic("predictions"), args.ticks) == \
        predictions(bootstrap, settings.topic("predictions"), args.ticks)

    # (f) real trades and book tickers, one a record and in batches; ticks/s from predictions/s.
    real = [item.tick for item in read_file(CAPTURE) if item.tick is not None][:20_000]
    real_predictions = sum(t["kind"] != "BOOK_TICKER" for t in real)
    per_prediction = len(real) / real_predictions
    real_records = [(t["symbol"].encode(), codec.encode(t), t["event_time_ms"]) for t in real]
    real_single, real_settings = drain(base, "real", "ticks", real_records, real_predictions)
    real_batched, _ = drain(base, "realbatches", "tick-batches", batch_records(real), real_predictions)

    # (g) the batched replay path on the same real ticks.
    real_backtest_rate, real_backtest_settings = backtest(base, "realbacktest", real_records)
    real_identical = predictions(bootstrap, real_backtest_settings.topic("predictions"), real_predictions) == \
        predictions(bootstrap, real_settings.topic("predictions"), real_predictions)

    lat = np.array(latencies) * 1000.0
    p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if len(lat) else (float("nan"),) * 2
    for kind, rate in forwarded.items():
        print(f"(a) {kind + ' forwarder':<25}{rate:10,.0f} events/s")
    print(f"(b) full pipeline per event  {pipeline_rate:10,.0f} events/s   = {pipeline_rate / noop_rate:.1%} of the "
          f"Faust no-op (target >= 70%)")
    if "faust_rdkafka" in forwarded:
        print(f"    = {pipeline_rate / forwarded['faust_rdkafka']:.1%} of the Faust no-op publishing through librdkafka")
    print(f"(c) at {offered:,.0f} ticks/s offered: end-to-end latency p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"over {len(lat)} predictions ({offered / pipeline_rate:.0%} of the worker's drain rate in (b); the "
          "latency target is bench/latency.py's at 400 ticks/s)")
    print(f"(d) batched replay path      {batch_rate:10,.0f} events/s   = {batch_rate / pipeline_rate:.1f}x the "
          f"worker (target >= 4x); predictions identical to (b): {identical}")
    print(f"(e) worker, batches of {BATCH}    {batched_worker_rate:10,.0f} ticks/s    = {batched_worker_rate / noop_rate:.1%} "
          f"of the Faust no-op's records/s, {batched_worker_rate / pipeline_rate:.2f}x one tick a record; "
          f"predictions identical to (b): {batched_identical}")
    print(f"(f) real capture ticks: one a record {real_single * per_prediction:,.0f} ticks/s, batches of {BATCH} "
          f"{real_batched * per_prediction:,.0f} ticks/s ({real_batched / real_single:.2f}x; Faust no-op "
          f"{noop_rate:,.0f} records/s: one a record = {real_single * per_prediction / noop_rate:.1%} of it)")
    print(f"(g) batched replay path on the real ticks {real_backtest_rate:,.0f} ticks/s = "
          f"{real_backtest_rate / (real_single * per_prediction):.1f}x the worker's one a record; predictions "
          f"identical to (f)'s: {real_identical}")
    result("pipeline", **{f"{kind}_forwarder_events_per_s": round(rate) for kind, rate in forwarded.items()},
           noop_events_per_s=round(noop_rate), pipeline_events_per_s=round(pipeline_rate),
           pipeline_vs_noop=round(pipeline_rate / noop_rate, 3),
           pipeline_vs_noop_rdkafka=round(pipeline_rate / forwarded.get("faust_rdkafka", float("nan")), 3),
           batched_replay_events_per_s=round(batch_rate),
           batched_vs_noop=round(batch_rate / noop_rate, 3), batched_vs_worker=round(batch_rate / pipeline_rate, 2),
           batched_predictions_identical=identical,
           worker_batches_ticks_per_s=round(batched_worker_rate),
           worker_batches_vs_noop=round(batched_worker_rate / noop_rate, 3),
           worker_batches_vs_worker=round(batched_worker_rate / pipeline_rate, 2),
           worker_batches_predictions_identical=batched_identical,
           real_ticks_per_s_single=round(real_single * per_prediction),
           real_ticks_per_s_batches=round(real_batched * per_prediction),
           real_single_vs_noop=round(real_single * per_prediction / noop_rate, 3),
           real_backtest_ticks_per_s=round(real_backtest_rate),
           real_backtest_vs_worker=round(real_backtest_rate / (real_single * per_prediction), 2),
           real_backtest_predictions_identical=real_identical,
           offered_rate=round(offered),
           latency_p50_ms=round(p50, 2), latency_p99_ms=round(p99, 2), latency_samples=len(lat),
           members=base.members)


if __name__ == "__main__":
    main()
